"""Versions, latest, the ACTIVE pointer and resolving a model reference."""

from __future__ import annotations

import threading
from pathlib import Path

import orjson
import pytest

from clickwise.model import ModelError, ModelNotFoundError, active, latest, list_versions, resolve, set_active
from clickwise.model.registry import publish


def _publish(models: Path, note: str = "") -> str:
    return publish(
        str(models), lambda version: {"model.json": orjson.dumps({"version": version, "note": note})}
    )


def test_versions_count_up_and_skip_incomplete_folders(tmp_path: Path) -> None:
    models = tmp_path / "models"
    assert list_versions(str(models)) == []
    with pytest.raises(ModelNotFoundError, match="no model versions"):
        latest(str(models))
    assert [_publish(models) for _ in range(3)] == ["v0001", "v0002", "v0003"]
    (models / "v0004").mkdir()  # a crashed remote writer: no model.json
    assert list_versions(str(models)) == ["v0001", "v0002", "v0003"]
    assert _publish(models) == "v0005"
    assert latest(str(models)) == str(models / "v0005")
    card = orjson.loads((models / "v0005" / "model.json").read_bytes())
    assert card["version"] == "v0005"


def test_concurrent_publishers_get_distinct_versions(tmp_path: Path) -> None:
    models = tmp_path / "models"
    names: list[str] = []
    threads = [threading.Thread(target=lambda i=i: names.append(_publish(models, str(i)))) for i in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(names) == [f"v{i:04d}" for i in range(1, 7)]
    for name in names:
        assert orjson.loads((models / name / "model.json").read_bytes())["version"] == name
    assert not [p for p in models.iterdir() if p.name.startswith(".tmp")]


def test_the_active_pointer(tmp_path: Path) -> None:
    models = tmp_path / "models"
    for _ in range(2):
        _publish(models)
    assert active(str(models)) is None
    with pytest.raises(ModelNotFoundError, match="no active model"):
        resolve("active", str(models))
    assert resolve(str(models)) == str(models / "v0002")  # a models folder: latest when none is active
    assert set_active(str(models), "v0001") == "v0001"
    assert (models / "ACTIVE").read_text() == "v0001\n"
    assert resolve("active", str(models)) == str(models / "v0001")
    assert resolve(str(models)) == str(models / "v0001")
    assert set_active(str(models), "latest") == "v0002"
    with pytest.raises(ModelNotFoundError, match="'v0009' is not in"):
        set_active(str(models), "v0009")


def test_resolve(tmp_path: Path) -> None:
    models = tmp_path / "models"
    _publish(models)
    _publish(models)
    assert resolve("latest", str(models)) == str(models / "v0002")
    assert resolve("v0001", str(models)) == str(models / "v0001")
    assert resolve(str(models / "v0001")) == str(models / "v0001")
    with pytest.raises(ModelError, match="needs a models folder"):
        resolve("latest")
    with pytest.raises(ModelNotFoundError, match="does not exist"):
        resolve(str(tmp_path / "missing"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelNotFoundError, match="neither a model folder"):
        resolve(str(tmp_path / "empty"))
    assert not (tmp_path / "missing").exists()
