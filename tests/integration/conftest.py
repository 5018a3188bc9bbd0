"""Fixtures of the source tests: the generated traffic as files and the reference state built from
them. Makes ``sources.py`` importable as ``integration_sources`` (test folders are not packages:
pytest runs with ``--import-mode=importlib``)."""

from __future__ import annotations

from pathlib import Path

import pytest

from clickwise.events import Ingestor
from clickwise.examples import example_path
from clickwise.spec import load_pipeline
from clickwise.storage import open_root
from clickwise.synth import generate
from clickwise.tables import Tables
from clickwise.testing import register_module

register_module("integration_sources", Path(__file__).with_name("sources.py"))

from integration_sources import HOURS, SEED, START_MS, STREAMS, USERS  # noqa: E402


@pytest.fixture(scope="session")
def generated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The traffic as JSON-lines files: ``<folder>/<stream>/part-00000.jsonl``."""
    folder = tmp_path_factory.mktemp("files") / "in"
    generate(folder, users=USERS, hours=HOURS, seed=SEED, start_ms=START_MS, fmt="jsonl")
    return folder


@pytest.fixture(scope="session")
def reference(tmp_path_factory: pytest.TempPathFactory, generated: Path) -> Tables:
    """The same traffic from files, ingested and applied the ordinary way."""
    pipeline = load_pipeline(example_path("adclick"))
    root = open_root(str(tmp_path_factory.mktemp("reference")))
    Ingestor(pipeline, root).ingest_files([str(generated / s) for s in STREAMS])
    tables = Tables.open(pipeline, root)
    tables.catch_up()
    return tables
