"""API keys: a file of key hashes with scopes; the keys themselves are shown once and never stored.

The file (JSON) holds one entry per key: an id, the SHA-256 of the key and its scopes (``read``,
``write``, ``admin``). Keys are 256-bit random tokens, so a plain hash is enough to make a leaked
file useless to an attacker (no brute force can find a preimage). ``clickwise keys add`` creates a
key and prints it; requests send it as ``Authorization: Bearer <key>``. ``clickwise keys list`` shows
the names, scopes and creation times (never a key or its hash); ``clickwise keys revoke NAME``
removes a key, and a running service refuses it within a second (it re-reads a changed file).
"""

from __future__ import annotations

import hashlib
import os
import secrets
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import orjson

from clickwise.errors import ClickwiseError

SCOPES = ("read", "write", "admin")
ENV_FILE = "CLICKWISE_API_KEYS_FILE"
_PREFIX = "cw_"


class KeysFileError(ClickwiseError):
    """A keys file that cannot be read or written, or a bad scope."""


@dataclass(frozen=True)
class ApiKey:
    """Who a request is: the key's id (safe to log) and what it may do."""

    id: str
    scopes: frozenset[str]

    def allows(self, scope: str) -> bool:
        return scope in self.scopes or "admin" in self.scopes


def _digest(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


RELOAD_EVERY_S = 1.0


class KeyStore:
    """The keys of a keys file, looked up by hash. Loaded from a file, it looks at the file again at
    most once a second and takes its new content (a key revoked or added while the service runs)."""

    def __init__(self, entries: Iterable[dict[str, object]], *, path: Path | None = None) -> None:
        self._by_hash = _by_hash(entries)
        self._path = path
        self._stamp = _stamp(path) if path is not None else None
        self._next_look = time.monotonic() + RELOAD_EVERY_S

    @classmethod
    def load(cls, path: str | Path) -> KeyStore:
        return cls(_read_entries(Path(path)), path=Path(path))

    def __len__(self) -> int:
        return len(self._by_hash)

    def check(self, token: str) -> ApiKey | None:
        """The key a bearer token is, or None. Looking up by hash leaks nothing useful: timing can
        only tell about hashes of the attacker's own guesses."""
        if self._path is not None and time.monotonic() >= self._next_look:
            self._look_again(self._path)
        return self._by_hash.get(_digest(token))

    def _look_again(self, path: Path) -> None:
        """Take the file's keys when it changed; a file that cannot be read now keeps the keys known
        (a service must not open up, or lock everyone out, because of a half-edited file)."""
        self._next_look = time.monotonic() + RELOAD_EVERY_S
        stamp = _stamp(path)
        if stamp == self._stamp:
            return
        try:
            self._by_hash = _by_hash(_read_entries(path))
        except KeysFileError:
            return
        self._stamp = stamp


def _by_hash(entries: Iterable[dict[str, object]]) -> dict[str, ApiKey]:
    return {str(entry["sha256"]): ApiKey(str(entry["id"]), frozenset(_scopes(entry))) for entry in entries}


def _scopes(entry: dict[str, object]) -> list[str]:
    scopes = entry.get("scopes", [])
    if not isinstance(scopes, list):
        raise KeysFileError(f"key {entry.get('id')!r}: scopes must be a list")
    return [str(scope) for scope in scopes]


def _stamp(path: Path) -> tuple[int, int] | None:
    try:
        info = path.stat()
    except OSError:
        return None
    return info.st_mtime_ns, info.st_size


def _read_entries(path: Path) -> list[dict[str, object]]:
    try:
        data = orjson.loads(path.read_bytes())
    except FileNotFoundError:
        raise KeysFileError(
            f"API keys file {path} does not exist; create a key with `clickwise keys add`"
        ) from None
    except (OSError, orjson.JSONDecodeError) as exc:
        raise KeysFileError(f"cannot read API keys file {path}: {exc}") from exc
    return list(data.get("keys", []))


def _write_entries(target: Path, entries: list[dict[str, object]]) -> None:
    """Replace the keys file atomically, readable by its owner only."""
    target.parent.mkdir(parents=True, exist_ok=True)
    temporary = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    temporary.write_bytes(orjson.dumps({"keys": entries}, option=orjson.OPT_INDENT_2))
    os.chmod(temporary, 0o600)
    os.replace(temporary, target)


def add_key(path: str | Path, scopes: Iterable[str], *, name: str | None = None) -> tuple[str, ApiKey]:
    """Create a key with ``scopes``, store its hash in ``path`` (created if missing); returns the key
    text (show it once) and its record."""
    wanted = sorted(set(scopes))
    unknown = [s for s in wanted if s not in SCOPES]
    if unknown or not wanted:
        raise KeysFileError(f"scopes must be some of {list(SCOPES)}, got {list(scopes)}")
    target = Path(path)
    entries = _read_entries(target) if target.exists() else []
    key = _PREFIX + secrets.token_urlsafe(32)
    key_id = name or f"key-{secrets.token_hex(4)}"
    if any(entry.get("id") == key_id for entry in entries):
        raise KeysFileError(f"a key named {key_id!r} already exists in {target}")
    entries.append(
        {"id": key_id, "sha256": _digest(key), "scopes": wanted, "created_ms": int(time.time() * 1000)}
    )
    _write_entries(target, entries)
    return key, ApiKey(key_id, frozenset(wanted))


def list_keys(path: str | Path) -> list[dict[str, object]]:
    """The keys of a keys file: name, scopes and creation time (``created_ms``, None for keys written
    without one); never the key or its hash."""
    return [
        {"name": str(entry["id"]), "scopes": _scopes(entry), "created_ms": entry.get("created_ms")}
        for entry in _read_entries(Path(path))
    ]


def revoke_key(path: str | Path, name: str) -> None:
    """Remove the key named ``name`` from a keys file (a service using the file refuses it within
    :data:`RELOAD_EVERY_S`)."""
    target = Path(path)
    entries = _read_entries(target)
    kept = [entry for entry in entries if entry.get("id") != name]
    if len(kept) == len(entries):
        names = [str(entry.get("id")) for entry in entries]
        raise KeysFileError(f"no key named {name!r} in {target}; it has {names}")
    _write_entries(target, kept)
