"""Pipelines that ship with clickwise (``examples/`` in the repository links here)."""

from __future__ import annotations

from importlib import resources
from pathlib import Path


def example_path(name: str) -> Path:
    """The path of a bundled example pipeline, e.g. ``example_path("adclick")``."""
    return Path(str(resources.files(__package__).joinpath(f"{name}.yaml")))
