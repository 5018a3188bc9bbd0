"""API keys: a file of key hashes with scopes; the keys themselves are shown once and never stored.

The file (JSON) holds one entry per key: an id, the SHA-256 of the key and its scopes (``read``,
``write``, ``admin``). Keys are 256-bit random tokens, so a plain hash is enough to make a leaked
file useless to an attacker (no brute force can find a preimage). ``clickwise keys add`` creates a
key and prints it; requests send it as ``Authorization: Bearer <key>``.
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


class KeyStore:
    """The keys of a keys file, looked up by hash."""

    def __init__(self, entries: Iterable[dict[str, object]]) -> None:
        self._by_hash: dict[str, ApiKey] = {}
        for entry in entries:
            scopes = entry.get("scopes", [])
            if not isinstance(scopes, list):
                raise KeysFileError(f"key {entry.get('id')!r}: scopes must be a list")
            self._by_hash[str(entry["sha256"])] = ApiKey(str(entry["id"]), frozenset(str(s) for s in scopes))

    @classmethod
    def load(cls, path: str | Path) -> KeyStore:
        try:
            data = orjson.loads(Path(path).read_bytes())
        except FileNotFoundError:
            raise KeysFileError(
                f"API keys file {path} does not exist; create a key with `clickwise keys add`"
            ) from None
        except (OSError, orjson.JSONDecodeError) as exc:
            raise KeysFileError(f"cannot read API keys file {path}: {exc}") from exc
        return cls(data.get("keys", []))

    def __len__(self) -> int:
        return len(self._by_hash)

    def check(self, token: str) -> ApiKey | None:
        """The key a bearer token is, or None. Looking up by hash leaks nothing useful: timing can
        only tell about hashes of the attacker's own guesses."""
        return self._by_hash.get(_digest(token))


def add_key(path: str | Path, scopes: Iterable[str], *, name: str | None = None) -> tuple[str, ApiKey]:
    """Create a key with ``scopes``, store its hash in ``path`` (created if missing); returns the key
    text (show it once) and its record."""
    wanted = sorted(set(scopes))
    unknown = [s for s in wanted if s not in SCOPES]
    if unknown or not wanted:
        raise KeysFileError(f"scopes must be some of {list(SCOPES)}, got {list(scopes)}")
    target = Path(path)
    entries: list[dict[str, object]] = []
    if target.exists():
        entries = list(orjson.loads(target.read_bytes()).get("keys", []))
    key = _PREFIX + secrets.token_urlsafe(32)
    key_id = name or f"key-{secrets.token_hex(4)}"
    if any(entry.get("id") == key_id for entry in entries):
        raise KeysFileError(f"a key named {key_id!r} already exists in {target}")
    entries.append(
        {"id": key_id, "sha256": _digest(key), "scopes": wanted, "created_ms": int(time.time() * 1000)}
    )
    target.parent.mkdir(parents=True, exist_ok=True)
    temporary = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    temporary.write_bytes(orjson.dumps({"keys": entries}, option=orjson.OPT_INDENT_2))
    os.chmod(temporary, 0o600)
    os.replace(temporary, target)
    return key, ApiKey(key_id, frozenset(wanted))
