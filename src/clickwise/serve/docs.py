"""The API's documentation: ``/docs`` served from the package (no CDN, so it works offline) and an
OpenAPI document that says how to authenticate and what every refusal looks like.

- ``/docs`` is Swagger UI from ``static/swagger-ui/``: the npm package ``swagger-ui-dist`` (see
  ``VERSION`` there), copied unmodified by ``scripts/vendor-swagger-ui`` and committed as built files.
- The OpenAPI document declares the ``bearer`` scheme (``Authorization: Bearer KEY``) on every ``/v1``
  route, and each route's 4xx answers with the body the service really sends,
  ``{"error": {"code", "message", "field"}}`` (FastAPI's default 422 body is replaced: the service
  never sends it).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.openapi.utils import get_openapi
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

SWAGGER_UI = Path(__file__).parent / "static" / "swagger-ui"
ASSETS = "/docs/assets"
ERROR = "Error"
BEARER = "bearer"

_STATUS_TEXT = {
    400: "The request is malformed: `bad_json`, `empty_body`, `empty_batch`, `bad_record`, `bad_request`, "
    "`bad_key` or `bad_time` (an `as_of` that is not a time).",
    401: "`unauthorized`: no API key, or an unknown one.",
    403: "`forbidden`: the key lacks the scope this route needs.",
    404: "`unknown_stream`, `unknown_table` or `unknown_model`.",
    409: "`no_model`, `no_registry` or `model_refused` (a model built for another pipeline fingerprint).",
    413: "`body_too_large` (over the body limit) or `batch_too_large` (over 10,000 records or keys).",
    422: "`invalid_request` (a query parameter of the wrong type) or `invalid_opportunity`.",
    429: "`rate_limited`: over the key's requests per second.",
}
_GUARDED = (401, 403, 429)
_ROUTE_ERRORS: dict[tuple[str, str], tuple[int, ...]] = {
    ("post", "/v1/events/{stream}"): (400, 404, 413, *_GUARDED),
    ("get", "/v1/tables/{table}/{key}"): (400, 404, *_GUARDED),
    ("post", "/v1/tables/{table}/lookup"): (400, 404, 413, *_GUARDED),
    ("post", "/v1/decide"): (400, 409, 413, 422, *_GUARDED),
    ("get", "/v1/models"): _GUARDED,
    ("post", "/v1/models/{version}/activate"): (404, 409, *_GUARDED),
}
"""The 4xx statuses each route answers with (the routes outside /v1 refuse nothing)."""

ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["error"],
    "additionalProperties": False,
    "properties": {
        "error": {
            "type": "object",
            "required": ["code", "message", "field"],
            "additionalProperties": False,
            "properties": {
                "code": {"type": "string", "description": "A stable, machine-readable reason."},
                "message": {"type": "string", "description": "What went wrong and how to fix it."},
                "field": {
                    "type": ["string", "null"],
                    "description": "The request field at fault, when there is one.",
                },
            },
        }
    },
}


def route_errors() -> dict[tuple[str, str], tuple[int, ...]]:
    """``(method, path) -> 4xx statuses`` as the OpenAPI document declares them."""
    return dict(_ROUTE_ERRORS)


def add_docs(app: FastAPI) -> None:
    """Serve ``/docs`` from the package's assets and describe auth and errors in ``/openapi.json``.
    ``app`` must be created with ``docs_url=None, redoc_url=None``."""
    app.mount(ASSETS, StaticFiles(directory=SWAGGER_UI), name="docs-assets")

    @app.get("/docs", include_in_schema=False)
    async def docs(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "").rstrip("/")
        return get_swagger_ui_html(
            openapi_url=f"{root}{app.openapi_url}",
            title=f"{app.title} API",
            swagger_js_url=f"{root}{ASSETS}/swagger-ui-bundle.js",
            swagger_css_url=f"{root}{ASSETS}/swagger-ui.css",
            swagger_favicon_url=f"{root}{ASSETS}/favicon-32x32.png",
            swagger_ui_parameters={"validatorUrl": None},  # no badge fetched from elsewhere
        )

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            document = get_openapi(
                title=app.title, version=app.version, description=app.description, routes=app.routes
            )
            app.openapi_schema = describe_errors(document)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def describe_errors(document: dict[str, Any]) -> dict[str, Any]:
    """Add the bearer scheme and each route's 4xx answers (the error schema) to an OpenAPI document."""
    components = document.setdefault("components", {})
    components.setdefault("securitySchemes", {})[BEARER] = {
        "type": "http",
        "scheme": "bearer",
        "description": "An API key made by `clickwise keys add`; reads may be open (`--open-reads`).",
    }
    schemas = components.setdefault("schemas", {})
    schemas[ERROR] = ERROR_SCHEMA
    for path, operations in document.get("paths", {}).items():
        for method, operation in operations.items():
            statuses = _ROUTE_ERRORS.get((method, path))
            responses = operation.setdefault("responses", {})
            responses.pop("422", None)  # FastAPI's HTTPValidationError: never the body sent
            if statuses is None:
                continue
            operation["security"] = [{BEARER: []}]
            for status in statuses:
                responses[str(status)] = {
                    "description": _STATUS_TEXT[status],
                    "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{ERROR}"}}},
                }
    for unused in ("HTTPValidationError", "ValidationError"):
        if not _referenced(document, unused):
            schemas.pop(unused, None)
    return document


def _referenced(document: dict[str, Any], schema: str) -> bool:
    return f'"#/components/schemas/{schema}"' in json.dumps(document.get("paths", {}))
