"""Checkpoint format versions: this version reads its own and the previous one, refuses others."""

from __future__ import annotations

import orjson
import pytest

from clickwise.tables.state import FORMAT_VERSION, READABLE_VERSIONS, Checkpoint, StateError


def _checkpoint_bytes(version: object) -> bytes:
    return orjson.dumps({"version": version, "fingerprint": "sha256:x", "sequence": 4, "applied": ["a"]})


@pytest.mark.parametrize("version", READABLE_VERSIONS)
def test_readable_versions_load(version: int) -> None:
    checkpoint = Checkpoint.from_bytes(_checkpoint_bytes(version))
    assert checkpoint.sequence == 4 and checkpoint.applied == ["a"]


@pytest.mark.parametrize("version", [1, FORMAT_VERSION + 1, None, "3"])
def test_other_versions_are_refused_with_a_clear_error(version: object) -> None:
    with pytest.raises(StateError, match="unknown format version"):
        Checkpoint.from_bytes(_checkpoint_bytes(version))


def test_a_checkpoint_is_written_in_this_version() -> None:
    assert orjson.loads(Checkpoint("sha256:x").to_bytes())["version"] == FORMAT_VERSION == 3
