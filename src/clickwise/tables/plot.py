"""Draw a feature series (``clickwise history --plot``) as a PNG."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa

from clickwise.time import ms_to_datetime


def plot_history(series: pa.Table, path: Path, *, title: str) -> Path:
    """One panel per numeric aggregation of a :meth:`Tables.history` table, time on the x axis."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    moments = [ms_to_datetime(ms) for ms in series.column("as_of_ms").to_pylist()]
    names = [
        name
        for name in series.column_names
        if name != "as_of_ms"
        and (
            pa.types.is_integer(series.schema.field(name).type)
            or pa.types.is_floating(series.schema.field(name).type)
        )
    ]
    rows = max(1, len(names))
    figure, axes = plt.subplots(rows, 1, figsize=(10, 1.8 * rows + 0.6), sharex=True, squeeze=False)
    for axis, name in zip(axes[:, 0], names, strict=False):
        values = [float("nan") if v is None else v for v in series.column(name).to_pylist()]
        axis.step(moments, values, where="post", linewidth=1.2)
        axis.set_ylabel(name, rotation=0, ha="right", fontsize=8)
        axis.grid(alpha=0.3)
    axes[0, 0].set_title(title)
    figure.autofmt_xdate()
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path
