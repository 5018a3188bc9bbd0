"""Browser, OS, device type and bot flag from a user-agent string, for a column or for one value.

:class:`AgentParser` is the one implementation used by batch ingest, streaming and the online decision
path: :meth:`~AgentParser.parse_many` and :meth:`~AgentParser.parse_one` give the same answers.

Parsing is slow per value (ua-parser ~15 µs with its Rust accelerator, crawlerdetect ~250 µs), but
ad traffic repeats a few agents millions of times, so each distinct agent is parsed once per batch
(the column is dictionary-encoded) and remembered across batches in a bounded LRU cache.
"""

from __future__ import annotations

import functools
import re
import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import Any, ClassVar

import pyarrow as pa
from ua_parser import Domain, load_lazy_builtins

from clickwise.enrich.crawler import crawler_evidence
from clickwise.errors import EnrichmentError

__all__ = ["AgentParser"]

_Parsed = tuple[str | None, str | None, str | None, bool | None]
"""(browser, os, device_type, is_bot_agent) of one agent; all None for a null agent."""

_NULL: _Parsed = (None, None, None, None)

_SCHEMA = pa.schema(
    [
        pa.field("browser", pa.string()),
        pa.field("os", pa.string()),
        pa.field("device_type", pa.string()),
        pa.field("is_bot_agent", pa.bool_()),
    ]
)
"""Columns of :meth:`AgentParser.parse_many`, in order."""

_MISSING: _Parsed = ("Other", "Other", "other", True)
"""Answer for an empty (or blank) agent: real browsers always send one, so its absence is a bot signal."""

_AUTOMATION = re.compile(
    r"headless|phantomjs|python-requests|python-urllib|go-http-client|libwww-perl|puppeteer|playwright"
    r"|(?<![a-z0-9])(?:curl|wget|java)/",
    re.IGNORECASE,
)
"""Headless browsers and scripted HTTP clients, flagged even if crawlerdetect's list misses them.

``curl/``, ``wget/`` and ``java/`` count only as a word of their own ("HuaweiJava/1.0" is a phone's
browser)."""

_TV_OR_CONSOLE = re.compile(
    r"smart-?tv|hbbtv|googletv|android tv|appletv|crkey|roku|playstation|xbox|nintendo", re.IGNORECASE
)
_TABLET_DEVICES = {"iPad", "Generic Tablet", "Kindle", "Kindle Fire", "Kindle Fire HD", "Surface"}
_MOBILE_DEVICES = {"iPhone", "iPod", "Generic Smartphone", "Generic Feature Phone"}
_MOBILE_OS = {
    "iOS",
    "Android",
    "Windows Phone",
    "BlackBerry OS",
    "Symbian OS",
    "KaiOS",
    "Firefox OS",
    "Tizen",
}
_DESKTOP_OS = {"Mac OS X", "Chrome OS", "Ubuntu", "Fedora", "Debian", "Solaris", "Linux"}


@functools.cache
def _ua_resolver() -> Callable[[str, Any], Any]:
    """ua-parser's Rust-backed resolver, built once per process (~0.15 s).

    ``ua_parser.parse`` would pick the best installed backend itself (``BestAvailableResolver``:
    ua-parser-rs, then google-re2, then pure Python, 65x slower) and silently fall back. We build
    ``ua_parser.regex.Resolver`` explicitly, which imports ``ua_parser_rs`` and so fails loudly if the
    accelerator is missing; it takes the regex strings of the bundled uap-core rules
    (``load_lazy_builtins`` does not compile them in Python).
    """
    try:
        from ua_parser.regex import Resolver
    except ImportError as exc:
        raise EnrichmentError(
            "the user-agent parser needs its Rust accelerator: pip install 'ua-parser[regex]'"
        ) from exc
    return Resolver(load_lazy_builtins())


def _device_type(agent: str, os: str, device: Any) -> str:
    """``tablet``, ``mobile``, ``desktop`` or ``other`` (TVs, consoles, unknown) of a human agent."""
    family = device.family if device is not None else ""
    brand = (device.brand or "") if device is not None else ""
    if _TV_OR_CONSOLE.search(agent):
        return "other"
    lowered = agent.lower()
    tablet_token = "tablet" in lowered and "tablet pc" not in lowered  # "Tablet PC 2.0": old Windows IE
    if family in _TABLET_DEVICES or "Tablet" in brand or tablet_token or "ipad" in lowered:
        return "tablet"
    if os == "Android" and "mobile" not in lowered:  # Android tablets omit the "Mobile" token
        return "tablet"
    if family in _MOBILE_DEVICES or os in _MOBILE_OS or brand == "Generic_Android" or "mobi" in lowered:
        return "mobile"
    if os in _DESKTOP_OS or os.startswith("Windows") or "Linux" in os or "BSD" in os or family == "Mac":
        return "desktop"
    return "other"


def _is_browser_agent(agent: str, browser: str, os: str) -> bool:
    """A browser's own agent: it starts like one and ua-parser recognized both the browser and its OS.

    Only inside such an agent are add-on tokens excused (see :mod:`clickwise.enrich.crawler`); an agent
    that starts with another program's name ("AndroidDownloadManager/4.4.2 (Linux; Android...") is that
    program.
    """
    return agent.startswith(("Mozilla/", "Opera/")) and browser != "Other" and os != "Other"


def _parse(agent: str) -> _Parsed:
    """Parse one non-null agent (uncached)."""
    if not agent.strip():
        return _MISSING
    result = _ua_resolver()(agent, Domain.ALL)
    browser = result.user_agent.family if result.user_agent is not None else "Other"
    os = result.os.family if result.os is not None else "Other"
    is_bot = (
        (result.device is not None and result.device.family == "Spider")
        or _AUTOMATION.search(agent) is not None
        or crawler_evidence(agent, is_browser=_is_browser_agent(agent, browser, os)) is not None
    )
    return browser, os, "bot" if is_bot else _device_type(agent, os, result.device), is_bot


class AgentParser:
    """Browser family, OS family, device type and bot flag of user-agent strings.

    - ``browser`` and ``os`` are ua-parser families ("Chrome", "Mobile Safari", "Edge", "Samsung
      Internet", "Windows", "iOS", "Android"...), ``"Other"`` when unknown.
    - ``device_type`` is one of ``desktop``, ``mobile``, ``tablet``, ``bot``, ``other`` (TVs, consoles,
      unknown devices).
    - ``is_bot_agent`` is true for crawlers (crawlerdetect, or ua-parser's "Spider" devices), headless
      browsers (HeadlessChrome, PhantomJS) and scripted clients (python-requests, curl,
      Go-http-client, Java/...); their ``device_type`` is ``bot``.
    - A null agent gives null in all four columns (unknown, not suspicious).
    - An empty or blank agent gives ``device_type`` ``other`` and ``is_bot_agent`` true: every browser
      sends a user agent, so a missing one is a bot signal. Features built on ``is_bot_agent``
      therefore count empty agents as bots.

    A parser is safe to share between threads.

    Args:
        cache_size: distinct agents remembered across calls (least recently used are dropped first);
            0 keeps none. Each distinct agent costs ~0.3 ms to parse, a cache hit well under 1 µs.

    >>> import pyarrow as pa
    >>> parser = AgentParser()
    >>> parser.parse_one("curl/8.5.0")
    {'browser': 'curl', 'os': 'Other', 'device_type': 'bot', 'is_bot_agent': True}
    >>> table = parser.parse_many(pa.array(["python-requests/2.31.0", "", None]))
    >>> table.column("device_type").to_pylist(), table.column("is_bot_agent").to_pylist()
    (['bot', 'other', None], [True, True, None])
    """

    schema: ClassVar[pa.Schema] = _SCHEMA
    """The columns of :meth:`parse_many`."""

    def __init__(self, cache_size: int = 100_000) -> None:
        if isinstance(cache_size, bool) or not isinstance(cache_size, int) or cache_size < 0:
            raise EnrichmentError(f"cache_size must be an int >= 0, got {cache_size!r}")
        self._cache_size = cache_size
        self._cache: OrderedDict[str, _Parsed] = OrderedDict()
        self._lock = threading.Lock()
        _ua_resolver()  # fail now, not on the first record, if the accelerator is missing

    def parse_one(self, agent: str | None) -> dict[str, object]:
        """The four answers for one agent, as a dict keyed like the columns of :meth:`parse_many`.

        >>> AgentParser().parse_one(None)
        {'browser': None, 'os': None, 'device_type': None, 'is_bot_agent': None}
        """
        if agent is None:
            return dict.fromkeys(_SCHEMA.names)
        if not isinstance(agent, str):
            raise EnrichmentError(
                f"a user agent must be a str or None, got {type(agent).__name__}: {agent!r}"
            )
        browser, os, device_type, is_bot = self._lookup(agent)
        return {"browser": browser, "os": os, "device_type": device_type, "is_bot_agent": is_bot}

    def parse_many(self, agents: pa.Array | pa.ChunkedArray) -> pa.Table:
        """A table with columns ``browser``, ``os``, ``device_type``, ``is_bot_agent``, one row per agent.

        Accepts string, large_string, string_view or dictionary-encoded string arrays and chunked
        arrays of those (one output batch per chunk); any other type raises
        :class:`~clickwise.errors.EnrichmentError`.
        """
        chunks = agents.chunks if isinstance(agents, pa.ChunkedArray) else [agents]
        return pa.Table.from_batches([self._parse_chunk(chunk) for chunk in chunks], schema=_SCHEMA)

    def _parse_chunk(self, chunk: pa.Array) -> pa.RecordBatch:
        kind = chunk.type
        if pa.types.is_null(kind):
            return pa.RecordBatch.from_arrays([pa.nulls(len(chunk), f.type) for f in _SCHEMA], schema=_SCHEMA)
        if pa.types.is_string_view(kind):
            chunk = chunk.cast(pa.large_string())
        if pa.types.is_string(chunk.type) or pa.types.is_large_string(chunk.type):
            chunk = chunk.dictionary_encode()
        elif not (pa.types.is_dictionary(kind) and _is_text(kind.value_type)):
            raise EnrichmentError(f"user agents must be a string column, got type {kind}")
        parsed = [_NULL if agent is None else self._lookup(agent) for agent in chunk.dictionary.to_pylist()]
        columns = [pa.array([row[i] for row in parsed], type=field.type) for i, field in enumerate(_SCHEMA)]
        return pa.RecordBatch.from_arrays(
            [_expand(column, chunk.indices) for column in columns], schema=_SCHEMA
        )

    def _lookup(self, agent: str) -> _Parsed:
        """Parse through the cross-batch LRU cache (thread-safe; parsing runs outside the lock)."""
        with self._lock:
            found = self._cache.get(agent)
            if found is not None:
                self._cache.move_to_end(agent)
                return found
        parsed = _parse(agent)
        if self._cache_size:
            with self._lock:
                self._cache[agent] = parsed
                while len(self._cache) > self._cache_size:
                    self._cache.popitem(last=False)
        return parsed


def _is_text(kind: pa.DataType) -> bool:
    return bool(pa.types.is_string(kind) or pa.types.is_large_string(kind) or pa.types.is_string_view(kind))


def _expand(values: pa.Array, indices: pa.Array) -> pa.Array:
    """``values[indices]`` (null where the index is null); decoding a dictionary beats ``take`` on strings."""
    if pa.types.is_string(values.type):
        return pa.DictionaryArray.from_arrays(indices, values).cast(values.type)
    return values.take(indices)
