"""The ``clickwise`` command: parse, load, call one library function, print.

Every command that reads a pipeline takes ``-p/--pipeline`` and ``--root`` (default: the pipeline's
``storage.root``); commands that print results take ``--json``. A failure exits non-zero with one
line that says what to fix.
"""

from __future__ import annotations

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
    """A progress bar on stderr; yields ``update(done, total, phase=None)``."""
    counter = DownloadColumn() if unit_bytes else MofNCompleteColumn()
    columns = [
        TextColumn("{task.description}"),
        BarColumn(),
        TaskProgressColumn(),
        counter,
        TimeRemainingColumn(),
    ]
    with Progress(*columns, console=err, transient=True, disable=not enabled) as bar:
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


@app.command()
def validate(pipeline: PipelineOpt, as_json: JsonOpt = False) -> None:
    """Check a pipeline file; print its streams, tables, features and fingerprint."""

    def body() -> None:
        from clickwise.spec import load_pipeline

        p = load_pipeline(pipeline)
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


@app.command()
def schema() -> None:
    """Print the JSON Schema of pipeline files (for editors)."""
    from clickwise.spec import pipeline_json_schema

    _print_json(pipeline_json_schema())


@app.command()
def generate(
    out_dir: Annotated[
        Path, typer.Option("--out", help="Folder to write impressions/, clicks/, predictions/, truth/.")
    ],
    users: Annotated[int, typer.Option(help="Number of users.", min=1)] = 10_000,
    hours: Annotated[float, typer.Option(help="Hours of traffic.", min=0.01)] = 24.0,
    seed: Annotated[int, typer.Option(help="Random seed; the same seed gives the same files.")] = 7,
    start: Annotated[
        str, typer.Option(help="First event time: ISO-8601 with zone, or epoch ms.")
    ] = "2026-01-05T00:00:00Z",
    fmt: Annotated[str, typer.Option("--format", help="parquet, jsonl or csv.")] = "parquet",
    as_json: JsonOpt = False,
) -> None:
    """Write synthetic ad streams with ground truth (true click probabilities)."""

    def body() -> None:
        from clickwise.synth import generate as run_generate
        from clickwise.time import format_ms, parse_instant_ms

        if fmt not in ("parquet", "jsonl", "csv"):
            raise ClickwiseError(f"--format {fmt!r} is not one of parquet, jsonl, csv")
        start_ms = parse_instant_ms(start)
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


@app.command()
def ingest(
    inputs: Annotated[list[str], typer.Argument(help="Files, folders, globs or s3:// prefixes.")],
    pipeline: PipelineOpt,
    root: RootOpt = None,
    stream: Annotated[
        str | None, typer.Option(help="The stream; default: from each file or folder name.")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Validate, de-duplicate, enrich and store events in the lake; bad records go to dead letters."""

    def body() -> None:
        from clickwise.events import ingest as run_ingest

        p, r = _open(pipeline, root)
        with _progress("ingesting", unit_bytes=True, enabled=not as_json) as update:
            report = run_ingest(p, r, inputs, stream=stream, progress=update)
        if as_json:
            _print_json(report.as_dict())
            return
        table = Table(
            "stream", "accepted", "rejected", "duplicates", "filtered", "inputs", "already ingested"
        )
        for name, c in report.streams.items():
            numbers = (c.accepted, c.rejected, c.duplicates, c.filtered, c.inputs, c.skipped_inputs)
            table.add_row(name, *(f"{n:,}" for n in numbers))
        out.print(table)
        out.print(f"lake: {r.url}/lake")

    _run(body)


@app.command()
def demo(
    workdir: Annotated[Path, typer.Option("--dir", help="Where the demo writes its data and state.")] = Path(
        "clickwise-demo"
    ),
    users: Annotated[int, typer.Option(help="Users to simulate.", min=10)] = 20_000,
    hours: Annotated[float, typer.Option(help="Hours of traffic.", min=1)] = 24.0,
    as_json: JsonOpt = False,
) -> None:
    """Run the end-to-end demo on embedded defaults (no infrastructure needed)."""

    def body() -> None:
        from clickwise.demo import run_demo

        with _progress("demo", enabled=not as_json) as update:
            result = run_demo(workdir, users=users, hours=hours, progress=update)
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
