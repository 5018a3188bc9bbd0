"""The ``clickwise`` command: parse, load, call one library function, print.

Every command that reads a pipeline takes ``-p/--pipeline`` and ``--root`` (default: the pipeline's
``storage.root``); commands that print results take ``--json``. A failure exits non-zero with one
line that says what to fix.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, TypeVar

import orjson
import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    MofNCompleteColumn,
    Progress,
    TaskProgressColumn,
    TextColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from clickwise.errors import ClickwiseError

app = typer.Typer(
    name="clickwise",
    help="Streaming machine learning for ad-click prediction: lookup tables, training sets, decisions.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
err = Console(stderr=True)
out = Console()

PipelineOpt = Annotated[Path, typer.Option("-p", "--pipeline", help="The pipeline file (YAML).")]
RootOpt = Annotated[
    str | None,
    typer.Option(
        "--root", help="State root: a folder or s3://bucket/prefix. Default: the pipeline's storage.root."
    ),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print the result as JSON.")]

T = TypeVar("T")


def _print_version(value: bool) -> None:
    if value:
        from clickwise import __version__

        sys.stdout.write(f"clickwise {__version__}\n")
        raise typer.Exit()


@app.callback()
def _options(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_print_version, is_eager=True, help="Print the version and exit."),
    ] = False,
) -> None:
    """Streaming machine learning for ad-click prediction: lookup tables, training sets, decisions."""


def _run(action: Callable[[], T]) -> T:
    """Run a command body; a ClickwiseError becomes one line on stderr and exit code 2."""
    try:
        return action()
    except ClickwiseError as exc:
        lines = str(exc).splitlines() or [type(exc).__name__]
        err.print(f"[red]error:[/red] {lines[0]}", highlight=False, markup=True, soft_wrap=True)
        for line in lines[1:]:
            err.print(f"       {line}", highlight=False, markup=False, soft_wrap=True)
        raise typer.Exit(2) from None


def _print_json(value: Any) -> None:
    sys.stdout.write(orjson.dumps(value, option=orjson.OPT_INDENT_2).decode() + "\n")


@contextmanager
def _progress(
    description: str, *, unit_bytes: bool = False, enabled: bool = True
) -> Iterator[Callable[..., None]]:
    """A progress bar on stderr (plain lines when stderr is not a terminal); yields
    ``update(done, total, phase=None)``."""
    if enabled and not err.is_terminal:
        from clickwise.progress import PlainProgress

        yield PlainProgress(description, sys.stderr, unit_bytes=unit_bytes).update
        return
    counter = DownloadColumn() if unit_bytes else MofNCompleteColumn()
    columns = [
        TextColumn("{task.description}"),
        BarColumn(),
        TaskProgressColumn(),
        counter,
        TimeRemainingColumn(),
    ]
    # (rich draws nothing on a stderr that is not a terminal but a stray empty line: leave it off)
    shown = enabled and err.is_terminal
    with Progress(*columns, console=err, transient=True, disable=not shown) as bar:
        task = bar.add_task(description, total=None)

        def update(done: int, total: int, phase: str | None = None) -> None:
            if phase is not None:
                bar.update(task, description=phase)
            bar.update(task, completed=done, total=total)

        yield update


def _open(pipeline_path: Path, root: str | None) -> tuple[Any, Any]:
    from clickwise.spec import load_pipeline
    from clickwise.storage import open_root

    pipeline = load_pipeline(pipeline_path)
    storage = pipeline.storage
    return pipeline, open_root(root or storage.root, endpoint=storage.endpoint, region=storage.region)


def _open_lake(
    pipeline_path: Path, root: str | None, *, holds: tuple[str, ...] = ("lake",)
) -> tuple[Any, Any]:
    """:func:`_open` for commands that read what a root holds: a root without a lake (a typo, or
    another root than the one the events went to) is an error naming it, and is not created."""
    from clickwise.spec import load_pipeline
    from clickwise.storage import open_root

    pipeline = load_pipeline(pipeline_path)
    storage = pipeline.storage
    url = str(root or storage.root)
    origin = "--root" if root else f"storage.root of {pipeline_path}"
    local = "://" not in url or url.startswith("file://")
    folder = Path(url.removeprefix("file://")).expanduser().absolute() if local else None
    if folder is not None and not any((folder / name).is_dir() for name in holds):
        shown = str(folder)
    else:
        opened = open_root(url, endpoint=storage.endpoint, region=storage.region)
        if any(opened.exists(name) for name in holds):
            return pipeline, opened
        shown = opened.url
    raise ClickwiseError(
        f"root {shown!r} ({origin}) holds no events: check the path, or ingest first "
        "(`clickwise ingest -p PIPELINE --root ROOT FILES`)"
    )


@app.command()
def validate(pipeline: PipelineOpt, as_json: JsonOpt = False) -> None:
    """Check a pipeline file; print its streams, tables, features and fingerprint."""

    def body() -> None:
        from clickwise.errors import PipelineError
        from clickwise.spec import load_pipeline

        try:
            p = load_pipeline(pipeline)
        except PipelineError as exc:
            if not as_json:
                raise
            _print_json({"valid": False, "file": str(pipeline), "errors": _pipeline_errors(exc, pipeline)})
            raise typer.Exit(2) from None
        summary = {
            "name": p.name,
            "fingerprint": p.fingerprint(),
            "streams": list(p.streams),
            "tables": list(p.tables),
            "features": list(p.features),
            "label": p.label.name if p.label else None,
        }
        if as_json:
            _print_json({"valid": True, **summary})
            return
        out.print(f"[green]ok[/green] {pipeline}: pipeline [bold]{p.name}[/bold] {p.fingerprint()[:19]}")
        out.print(f"  streams  {', '.join(p.streams)}")
        out.print(f"  tables   {', '.join(p.tables) or '-'}")
        out.print(f"  features {len(p.features)}; label {summary['label'] or '-'}")

    _run(body)


def _pipeline_errors(exc: Exception, pipeline: Path) -> list[dict[str, str | None]]:
    """Each line of a pipeline error as ``{"path": "label.horizon", "message": ...}`` (path None when
    the error is about the whole file)."""
    errors: list[dict[str, str | None]] = []
    for line in str(exc).splitlines():
        text = line.removeprefix(f"{pipeline}: ")
        path, colon, message = text.partition(": ")
        shaped = colon and " " not in path and text != line
        errors.append({"path": path, "message": message} if shaped else {"path": None, "message": text})
    return errors


@app.command()
def schema() -> None:
    """Print the JSON Schema of pipeline files (for editors)."""
    from clickwise.spec import pipeline_json_schema

    _print_json(pipeline_json_schema())


@app.command()
def generate(
    out_dir: Annotated[
        Path | None,
        typer.Option("--out", help="Folder to write impressions/, clicks/, predictions/, truth/."),
    ] = None,
    to: Annotated[
        str | None,
        typer.Option(
            help="Send to a broker instead: kafka://HOST:PORT (each stream to the topic of its name)."
        ),
    ] = None,
    rate: Annotated[float | None, typer.Option(help="With --to: events per second at most.", min=1)] = None,
    per_message: Annotated[
        int,
        typer.Option(
            help="With --to: records per message, as JSON lines (read them with payload: json_lines).",
            min=1,
        ),
    ] = 1,
    users: Annotated[int, typer.Option(help="Number of users.", min=1)] = 10_000,
    hours: Annotated[float, typer.Option(help="Hours of traffic.", min=0.01)] = 24.0,
    seed: Annotated[int, typer.Option(help="Random seed; the same seed gives the same files.")] = 7,
    start: Annotated[
        str, typer.Option(help="First event time: ISO-8601 with zone, or epoch ms.")
    ] = "2026-01-05T00:00:00Z",
    fmt: Annotated[str, typer.Option("--format", help="parquet, jsonl or csv.")] = "parquet",
    as_json: JsonOpt = False,
) -> None:
    """Write synthetic ad streams with ground truth (true click probabilities), or send them to Kafka."""

    def body() -> None:
        from clickwise.synth import generate as run_generate
        from clickwise.time import format_ms, parse_instant_ms

        if (out_dir is None) == (to is None):
            raise ClickwiseError("give either --out FOLDER or --to kafka://HOST:PORT")
        start_ms = parse_instant_ms(start)
        if to is not None:
            _send(
                to,
                rate=rate,
                per_message=per_message,
                users=users,
                hours=hours,
                seed=seed,
                start_ms=start_ms,
                as_json=as_json,
            )
            return
        assert out_dir is not None
        if fmt not in ("parquet", "jsonl", "csv"):
            raise ClickwiseError(f"--format {fmt!r} is not one of parquet, jsonl, csv")
        with _progress("generating", enabled=not as_json) as update:
            summary = run_generate(
                out_dir,
                users=users,
                hours=hours,
                seed=seed,
                start_ms=start_ms,
                fmt=fmt,  # type: ignore[arg-type]  # checked above
                progress=update,
            )
        counts = dict(summary.counts)
        if as_json:
            _print_json({"out": str(out_dir), "counts": counts, "start_ms": start_ms})
            return
        shown = ", ".join(f"{n:,} {s}" for s, n in counts.items())
        out.print(f"wrote {shown} to {out_dir} (from {format_ms(start_ms)}, {hours:g} h, seed {seed})")

    _run(body)


def _send(target: str, *, rate: float | None, as_json: bool, **plan: Any) -> None:
    from clickwise.events import kafka, kinesis

    address = target.split("://", 1)[1].strip("/") if "://" in target else ""
    if target.startswith("kafka://") and address:
        send = functools.partial(kafka.send_generated, address)
    elif target.startswith("kinesis://"):
        send = functools.partial(kinesis.send_generated, address)  # streams named <prefix><stream>
    else:
        raise ClickwiseError(f"--to {target!r}: give kafka://HOST:PORT[,HOST:PORT...] or kinesis://PREFIX")
    with _progress("sending", enabled=not as_json) as update:
        summary = send(rate=rate, progress=update, **plan)
    if as_json:
        _print_json({"to": target, "counts": summary.counts, "seconds": summary.seconds})
        return
    shown = ", ".join(f"{n:,} {s}" for s, n in summary.counts.items())
    total = sum(summary.counts.values())
    out.print(
        f"sent {shown} to {target} in {summary.seconds:.1f} s ({total / summary.seconds:,.0f} events/s)"
    )


@app.command()
def ingest(
    inputs: Annotated[list[str], typer.Argument(help="Files, folders, globs or s3:// prefixes.")],
    pipeline: PipelineOpt,
    root: RootOpt = None,
    stream: Annotated[
        str | None, typer.Option(help="The stream; default: from each file or folder name.")
    ] = None,
    tables: Annotated[bool, typer.Option(help="Also apply the new events to the lookup tables.")] = True,
    as_json: JsonOpt = False,
) -> None:
    """Validate, de-duplicate, enrich and store events in the lake (bad records go to dead letters),
    then apply them to the lookup tables."""

    def body() -> None:
        from clickwise.events import ingest as run_ingest

        p, r = _open(pipeline, root)
        with _progress("ingesting", unit_bytes=True, enabled=not as_json) as update:
            report = run_ingest(p, r, inputs, stream=stream, progress=update)
        update_report = _catch_up(p, r, enabled=tables and bool(p.tables), show=not as_json)
        if as_json:
            result: dict[str, Any] = dict(report.as_dict())
            if update_report is not None:
                result["tables"] = update_report
            _print_json(result)
            return
        table = Table(
            "stream", "accepted", "rejected", "duplicates", "conflicts", "filtered", "inputs",
            "already ingested",
        )  # fmt: skip
        for name, c in report.streams.items():
            numbers = [c.accepted, c.rejected, c.duplicates, c.conflicts, c.filtered, c.inputs]
            numbers.append(c.skipped_inputs)
            table.add_row(name, *(f"{n:,}" for n in numbers))
        out.print(table)
        out.print(f"lake: {r.url}/lake")
        rejected = sum(c.rejected for c in report.streams.values())
        if rejected:
            out.print(
                f"rejected records: {rejected:,} in {r.url}/deadletters, with reasons "
                f"(`clickwise deadletters -p {pipeline}" + (f" --root {root}" if root else "") + "`)",
                highlight=False,
                soft_wrap=True,
            )
        if update_report is not None:
            out.print(_describe_update(update_report), highlight=False, soft_wrap=True)

    _run(body)


def _catch_up(pipeline: Any, root: Any, *, enabled: bool, show: bool) -> dict[str, Any] | None:
    if not enabled:
        return None
    from dataclasses import asdict

    from clickwise.tables import Tables

    with _progress("updating tables (hours)", enabled=show) as update:
        report = Tables.open(pipeline, root).catch_up(progress=update)
    return asdict(report)


def _describe_update(report: dict[str, Any]) -> str:
    from clickwise.time import format_ms

    applied = sum(report["events"].values())
    watermark = report["watermark_ms"]
    mark = format_ms(watermark) if watermark is not None else "-"
    return (
        f"tables: applied {applied:,} events from {report['files']:,} lake files; late {report['late']:,}, "
        f"past retention {report['expired']:,}, waiting for a join {report['pending']:,}; watermark {mark}"
    )


def _parse_key(pipeline: Any, table: str, text: str | None) -> Any:
    """A key from the command line: the value, values joined by ',' or a JSON list; '-' for none."""
    if table not in pipeline.tables:
        raise ClickwiseError(f"unknown table {table!r}; the pipeline has {sorted(pipeline.tables)}")
    fields = pipeline.tables[table].key
    if not fields:
        return None
    if text is None or text == "-":
        raise ClickwiseError(f"table {table!r} is keyed by {fields}; give a KEY")
    if len(fields) == 1:
        return text
    parts = orjson.loads(text) if text.startswith("[") else text.split(",")
    if len(parts) != len(fields):
        raise ClickwiseError(f"table {table!r} is keyed by {fields}; got {len(parts)} values in {text!r}")
    return tuple(str(p) for p in parts)


def _key_text(key: Any) -> str:
    from clickwise.tables.runs import key_text

    return key_text(key if isinstance(key, tuple) else (key,))


def _cell(value: Any) -> str:
    if value is None:
        return "null"
    return f"{value:,.6g}" if isinstance(value, float) else str(value)


def _open_tables(pipeline_path: Path, root: str | None, as_of: str | None) -> tuple[Any, Any, int]:
    """The pipeline, its tables, and the moment to read (``--as-of``, else now)."""
    from clickwise.tables import Tables
    from clickwise.time import parse_instant_ms

    p, r = _open_lake(pipeline_path, root)
    tables = Tables.open(p, r)
    return p, tables, tables.now_ms() if as_of is None else parse_instant_ms(as_of)


TzOpt = Annotated[
    str, typer.Option("--tz", help="Show times on this zone's clock (IANA name or +08:00). Default: UTC.")
]


def _shown_time(epoch_ms: int, zone: str) -> str:
    """A moment as ISO text on ``zone``'s clock (``Z`` for UTC)."""
    from clickwise.time import format_ms, ms_to_datetime, parse_zone

    tz = parse_zone(zone)
    if zone.strip() in ("UTC", "Z", "utc", "z"):
        return format_ms(epoch_ms)
    return ms_to_datetime(epoch_ms).astimezone(tz).isoformat(timespec="milliseconds")


AsOfOpt = Annotated[
    str | None,
    typer.Option("--as-of", help="ISO-8601 time with zone, or epoch ms. Default: now (after every event)."),
]


@app.command()
def lookup(
    table: Annotated[str, typer.Argument(help="The table.")],
    pipeline: PipelineOpt,
    key: Annotated[
        str | None, typer.Argument(help="The key; values joined by ',' for several fields.")
    ] = None,
    root: RootOpt = None,
    as_of: AsOfOpt = None,
    tz: TzOpt = "UTC",
    as_json: JsonOpt = False,
) -> None:
    """A table's aggregations for one key, now or as of a past moment (events at that moment excluded)."""

    def body() -> None:
        _shown_time(0, tz)  # (an unknown zone fails before any work)
        p, tables, moment = _open_tables(pipeline, root, as_of)
        parsed = _parse_key(p, table, key)
        values = tables.get_one(table, parsed, moment)
        if parsed is not None and _key_text(parsed) not in set(tables.keys(table)):
            err.print(
                f"note: key {key!r} has no events in table {table!r}: the values are those of no events",
                highlight=False,
                soft_wrap=True,
            )
        if as_json:
            _print_json({"table": table, "key": key, "as_of_ms": moment, "values": values})
            return
        grid = Table("aggregation", "value", title=f"{table} {key or ''} as of {_shown_time(moment, tz)}")
        for name, value in values.items():
            grid.add_row(name, _cell(value))
        out.print(grid)

    _run(body)


@app.command()
def snapshot(
    table: Annotated[str, typer.Argument(help="The table.")],
    out_path: Annotated[Path, typer.Option("--out", help="Parquet file to write.")],
    pipeline: PipelineOpt,
    root: RootOpt = None,
    as_of: AsOfOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Every key's aggregations as of a moment, written as Parquet."""

    def body() -> None:
        import pyarrow.parquet as pq

        _, tables, moment = _open_tables(pipeline, root, as_of)
        result = tables.snapshot(table, moment)
        out_path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(result, out_path, compression="zstd")
        summary = {"table": table, "as_of_ms": moment, "rows": result.num_rows, "out": str(out_path)}
        if as_json:
            _print_json(summary)
        else:
            out.print(f"wrote {result.num_rows:,} keys of {table} to {out_path}")

    _run(body)


@app.command()
def history(
    table: Annotated[str, typer.Argument(help="The table.")],
    pipeline: PipelineOpt,
    key: Annotated[
        str | None, typer.Argument(help="The key; values joined by ',' for several fields.")
    ] = None,
    root: RootOpt = None,
    start: Annotated[str, typer.Option("--from", help="First moment (ISO-8601 with zone or epoch ms).")] = "",
    end: Annotated[str, typer.Option("--to", help="Last moment (inclusive).")] = "",
    every: Annotated[str, typer.Option(help="Step, e.g. 15m, 1h.")] = "1h",
    plot: Annotated[Path | None, typer.Option(help="Also draw the series to this PNG.")] = None,
    tz: TzOpt = "UTC",
    as_json: JsonOpt = False,
) -> None:
    """A key's aggregations at regular moments, printed (and drawn with --plot)."""

    def body() -> None:
        from clickwise.tables import Tables
        from clickwise.tables.plot import plot_history
        from clickwise.time import parse_duration_ms, parse_instant_ms

        _shown_time(0, tz)  # (an unknown zone fails before any work)

        if not start or not end:
            raise ClickwiseError("history needs --from and --to (ISO-8601 with zone, or epoch ms)")
        p, r = _open_lake(pipeline, root)
        tables = Tables.open(p, r)
        series = tables.history(
            table,
            _parse_key(p, table, key),
            parse_instant_ms(start),
            parse_instant_ms(end),
            parse_duration_ms(every),
        )
        if plot is not None:
            plot_history(series, plot, title=f"{table} {key or ''}")
        if as_json:
            _print_json(
                {
                    "table": table,
                    "key": key,
                    "series": series.to_pylist(),
                    "plot": str(plot) if plot else None,
                }
            )
            return
        grid = Table("as of", *series.column_names[1:])
        for row in series.to_pylist():
            cells = [
                "null" if v is None else f"{v:.6g}" if isinstance(v, float) else str(v) for v in row.values()
            ]
            grid.add_row(_shown_time(row["as_of_ms"], tz), *cells[1:])
        out.print(grid)
        if plot is not None:
            out.print(f"plot: {plot}")

    _run(body)


def _range(pipeline: Any, root: Any, start: str, end: str) -> tuple[int, int]:
    """``--from``/``--to`` as epoch ms; either left out means the first/last event of the exposure
    stream in the lake."""
    from clickwise.events import Lake
    from clickwise.time import MS_PER_HOUR, parse_instant_ms

    if start and end:
        return parse_instant_ms(start), parse_instant_ms(end)
    if pipeline.label is None:
        raise ClickwiseError("the pipeline has no label section, so no exposure stream to take rows from")
    files = Lake(root, pipeline).files(pipeline.label.exposure)
    if not files:
        raise ClickwiseError(
            f"the lake has no {pipeline.label.exposure!r} events yet; run `clickwise ingest`"
        )
    low = parse_instant_ms(start) if start else files[0].hour_ms
    high = parse_instant_ms(end) if end else files[-1].hour_ms + MS_PER_HOUR
    return low, high


FromOpt = Annotated[
    str,
    typer.Option(
        "--from", help="First exposure time (ISO-8601 with zone or epoch ms). Default: the lake's first."
    ),
]
ToOpt = Annotated[
    str, typer.Option("--to", help="End of the range, exclusive. Default: the end of the lake's last hour.")
]


@app.command()
def dataset(
    pipeline: PipelineOpt,
    out_url: Annotated[str, typer.Option("--out", help="Folder or s3:// prefix for the training set.")],
    root: RootOpt = None,
    start: FromOpt = "",
    end: ToOpt = "",
    fmt: Annotated[str | None, typer.Option("--format", help="parquet (default) or csv.")] = None,
    sagemaker: Annotated[
        bool,
        typer.Option(
            help="CSV for SageMaker's built-in algorithms: label first, no header, numbers (texts as stable "
            "codes); the channel's files go to OUT/data/, OUT/_dataset.json and OUT/keys/ beside it."
        ),
    ] = False,
    include_immature: Annotated[
        bool,
        typer.Option(
            help="With --sagemaker: keep rows whose label is not final yet (their 0 may still become a "
            "click); OUT/keys/ marks them. Default: left out, and counted."
        ),
    ] = False,
    overwrite: Annotated[bool, typer.Option(help="Replace what --out holds.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Backfill a training set: one row per exposure with every feature as of its time and its label
    from the future, partitioned by date and hour."""

    def body() -> None:
        from clickwise.dataset import backfill

        p, r = _open_lake(pipeline, root)
        low, high = _range(p, r, start, end)
        with _progress("backfilling (exposures)", enabled=not as_json) as update:
            report = backfill(
                p, r, out_url, low, high, fmt=fmt, sagemaker=sagemaker,
                include_immature=include_immature, overwrite=overwrite, progress=update,
            )  # fmt: skip
        if as_json:
            _print_json(report.to_json())
            return
        rate = report.rows / report.seconds if report.seconds else 0.0
        out.print(
            f"wrote {report.rows:,} rows ({report.positives:,} positive, "
            f"{report.mature:,} with a final label) "
            f"in {report.partitions} hour partitions to {report.out} in {report.seconds:.1f} s "
            f"({rate:,.0f} rows/s)",
            highlight=False,
            soft_wrap=True,
        )
        if report.immature_left_out:
            out.print(
                f"left out {report.immature_left_out:,} rows whose label is not final yet "
                "(--include-immature keeps them)",
                highlight=False,
            )
        for warning in report.warnings:
            err.print(f"[yellow]warning:[/yellow] {warning}", highlight=False, soft_wrap=True)

    _run(body)


@app.command()
def verify(
    pipeline: PipelineOpt,
    root: RootOpt = None,
    start: FromOpt = "",
    end: ToOpt = "",
    batch: Annotated[str, typer.Option(help="Arrival-time micro-batch of the streaming replay.")] = "15m",
    cuts: Annotated[int, typer.Option(help="Moments at which the leakage probe cuts the lake.", min=0)] = 2,
    as_json: JsonOpt = False,
) -> None:
    """Replay the lake through the streaming path and compare its training rows with the backfill's
    (differing rows must be 0), then probe for leakage (features must not move when events at or
    after an exposure's time are removed or changed)."""

    def body() -> None:
        from clickwise.dataset import verify as run_verify
        from clickwise.time import format_duration_ms, parse_duration_ms

        p, r = _open_lake(pipeline, root)
        low, high = _range(p, r, start, end)
        with _progress("verifying", enabled=not as_json) as update:
            report = run_verify(
                p, r, low, high, batch_ms=parse_duration_ms(batch), cuts=cuts, progress=update
            )
        if as_json:
            _print_json(report.to_json())
        else:
            verdict = "[green]ok[/green]" if report.ok else "[red]FAILED[/red]"
            by = report.replayed_by
            if by != "arrival time":
                by += f": the arrival times fill only {report.arrival_batches:,}, as after a file ingest"
            out.print(
                f"{verdict} skew: {report.compared:,} rows compared (streaming replay in {report.batches:,} "
                f"batches of {format_duration_ms(parse_duration_ms(batch))} by {by}), "
                f"{report.differing_rows:,} differ; "
                f"{report.only_in_backfill:,} rows only in the backfill (label window not closed by the "
                f"replay's end), {report.only_in_stream:,} only in the stream"
            )
            for name, count in report.differing.items():
                if count:
                    out.print(f"  {name}: {count:,} rows differ", highlight=False)
            if report.differing_rows and report.events_later_than_emission:
                out.print(
                    f"  {report.events_later_than_emission:,} events arrived later than horizon + allowed "
                    "lateness after their time: rows emitted before they arrived could not see them; "
                    "raise allowed_lateness to cover your data's delays",
                    highlight=False,
                )
            for check in report.leakage:
                out.print(
                    f"leakage probe at {check.cut_ms}: {check.rows:,} exposures; differ when later events "
                    f"are removed {check.differ_when_removed}, changed {check.differ_when_changed}",
                    highlight=False,
                )
        if not report.ok:
            raise typer.Exit(1)

    _run(body)


DataOpt = Annotated[
    str | None,
    typer.Option(
        "--data",
        help="A training set from `clickwise dataset` (Parquet, CSV or --sagemaker: the folder holding "
        "_dataset.json). Default: ROOT/rows, the rows `clickwise run` emits.",
    ),
]


def _training_data(pipeline_path: Path, root: str | None, data: str | None) -> tuple[Any, str]:
    """The pipeline and the training set's URL: ``data``, else the rows ``clickwise run`` emits under
    the root (``--root``, else the pipeline's ``storage.root``); a missing one is an error, never
    created."""
    from clickwise.dataset.stream import ROWS
    from clickwise.spec import load_pipeline

    p = load_pipeline(pipeline_path)
    if data is not None:
        return p, data
    base = (root or p.storage.root).rstrip("/")
    return p, f"{base}/{ROWS}"


@app.command()
def train(
    pipeline: PipelineOpt,
    data: DataOpt = None,
    root: RootOpt = None,
    out_url: Annotated[str, typer.Option("--out", help="Models folder; each run adds a version.")] = "models",
    truth: Annotated[
        str | None, typer.Option(help="The generator's truth folder, for Bayes-optimal metrics.")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Train the pipeline's model with a time split; write a versioned model with metrics and a report.
    Prints the rows and positives of each part of the split and the trees kept, and warns when a
    part holds fewer than 50 positives (its AUC then means little)."""

    def body() -> None:
        from clickwise.model import train as run_train

        p, url = _training_data(pipeline, root, data)
        with _progress("training", enabled=not as_json) as update:
            result = run_train(p, url, out_url, truth=truth, progress=update)
        summary = result.to_json()
        for warning in summary["warnings"]:
            err.print(f"[yellow]warning:[/yellow] {warning}", highlight=False, soft_wrap=True)
        if as_json:
            _print_json(summary)
            return
        for line in [_describe_split(summary), *_describe_metrics(summary)]:
            out.print(line, highlight=False, soft_wrap=True)
        out.print(f"model {result.version}: {result.model_dir} (report.html)", highlight=False)

    _run(body)


def _describe_split(result: dict[str, Any]) -> str:
    names = {"fit": "fit", "early_stop": "early stopping", "validation": "validation"}
    parts = [
        f"{name} {result['rows'][part]:,} rows ({result['positives'][part]:,} positive)"
        for part, name in names.items()
        if result["rows"][part]
    ]
    return "split: " + ", ".join(parts) + f"; {result['trees']} trees kept of at most {result['max_rounds']}"


def _describe_metrics(result: dict[str, Any]) -> list[str]:
    def number(value: Any) -> str:
        return "-" if value is None else f"{value:.4f}"

    metrics = result["metrics"]
    model, baseline = metrics["model"], metrics["baseline"]
    lines = [
        f"validation rows {result['rows']['validation']:,}: AUC {number(model['auc'])} "
        f"(without table features {number(baseline['auc'])}), log loss {number(model['log_loss'])}, "
        f"calibration error {number(model['calibration_error'])}, lift at the top decile "
        f"{number(model['lift_top_decile'])}"
    ]
    truth = metrics.get("truth")
    if truth:
        closed = truth.get("gap_closed")
        lines.append(
            f"Bayes-optimal AUC {number(truth['bayes']['auc'])} "
            f"(log loss {number(truth['bayes']['log_loss'])}) "
            f"on {truth['matched_rows']:,} rows"
            + (f"; the model closes {closed:.0%} of the gap from the baseline" if closed is not None else "")
        )
    segment = metrics.get("segment_score_last")
    if segment and segment.get("auc") is not None:
        lines.append(f"the third stream's score alone: AUC {number(segment['auc'])}")
    return lines


@app.command()
def evaluate(
    pipeline: PipelineOpt,
    data: DataOpt = None,
    root: RootOpt = None,
    model: Annotated[
        str, typer.Option("--model", help="A model folder, or a models folder (its latest).")
    ] = "models",
    out_url: Annotated[
        str | None,
        typer.Option(
            "--out",
            help="Folder for money.json and savings.png. Default: the model's folder, where its "
            "report.html links to them.",
        ),
    ] = None,
    truth: Annotated[
        str | None, typer.Option(help="The generator's truth folder: bot clicks then count as worth nothing.")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Replay the validation period: serve-all against the model's policy, in money."""

    def body() -> None:
        from clickwise.model import evaluate as run_evaluate
        from clickwise.model import resolve

        p, url = _training_data(pipeline, root, data)
        model_dir = resolve(model)
        report = run_evaluate(p, url, model_dir, out_url or model_dir, truth=truth)
        if as_json:
            _print_json(report.to_json())
            return
        for line in _describe_money(report.to_json()):
            out.print(line, highlight=False, soft_wrap=True)

    _run(body)


def _describe_money(report: dict[str, Any]) -> list[str]:
    serve, policy = report["serve_all"], report["policy"]
    lines = [
        f"validation period: {report['rows']:,} impressions (model {report['model_version']})",
        f"serve all: spend {serve['spend']:,.2f}, clicks {serve['clicks']:,}, net {serve['net']:,.2f}",
        f"policy:    spend {policy['spend']:,.2f}, clicks {policy['clicks']:,} "
        f"(lost {policy.get('clicks_lost', 0):,}), net {policy['net']:,.2f}",
        f"money saved {report['money_saved']:,.2f}; best threshold x{report['best_multiplier']:g} "
        f"saves {report['best_saved']:,.2f}",
    ]
    lines.extend(report.get("notes", []))
    if report.get("files"):
        lines.append("files: " + ", ".join(report["files"].values()))
    return lines


@app.command()
def run(
    pipeline: PipelineOpt,
    root: RootOpt = None,
    watch: Annotated[
        list[str] | None, typer.Option(help="Folders (or s3:// prefixes) whose new files are ingested.")
    ] = None,
    interval: Annotated[str, typer.Option(help="Pause between passes, e.g. 1s, 500ms.")] = "1s",
    once: Annotated[bool, typer.Option(help="Do one pass and exit.")] = False,
    rebuild: Annotated[bool, typer.Option(help="Discard table state and replay the whole lake.")] = False,
    rows: Annotated[
        bool, typer.Option(help="Emit training rows to <root>/rows as label windows close.")
    ] = True,
    as_json: JsonOpt = False,
) -> None:
    """The streaming loop: ingest new files from --watch folders and the streams' sources (Kafka
    topics, folders or s3:// prefixes named in the pipeline), apply new lake events to the tables,
    repeat until SIGINT/SIGTERM (which finish the current pass and checkpoint)."""

    def body() -> None:
        from clickwise.engine import run_loop
        from clickwise.time import parse_duration_ms

        p, r = _open(pipeline, root)
        for report in run_loop(p, r, watch=watch or [], interval_ms=parse_duration_ms(interval), once=once,
                               rebuild=rebuild, rows=rows):  # fmt: skip
            if as_json:
                _print_json(report)
                continue
            consumed = report["consumed"]
            if consumed:
                shown = ", ".join(f"{n:,} {s}" for s, n in consumed.items())
                out.print(f"consumed from Kafka: {shown}", highlight=False, soft_wrap=True)
            if report["tables"]["files"] or report["ingested"]:
                out.print(_describe_update(report["tables"]), highlight=False, soft_wrap=True)
            emitted = report["rows"]
            if emitted and (emitted["rows"] or emitted["corrections"]):
                out.print(
                    f"rows: emitted {emitted['rows']:,} training rows ({emitted['positives']:,} positive) "
                    f"and {emitted['corrections']:,} corrections to {r.url}/rows",
                    highlight=False,
                    soft_wrap=True,
                )

    _run(body)


@app.command()
def status(pipeline: PipelineOpt, root: RootOpt = None, tz: TzOpt = "UTC", as_json: JsonOpt = False) -> None:
    """What the root holds: events, lake files, manifest entries and dead letters per stream; the
    tables' watermark, late and pending counts; each source's positions, rate and lag."""

    def body() -> None:
        from clickwise.engine import describe_status

        _shown_time(0, tz)  # (an unknown zone fails before any work)
        p, r = _open(pipeline, root)
        report = describe_status(p, r, shown_time=lambda ms: _shown_time(ms, tz))
        if as_json:
            _print_json(report)
            return
        grid = Table("stream", "events in lake", "lake files", "manifest entries", "dead letters")
        for name, counts in report["streams"].items():
            shown = (counts[key] for key in ("events", "files", "manifest_entries", "dead_letters"))
            grid.add_row(name, *(f"{value:,}" for value in shown))
        out.print(grid)
        for line in report["summary"]:
            out.print(line, highlight=False, soft_wrap=True)

    _run(body)


@app.command()
def serve(
    pipeline: PipelineOpt,
    root: RootOpt = None,
    models: Annotated[str | None, typer.Option(help="Models folder (from `clickwise train`).")] = None,
    model: Annotated[
        str | None,
        typer.Option(help="A model folder, a version, or 'latest'. Default: the active or latest."),
    ] = None,
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.", min=1, max=65535)] = 8000,
    api_keys: Annotated[
        str | None,
        typer.Option(
            "--api-keys", help="Keys file (`clickwise keys add`); default $CLICKWISE_API_KEYS_FILE."
        ),
    ] = None,
    open_reads: Annotated[
        bool, typer.Option(help="Let reads (lookups, decisions) in without a key.")
    ] = False,
    no_auth: Annotated[
        bool, typer.Option("--no-auth", help="No keys at all (local experiments only; never expose it).")
    ] = False,
    sources: Annotated[
        bool, typer.Option(help="Consume the streams' Kafka and Kinesis sources named in the pipeline file.")
    ] = True,
) -> None:
    """The HTTP service: POST events, GET features now or as of a moment, POST decisions; it also
    consumes the pipeline's Kafka and Kinesis sources (the tables see an event within a fraction
    of a second)."""

    def body() -> None:
        import gc
        import os

        import uvicorn

        from clickwise.serve import KeyStore, Service, Settings, build_asgi
        from clickwise.serve.auth import ENV_FILE

        p, r = _open(pipeline, root)
        keys_file = api_keys or os.environ.get(ENV_FILE)
        if keys_file is None and not no_auth:
            raise ClickwiseError(
                "the service needs API keys: pass --api-keys FILE (create one with "
                "`clickwise keys add --scopes read,write --file FILE`) or set $CLICKWISE_API_KEYS_FILE; "
                "--no-auth turns authentication off for local experiments"
            )
        keys = KeyStore.load(keys_file) if keys_file else None
        service = Service(p, r, models=models, model=model)
        if sources:
            service.start_sources()
        service.start_maintenance()
        version = service.predictor.version if service.predictor else "none"
        err.print(
            f"clickwise serve: pipeline {p.name}, root {r.url}, model {version}, state loaded in "
            f"{service.startup_s:.2f} s; listening on http://{host}:{port} (docs at /docs)",
            highlight=False,
        )
        asgi = build_asgi(service, Settings(keys=keys, open_reads=open_reads))
        # The loaded state is millions of long-lived objects: keep the collector from walking them
        # again and again (each full collection would stall every request in flight).
        gc.collect()
        gc.freeze()
        sys.setswitchinterval(0.0002)  # a request waits less for the GIL while an ingest updates the tables
        config = uvicorn.Config(asgi, host=host, port=port, log_level="warning", timeout_graceful_shutdown=30)
        _graceful_server()(config).run()

    _run(body)


def _graceful_server() -> type:
    import contextlib
    import signal
    import threading

    import uvicorn

    class GracefulServer(uvicorn.Server):
        """SIGTERM/SIGINT: finish the requests in flight, run the app's shutdown (which makes the
        table state and the decision log durable), then exit with 0
        (uvicorn itself re-raises the signal after its graceful stop, so the exit looks like a crash)."""

        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            if threading.current_thread() is not threading.main_thread():
                yield
                return
            previous = {sig: signal.signal(sig, self.handle_exit) for sig in (signal.SIGINT, signal.SIGTERM)}
            try:
                yield
            finally:
                for sig, handler in previous.items():
                    signal.signal(sig, handler)

    return GracefulServer


@app.command()
def deadletters(
    pipeline: PipelineOpt,
    root: RootOpt = None,
    stream: Annotated[str | None, typer.Option(help="One stream; default: every stream.")] = None,
    limit: Annotated[int, typer.Option(help="Show the latest N records of each stream.", min=0)] = 20,
    as_json: JsonOpt = False,
) -> None:
    """The records that were rejected (not stored), with why, where they came from and their text."""

    def body() -> None:
        from clickwise.events import DeadLetters
        from clickwise.time import format_ms

        p, r = _open_lake(pipeline, root, holds=("lake", "deadletters"))
        if stream is not None and stream not in p.streams:
            raise ClickwiseError(f"unknown stream {stream!r}; the pipeline has {sorted(p.streams)}")
        letters = DeadLetters(r)
        shown: dict[str, Any] = {}
        for name in [stream] if stream else list(p.streams):
            table = letters.read(name)
            latest = table.slice(max(0, table.num_rows - limit)).to_pylist() if limit else []
            records = [
                {
                    "reason": row["reason"],
                    "field": row["field"],
                    "source": row["source"],
                    "row": row["row"],
                    "arrival_ms": row["_arrival_ms"],
                    "raw": row["raw"],
                }
                for row in latest
            ]
            shown[name] = {"total": table.num_rows, "records": records}
        if as_json:
            _print_json({"root": r.url, "streams": shown})
            return
        for name, found in shown.items():
            out.print(
                f"[bold]{name}[/bold]: {found['total']:,} rejected"
                + (f", the latest {len(found['records']):,}:" if found["records"] else ""),
                highlight=False,
            )
            for record in found["records"]:
                raw = record["raw"] if len(record["raw"] or "") <= 160 else record["raw"][:157] + "..."
                out.print(
                    f"  {format_ms(record['arrival_ms'])} {record['source']}#{record['row']}: "
                    f"{record['reason']}\n    {raw}",
                    highlight=False,
                    markup=False,
                    soft_wrap=True,
                )

    _run(body)


keys_app = typer.Typer(help="API keys of the HTTP service.", no_args_is_help=True)
app.add_typer(keys_app, name="keys")


@keys_app.command("add")
def keys_add(
    scopes: Annotated[str, typer.Option(help="Comma-separated: read, write, admin.")] = "read",
    file: Annotated[Path, typer.Option(help="The keys file (created if missing).")] = Path(
        "clickwise-keys.json"
    ),
    name: Annotated[str | None, typer.Option(help="A name for the key (shown in logs).")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Create an API key; print it once (only its hash is stored)."""

    def body() -> None:
        from clickwise.serve import add_key

        key, record = add_key(file, [s.strip() for s in scopes.split(",") if s.strip()], name=name)
        if as_json:
            _print_json({"key": key, "id": record.id, "scopes": sorted(record.scopes), "file": str(file)})
            return
        out.print(f"{key}", highlight=False)
        err.print(f"key {record.id} ({', '.join(sorted(record.scopes))}) added to {file}; shown only now")

    _run(body)


KeysFileOpt = Annotated[Path, typer.Option(help="The keys file.")]


@keys_app.command("list")
def keys_list(file: KeysFileOpt = Path("clickwise-keys.json"), as_json: JsonOpt = False) -> None:
    """The keys of a keys file: name, scopes and when each was created (never a key or its hash)."""

    def body() -> None:
        from clickwise.serve.auth import list_keys
        from clickwise.time import format_ms

        keys = list_keys(file)
        if as_json:
            _print_json({"file": str(file), "keys": keys})
            return
        grid = Table("name", "scopes", "created", title=str(file))
        for entry in keys:
            created = entry["created_ms"]
            grid.add_row(
                str(entry["name"]),
                ", ".join(entry["scopes"]),  # type: ignore[arg-type]  # a list of texts
                format_ms(created) if isinstance(created, int) else "-",
            )
        out.print(grid)

    _run(body)


@keys_app.command("revoke")
def keys_revoke(
    name: Annotated[str, typer.Argument(help="The key's name (see `clickwise keys list`).")],
    file: KeysFileOpt = Path("clickwise-keys.json"),
) -> None:
    """Remove a key from a keys file; a service using the file refuses it within a second."""

    def body() -> None:
        from clickwise.serve.auth import revoke_key

        revoke_key(file, name)
        err.print(f"key {name} revoked in {file}", highlight=False)

    _run(body)


@app.command()
def replay(
    inputs: Annotated[list[str], typer.Argument(help="Files, folders or globs of recorded events.")],
    pipeline: PipelineOpt,
    url: Annotated[str, typer.Option(help="The service, e.g. http://127.0.0.1:8000.")],
    rate: Annotated[float, typer.Option(help="Events per second to send.", min=0.001)],
    batch: Annotated[int, typer.Option(help="Events per request (at most 10,000).", min=1)] = 500,
    api_key: Annotated[
        str | None,
        typer.Option("--api-key", envvar="CLICKWISE_API_KEY", help="A key with the write scope."),
    ] = None,
    stream: Annotated[
        str | None, typer.Option(help="The stream; default: from each file or folder name.")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Send recorded events to a running service at a steady rate (in arrival order when the records
    carry it), and report what was accepted, the achieved rate and the request latency."""

    def body() -> None:
        from clickwise.serve.replay import replay as run_replay
        from clickwise.spec import load_pipeline

        p = load_pipeline(pipeline)
        with _progress("replaying", enabled=not as_json) as update:
            report = run_replay(p, url, inputs, rate=rate, batch=batch, api_key=api_key, stream=stream,
                                progress=update)  # fmt: skip
        if as_json:
            _print_json(report.to_json())
        else:
            latency = report.latency_ms()
            shown = (
                "-" if latency["p50"] is None else f"p50 {latency['p50']:.1f} ms, p99 {latency['p99']:.1f} ms"
            )
            out.print(
                f"sent {report.sent:,} of {report.total:,} events ({report.order} order) in "
                f"{report.requests:,} requests over {report.seconds:.1f} s: {report.rate:,.0f} events/s "
                f"(asked {report.target_rate:,.0f}); accepted {report.accepted:,}, rejected "
                f"{report.rejected:,}, duplicates {report.duplicates:,}, unreadable {report.unreadable:,}; "
                f"request latency {shown}",
                highlight=False,
                soft_wrap=True,
            )
            for error in report.errors[:5]:
                out.print(f"  {error['stream']} #{error['index']}: {error['reason']}", highlight=False)
        if report.stopped:
            raise ClickwiseError(f"replay stopped after {report.sent:,} events: {report.stopped}")

    _run(body)


@app.command()
def demo(
    workdir: Annotated[Path, typer.Option("--dir", help="Where the demo writes its data and state.")] = Path(
        "clickwise-demo"
    ),
    users: Annotated[int, typer.Option(help="Users to simulate.", min=10)] = 5_000,
    hours: Annotated[
        float, typer.Option(help="Hours of traffic (labels mature 2h15m after an impression).", min=4)
    ] = 24.0,
    end: Annotated[
        str | None,
        typer.Option(
            help="End of the impressions (ISO-8601 with zone, or epoch ms). Default: the last "
            "hour whose clicks and arrivals (up to 14 h later) all lie before now."
        ),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Run the end-to-end demo on embedded defaults (no infrastructure needed)."""

    def body() -> None:
        from clickwise.demo import run_demo
        from clickwise.time import parse_instant_ms

        end_ms = None if end is None else parse_instant_ms(end)
        with _progress("demo", enabled=not as_json) as update:
            result = run_demo(workdir, users=users, hours=hours, end_ms=end_ms, progress=update)
        if as_json:
            _print_json(result)
            return
        for line in result["summary"]:
            out.print(line, highlight=False, soft_wrap=True)

    _run(body)


def main() -> None:
    """Entry point of the ``clickwise`` console script."""
    app()


if __name__ == "__main__":
    main()
