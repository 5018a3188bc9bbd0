"""Opening folders that must already exist (local or ``s3://``), and small JSON files on them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson

from clickwise.errors import StorageError
from clickwise.storage import Root, open_root


def is_remote(url: str) -> bool:
    return "://" in url and not url.startswith("file://")


def open_existing(url: str | Path, error: type[Exception], what: str) -> Root:
    """Open ``url`` as a root, raising ``error`` when a local folder is missing.

    :func:`clickwise.storage.open_root` creates missing local folders, which is right for outputs
    but would turn a typo in an input path into an empty folder and a confusing message.
    """
    text = str(url)
    if not is_remote(text):
        folder = Path(text.removeprefix("file://")).expanduser()
        if not folder.is_dir():
            raise error(f"{what} {text!r} does not exist or is not a folder")
    try:
        return open_root(text)
    except StorageError as exc:
        raise error(f"cannot open {what} {text!r}: {exc}") from exc


def read_json(root: Root, relative: str) -> Any | None:
    """The parsed JSON file, or ``None`` when it does not exist."""
    if not root.exists(relative):
        return None
    return orjson.loads(root.read_bytes(relative))


def dump_json(value: Any) -> bytes:
    return orjson.dumps(value, option=orjson.OPT_INDENT_2 | orjson.OPT_SERIALIZE_NUMPY) + b"\n"
