"""``/docs`` needs nothing but the service (it works offline), and the OpenAPI document says how to
authenticate and what each route's refusals look like, checked against the refusals the service sends."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urljoin

import pytest
from fastapi.testclient import TestClient

from clickwise.examples import example_path
from clickwise.serve import KeyStore, Service, Settings, add_key, build_asgi
from clickwise.serve.docs import ERROR_SCHEMA, route_errors
from clickwise.spec import load_pipeline
from clickwise.storage import open_root


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[TestClient, str]]:
    folder = tmp_path_factory.mktemp("docs")
    keys_file = folder / "keys.json"
    key, _ = add_key(keys_file, ["read", "write"], name="docs")
    service = Service(load_pipeline(example_path("adclick")), open_root(folder / "root"))
    settings = Settings(keys=KeyStore.load(keys_file), max_body_bytes=1024)
    with TestClient(build_asgi(service, settings)) as test_client:
        yield test_client, key


def _page_urls(html: str) -> list[str]:
    attributes = re.findall(r"""(?:src|href)\s*=\s*["']([^"']+)["']""", html)
    scripted = re.findall(r"""url:\s*["']([^"']+)["']""", html)
    return attributes + scripted


def test_docs_page_loads_only_assets_the_service_serves(client: tuple[TestClient, str]) -> None:
    test_client, _ = client
    page = test_client.get("/docs")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    urls = _page_urls(page.text)
    assert len(urls) >= 4, urls  # css, favicon, script, the OpenAPI document
    assert not re.search(r"""["'](?:https?:)?//""", page.text), "the page names another origin"
    kinds = set()
    for url in urls:
        assert url.startswith("/") and not url.startswith("//"), url
        asset = test_client.get(urljoin("http://testserver/docs", url))
        assert asset.status_code == 200, url
        assert len(asset.content) > 100, url
        kinds.add(asset.headers["content-type"].split(";")[0])
    assert {"text/css", "application/json", "image/png"} <= kinds, kinds
    assert kinds & {"text/javascript", "application/javascript"}, kinds
    bundle = next(url for url in urls if url.endswith(".js"))
    assert "SwaggerUIBundle" in test_client.get(bundle).text


def test_redoc_is_not_served_from_a_cdn(client: tuple[TestClient, str]) -> None:
    test_client, _ = client
    assert test_client.get("/redoc").status_code == 404


def _document(test_client: TestClient) -> dict[str, Any]:
    answer = test_client.get("/openapi.json")
    assert answer.status_code == 200
    document: dict[str, Any] = answer.json()
    return document


def test_openapi_declares_the_bearer_scheme_on_every_v1_route(client: tuple[TestClient, str]) -> None:
    document = _document(client[0])
    scheme = document["components"]["securitySchemes"]["bearer"]
    assert scheme["type"] == "http" and scheme["scheme"] == "bearer"
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            guarded = path.startswith("/v1/")
            assert (operation.get("security") == [{"bearer": []}]) == guarded, (method, path)


def test_every_4xx_is_the_error_body(client: tuple[TestClient, str]) -> None:
    document = _document(client[0])
    assert document["components"]["schemas"]["Error"] == ERROR_SCHEMA
    assert "HTTPValidationError" not in document["components"]["schemas"]
    declared = 0
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            refusals = {s: r for s, r in operation["responses"].items() if s.startswith("4")}
            assert {int(s) for s in refusals} == set(route_errors().get((method, path), ())), (method, path)
            for response in refusals.values():
                schema = response["content"]["application/json"]["schema"]
                assert schema == {"$ref": "#/components/schemas/Error"}
                declared += 1
    assert declared >= 20


def _is_error_body(body: Any) -> bool:
    """``body`` as ERROR_SCHEMA describes it (no other keys, the right types)."""
    if not isinstance(body, dict) or set(body) != {"error"} or not isinstance(body["error"], dict):
        return False
    error = body["error"]
    return (
        set(error) == {"code", "message", "field"}
        and isinstance(error["code"], str)
        and isinstance(error["message"], str)
        and (error["field"] is None or isinstance(error["field"], str))
    )


REFUSALS = [
    ("get", "/v1/tables/{table}/{key}", "/v1/tables/user/u1", None, False, 401),
    ("get", "/v1/tables/{table}/{key}", "/v1/tables/nope/u1", None, True, 404),
    ("get", "/v1/tables/{table}/{key}", "/v1/tables/user/u1?as_of=yesterday", None, True, 400),
    ("post", "/v1/events/{stream}", "/v1/events/nope", b'{"a": 1}', True, 404),
    ("post", "/v1/events/{stream}", "/v1/events/impressions", b"[" + b"1," * 600 + b"1]", True, 413),
    ("post", "/v1/events/{stream}", "/v1/events/impressions", b"", True, 400),
    ("post", "/v1/tables/{table}/lookup", "/v1/tables/user/lookup", b"{}", True, 400),
    ("post", "/v1/decide", "/v1/decide", b'{"user_id": "u1"}', True, 409),
    ("post", "/v1/decide", "/v1/decide?explain=maybe", b"{}", True, 422),
    ("get", "/v1/models", "/v1/models", None, False, 401),
    ("post", "/v1/models/{version}/activate", "/v1/models/v9/activate", None, True, 403),
]


@pytest.mark.parametrize(("method", "route", "url", "body", "authorized", "status"), REFUSALS)
def test_real_refusals_are_declared_with_their_body(
    client: tuple[TestClient, str],
    method: str,
    route: str,
    url: str,
    body: bytes | None,
    authorized: bool,
    status: int,
) -> None:
    test_client, key = client
    headers = {"Authorization": f"Bearer {key}"} if authorized else {}
    answer = test_client.request(method.upper(), url, content=body, headers=headers)
    assert answer.status_code == status, answer.text
    assert _is_error_body(answer.json()), answer.text
    assert status in route_errors()[(method, route)]


def test_the_assets_are_package_data() -> None:
    text = (Path(__file__).resolve().parents[2] / "pyproject.toml").read_text()
    assert '"serve/static/swagger-ui/*"' in text
