"""The HTTP API: events, time-travel lookups, decisions, models, health and metrics.

Every error is a JSON body ``{"error": {"code", "message", "field"}}`` with a 4xx status; a 500
would be a bug. Requests carry ``Authorization: Bearer <key>``; a key's scopes (``read``,
``write``, ``admin``) decide what it may call. Reads may be opened to everyone by configuration;
writes never are. Keys are never logged (only their ids).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from clickwise.serve.auth import ApiKey, KeyStore
from clickwise.serve.docs import add_docs
from clickwise.serve.metrics import Metrics
from clickwise.serve.service import Service, ServiceError

_log = logging.getLogger("clickwise.serve")
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


async def _send_error(send: Send, status: int, code: str, message: str, field: str | None = None) -> None:
    body = orjson.dumps({"error": {"code": code, "message": message, "field": field}})
    await _send_json(send, status, body)


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


class Handlers:
    """What the routes do, shared by the FastAPI routes and the hot-route fast lane
    (:class:`HotRoutes`), so both answer alike."""

    def __init__(self, service: Service, settings: Settings, metrics: Metrics) -> None:
        self.service = service
        self.settings = settings
        self.metrics = metrics
        self.buckets = _Buckets(settings.rate_per_key)

    def guard(self, authorization: str, scope: str) -> ApiKey | None:
        """The caller's key, checked for ``scope`` and the rate limit (``None``: no check applies)."""
        settings = self.settings
        if settings.keys is None or (scope == "read" and settings.open_reads):
            return None
        if not authorization.lower().startswith("bearer "):
            raise ServiceError(401, "unauthorized", "send an API key as 'Authorization: Bearer <key>'")
        key = settings.keys.check(authorization[7:].strip())
        if key is None:
            raise ServiceError(401, "unauthorized", "unknown API key")
        if not key.allows(scope):
            raise ServiceError(
                403, "forbidden", f"this key may not {scope}; its scopes: {sorted(key.scopes)}"
            )
        if not self.buckets.take(key.id):
            raise ServiceError(
                429, "rate_limited", f"more than {settings.rate_per_key:g} requests/s for this key"
            )
        return key

    @staticmethod
    def parse_body(data: bytes) -> Any:
        """A JSON value, or the list of an NDJSON body's lines."""
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

    @staticmethod
    def records_of(body: Any, what: str) -> list[dict[str, Any]]:
        records = body if isinstance(body, list) else [body]
        if not records:
            raise ServiceError(400, "empty_batch", f"send at least one {what}")
        if len(records) > MAX_BATCH:
            raise ServiceError(413, "batch_too_large", f"at most {MAX_BATCH} {what}s per request")
        if not all(isinstance(r, dict) for r in records):
            raise ServiceError(400, "bad_record", f"each {what} is a JSON object")
        return records

    def lookup(self, authorization: str, table: str, key: str, as_of: str | None) -> bytes:
        self.guard(authorization, "read")
        service = self.service
        moment = service.parse_time(as_of)
        return orjson.dumps(service.lookup(table, service.parse_key(table, key), moment))

    async def decide(self, authorization: str, data: bytes, explain: bool) -> bytes:
        self.guard(authorization, "read")
        body = self.parse_body(data)
        records = self.records_of(body, "opportunity")
        service = self.service
        answers = (
            service.decide(records, explain=explain)  # a fraction of a millisecond: no thread hop
            if len(records) == 1
            else await asyncio.to_thread(service.decide, records, explain=explain)
        )
        for answer in answers:
            self.metrics.decision(answer["decision"])
        return orjson.dumps(answers if isinstance(body, list) else answers[0])


def _json(content: Any) -> Response:
    """A JSON answer serialized by orjson directly (FastAPI's default walks the value first)."""
    return Response(orjson.dumps(content), media_type="application/json")


def _error(status: int, code: str, message: str, field: str | None = None) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message, "field": field}}, status_code=status)


def create_app(service: Service, settings: Settings | None = None) -> FastAPI:
    """The ASGI application serving ``service``."""
    settings = settings or Settings()
    metrics = Metrics(service)
    handlers = Handlers(service, settings, metrics)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        await asyncio.to_thread(service.close)  # graceful shutdown: in-flight requests are done

    app = FastAPI(
        lifespan=lifespan,
        title="clickwise",
        version="1",
        description="Events, lookup tables as of any moment, and ad decisions for one pipeline.",
        docs_url=None,  # served by add_docs from the package's own assets
        redoc_url=None,
    )
    add_docs(app)
    app.state.service = service
    app.state.metrics = metrics
    app.state.handlers = handlers

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
        return handlers.guard(request.headers.get("authorization", ""), scope)

    async def json_body(request: Request) -> Any:
        return handlers.parse_body(await request.body())

    records_of = handlers.records_of

    async def in_thread(function: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        return await asyncio.to_thread(function, *args, **kwargs)

    @app.post(
        "/v1/events/{stream}",
        summary="Ingest events (one JSON object, a JSON array, or NDJSON)",
        openapi_extra=_body(_RECORDS, "Events of the stream, with the fields its pipeline declares."),
    )
    async def post_events(stream: str, request: Request) -> Response:
        guard(request, "write")
        data = await request.body()

        def ingest() -> bytes:  # parsing a large body is work too: off the event loop
            result = service.ingest(stream, records_of(handlers.parse_body(data), "event"))
            metrics.events(stream, result.accepted, result.rejected)
            return orjson.dumps(result.to_json())

        return Response(await in_thread(ingest), media_type="application/json")

    @app.get("/v1/tables/{table}/{key}", summary="A key's features, now or as of a moment")
    async def get_table(table: str, key: str, request: Request, as_of: str | None = None) -> Response:
        answer = handlers.lookup(request.headers.get("authorization", ""), table, key, as_of)
        return Response(answer, media_type="application/json")

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
        authorization = request.headers.get("authorization", "")
        answer = await handlers.decide(authorization, await request.body(), explain)
        return Response(answer, media_type="application/json")

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


@dataclass(frozen=True)
class _Route:
    path: str  # the route's label in the metrics, as FastAPI names it


_LOOKUP = _Route("/v1/tables/{table}/{key}")
_DECIDE = _Route("/v1/decide")
_TRUE = {"1", "on", "t", "true", "y", "yes"}
_FALSE = {"0", "off", "f", "false", "n", "no"}


class HotRoutes:
    """``GET /v1/tables/{table}/{key}`` and ``POST /v1/decide`` answered in plain ASGI, through the
    same :class:`Handlers` as their FastAPI routes (which still describe them in the OpenAPI
    document): FastAPI's routing, dependency and middleware layers cost more CPU than a lookup.
    Anything else, or anything unusual about these requests, goes on to FastAPI."""

    def __init__(self, app: ASGIApp, handlers: Handlers) -> None:
        self.app = app
        self.handlers = handlers

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            method, path = scope["method"], scope["path"]
            if method == "GET" and path.startswith("/v1/tables/"):
                parts = path.split("/")
                if len(parts) == 5 and parts[3] and parts[4]:
                    scope["route"] = _LOOKUP
                    await self._lookup(scope, send, parts[3], parts[4])
                    return
            elif method == "POST" and path == "/v1/decide":
                scope["route"] = _DECIDE
                await self._decide(scope, receive, send)
                return
        await self.app(scope, receive, send)

    async def _lookup(self, scope: Scope, send: Send, table: str, key: str) -> None:
        async def answer() -> bytes:
            as_of = _query(scope).get("as_of")
            return self.handlers.lookup(_authorization(scope), table, key, as_of)

        await _respond(scope, send, answer)

    async def _decide(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def answer() -> bytes:
            explain = _query(scope).get("explain")
            flag = explain is not None and explain.lower() in _TRUE
            if explain is not None and not flag and explain.lower() not in _FALSE:
                raise ServiceError(
                    422, "invalid_request", "Input should be a valid boolean, unable to interpret input",
                    "explain",
                )  # fmt: skip
            data = await _read_body(receive)
            return await self.handlers.decide(_authorization(scope), data, flag)

        await _respond(scope, send, answer)


async def _respond(scope: Scope, send: Send, answer: Callable[[], Awaitable[bytes]]) -> None:
    """Send ``answer()``'s JSON, or its error as the FastAPI routes would."""
    try:
        body = await answer()
    except ServiceError as exc:
        await _send_error(send, exc.status, exc.code, exc.message, exc.field)
        return
    except Exception as exc:  # a bug: say so, keep serving
        _log.exception("%s %s failed", scope["method"], scope["path"])
        message = f"internal error ({type(exc).__name__}); see the service log"
        await _send_error(send, 500, "internal", message)
        return
    await _send_json(send, 200, body)


def _authorization(scope: Scope) -> str:
    for name, value in scope["headers"]:
        if name == b"authorization":
            return str(value.decode("latin-1"))
    return ""


def _query(scope: Scope) -> dict[str, str]:
    """Query parameters (the last value of a repeated one, as FastAPI reads a single value)."""
    text = scope.get("query_string", b"")
    return dict(parse_qsl(text.decode("latin-1"), keep_blank_values=True)) if text else {}


async def _read_body(receive: Receive) -> bytes:
    chunks = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ServiceError(400, "disconnected", "the client went away before sending its body")
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks)


async def _send_json(send: Send, status: int, body: bytes) -> None:
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def build_asgi(service: Service, settings: Settings | None = None) -> ASGIApp:
    """The application wrapped in the hot-route fast lane, the latency timer and the body-size
    guard (what the server runs)."""
    settings = settings or Settings()
    app = create_app(service, settings)
    hot = HotRoutes(app, app.state.handlers)
    return BodyLimit(Timing(hot, app.state.metrics), settings.max_body_bytes)
