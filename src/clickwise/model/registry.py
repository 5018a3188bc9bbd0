"""The models folder: numbered versions ``v0001, v0002, ...`` and an ``ACTIVE`` pointer.

A version is a folder with ``model.json`` and its files; it is complete exactly when ``model.json``
is there. On a local disk a version is written to a temporary folder and renamed into place, so
readers never see half a model and two trainers never get the same number. On an object store
(no rename) the files are put one by one with ``model.json`` last.

``ACTIVE`` holds the name of the version that serving should use; :func:`set_active` replaces it
atomically, so a server polling it switches from one whole model to another.
"""

from __future__ import annotations

import os
import re
import shutil
import uuid
from collections.abc import Callable
from pathlib import Path

from clickwise.model._io import is_remote, open_existing
from clickwise.model.errors import ModelError, ModelNotFoundError
from clickwise.storage import Root, open_root

CARD = "model.json"
ACTIVE = "ACTIVE"
VERSION = re.compile(r"^v(\d{4,})$")
_RENAME_ATTEMPTS = 100


def version_name(number: int) -> str:
    """The folder name of version ``number``.

    >>> version_name(7)
    'v0007'
    """
    return f"v{number:04d}"


def join(models: str, version: str) -> str:
    """The URL of a version folder."""
    return f"{models.rstrip('/')}/{version}" if is_remote(models) else str(Path(models) / version)


def list_versions(models: str) -> list[str]:
    """Complete versions in ``models``, oldest first (an empty list for a missing local folder)."""
    if not is_remote(models) and not Path(models).is_dir():
        return []
    root = open_root(models)
    found = set()
    for path in root.list_files():
        parts = path.split("/")
        if len(parts) == 2 and parts[1] == CARD and VERSION.match(parts[0]):
            found.add(parts[0])
    return sorted(found, key=lambda name: int(name[1:]))


def latest(models: str) -> str:
    """The URL of the newest version."""
    versions = list_versions(models)
    if not versions:
        raise ModelNotFoundError(f"no model versions in {models!r}; train one with `clickwise train`")
    return join(models, versions[-1])


def active(models: str) -> str | None:
    """The version named by the ``ACTIVE`` pointer, or ``None`` when none was set."""
    if not is_remote(models) and not Path(models).is_dir():
        return None
    root = open_root(models)
    if not root.exists(ACTIVE):
        return None
    return root.read_bytes(ACTIVE).decode().strip() or None


def set_active(models: str, version: str) -> str:
    """Point ``ACTIVE`` at ``version`` (a name like ``v0003``, or ``latest``); returns the name."""
    versions = list_versions(models)
    if version == "latest":
        if not versions:
            raise ModelNotFoundError(f"no model versions in {models!r} to activate")
        version = versions[-1]
    if version not in versions:
        raise ModelNotFoundError(f"version {version!r} is not in {models!r}; versions: {versions}")
    open_root(models).write_bytes(ACTIVE, f"{version}\n".encode())
    return version


def resolve(ref: str, models: str | None = None) -> str:
    """The model folder meant by ``ref``.

    ``ref`` is ``latest`` or ``active`` (needs ``models``), a version name in ``models``, a model
    folder (it has ``model.json``), or a models folder (its active version, else its latest).
    """
    if ref in ("latest", "active"):
        if models is None:
            raise ModelError(f"{ref!r} needs a models folder to look in")
        return _in_folder(models, ref)
    if models is not None and VERSION.match(ref):
        if ref not in list_versions(models):
            raise ModelNotFoundError(
                f"version {ref!r} is not in {models!r}; versions: {list_versions(models)}"
            )
        return join(models, ref)
    root = open_existing(ref, ModelNotFoundError, "model folder")
    if root.exists(CARD):
        return ref
    if list_versions(ref):
        return _in_folder(ref, "active" if active(ref) else "latest")
    raise ModelNotFoundError(f"{ref!r} is neither a model folder (no {CARD}) nor a folder of model versions")


def _in_folder(models: str, which: str) -> str:
    if which == "latest":
        return latest(models)
    name = active(models)
    if name is None:
        raise ModelNotFoundError(f"no active model in {models!r}; activate one (e.g. the latest) first")
    if name not in list_versions(models):
        raise ModelNotFoundError(f"{models}/{ACTIVE} names {name!r}, which is not a complete version")
    return join(models, name)


def publish(models: str, files_for: Callable[[str], dict[str, bytes]]) -> str:
    """Write a new version with the files ``files_for(version)`` returns; returns the version name.

    ``files_for`` is called again with the next number if another writer took the first one.
    """
    if is_remote(models):
        return _publish_remote(open_root(models), files_for)
    folder = Path(models)
    folder.mkdir(parents=True, exist_ok=True)
    for _ in range(_RENAME_ATTEMPTS):
        version = _next_version(models)
        files = files_for(version)
        if CARD not in files:
            raise ModelError(f"a model version needs a {CARD}")
        temporary = folder / f".tmp-{version}-{uuid.uuid4().hex}"
        temporary.mkdir()
        try:
            for name, data in files.items():
                (temporary / name).write_bytes(data)
            try:
                os.rename(temporary, folder / version)
            except OSError:
                if (folder / version).exists():
                    continue  # another trainer took this number: try the next
                raise
            return version
        finally:
            if temporary.exists():
                shutil.rmtree(temporary)
    raise ModelError(f"could not claim a new version number in {models!r} after {_RENAME_ATTEMPTS} tries")


def _publish_remote(root: Root, files_for: Callable[[str], dict[str, bytes]]) -> str:
    version = _next_version(root.url)
    files = files_for(version)
    for name, data in sorted(files.items(), key=lambda item: item[0] == CARD):
        root.write_bytes(f"{version}/{name}", data)
    return version


def _next_version(models: str) -> str:
    local = Path(models)
    taken = [int(name[1:]) for name in list_versions(models)]
    if not is_remote(models) and local.is_dir():
        # Count incomplete folders too, so a number is never reused for a different model.
        taken += [int(m.group(1)) for p in local.iterdir() if (m := VERSION.match(p.name))]
    return version_name(max(taken, default=0) + 1)
