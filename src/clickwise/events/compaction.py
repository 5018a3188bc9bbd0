"""Small lake files merged into larger ones, without losing or repeating an event under a crash.

Every poll of a broker source and every HTTP batch writes one lake file per stream and hour, so a
consumer that runs for a day leaves hundreds of thousands of small files: slow to list and read,
and long to name in the tables' checkpoint. :func:`compact_stream` merges small files of one
hour partition of a stream that every consumer has durably applied:

1. the merged file is written (``part-compact-<n>.parquet``; until step 2 no reader sees it);
2. a manifest entry names it and the files it replaces: from then on, readers see the merged
   file instead of them (:meth:`~clickwise.events.lake.Lake.completed_files`);
3. the replaced files are deleted ``KEEP_REPLACED_MS`` later (by a later compaction, or by the
   fold that remembers them), so a reader that listed the lake before the merge (a backfill
   running beside the consumer) still finds them. Merged files whose entry was never written (a
   crash) are deleted at once.

Consumers that name the lake files they applied (the tables' checkpoint, the row emitter) keep
naming replaced files until they next save; :func:`translate` maps such a list onto the lake as
it is now: a merged file counts as applied when every file it replaced was. Only files that every
consumer holds are merged, so a list never holds some of a merged file's files but not all.

Files are merged in size tiers: the smallest file of an hour with the next ones while each is at
most twice the size of those before it together, when that makes at least ``MIN_FILES``. So each
event is rewritten a few times (logarithmic in the hour's size), not once per new small file.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass, field

from clickwise.errors import ClickwiseError
from clickwise.events.folding import COMPACTION_PREFIX, compaction_name, read_folded
from clickwise.events.lake import Lake, Replacement
from clickwise.time import Clock, SystemClock

SMALL_BYTES = 64 << 20
"""Files at least this large are left as they are."""
FLOOR_BYTES = 1 << 20
"""Smaller files count as this large when tiers are formed."""
MIN_FILES = 4
"""Fewer files than this in a tier are not worth a rewrite yet."""
KEEP_REPLACED_MS = 3_600_000
"""How long replaced files stay for readers that listed the lake before their merge."""


class CompactionError(ClickwiseError):
    """A list of applied lake files names part of a merged file's files (it cannot be translated)."""


@dataclass
class CompactionReport:
    """What one :func:`compact_stream` call did."""

    merged: int = 0  # files replaced
    written: int = 0  # merged files written
    events: int = 0
    removed: int = 0  # leftovers of interrupted compactions deleted
    files: list[str] = field(default_factory=list)


def translate(paths: Sequence[str], replacements: Sequence[Replacement]) -> list[str]:
    """``paths`` (lake files a consumer applied) with every merged file whose files it all holds
    named instead of them (in the order of the compactions; sorted)."""
    have = set(paths)
    for replacement in replacements:
        held = replacement.replaced & have
        if not held:
            continue
        if len(held) != len(replacement.replaced):
            missing = sorted(replacement.replaced - have)
            raise CompactionError(
                f"{replacement.into} replaced {len(replacement.replaced)} lake files, of which a "
                f"consumer applied {len(held)} (not {missing[0]!r}, ...): only files every consumer "
                "applied are merged, so another process wrote this root meanwhile"
            )
        have -= replacement.replaced
        have.add(replacement.into)
    return sorted(have)


def compact_stream(
    lake: Lake, stream: str, settled: Collection[str], *, clock: Clock | None = None
) -> CompactionReport:
    """Merge small files of ``stream`` among ``settled`` (files every consumer applied durably),
    one tier per hour partition. Also deletes what interrupted compactions left."""
    report = CompactionReport()
    now_ms = (clock or SystemClock()).now_ms()
    listed, replacements = lake.catalog(stream)
    completed = set(listed)
    report.removed = _remove_leftovers(lake, stream, completed, replacements, now_ms)
    candidates = [path for path in completed if path in settled]
    sizes = lake.root.sizes(candidates)
    by_hour: dict[str, list[str]] = {}
    for path in candidates:
        if sizes[path] < SMALL_BYTES:
            by_hour.setdefault(path.rsplit("/", 1)[0], []).append(path)
    number = lake.last_compaction(stream)
    for paths in by_hour.values():
        tier = _tier(paths, sizes)
        if len(tier) < MIN_FILES:
            continue
        number += 1
        events = lake.root.read_parquet(tier)
        written = lake.write(stream, events, compaction_name(number))
        lake.record_compaction(stream, number, written, tier, events=events.num_rows, at_ms=now_ms)
        report.merged += len(tier)
        report.written += len(written)
        report.events += events.num_rows
        report.files.extend(written)
    return report


def _tier(paths: list[str], sizes: dict[str, int]) -> list[str]:
    """The smallest file and the next ones, each at most twice the size of those before it, until
    they make a file that is not small (so a merge reads at most about twice ``SMALL_BYTES``).
    Sizes count as at least ``FLOOR_BYTES``, so one tiny straggler does not keep an hour's other
    small files from ever merging."""
    size = {path: max(sizes[path], FLOOR_BYTES) for path in paths}
    ordered = sorted(paths, key=lambda path: (size[path], path))
    tier, total = [ordered[0]], size[ordered[0]]
    for path in ordered[1:]:
        if size[path] > 2 * total or total >= SMALL_BYTES:
            break
        tier.append(path)
        total += size[path]
    return tier


def _remove_leftovers(
    lake: Lake, stream: str, completed: set[str], replacements: Sequence[Replacement], now_ms: int
) -> int:
    """Delete files replaced ``KEEP_REPLACED_MS`` ago or earlier, and merged files no entry names
    (their compaction was interrupted before its entry; written again by the next one)."""
    folded = read_folded(lake.root, stream)
    replaced_at = dict(folded.replaced) if folded is not None else {}
    replaced_at.update({path: r.at_ms for r in replacements for path in r.replaced})
    removed = 0
    for found in lake.files(stream, completed_only=False):
        if found.path in completed:
            continue
        at_ms = replaced_at.get(found.path)
        expired = at_ms is not None and at_ms <= now_ms - KEEP_REPLACED_MS
        orphan = at_ms is None and found.path.rsplit("/", 1)[-1].startswith(f"part-{COMPACTION_PREFIX}")
        if expired or orphan:
            lake.root.delete(found.path)
            removed += 1
    return removed
