"""The model report (readable calibration and importance charts, warnings, the money link), what
``clickwise train`` prints, ``--root`` on ``train`` and ``evaluate``, and training from a SageMaker set."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest
from model_training_sets import HOUR_MS, TINY_PIPELINE, tiny_columns, tiny_pipeline, write_training_set
from typer.testing import CliRunner

from clickwise.cli import app
from clickwise.dataset.writer import DatasetWriter, text_code
from clickwise.features import FeatureSet
from clickwise.model import Predictor, train
from clickwise.model.plots import calibration_figure, importance_figure
from clickwise.model.train import MIN_POSITIVES, few_positives
from clickwise.storage import open_root

runner = CliRunner()


def test_calibration_is_drawn_on_log_axes_with_every_bin_visible() -> None:
    rng = np.random.default_rng(3)
    p = np.exp(rng.uniform(np.log(0.001), np.log(0.4), 20_000))
    y = (rng.random(p.size) < p).astype(np.int8)
    figure = calibration_figure(y, p, bins=20)
    ax = figure.axes[0]
    assert (ax.get_xscale(), ax.get_yscale()) == ("log", "log")
    lines = {line.get_label(): line for line in ax.get_lines()}
    assert np.all(np.asarray(lines["bin without a click"].get_ydata()) == ax.get_ylim()[0] * 1.05)
    bins = [lines["model"], lines["bin without a click"]]
    x = np.concatenate([np.asarray(line.get_xdata(), dtype=float) for line in bins])
    # the 20 bins spread over the axis: on a linear axis 15 of them sat in its first 5%
    low, high = ax.get_xlim()
    position = (np.log(x) - np.log(low)) / (np.log(high) - np.log(low))
    assert len(x) == 20 and position.min() < 0.2 and position.max() > 0.8
    assert np.count_nonzero(position < 0.05) <= 1


def test_importance_shows_the_top_features_by_gain_share_sorted_and_labelled() -> None:
    gain = {f"f{i:02d}": 10.0 ** (6 - i / 4) for i in range(30)} | {"dominant": 1e9, "unused": 0.0}
    figure = importance_figure(gain, top=12)
    ax = figure.axes[0]
    names = [label.get_text() for label in ax.get_yticklabels()][::-1]  # top of the chart first
    assert names == ["dominant", *(f"f{i:02d}" for i in range(11))]
    assert ax.get_xscale() == "log"
    widths = [patch.get_width() for patch in ax.patches][::-1]
    assert widths == sorted(widths, reverse=True)
    assert widths[0] == pytest.approx(100 * 1e9 / sum(gain.values()))
    texts = [text.get_text() for text in ax.texts]
    assert len(texts) == 12 and all(text.endswith("%") for text in texts)
    assert "top 12 of 31 used, 1 unused" in ax.get_title()


def test_few_positives_draw_a_warning_per_part() -> None:
    split = {
        "fit": {"rows": 5000, "positives": 400},
        "early_stop": {"rows": 500, "positives": MIN_POSITIVES - 1},
        "validation": {"rows": 1500, "positives": MIN_POSITIVES},
    }
    (warning,) = few_positives(split)
    assert warning.startswith(f"the early-stopping rows hold {MIN_POSITIVES - 1} positives")
    split["validation"]["positives"] = 9
    assert "validation rows hold 9 positives" in few_positives(split)[1]
    assert "+-0.17" in few_positives(split)[1]


def _pipeline_file(tmp_path: Path) -> str:
    path = tmp_path / "tiny.yaml"
    path.write_text(TINY_PIPELINE)
    return str(path)


def _few_validation_clicks(rows: int = 6000) -> dict[str, Any]:
    columns = tiny_columns(rows, immature=0)
    clicked = columns["clicked"].copy()
    late = np.flatnonzero(columns["event_ms"] >= columns["event_ms"][int(rows * 0.7)])
    clicked[late[clicked[late] == 1][20:]] = 0  # 20 clicks left in the last 30% of the rows
    return {**columns, "clicked": clicked}


def test_train_and_evaluate_take_root_print_the_split_and_link_the_money(tmp_path: Path) -> None:
    pipeline = _pipeline_file(tmp_path)
    root = tmp_path / "root"
    write_training_set(root / "rows", tiny_pipeline(), _few_validation_clicks())
    models = str(tmp_path / "models")
    result = runner.invoke(app, ["train", "-p", pipeline, "--root", str(root), "--out", models])
    assert result.exit_code == 0, result.output
    assert "warning: the validation rows hold" in result.stderr and "fewer than 50" in result.stderr
    split = next(line for line in result.stdout.splitlines() if line.startswith("split:"))
    card = orjson.loads((Path(models) / "v0001" / "model.json").read_bytes())
    for part in ("fit", "early_stop", "validation"):
        assert (
            f"{card['split'][part]['rows']:,} rows ({card['split'][part]['positives']:,} positive)" in split
        )
    assert f"{card['trees']} trees kept of at most 80" in split
    assert card["data"]["url"] == f"{root}/rows"
    assert any("validation rows hold" in warning for warning in card["warnings"])

    html = (Path(models) / "v0001" / "report.html").read_text()
    assert "href='money.json'" in html and "data='savings.png'" in html and "Warnings" in html
    money = runner.invoke(app, ["evaluate", "-p", pipeline, "--root", str(root), "--model", models, "--json"])
    assert money.exit_code == 0, money.output
    assert orjson.loads(money.stdout)["rows"] == card["split"]["validation"]["rows"]
    assert sorted(p.name for p in (Path(models) / "v0001").iterdir()) == [
        "model.json", "model.txt", "money.json", "report.html", "savings.png"
    ]  # fmt: skip

    missing = runner.invoke(
        app, ["train", "-p", pipeline, "--root", str(tmp_path / "nowhere"), "--out", models]
    )
    assert missing.exit_code == 2 and "nowhere/rows" in missing.stderr and "does not exist" in missing.stderr
    assert not (tmp_path / "nowhere").exists()


def test_train_json_has_positives_trees_and_warnings(tmp_path: Path) -> None:
    data = write_training_set(tmp_path / "data", tiny_pipeline(), _few_validation_clicks())
    result = runner.invoke(
        app,
        [
            "train",
            "-p",
            _pipeline_file(tmp_path),
            "--data",
            str(data),
            "--out",
            str(tmp_path / "m"),
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    summary = orjson.loads(result.stdout)
    assert 0 < summary["positives"]["validation"] < 20 and summary["max_rounds"] == 80
    assert 1 <= summary["trees"] <= 80 and summary["warnings"]


def _sagemaker_set(out: Path, columns: dict[str, Any]) -> Path:
    pipeline = tiny_pipeline()
    assert pipeline.label is not None
    written = write_training_set(out.with_name(out.name + "-parquet"), pipeline, columns)
    writer = DatasetWriter(open_root(out), FeatureSet(pipeline).infos, "clicked", fmt="csv", sagemaker=True)
    import pyarrow.parquet as pq

    for path in sorted(written.rglob("part-00000.parquet")):
        table = writer.keep(pq.read_table(path))
        hour_ms = int(table.column("event_ms")[0].as_py()) // HOUR_MS * HOUR_MS
        writer.write(hour_ms, table)
    writer.finish({"pipeline": pipeline.name, "fingerprint": pipeline.fingerprint()})
    return out


def test_a_model_trained_on_a_sagemaker_set_equals_one_trained_on_parquet(tmp_path: Path) -> None:
    columns = tiny_columns(4000, immature=30)
    coded = _sagemaker_set(tmp_path / "sagemaker", columns)
    from_csv = train(tiny_pipeline(), str(coded), str(tmp_path / "a"))
    from_parquet = train(tiny_pipeline(), str(tmp_path / "sagemaker-parquet"), str(tmp_path / "b"))
    assert np.array_equal(from_csv.validation_predictions, from_parquet.validation_predictions)
    assert from_csv.card["data"]["mature_rows"] == from_parquet.card["data"]["mature_rows"] == 4000 - 30
    # the set's codes travel with the model, and the model scores texts as the parquet-trained one does
    codes = from_csv.card["data"]["set_encodings"]["browser"]["codes"]
    assert codes == {text: text_code(text) for text in ("Chrome", "Edge", "Firefox", "Safari")}
    row = {"user_affinity": 0.8, "browser": "Safari", "cost": 0.002, "user_impressions_1h": 3}
    assert Predictor.load(from_csv.model_dir).predict_one(row) == Predictor.load(
        from_parquet.model_dir
    ).predict_one(row)
