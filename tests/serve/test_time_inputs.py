"""Times given to the service: epoch ms or ISO text with a zone; an ISO time whose '+' a URL query
turned into a space is refused with a hint."""

from __future__ import annotations

from pathlib import Path

from fastapi.testclient import TestClient

from clickwise.examples import example_path
from clickwise.serve import Service, Settings, build_asgi
from clickwise.spec import load_pipeline
from clickwise.storage import open_root

AT_MS = 1_767_607_200_000  # 2026-01-05T10:00:00Z


def test_as_of_takes_epoch_ms_and_hints_at_a_plus_turned_into_a_space(tmp_path: Path) -> None:
    service = Service(load_pipeline(example_path("adclick")), open_root(tmp_path))
    with TestClient(build_asgi(service, Settings(keys=None))) as client:
        by_ms = client.get(f"/v1/tables/user/u1?as_of={AT_MS}")
        assert by_ms.status_code == 200, by_ms.text
        assert by_ms.json()["as_of_ms"] == AT_MS
        by_text = client.get("/v1/tables/user/u1?as_of=2026-01-05T10:00:00%2B00:00")
        assert by_text.status_code == 200 and by_text.json()["as_of_ms"] == AT_MS
        for spaced in ("2026-01-05T10:00:00+00:00", "2026-01-05T12:00:00 02:00"):
            refused = client.get(f"/v1/tables/user/u1?as_of={spaced}")
            assert refused.status_code == 400, refused.text
            error = refused.json()["error"]
            assert (error["code"], error["field"]) == ("bad_time", "as_of")
            assert "'+' was read as a space" in error["message"] and "%2B" in error["message"]
        many = client.post("/v1/tables/user/lookup", json={"keys": ["u1"], "as_of": AT_MS})
        assert many.status_code == 200 and many.json()["as_of_ms"] == AT_MS
        plain = client.get("/v1/tables/user/u1?as_of=yesterday")
        assert plain.status_code == 400 and "%2B" not in plain.json()["error"]["message"]
