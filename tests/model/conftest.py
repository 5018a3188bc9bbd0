"""Makes ``tests/model/training_sets.py`` importable as ``model_training_sets`` (test folders are not
packages: pytest runs with ``--import-mode=importlib``)."""

from __future__ import annotations

from pathlib import Path

from clickwise.testing import register_module

register_module("model_training_sets", Path(__file__).with_name("training_sets.py"))
