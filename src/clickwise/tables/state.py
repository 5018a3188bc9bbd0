"""Durable table state: run files plus one checkpoint that says which runs and lake files count.

Layout under the root::

    tables/runs/<feed>/<sequence>.arrow     immutable runs (Arrow IPC, zstd)
    tables/pending/<stream>-<sequence>.parquet   joined events still waiting for their join
    tables/checkpoint.json                  the state: runs per feed, lake files applied, counters

A run file is written before the checkpoint that names it, and the checkpoint is replaced
atomically, so a crash at any moment leaves either the old state or the new one. Files no
checkpoint names are leftovers of an interrupted update and are deleted on open (so are dead-letter
files of expired events that no checkpoint names). The lake files
applied are stored in the same checkpoint as the runs they produced, so no event is lost or
counted twice.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

import orjson

from clickwise.errors import ClickwiseError
from clickwise.spec import Pipeline
from clickwise.storage import Root

CHECKPOINT = "tables/checkpoint.json"
EXPIRED_PREFIX = "part-expired-"
"""Dead-letter files of events past retention start so; only those a checkpoint names count."""
FORMAT_VERSION = 3
"""2: run files store key hashes; checkpoints list expired-event dead letters. 3: run files store
times as offsets from a base (version 2 files, with absolute times, still read; a version 2 reader
refuses version 3 state with a clear error instead of misreading it)."""
READABLE_VERSIONS = (2, 3)


class StateError(ClickwiseError):
    """The table state at a root cannot be used with this pipeline."""


def tables_fingerprint(pipeline: Pipeline) -> str:
    """A digest of what table contents depend on: streams, enrichments and tables (not where the
    streams are read from: the same state serves a pipeline reading files and one reading Kafka)."""
    defining = pipeline.model_dump(
        mode="json",
        include={"streams", "enrichments", "tables"},
        exclude={"streams": {"__all__": {"source"}}},
    )
    return "sha256:" + hashlib.sha256(orjson.dumps(defining, option=orjson.OPT_SORT_KEYS)).hexdigest()


@dataclass
class Checkpoint:
    """What the state is: run files per feed, applied lake files, pending files and counters."""

    fingerprint: str
    sequence: int = 0
    runs: dict[str, list[str]] = field(default_factory=dict)
    applied: list[str] = field(default_factory=list)
    pending: dict[str, str] = field(default_factory=dict)
    counters: dict[str, int] = field(default_factory=dict)
    dead_letters: list[str] = field(default_factory=list)  # expired events, committed with the state

    def to_bytes(self) -> bytes:
        return orjson.dumps({"version": FORMAT_VERSION, **self.__dict__}, option=orjson.OPT_INDENT_2)

    @classmethod
    def from_bytes(cls, data: bytes) -> Checkpoint:
        raw: dict[str, Any] = orjson.loads(data)
        if raw.pop("version", None) not in READABLE_VERSIONS:
            raise StateError(f"{CHECKPOINT} has an unknown format version; rebuild the tables from the lake")
        return cls(**raw)


def load_checkpoint(root: Root, pipeline: Pipeline, *, rebuild: bool) -> Checkpoint:
    """The checkpoint at ``root``, or a new one; refuses state built by other table definitions."""
    fingerprint = tables_fingerprint(pipeline)
    if rebuild or not root.exists(CHECKPOINT):
        return Checkpoint(fingerprint)
    checkpoint = Checkpoint.from_bytes(root.read_bytes(CHECKPOINT))
    if checkpoint.fingerprint != fingerprint:
        raise StateError(
            f"the tables at {root.url} were built by other stream/table definitions "
            f"({checkpoint.fingerprint[:19]}, this pipeline has {fingerprint[:19]}); "
            "rebuild them from the lake with --rebuild (or Tables.open(..., rebuild=True))"
        )
    return checkpoint


def save_checkpoint(root: Root, checkpoint: Checkpoint) -> None:
    root.write_bytes(CHECKPOINT, checkpoint.to_bytes())


def remove_unreferenced(root: Root, checkpoint: Checkpoint) -> int:
    """Delete run and pending files the checkpoint does not name (leftovers of a crash)."""
    named = {path for paths in checkpoint.runs.values() for path in paths} | set(checkpoint.pending.values())
    removed = 0
    for prefix in ("tables/runs", "tables/pending"):
        for path in root.list_files(prefix):
            if path not in named:
                root.delete(path)
                removed += 1
    removed += root.remove_temporaries("tables")
    committed = set(checkpoint.dead_letters)
    for path in root.list_files("deadletters", suffix=".parquet"):
        if path.rsplit("/", 1)[-1].startswith(EXPIRED_PREFIX) and path not in committed:
            root.delete(path)  # written by an update that crashed before its checkpoint
            removed += 1
    return removed
