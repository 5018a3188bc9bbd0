"""The end-to-end demo on embedded defaults: no servers, no configuration, one folder.

It generates a synthetic day of ad traffic, ingests it into a local lake through the bundled adclick
pipeline, builds the lookup tables, backfills a training set (features as of each impression, a
click within 15 minutes as the label), trains and judges a model against the generator's true click
probabilities, and replays the validation period in money: serve everything, or serve by the model.
It ends with the commands to try next on its own data (its root, a busy user, times inside the data).

The traffic ends early enough that every click and every arrival lies before the clock's now (clicks
follow impressions by up to 12 hours, arrivals lag by up to 2), so events sent after the demo are
newer than all of its data, never "late".
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from clickwise.dataset import backfill
from clickwise.events import DeadLetters, Ingestor, Lake
from clickwise.examples import example_path
from clickwise.model import evaluate, train
from clickwise.spec import Pipeline, load_pipeline
from clickwise.storage import Root, open_root
from clickwise.synth import generate
from clickwise.synth.arrival import LATE_MAX_MS
from clickwise.synth.clicks import MAX_DELAY_MS
from clickwise.tables import Tables
from clickwise.time import Clock, SystemClock, floor_ms, format_ms

HOUR_MS = 3_600_000
TAIL_MS = MAX_DELAY_MS + LATE_MAX_MS
"""How far after the last impression the generator's clicks and arrivals can reach."""
USERS = 5_000
PIPELINE_FILE = Path("examples/adclick/pipeline.yaml")

Progress = Callable[[int, int, str], None]
"""Called with (done, total, phase) as the demo advances."""


def demo_end_ms(clock: Clock | None = None) -> int:
    """The default end of the demo's impressions: the last whole hour from which every click and arrival
    the generator can draw still lies before ``clock``'s now."""
    return floor_ms((clock or SystemClock()).now_ms() - TAIL_MS, HOUR_MS)


def run_demo(
    workdir: Path,
    *,
    users: int = USERS,
    hours: float = 24.0,
    end_ms: int | None = None,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Run the demo in ``workdir`` (emptied first); returns figures and printable summary lines.

    The impressions cover ``hours`` up to ``end_ms`` (default: :func:`demo_end_ms`).
    """
    if workdir.exists():
        shutil.rmtree(workdir)
    pipeline = load_pipeline(example_path("adclick"))
    end_ms = demo_end_ms() if end_ms is None else end_ms
    start_ms = end_ms - int(hours * HOUR_MS)

    started = time.perf_counter()
    generated = generate(
        workdir / "input",
        users=users,
        hours=hours,
        seed=7,
        start_ms=start_ms,
        progress=_phase(progress, "generating"),
    )
    generate_s = time.perf_counter() - started

    root = open_root(workdir / "state")
    started = time.perf_counter()
    inputs = [str(workdir / "input" / name) for name in ("impressions", "clicks", "predictions")]
    report = Ingestor(pipeline, root).ingest_files(inputs, progress=_phase(progress, "ingesting"))
    ingest_s = time.perf_counter() - started
    again = Ingestor(pipeline, root).ingest_files(inputs)

    started = time.perf_counter()
    tables = Tables.open(pipeline, root)
    update = tables.catch_up(progress=_phase(progress, "updating tables"))
    tables_s = time.perf_counter() - started
    user = lake_user(root, pipeline)
    example = _example_lookups(tables, user, start_ms, end_ms)

    started = time.perf_counter()
    training = backfill(
        pipeline, root, str(workdir / "training"), start_ms, end_ms, tables=tables,
        progress=_phase(progress, "backfilling the training set"),
    )  # fmt: skip
    backfill_s = time.perf_counter() - started
    truth = str(workdir / "input" / "truth")
    started = time.perf_counter()
    model = train(
        pipeline, str(workdir / "training"), str(workdir / "models"), truth=truth, progress=progress
    )
    train_s = time.perf_counter() - started
    money = evaluate(
        pipeline, str(workdir / "training"), model.model_dir, str(workdir / "money"), truth=truth
    )

    lake = Lake(root, pipeline)
    dead = DeadLetters(root)
    events = sum(c.accepted + c.rejected + c.duplicates for c in report.streams.values())
    lake_bytes = sum(
        root.fs.get_file_info(root.path(f.path)).size or 0 for s in pipeline.streams for f in lake.files(s)
    )
    metrics = model.metrics
    truth_metrics = metrics.get("truth") or {}
    result: dict[str, Any] = {
        "workdir": str(workdir),
        "pipeline": pipeline.name,
        "fingerprint": pipeline.fingerprint(),
        "range": [format_ms(start_ms), format_ms(end_ms)],
        "latest_ms": {"event": generated.max_ts_ms, "arrival": generated.max_arrival_ms},
        "generated": dict(generated.counts),
        "ingest": report.as_dict(),
        "second_ingest_new_events": sum(c.accepted for c in again.streams.values()),
        "dead_letters": {s: dead.read(s).num_rows for s in pipeline.streams},
        "lake_bytes": lake_bytes,
        "seconds": {
            "generate": round(generate_s, 2),
            "ingest": round(ingest_s, 2),
            "tables": round(tables_s, 2),
            "backfill": round(backfill_s, 2),
            "train": round(train_s, 2),
        },
        "training_set": training.to_json(),
        "model": model.to_json(),
        "money": {
            "serve_all_net": money.serve_all.net,
            "policy_net": money.policy.net,
            "money_saved": money.money_saved,
            "files": money.files,
        },
        "tables": {
            "late_events": update.late,
            "watermark_ms": update.watermark_ms,
            "runs": tables.run_counts(),
        },
        "lookups": example,
        "next": next_commands(workdir, user, start_ms, end_ms),
    }
    result["summary"] = [
        f"clickwise demo: pipeline {pipeline.name} ({pipeline.fingerprint()[:19]}) in {workdir}",
        f"generated {_counts(generated.counts)} for {users:,} users over {hours:g} h "
        f"({format_ms(start_ms)} .. {format_ms(end_ms)}) in {generate_s:.1f} s",
        f"ingested {events:,} events in {ingest_s:.1f} s ({events / max(ingest_s, 1e-9):,.0f}/s): "
        + "; ".join(
            f"{name} {c.accepted:,} stored, {c.duplicates:,} duplicates, {c.rejected:,} rejected"
            for name, c in report.streams.items()
        ),
        f"lake: {lake_bytes / 1e6:.1f} MB of zstd Parquet under {root.url}/lake "
        "(partitioned by stream/date/hour)",
        f"ingesting the same files again stored {result['second_ingest_new_events']} new events",
        f"tables: applied {sum(update.events.values()):,} events to {len(pipeline.tables)} lookup tables in "
        f"{tables_s:.1f} s ({update.late:,} arrived late); state {_state_bytes(root) / 1e6:.1f} MB",
        *example["lines"],
        f"training set: {training.rows:,} impressions ({training.positives:,} clicked within 15 minutes) "
        f"with {len(pipeline.features)} features as of each impression, in {backfill_s:.1f} s "
        f"({training.rows / max(backfill_s, 1e-9):,.0f} rows/s) -> {training.out}",
        _model_line(model.version, metrics, truth_metrics, train_s),
        f"money on the validation period ({money.rows:,} impressions, bot clicks worth nothing): serve all "
        f"nets {money.serve_all.net:,.2f}; the model's policy nets {money.policy.net:,.2f}, saving "
        f"{money.money_saved:,.2f} ({money.serve_all.spend - money.policy.spend:,.2f} less spend)",
        f"report: {model.model_dir}/report.html; savings plot: {money.files.get('plot', workdir / 'money')}",
        "next, on the demo's data:",
        *(f"  {command}" for command in result["next"]),
    ]
    return result


def next_commands(workdir: Path, user: str, start_ms: int, end_ms: int) -> list[str]:
    """Commands to try on the demo's state: its root, a busy user and times inside its data."""
    pipeline = PIPELINE_FILE if PIPELINE_FILE.is_file() else example_path("adclick")
    common = f"-p {pipeline} --root {workdir / 'state'}"
    middle_ms = floor_ms((start_ms + end_ms) // 2, HOUR_MS)
    return [
        f"clickwise lookup {common} user {user} --as-of {format_ms(middle_ms)}",
        f"clickwise history {common} country US --from {format_ms(middle_ms - 6 * HOUR_MS)} "
        f"--to {format_ms(middle_ms)} --every 1h",
        f"clickwise status {common}",
        "clickwise keys add --scopes read,write --file keys.json",
        f"clickwise serve {common} --models {workdir / 'models'} --api-keys keys.json",
    ]


def _model_line(version: str, metrics: dict[str, Any], truth: dict[str, Any], seconds: float) -> str:
    def auc(value: Any) -> str:
        return "-" if value is None else f"{value:.3f}"

    line = (
        f"model {version} in {seconds:.1f} s: validation AUC {auc(metrics['model']['auc'])}, without table "
        f"features {auc(metrics['baseline']['auc'])}"
    )
    if truth:
        line += f", Bayes-optimal {auc(truth['bayes']['auc'])}"
        if truth.get("gap_closed") is not None:
            line += f" (the model closes {truth['gap_closed']:.0%} of the gap)"
    return line + f"; calibration error {metrics['model']['calibration_error']:.4f}"


def lake_user(root: Root, pipeline: Pipeline) -> str:
    """A busy user of the generated traffic (the first impression's user)."""
    first = next(Lake(root, pipeline).read("impressions", columns=["user_id"]))
    users = first.column("user_id").to_pylist()
    return max(set(users), key=users.count)


def _example_lookups(tables: Tables, user: str, start_ms: int, end_ms: int) -> dict[str, Any]:
    """The same user as of three moments, and the US against the world: time travel in action."""
    moments = [start_ms + (end_ms - start_ms) * share // 4 for share in (1, 2, 4)]
    rows = [tables.get_one("user", user, moment) for moment in moments]
    country = tables.get_one("country", "US", end_ms)
    world = tables.get_one("global", None, end_ms)
    lines = [
        f"user {user} as of {format_ms(m)}: "
        + ", ".join(
            f"{name}={_short(row[name])}"
            for name in (
                "impressions_1h",
                "impressions_24h",
                "clicks_total",
                "ctr_7d",
                "domains_30d",
                "spend_24h",
            )
        )  # fmt: skip
        for m, row in zip(moments, rows, strict=True)
    ]
    lines.append(
        f"country US ctr_24h={_short(country['ctr_24h'])} vs global {_short(world['ctr_24h'])} "
        f"at {format_ms(end_ms)}"
    )
    return {"user": user, "as_of": moments, "rows": rows, "us": country, "global": world, "lines": lines}


def _short(value: Any) -> str:
    return "null" if value is None else f"{value:.4g}" if isinstance(value, float) else str(value)


def _state_bytes(root: Root) -> int:
    return sum(root.fs.get_file_info(root.path(p)).size or 0 for p in root.list_files("tables"))


def _phase(progress: Progress | None, phase: str) -> Callable[[int, int], None] | None:
    if progress is None:
        return None
    return lambda done, total: progress(done, total, phase)


def _counts(counts: dict[str, int]) -> str:
    return ", ".join(f"{n:,} {s}" for s, n in counts.items())
