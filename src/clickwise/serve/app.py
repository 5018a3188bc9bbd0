"""The HTTP API: events, time-travel lookups, decisions, models, health and metrics.

Every error is a JSON body ``{"error": {"code", "message", "field"}}`` with a 4xx status; a 500
would be a bug. Requests carry ``Authorization: Bearer <key>``; a key's scopes (``read``,
``write``, ``admin``) decide what it may call. Reads may be opened to everyone by configuration;
writes never are. Keys are never logged (only their ids).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from clickwise.serve.auth import ApiKey, KeyStore
from clickwise.serve.metrics import Metrics
from clickwise.serve.service import Service, ServiceError

MAX_BODY_BYTES = 8 * 1024 * 1024
MAX_BATCH = 10_000

_RECORD = {"type": "object", "additionalProperties": True}
_RECORDS = {"oneOf": [_RECORD, {"type": "array", "items": _RECORD, "minItems": 1, "maxItems": MAX_BATCH}]}


def _body(schema: dict[str, Any], description: str) -> dict[str, Any]:
    """An OpenAPI request body (the routes read raw bytes: JSON or NDJSON, validated by the pipeline)."""
    content = {"application/json": {"schema": schema}, "application/x-ndjson": {"schema": {"type": "string"}}}
    return {"requestBody": {"required": True, "description": description, "content": content}}


@dataclass(frozen=True)
class Settings:
    """How the service guards itself."""

    keys: KeyStore | None = None  # None: no authentication (only for tests and local demos)
    open_reads: bool = False
    max_body_bytes: int = MAX_BODY_BYTES
    rate_per_key: float = 5_000.0  # requests per second per key (token bucket, burst of one second)


class _Limited(Exception):
    pass


class BodyLimit:
    """Refuses bodies over the limit before they are read whole (also when sent chunked)."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope.get("headers", []):
            if name == b"content-length" and value.isdigit() and int(value) > self.limit:
                await _send_error(
                    send, 413, "body_too_large", f"request bodies are at most {self.limit} bytes"
                )
                return
        seen = 0

        async def limited() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit:
                    raise _Limited
            return message

        try:
            await self.app(scope, limited, send)
        except _Limited:
            await _send_error(send, 413, "body_too_large", f"request bodies are at most {self.limit} bytes")


async def _send_error(send: Send, status: int, code: str, message: str) -> None:
    body = orjson.dumps({"error": {"code": code, "message": message, "field": None}})
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class _Buckets:
    """A token bucket per key id."""

    def __init__(self, rate: float) -> None:
        self.rate = rate
        self.state: dict[str, tuple[float, float]] = {}

    def take(self, key_id: str) -> bool:
        now = time.monotonic()
        tokens, last = self.state.get(key_id, (self.rate, now))
        tokens = min(self.rate, tokens + (now - last) * self.rate)
        if tokens < 1.0:
            self.state[key_id] = (tokens, now)
            return False
        self.state[key_id] = (tokens - 1.0, now)
        return True


def _json(content: Any) -> Response:
    """A JSON answer serialized by orjson directly (FastAPI's default walks the value first)."""
    return Response(orjson.dumps(content), media_type="application/json")


def _error(status: int, code: str, message: str, field: str | None = None) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message, "field": field}}, status_code=status)


def create_app(service: Service, settings: Settings | None = None) -> FastAPI:
    """The ASGI application serving ``service``."""
    settings = settings or Settings()
    metrics = Metrics(service)
    buckets = _Buckets(settings.rate_per_key)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        await asyncio.to_thread(service.close)  # graceful shutdown: in-flight requests are done

    app = FastAPI(
        lifespan=lifespan,
        title="clickwise",
        version="1",
        description="Events, lookup tables as of any moment, and ad decisions for one pipeline.",
    )
    app.state.service = service
    app.state.metrics = metrics

    @app.exception_handler(ServiceError)
    async def service_error(request: Request, exc: ServiceError) -> JSONResponse:
        return _error(exc.status, exc.code, exc.message, exc.field)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()) if p not in ("body", "query", "path"))
        return _error(422, "invalid_request", str(first.get("msg", "invalid request")), where or None)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return _error(exc.status_code, code, str(exc.detail))

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:  # a bug: say so, keep serving
        return _error(500, "internal", f"internal error ({type(exc).__name__}); see the service log")

    def guard(request: Request, scope: str) -> ApiKey | None:
        if settings.keys is None or (scope == "read" and settings.open_reads):
            return None
        header = request.headers.get("authorization", "")
        if not header.lower().startswith("bearer "):
            raise ServiceError(401, "unauthorized", "send an API key as 'Authorization: Bearer <key>'")
        key = settings.keys.check(header[7:].strip())
        if key is None:
            raise ServiceError(401, "unauthorized", "unknown API key")
        if not key.allows(scope):
            raise ServiceError(
                403, "forbidden", f"this key may not {scope}; its scopes: {sorted(key.scopes)}"
            )
        if not buckets.take(key.id):
            raise ServiceError(
                429, "rate_limited", f"more than {settings.rate_per_key:g} requests/s for this key"
            )
        return key

    async def json_body(request: Request) -> Any:
        data = await request.body()
        if not data.strip():
            raise ServiceError(400, "empty_body", "the request has no body")
        try:
            return orjson.loads(data)
        except orjson.JSONDecodeError:
            lines = [line for line in data.splitlines() if line.strip()]
            try:
                return [orjson.loads(line) for line in lines]  # NDJSON
            except orjson.JSONDecodeError as exc:
                raise ServiceError(400, "bad_json", f"the body is neither JSON nor NDJSON: {exc}") from None

    def records_of(body: Any, what: str) -> list[dict[str, Any]]:
        records = body if isinstance(body, list) else [body]
        if not records:
            raise ServiceError(400, "empty_batch", f"send at least one {what}")
        if len(records) > MAX_BATCH:
            raise ServiceError(413, "batch_too_large", f"at most {MAX_BATCH} {what}s per request")
        if not all(isinstance(r, dict) for r in records):
            raise ServiceError(400, "bad_record", f"each {what} is a JSON object")
        return records

    async def in_thread(function: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        return await asyncio.to_thread(function, *args, **kwargs)

    @app.post(
        "/v1/events/{stream}",
        summary="Ingest events (one JSON object, a JSON array, or NDJSON)",
        openapi_extra=_body(_RECORDS, "Events of the stream, with the fields its pipeline declares."),
    )
    async def post_events(stream: str, request: Request) -> Response:
        guard(request, "write")
        records = records_of(await json_body(request), "event")
        result = await in_thread(service.ingest, stream, records)
        metrics.events(stream, result.accepted, result.rejected)
        return _json(result.to_json())

    @app.get("/v1/tables/{table}/{key}", summary="A key's features, now or as of a moment")
    async def get_table(table: str, key: str, request: Request, as_of: str | None = None) -> Response:
        guard(request, "read")
        moment = service.parse_time(as_of)
        return _json(service.lookup(table, service.parse_key(table, key), moment))

    @app.post(
        "/v1/tables/{table}/lookup",
        summary="Several keys' features at one moment",
        openapi_extra=_body(
            {
                "type": "object",
                "required": ["keys"],
                "properties": {
                    "keys": {"type": "array", "items": {"type": "string"}, "maxItems": MAX_BATCH},
                    "as_of": {"type": ["string", "integer"]},
                },
            },
            "Keys (several fields joined by ',') and an optional moment.",
        ),
    )
    async def lookup_many(table: str, request: Request) -> Response:
        guard(request, "read")
        body = await json_body(request)
        if not isinstance(body, dict) or not isinstance(body.get("keys"), list):
            raise ServiceError(400, "bad_request", 'send {"keys": [...], "as_of": optional time}', "keys")
        keys = body["keys"]
        if len(keys) > MAX_BATCH:
            raise ServiceError(413, "batch_too_large", f"at most {MAX_BATCH} keys per request", "keys")
        parsed = [service.parse_key(table, k if isinstance(k, str) else ",".join(map(str, k)))
                  if k is not None else None for k in keys]  # fmt: skip
        as_of = body.get("as_of")
        moment = service.parse_time(None if as_of is None else str(as_of))
        return _json(await in_thread(service.lookup_many, table, parsed, moment))

    @app.post(
        "/v1/decide",
        summary="Decide serve / skip / block for one opportunity or a batch",
        openapi_extra=_body(_RECORDS, "Ad opportunities: the impression's fields (time defaults to now)."),
    )
    async def decide(request: Request, explain: bool = False) -> Response:
        guard(request, "read")
        body = await json_body(request)
        records = records_of(body, "opportunity")
        answers = (
            service.decide(records, explain=explain)
            if len(records) == 1
            else await in_thread(service.decide, records, explain=explain)
        )
        for answer in answers:
            metrics.decision(answer["decision"])
        return _json(answers if isinstance(body, list) else answers[0])

    @app.get("/v1/models", summary="Model versions and the active one")
    async def models(request: Request) -> dict[str, Any]:
        guard(request, "read")
        return service.list_models()

    @app.post("/v1/models/{version}/activate", summary="Switch the active model (admin)")
    async def activate(version: str, request: Request) -> dict[str, Any]:
        guard(request, "admin")
        return await in_thread(service.activate, version)

    @app.get("/healthz", summary="The process is up")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", summary="Tables loaded (and a model, when one is configured)")
    async def readyz() -> JSONResponse:
        ready = service.models is None or service.predictor is not None
        body = {"ready": ready, "model": service.predictor.version if service.predictor else None}
        return JSONResponse(body, status_code=200 if ready else 503)

    @app.get("/metrics", summary="Prometheus metrics")
    async def prometheus() -> Response:
        return Response(metrics.render(), media_type="text/plain; version=0.0.4")

    return app


class Timing:
    """Request latency per route into the metrics (plain ASGI: a Starlette ``http`` middleware costs
    a task and a stream per request)."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            route = getattr(scope.get("route"), "path", "unmatched")
            self.metrics.observe(route, scope.get("method", ""), status, time.perf_counter() - started)


def build_asgi(service: Service, settings: Settings | None = None) -> ASGIApp:
    """The application wrapped in the latency timer and the body-size guard (what the server runs)."""
    settings = settings or Settings()
    app = create_app(service, settings)
    return BodyLimit(Timing(app, app.state.metrics), settings.max_body_bytes)
