"""Write the synthetic ad stream to files: one folder per stream under ``out_dir``."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

from clickwise.synth.background import BackgroundWriters
from clickwise.synth.config import SynthConfig
from clickwise.synth.errors import SynthConfigError, SynthOutputError
from clickwise.synth.schema import SCHEMAS, STREAMS
from clickwise.synth.stream import Plan, iter_windows, make_plan
from clickwise.synth.writer import FORMATS, Format, StreamWriter


@dataclass(frozen=True, slots=True)
class GenerateSummary:
    """What :func:`generate` wrote.

    ``start_ms``/``end_ms`` bound the event time of impressions (half-open); clicks follow their
    impressions by up to hours, so ``max_ts_ms`` and ``max_arrival_ms`` can lie after ``end_ms``.
    """

    out_dir: Path
    fmt: Format
    impressions: int
    clicks: int
    predictions: int
    truth: int
    start_ms: int
    end_ms: int
    max_ts_ms: int
    max_arrival_ms: int
    paths: Mapping[str, tuple[Path, ...]]

    @property
    def counts(self) -> dict[str, int]:
        """Rows per stream."""
        return {name: getattr(self, name) for name in STREAMS}

    @property
    def events(self) -> int:
        """Rows of all four streams together."""
        return sum(self.counts.values())


def generate(
    out_dir: str | Path,
    *,
    users: int,
    hours: float,
    seed: int,
    start_ms: int,
    fmt: Format = "parquet",
    progress: Callable[[int, int], None] | None = None,
    config: SynthConfig | None = None,
) -> GenerateSummary:
    """Generate ``hours`` of traffic of ``users`` users from ``start_ms`` into ``out_dir``.

    Writes ``impressions/``, ``clicks/``, ``predictions/`` and ``truth/``, each with ``part-00000.<fmt>``
    (more parts for very long runs), rows ordered by ``arrival_ts``. The same arguments give
    byte-identical files. ``progress(done, total)`` is called after each step (``total`` is fixed).
    Refuses an ``out_dir`` whose stream folders already hold files, so runs never mix.
    """
    if fmt not in FORMATS:
        raise SynthConfigError(f"fmt must be one of {', '.join(FORMATS)}, got {fmt!r}")
    plan = make_plan(users, hours, seed, start_ms, config)
    root = Path(out_dir)
    folders = _prepare_folders(root)
    writers = {
        name: StreamWriter(folders[name], SCHEMAS[name], fmt, plan.config.rows_per_file) for name in STREAMS
    }
    with BackgroundWriters(writers) as background:
        counts, max_ts, max_arrival = _write_all(plan, background, progress)
        paths = background.close()
    return GenerateSummary(
        root,
        fmt,
        counts["impressions"],
        counts["clicks"],
        counts["predictions"],
        counts["truth"],
        plan.start_ms,
        plan.end_ms,
        max_ts,
        max_arrival,
        paths,
    )


def _prepare_folders(root: Path) -> dict[str, Path]:
    folders = {name: root / name for name in STREAMS}
    for folder in folders.values():
        if folder.exists() and any(folder.iterdir()):
            raise SynthOutputError(
                f"{str(folder)!r} already holds files from an earlier run; "
                "choose an empty out_dir or delete that folder"
            )
    for folder in folders.values():
        folder.mkdir(parents=True, exist_ok=True)
    return folders


def _write_all(
    plan: Plan, writers: BackgroundWriters, progress: Callable[[int, int], None] | None
) -> tuple[dict[str, int], int, int]:
    counts = dict.fromkeys(STREAMS, 0)
    max_ts = max_arrival = plan.start_ms
    total = plan.chunks + 1
    if progress is not None:
        progress(0, total)
    for window in iter_windows(plan):
        for name, table in window.batches:
            writers.write(name, table)
            counts[name] += table.num_rows
            if "ts" in table.column_names:
                max_ts = max(max_ts, _max(table, "ts"))
                max_arrival = max(max_arrival, _max(table, "arrival_ts"))
        if progress is not None:
            progress(window.index + 1, total)
    return counts, max_ts, max_arrival


def _max(table: pa.Table, column: str) -> int:
    return int(pc.max(table.column(column)).as_py())
