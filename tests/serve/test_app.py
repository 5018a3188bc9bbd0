"""The HTTP service in process: events with read-your-writes, lookups, decisions, models, keys,
errors as JSON 4xx, metrics, the decision log, and a schemathesis run that finds no server error."""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import polars as pl
import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings

from clickwise.dataset import backfill
from clickwise.events import Ingestor
from clickwise.examples import example_path
from clickwise.model import train
from clickwise.serve import KeyStore, Service, Settings, add_key, build_asgi
from clickwise.serve.app import create_app
from clickwise.serve.service import ONE_BY_ONE
from clickwise.spec import Pipeline, parse_pipeline
from clickwise.storage import open_root
from clickwise.synth import generate
from clickwise.tables import Tables

START_MS = 1_767_571_200_000  # 2026-01-05T00:00:00Z
FUZZ_EXAMPLES = int(os.environ.get("CLICKWISE_FUZZ_EXAMPLES", "60"))  # per operation; raise it by hand
HOUR = 3_600_000
CHROME = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0"
CRAWLER = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"


def _pipeline() -> Pipeline:
    text = example_path("adclick").read_text()
    quick = "params: {num_leaves: 15, learning_rate: 0.1, n_estimators: 30, num_threads: 1}"
    start = text.index("params:", text.index("model:"))
    end = text.index("\n", start)
    return parse_pipeline(text[:start] + quick + text[end:], source="adclick-quick")


@dataclass
class Served:
    folder: Path
    pipeline: Pipeline
    service: Service
    client: TestClient
    keys: dict[str, str]
    user: str

    def headers(self, who: str = "rw") -> dict[str, str]:
        return {"Authorization": f"Bearer {self.keys[who]}"}


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    folder = tmp_path_factory.mktemp("serve")
    pipeline = _pipeline()
    generate(folder / "in", users=400, hours=4, seed=5, start_ms=START_MS)
    root = open_root(folder / "root")
    Ingestor(pipeline, root).ingest_files(
        [str(folder / "in" / s) for s in ("impressions", "clicks", "predictions")]
    )
    tables = Tables.open(pipeline, root)
    tables.catch_up()
    backfill(pipeline, root, str(folder / "training"), START_MS, START_MS + 4 * HOUR, tables=tables)
    train(pipeline, str(folder / "training"), str(folder / "models"))
    keys_file = folder / "keys.json"
    scopes = {"rw": ["read", "write"], "r": ["read"], "admin": ["admin"]}
    keys = {name: add_key(keys_file, wanted, name=name)[0] for name, wanted in scopes.items()}
    user = pl.read_parquet(folder / "in" / "impressions").get_column("user_id").mode().sort()[0]  # ties
    service = Service(pipeline, root, models=str(folder / "models"))
    app = build_asgi(service, Settings(keys=KeyStore.load(keys_file), max_body_bytes=64 * 1024))
    with TestClient(app) as client:
        yield Served(folder, pipeline, service, client, keys, user)


def _error(response: Any, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message", "field"}
    return body["error"]  # type: ignore[no-any-return]


def test_health_ready_and_the_keys_file_holds_no_key(served: Served) -> None:
    assert served.client.get("/healthz").json() == {"status": "ok"}
    ready = served.client.get("/readyz")
    assert ready.status_code == 200 and ready.json()["model"] == "v0001"
    stored = (served.folder / "keys.json").read_text()
    assert all(key not in stored for key in served.keys.values())


def test_keys_and_scopes(served: Served) -> None:
    url = f"/v1/tables/user/{served.user}"
    assert _error(served.client.get(url), 401)["code"] == "unauthorized"
    assert (
        _error(served.client.get(url, headers={"Authorization": "Bearer cw_nope"}), 401)["code"]
        == "unauthorized"
    )
    assert served.client.get(url, headers=served.headers("r")).status_code == 200
    refused = served.client.post("/v1/events/impressions", json={}, headers=served.headers("r"))
    assert _error(refused, 403)["code"] == "forbidden"
    assert served.client.post("/v1/models/v0001/activate", headers=served.headers("rw")).status_code == 403


def _impression(number: int, user: str, ts: int, **extra: Any) -> dict[str, Any]:
    return {
        "impression_id": f"http-{user}-{number}",
        "user_id": user,
        "campaign_id": "c1",
        "domain": f"d{number}.com",
        "ip": "8.8.8.8",
        "user_agent": CHROME,
        "cost": 0.002,
        "ts": ts,
        **extra,
    }


def test_events_are_readable_right_after_and_stored_once(served: Served) -> None:
    now = int(time.time() * 1000)
    batch = [_impression(i, "fresh-user", now - 3000 + i) for i in range(3)]
    first = served.client.post("/v1/events/impressions", json=batch, headers=served.headers())
    assert first.status_code == 200 and first.json()["accepted"] == 3
    values = served.client.get("/v1/tables/user/fresh-user", headers=served.headers()).json()["values"]
    assert values["impressions_total"] == 3 and values["domains_30d"] == 3
    again = served.client.post("/v1/events/impressions", json=batch, headers=served.headers()).json()
    assert (again["accepted"], again["duplicates"]) == (0, 3)
    ndjson = b"\n".join(orjson.dumps(_impression(i, "ndjson-user", now - 10 + i)) for i in range(2))
    sent = served.client.post("/v1/events/impressions", content=ndjson, headers=served.headers())
    assert sent.json()["accepted"] == 2


def test_an_accepted_event_a_table_does_not_count_is_reported(served: Served) -> None:
    now = int(time.time() * 1000)
    fresh = served.client.post(
        "/v1/events/impressions", json=[_impression(1, "old-user", now)], headers=served.headers()
    )
    assert fresh.json()["not_counted"] == {}
    old = [_impression(2, "old-user", now - 3 * 86_400_000)]  # past impression_country's 2d retention
    result = served.client.post("/v1/events/impressions", json=old, headers=served.headers()).json()
    assert result["accepted"] == 1
    assert set(result["not_counted"]) == {"impression_country"}
    assert result["not_counted"]["impression_country"]["events"] == 1
    assert (
        "2d retention of table 'impression_country'" in result["not_counted"]["impression_country"]["reason"]
    )
    values = served.client.get("/v1/tables/user/old-user", headers=served.headers()).json()["values"]
    assert values["impressions_total"] == 2  # the user table (90d) counts it


def test_bad_records_are_refused_one_by_one(served: Served) -> None:
    now = int(time.time() * 1000)
    batch = [
        _impression(1, "mixed-user", now - 100),
        _impression(2, "mixed-user", now - 90, cost="not a number"),
        {"impression_id": "no-user", "campaign_id": "c", "domain": "d", "cost": 1.0, "ts": now - 80},
        {**_impression(4, "mixed-user", now - 70), "ts": "yesterday"},
    ]
    result = served.client.post("/v1/events/impressions", json=batch, headers=served.headers()).json()
    assert (result["accepted"], result["rejected"]) == (1, 3)
    assert {(e["index"], e["field"]) for e in result["errors"]} == {(1, "cost"), (2, "user_id"), (3, "ts")}
    values = served.client.get("/v1/tables/user/mixed-user", headers=served.headers()).json()["values"]
    assert values["impressions_total"] == 1


def test_errors_are_json_4xx(served: Served) -> None:
    h = served.headers()
    assert _error(served.client.post("/v1/events/nope", json={}, headers=h), 404)["code"] == "unknown_stream"
    assert _error(served.client.get("/v1/tables/nope/x", headers=h), 404)["field"] == "table"
    assert _error(served.client.get("/v1/tables/user/x?as_of=soon", headers=h), 400)["field"] == "as_of"
    assert _error(served.client.get("/v1/tables/user/" + "k" * 2000, headers=h), 400)["code"] == "bad_key"
    assert _error(served.client.post("/v1/decide", content=b"{nope", headers=h), 400)["code"] == "bad_json"
    assert _error(served.client.post("/v1/decide", content=b"", headers=h), 400)["code"] == "empty_body"
    assert _error(served.client.post("/v1/decide", json=[], headers=h), 400)["code"] == "empty_batch"
    assert _error(served.client.post("/v1/decide", json=[1, 2], headers=h), 400)["code"] == "bad_record"
    big = b"[" + b",".join([b'{"a": "' + b"x" * 1000 + b'"}'] * 100) + b"]"
    assert (
        _error(served.client.post("/v1/events/clicks", content=big, headers=h), 413)["code"]
        == "body_too_large"
    )
    assert _error(served.client.get("/nowhere"), 404)["code"] == "not_found"
    assert _error(served.client.delete("/healthz"), 405)["code"] == "method_not_allowed"
    far = served.client.post("/v1/decide", json={"user_id": "u", "ts": 10**15}, headers=h)
    assert _error(far, 422)["code"] == "invalid_opportunity"


def test_lookups_now_as_of_and_many(served: Served) -> None:
    h = served.headers()
    moment = START_MS + 2 * HOUR
    one = served.client.get(f"/v1/tables/user/{served.user}?as_of={moment}", headers=h).json()
    expected = served.service.tables.get_one("user", served.user, moment)
    assert one["values"] == expected and one["as_of"] == "2026-01-05T02:00:00.000Z"
    iso = served.client.get(f"/v1/tables/user/{served.user}?as_of=2026-01-05T02:00:00Z", headers=h).json()
    assert iso["values"] == expected
    asked = {"keys": [served.user, "nobody"], "as_of": moment}
    many = served.client.post("/v1/tables/user/lookup", json=asked, headers=h).json()
    assert many["rows"][0]["values"] == expected and many["rows"][1]["values"]["impressions_total"] == 0
    world = served.client.get("/v1/tables/global/-", headers=h).json()
    assert world["values"]["impressions_24h"] > 0


def test_decisions(served: Served) -> None:
    h = served.headers("r")
    moment = START_MS + 3 * HOUR
    one = served.client.post(
        "/v1/decide?explain=true", json=_impression(9, served.user, moment), headers=h
    ).json()
    assert 0.0 <= one["p_click"] <= 1.0 and one["decision"] in ("serve", "skip", "block")
    assert one["model_version"] == "v0001" and one["pipeline_fingerprint"] == served.pipeline.fingerprint()
    user = served.service.tables.get_one("user", served.user, moment)
    assert one["features"]["user_impressions_total"] == user["impressions_total"]
    assert one["features"]["hour_of_day"] == 3 and one["features"]["browser"] == "Chrome"
    timeless = {k: v for k, v in _impression(12, "later", moment).items() if k not in ("ts", "impression_id")}
    batch = [
        _impression(10, served.user, moment),
        _impression(11, "someone", moment, user_agent=CRAWLER),
        timeless,
    ]
    answers = served.client.post("/v1/decide", json=batch, headers=h).json()
    assert len(answers) == 3 and "features" not in answers[0]
    assert answers[1]["decision"] == "block" and answers[1]["reasons"][0].startswith("bot agent")
    assert answers[2]["id"] and answers[2]["as_of_ms"] > moment  # no time: decided now


def test_one_by_one_decisions_equal_the_column_path(served: Served) -> None:
    """Up to ONE_BY_ONE plainly valid opportunities are decided without columns; more go through
    the column path. Both must give the same scores, decisions, reasons and features."""
    users = pl.read_parquet(served.folder / "in" / "impressions").get_column("user_id").unique().sort()
    moment = START_MS + 3 * HOUR
    # numbers no other test uses: each decision's id appears in the log exactly once per path
    count = ONE_BY_ONE * 2
    batch = [_impression(1000 + i, users[i * 7 % len(users)], moment - i * 60_000) for i in range(count)]
    batch += [
        _impression(1100, served.user, moment, user_agent=CRAWLER),
        _impression(1101, "nobody-at-all", moment, ip=None, user_agent=None),
        _impression(1102, served.user, moment, cost=999.0),
        _impression(1103, served.user, moment + 10**8),
    ]
    columns = served.service.decide(batch, explain=True)
    singles = [served.service.decide([opportunity], explain=True)[0] for opportunity in batch]
    assert [a["decision"] for a in singles].count("block") >= 1 and "skip" in {a["decision"] for a in singles}
    for column, single in zip(columns, singles, strict=True):
        assert single == column
    path = served.service.flush_decisions()
    assert path is not None
    log = pl.read_parquet(served.folder / "root" / path)
    for answer in singles:
        rows = log.filter(pl.col("event_id") == answer["id"]).drop("decided_ms").to_dicts()
        assert len(rows) == 2 and rows[0] == rows[1]  # logged once by each path, the same
        assert {k: rows[0][k] for k in answer["features"]} == answer["features"]


def test_the_fast_lane_answers_as_the_fastapi_routes(served: Served) -> None:
    """GET lookups and POST /v1/decide are served by plain-ASGI HotRoutes in front of FastAPI; the
    FastAPI routes alone must give the same status and body for the same requests."""
    keys = KeyStore.load(served.folder / "keys.json")
    plain = create_app(served.service, Settings(keys=keys, max_body_bytes=64 * 1024))
    moment = START_MS + 2 * HOUR
    one = orjson.dumps(_impression(1, served.user, moment))
    requests: list[tuple[str, str, bytes, str | None]] = [
        ("GET", f"/v1/tables/user/{served.user}?as_of={moment}", b"", "r"),
        ("GET", f"/v1/tables/user/{served.user}?as_of=2026-01-05T02:00:00Z&as_of={moment}", b"", "r"),
        ("GET", f"/v1/tables/user/{served.user}?as_of=soon", b"", "r"),
        ("GET", f"/v1/tables/user/{served.user}?as_of={moment}", b"", None),
        ("GET", f"/v1/tables/user/{served.user}?as_of={moment}", b"", "admin"),
        ("GET", "/v1/tables/nope/x", b"", "r"),
        ("GET", "/v1/tables/global/-?as_of=1767578400000", b"", "r"),
        ("GET", "/v1/tables/user/" + "k" * 2000, b"", "r"),
        ("POST", "/v1/decide", one, "r"),
        ("POST", "/v1/decide?explain=true", one, "r"),
        ("POST", "/v1/decide?explain=Yes", b"[" + one + b"," + one + b"]", "r"),
        ("POST", "/v1/decide?explain=0", one, "r"),
        ("POST", "/v1/decide?explain=perhaps", one, "r"),
        ("POST", "/v1/decide", one + b"\n" + one, "r"),
        ("POST", "/v1/decide", b"{nope", "r"),
        ("POST", "/v1/decide", b"", "r"),
        ("POST", "/v1/decide", b"[1]", "r"),
        ("POST", "/v1/decide", b'{"user_id": 5, "ts": "later"}', "r"),
        ("POST", "/v1/decide", one, None),
    ]
    with TestClient(plain) as reference:
        for method, url, body, who in requests:
            headers = served.headers(who) if who else {}
            fast = served.client.request(method, url, content=body, headers=headers)
            slow = reference.request(method, url, content=body, headers=headers)
            assert (fast.status_code, fast.json()) == (slow.status_code, slow.json()), (method, url, body)


def test_logged_decisions_have_the_backfills_features(served: Served) -> None:
    """The skew check through the service: impressions of the backfilled range sent to
    /v1/decide (one a request, and in batches) are logged with exactly the features the backfill
    wrote for them."""
    raw = pl.read_parquet(served.folder / "in" / "impressions").sort("impression_id")
    raw = raw.filter(pl.col("ts") < START_MS + 4 * HOUR).sample(240, seed=8)
    records = raw.drop("arrival_ts").to_dicts()
    answers = [
        served.client.post("/v1/decide", json=r, headers=served.headers("r")).json() for r in records[:40]
    ]
    for start in range(40, len(records), 50):
        batch = records[start : start + 50]
        answers += served.client.post("/v1/decide", json=batch, headers=served.headers("r")).json()
    assert [a["id"] for a in answers] == [r["impression_id"] for r in records]
    path = served.service.flush_decisions()
    assert path is not None
    names = list(served.pipeline.features)
    logged = pl.read_parquet(served.folder / "root" / path).select(["event_id", *names])
    backfilled = pl.read_parquet(served.folder / "training" / "**" / "*.parquet").select(["event_id", *names])
    wanted = backfilled.filter(pl.col("event_id").is_in(raw.get_column("impression_id").to_list()))
    got = logged.filter(pl.col("event_id").is_in(raw.get_column("impression_id").to_list()))
    assert wanted.height == got.height == len(records)
    joined = wanted.join(got, on="event_id", suffix="_served")
    for name in names:
        left, right = joined.get_column(name), joined.get_column(f"{name}_served")
        same = (left == right) | (left.is_null() & right.is_null())
        assert same.all(), (
            f"{name}: {joined.filter(~same).select('event_id', name, f'{name}_served').head(3)}"
        )


def test_models_switch_and_a_foreign_model_is_refused(served: Served) -> None:
    listed = served.client.get("/v1/models", headers=served.headers("r")).json()
    assert listed["versions"] == ["v0001"] and listed["active"] == "v0001"
    models = served.folder / "models"
    shutil.copytree(models / "v0001", models / "v0002")
    card = orjson.loads((models / "v0002" / "model.json").read_bytes())
    card["pipeline"]["fingerprint"] = "sha256:another"
    card["version"] = "v0002"
    (models / "v0002" / "model.json").write_bytes(orjson.dumps(card))
    refused = served.client.post("/v1/models/v0002/activate", headers=served.headers("admin"))
    assert _error(refused, 409)["code"] == "model_refused"
    assert _error(served.client.post("/v1/models/v0009/activate", headers=served.headers("admin")), 404)
    switched = served.client.post("/v1/models/v0001/activate", headers=served.headers("admin"))
    assert switched.json() == {"active": "v0001"}
    assert (
        served.client.post(
            "/v1/decide", json=_impression(1, "x", START_MS), headers=served.headers()
        ).status_code
        == 200
    )


def test_metrics(served: Served) -> None:
    served.client.post("/v1/decide", json=_impression(1, "m", START_MS), headers=served.headers())
    text = served.client.get("/metrics").text
    assert (
        'clickwise_request_seconds_bucket{le="0.005",method="POST",route="/v1/decide",status="200"}' in text
    )
    assert "clickwise_decisions_total{" in text and "clickwise_events_ingested_total{" in text
    assert "clickwise_watermark_ms " in text


def test_decisions_are_logged_with_their_features(served: Served) -> None:
    answer = served.client.post("/v1/decide", json=_impression(77, "logged", START_MS + HOUR),
                                headers=served.headers()).json()  # fmt: skip
    path = served.service.flush_decisions()
    assert path is not None
    log = pl.read_parquet(served.folder / "root" / path)
    row = log.filter(pl.col("event_id") == answer["id"]).to_dicts()[0]
    assert row["decision"] == answer["decision"] and row["p_click"] == answer["p_click"]
    assert "user_impressions_total" in row and row["model_version"] == "v0001"


def test_schemathesis_finds_no_server_error(served: Served) -> None:
    app = served.client.app
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    headers = served.headers("rw")
    failures = []
    seen: set[tuple[str, str, int]] = set()

    for operation in schema.get_all_operations():
        op = operation.ok()

        @settings(max_examples=FUZZ_EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
        @given(case=op.as_strategy())
        def check(case: Any) -> None:
            response = case.call(headers=headers)
            seen.add((case.method, case.path, response.status_code // 100))
            if response.status_code >= 500:
                failures.append(
                    f"{case.method} {case.formatted_path}: {response.status_code} {response.text[:200]}"
                )

        check()
    assert not failures, failures[:5]
    # the fuzzer reached the handlers: accepted and refused requests on the routes that take bodies
    for path in ("/v1/events/{stream}", "/v1/decide", "/v1/tables/{table}/lookup"):
        assert ("POST", path, 4) in seen, sorted(seen)
    assert any(kind == 2 for _, _, kind in seen)


def test_concurrent_ingests_are_all_applied(served: Served) -> None:
    """Requests writing at the same time share table updates; none is lost or applied twice."""
    from concurrent.futures import ThreadPoolExecutor

    now = int(time.time() * 1000)

    def send(worker: int) -> int:
        total = 0
        for batch in range(4):
            events = [
                _impression(batch * 10 + i, f"crowd-{worker}", now - 5000 + batch * 10 + i) for i in range(3)
            ]
            total += served.service.ingest("impressions", events).accepted
        return total

    with ThreadPoolExecutor(6) as pool:
        accepted = list(pool.map(send, range(6)))
    assert accepted == [12] * 6
    for worker in range(6):
        values = served.service.lookup("user", f"crowd-{worker}", None)["values"]
        assert values["impressions_total"] == 12, worker
