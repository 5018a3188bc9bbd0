"""Old manifest entries folded into one summary per stream, so a pass reads a bounded manifest.

A broker source writes one manifest entry per poll and stream, and every lake compaction one more.
Readers list and read every entry on every pass (:meth:`~clickwise.events.lake.Lake.catalog`), so
a consumer running for a day would read hundreds of thousands of small files per pass. Folding
replaces a prefix of them with ``lake/_folded/<stream>.json``:

- broker batches (``batch-<kind>-<sequence>``) older than ``FOLD_AFTER_MS``, in sequence order:
  the summary keeps their files and, per source kind, the last sequence folded and the positions
  and event-time marks reached (a source resumes from them, see
  :func:`clickwise.events.positions.load_ledger`);
- compactions (``compact-<n>``), in order, once every file they replaced is in the summary and no
  consumer's saved list names one of those files any more (a list naming one could no longer be
  translated, see :func:`clickwise.events.compaction.translate`). The summary remembers the
  replaced files until they have been kept their time for earlier readers, then deletes them.

File inputs and HTTP batches are never folded: their entries are what makes a second ingest of the
same file or tag store nothing. The summary is written first (atomically), then the folded entries
are deleted; entries it covers that a crash left are skipped by readers and deleted next time.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import orjson

from clickwise.storage import Root

if TYPE_CHECKING:
    from clickwise.events.lake import Lake

FOLD_AFTER_MS = 120_000
"""Broker batches younger than this stay entries (``clickwise status`` reads the last minute's)."""
_BATCH = re.compile(r"^batch-(kafka|kinesis)-(\d{12})$")  # (the tags of Ledger.tag)
COMPACTION_PREFIX = "compact-"
_COMPACTION = re.compile(rf"^{COMPACTION_PREFIX}(\d{{12}})$")


@dataclass
class Folded:
    """What the folded entries of one stream said."""

    files: list[str] = field(default_factory=list)  # their lake files still counting
    batches: dict[str, dict[str, Any]] = field(default_factory=dict)  # kind -> through, positions, marks
    compactions_through: int = 0
    replaced: dict[str, int] = field(default_factory=dict)  # files of folded merges -> merged at (ms)

    def covers(self, name: str) -> bool:
        """Whether the manifest entry ``name`` (no ``.json``) is folded into this summary."""
        if match := _BATCH.match(name):
            kind, sequence = match.group(1), int(match.group(2))
            return sequence <= int(self.batches.get(kind, {}).get("through", 0))
        if match := _COMPACTION.match(name):
            return int(match.group(1)) <= self.compactions_through
        return False


def compaction_name(number: int) -> str:
    """The tag (and manifest entry name) of merge ``number``: ``compact-<12 digits>``."""
    return f"{COMPACTION_PREFIX}{number:012d}"


def folded_path(stream: str) -> str:
    return f"lake/_folded/{stream}.json"


def read_folded(root: Root, stream: str) -> Folded | None:
    """The stream's summary, or None before its first fold."""
    try:
        raw = orjson.loads(root.read_bytes(folded_path(stream)))
    except FileNotFoundError:
        return None
    return Folded(
        list(raw["files"]),
        dict(raw["batches"]),
        int(raw["compactions_through"]),
        {str(path): int(at) for path, at in raw.get("replaced", {}).items()},
    )


def fold_manifest(lake: Lake, stream: str, named: set[str], *, now_ms: int) -> int:
    """Fold what can be folded of ``stream``'s manifest (``named``: lake files that some consumer's
    saved list names); returns how many entries were folded."""
    from clickwise.events.compaction import KEEP_REPLACED_MS  # (both import the lake)
    from clickwise.events.positions import Ledger

    root = lake.root
    summary = read_folded(root, stream) or Folded()
    entries = {
        path.rsplit("/", 1)[-1].removesuffix(".json"): path
        for path in root.list_files(f"lake/_manifest/{stream}", suffix=".json")
    }
    stale = [path for name, path in entries.items() if summary.covers(name)]
    files = set(summary.files)
    folded: list[str] = []
    kinds = {match.group(1) for name in entries if (match := _BATCH.match(name))}
    for kind in sorted(kinds):
        state = summary.batches.get(kind, {"through": 0, "positions": {}, "marks": {}})
        ledger = Ledger(kind, int(state["through"]), dict(state["positions"]), dict(state["marks"]))
        while (path := entries.get(f"batch-{ledger.tag(ledger.sequence + 1)}")) is not None:
            entry = orjson.loads(root.read_bytes(path))
            if int(entry.get("ingested_ms", now_ms)) > now_ms - FOLD_AFTER_MS:
                break
            ledger.follow(entry)
            files.update(str(p) for p in entry.get("files", []))
            folded.append(path)
        summary.batches[kind] = {
            "through": ledger.sequence,
            "positions": ledger.positions,
            "marks": ledger.marks,
        }
    pending = dict(summary.replaced)
    while (path := entries.get(compaction_name(summary.compactions_through + 1))) is not None:
        entry = orjson.loads(root.read_bytes(path))
        replaced = {str(p) for p in entry["replaces"]}
        if not replaced <= files or replaced & named:
            break
        files = (files - replaced) | {str(p) for p in entry["files"]}
        pending.update(dict.fromkeys(replaced, int(entry.get("compacted_ms", now_ms))))
        folded.append(path)
        summary.compactions_through += 1
    expired = [p for p, at_ms in pending.items() if at_ms <= now_ms - KEEP_REPLACED_MS]
    for gone in expired:  # (before the summary that forgets them)
        root.delete(gone)
        del pending[gone]
    if folded or expired:
        data = {
            "files": sorted(files),
            "batches": summary.batches,
            "compactions_through": summary.compactions_through,
            "replaced": dict(sorted(pending.items())),
            "folded_ms": now_ms,
        }
        root.write_bytes(folded_path(stream), orjson.dumps(data, option=orjson.OPT_SORT_KEYS))
    for path in [*stale, *folded]:
        root.delete(path)
    return len(folded)
