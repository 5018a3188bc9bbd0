"""A Python client of the HTTP service: events in, lookups, decisions, models.

One :class:`Client` keeps a pool of keep-alive connections (it is safe to share between threads).
An error answer (4xx, 5xx) raises :class:`ClientError` with the service's ``code``, ``message`` and
``field``. When the service cannot be reached, a call is tried again after 0.1, 0.2, 0.4 ... s
(``retries`` times), but only when doing so cannot do harm:

- a request that surely never left (connection refused, no connection in time) is always retried;
- a request that may have reached the service (it timed out or the connection broke before the
  answer) is retried only when repeating it changes nothing: reads, switching models, and event
  sends, because events carry their event ids and the lake stores each id once (a repeated batch
  comes back as ``duplicates``). A stream without an event id (adclick's ``predictions``) could be
  stored twice: send it with ``resend=False``. Decisions are not repeated then, since the service
  would log a second decision for the same opportunity.

>>> with Client("http://127.0.0.1:9", retries=0, timeout_s=0.5) as client:
...     client.health()  # doctest: +ELLIPSIS
Traceback (most recent call last):
...
clickwise.serve.client.ClientError: GET http://127.0.0.1:9/healthz: cannot connect ...
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Sequence
from types import TracebackType
from typing import Any
from urllib.parse import quote

import httpx
import orjson

from clickwise.errors import ClickwiseError
from clickwise.time import datetime_to_ms, format_ms

Record = dict[str, Any]
AsOf = int | str | dt.datetime | None
"""A moment: epoch ms, ISO-8601 text with a zone, or a zone-aware datetime; None for now."""

_UNSENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)
_MAX_BACKOFF_S = 5.0


class ClientError(ClickwiseError):
    """The service refused a request (``status`` is its HTTP status, ``code`` its stable word), or
    could not be reached (``status`` None, ``code`` ``unreachable`` or ``timeout``)."""

    def __init__(self, status: int | None, code: str, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.field = field

    def __repr__(self) -> str:
        return f"ClientError(status={self.status!r}, code={self.code!r}, field={self.field!r})"


class Client:
    """Talks to one clickwise service at ``url`` with an API key (None for a service run
    ``--no-auth``, or reads with ``--open-reads``)."""

    def __init__(
        self,
        url: str,
        api_key: str | None = None,
        *,
        timeout_s: float = 5.0,
        retries: int = 3,
        backoff_s: float = 0.1,
        max_connections: int = 16,
    ) -> None:
        if retries < 0:
            raise ClickwiseError(f"retries must be 0 or more, got {retries!r}")
        self.url = url.rstrip("/")
        self.retries = retries
        self.backoff_s = backoff_s
        headers = {"accept": "application/json", "user-agent": "clickwise-client"}
        if api_key:
            headers["authorization"] = f"Bearer {api_key}"
        self._http = httpx.Client(
            base_url=self.url,
            headers=headers,
            timeout=httpx.Timeout(timeout_s),
            limits=httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections),
        )

    def __repr__(self) -> str:  # never shows the key
        return f"Client({self.url!r})"

    # --- the API --------------------------------------------------------------------------------

    def send_events(self, stream: str, events: Record | Sequence[Record], *, resend: bool = True) -> Record:
        """Store events of ``stream``; returns ``accepted``, ``rejected``, ``duplicates``, ``errors``
        (``index``, ``field``, ``reason`` of each refused event) and the tables' ``watermark_ms``.
        A lookup right after the answer sees the accepted events. ``resend=False``: do not repeat
        a request that may have arrived (for streams without an event id)."""
        batch = [events] if isinstance(events, dict) else list(events)
        return self._call("POST", f"/v1/events/{_segment(stream)}", body=batch, repeatable=resend)

    def lookup(self, table: str, key: Any, as_of: AsOf = None) -> Record:
        """A key's aggregations now or as of a moment (events at exactly that moment excluded).

        ``key``: the value, a tuple of values for a table keyed by several fields, None for a table
        without key fields. Returns ``table``, ``key``, ``as_of_ms``, ``as_of`` and ``values``."""
        text = _key_text(key)
        if "/" in text:  # cannot travel in a URL path segment: ask through the batch route
            answer = self.lookup_many(table, [key], as_of)
            row = answer["rows"][0]
            moment = answer["as_of_ms"]
            return {"table": table, "key": row["key"], "as_of_ms": moment, "as_of": format_ms(moment),
                    "values": row["values"]}  # fmt: skip
        params = {} if as_of is None else {"as_of": _moment(as_of)}
        path = f"/v1/tables/{_segment(table)}/{_segment(text)}"
        return self._call("GET", path, params=params, repeatable=True)

    def lookup_many(self, table: str, keys: Sequence[Any], as_of: AsOf = None) -> Record:
        """Several keys at one moment: ``{"table", "as_of_ms", "rows": [{"key", "values"}]}``."""
        body: Record = {"keys": [_key_text(key) for key in keys]}
        if as_of is not None:
            body["as_of"] = _moment(as_of)
        return self._call("POST", f"/v1/tables/{_segment(table)}/lookup", body=body, repeatable=True)

    def decide(self, opportunities: Record | Sequence[Record], *, explain: bool = False) -> Any:
        """Serve, skip or block: one answer (a dict) for one opportunity, a list for a list. Each
        has ``p_click``, ``decision``, ``reasons``, ``model_version``, and ``features`` with
        ``explain``. Not repeated after a timeout (that would log a second decision)."""
        body = dict(opportunities) if isinstance(opportunities, dict) else list(opportunities)
        params = {"explain": "true"} if explain else {}
        return self._call("POST", "/v1/decide", body=body, params=params, repeatable=False)

    def models(self) -> Record:
        """The registry's ``versions`` and the ``active`` one."""
        return self._call("GET", "/v1/models", repeatable=True)

    def activate(self, version: str) -> Record:
        """Switch the active model (needs an ``admin`` key)."""
        return self._call("POST", f"/v1/models/{_segment(version)}/activate", repeatable=True)

    def health(self) -> Record:
        """``{"status": "ok"}`` when the process is up."""
        return self._call("GET", "/healthz", repeatable=True)

    def close(self) -> None:
        """Close the pooled connections."""
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.close()

    # --- one request, with retries ----------------------------------------------------------------

    def _call(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        params: dict[str, str] | None = None,
        repeatable: bool,
    ) -> Any:
        content = None if body is None else orjson.dumps(body, option=orjson.OPT_NAIVE_UTC)
        headers = {"content-type": "application/json"} if content is not None else None
        started = time.monotonic()
        attempt = 0
        while True:
            try:
                response = self._http.request(method, path, content=content, params=params, headers=headers)
                break
            except httpx.TransportError as exc:
                if attempt >= self.retries or not (repeatable or isinstance(exc, _UNSENT)):
                    raise _unreachable(method, self.url + path, exc, attempt + 1, started) from exc
                time.sleep(min(self.backoff_s * 2**attempt, _MAX_BACKOFF_S))
                attempt += 1
        if response.status_code >= 400:
            raise _refused(response)
        try:
            return orjson.loads(response.content)
        except orjson.JSONDecodeError as exc:
            raise ClientError(
                response.status_code, "bad_answer", f"{method} {path}: the answer is not JSON: {exc}"
            ) from exc


def _unreachable(
    method: str, url: str, exc: httpx.TransportError, attempts: int, started: float
) -> ClientError:
    if isinstance(exc, httpx.TimeoutException):
        code, what = "timeout", f"no answer in time ({type(exc).__name__})"
    elif isinstance(exc, httpx.ConnectError):
        code, what = "unreachable", f"cannot connect ({exc or type(exc).__name__})"
    else:
        code, what = "unreachable", f"the connection broke ({type(exc).__name__}: {exc})"
    tries = "1 attempt" if attempts == 1 else f"{attempts} attempts"
    return ClientError(
        None,
        code,
        f"{method} {url}: {what}; gave up after {tries} in {time.monotonic() - started:.1f} s. "
        "Is the service running there (`clickwise serve`)?",
    )


def _refused(response: httpx.Response) -> ClientError:
    try:
        error = orjson.loads(response.content)["error"]
        code, message = str(error["code"]), str(error["message"])
        return ClientError(response.status_code, code, message, error.get("field"))
    except (orjson.JSONDecodeError, KeyError, TypeError):
        text = response.text[:200].strip() or response.reason_phrase
        return ClientError(response.status_code, "http_error", f"HTTP {response.status_code}: {text}")


def _segment(text: str) -> str:
    return quote(text, safe="")


def _key_text(key: Any) -> str:
    if key is None:
        return "-"
    if isinstance(key, (tuple, list)):
        return ",".join(str(part) for part in key)
    return str(key)


def _moment(value: int | str | dt.datetime) -> str:
    if isinstance(value, dt.datetime):
        return str(datetime_to_ms(value))
    return str(value)
