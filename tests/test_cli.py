"""The command line: each command runs, prints JSON with --json, and fails with one clear line."""

from __future__ import annotations

from pathlib import Path

import orjson
from typer.testing import CliRunner

from clickwise.cli import app

REPO = Path(__file__).resolve().parents[1]
ADCLICK = str(REPO / "examples" / "adclick" / "pipeline.yaml")
runner = CliRunner()


def test_validate_and_schema() -> None:
    result = runner.invoke(app, ["validate", "-p", ADCLICK, "--json"])
    assert result.exit_code == 0, result.output
    assert orjson.loads(result.stdout)["fingerprint"].startswith("sha256:")
    schema = runner.invoke(app, ["schema"])
    assert schema.exit_code == 0 and "streams" in orjson.loads(schema.stdout)["properties"]


def test_a_bad_pipeline_exits_non_zero_with_the_path(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(Path(ADCLICK).read_text().replace("horizon: 15m", "horizon: soon"))
    result = runner.invoke(app, ["validate", "-p", str(bad)])
    assert result.exit_code == 2
    assert "label.horizon: 'soon' is not a duration" in result.stderr
    assert "Traceback" not in result.output


def test_generate_then_ingest_twice(tmp_path: Path) -> None:
    out = tmp_path / "gen"
    generated = runner.invoke(
        app, ["generate", "--out", str(out), "--users", "50", "--hours", "1", "--seed", "3", "--json",
              "--start", "2026-01-05T00:00:00Z"]
    )  # fmt: skip
    assert generated.exit_code == 0, generated.output
    counts = orjson.loads(generated.stdout)["counts"]
    assert counts["impressions"] > 0
    args = ["ingest", "-p", ADCLICK, "--root", str(tmp_path / "root"), "--json", str(out / "impressions")]
    first = runner.invoke(app, args)
    assert first.exit_code == 0, first.output
    assert orjson.loads(first.stdout)["impressions"]["accepted"] == counts["impressions"]
    second = orjson.loads(runner.invoke(app, args).stdout)["impressions"]
    assert (second["accepted"], second["skipped_inputs"]) == (0, 1)


def test_ingest_errors_are_one_line(tmp_path: Path) -> None:
    result = runner.invoke(
        app, ["ingest", "-p", ADCLICK, "--root", str(tmp_path), str(tmp_path / "nope.jsonl")]
    )
    assert result.exit_code == 2 and "no such file or folder" in result.stderr


def test_demo_runs_small(tmp_path: Path) -> None:
    result = runner.invoke(
        app, ["demo", "--dir", str(tmp_path / "demo"), "--users", "400", "--hours", "4", "--json"]
    )
    assert result.exit_code == 0, result.output
    report = orjson.loads(result.stdout)
    assert report["second_ingest_new_events"] == 0
    assert report["ingest"]["impressions"]["accepted"] == report["generated"]["impressions"]
    assert report["training_set"]["rows"] == report["generated"]["impressions"]
    assert 0 < report["training_set"]["positives"] < report["training_set"]["rows"]
    assert report["model"]["metrics"]["model"]["auc"] is not None
    assert report["model"]["metrics"]["truth"]["bayes"]["auc"] is not None
    assert (tmp_path / "demo" / "models" / report["model"]["version"] / "report.html").exists()
    money = report["money"]
    assert money["money_saved"] == money["policy_net"] - money["serve_all_net"]


def _json(args: list[str]) -> dict:  # type: ignore[type-arg]
    result = runner.invoke(app, [*args, "--json"])
    assert result.exit_code == 0, result.output
    return orjson.loads(result.stdout)  # type: ignore[no-any-return]


def test_dataset_train_evaluate_verify(tmp_path: Path) -> None:
    data, root = tmp_path / "in", str(tmp_path / "root")
    _json(["generate", "--out", str(data), "--users", "400", "--hours", "4", "--seed", "3"])
    inputs = [str(data / s) for s in ("impressions", "clicks", "predictions")]
    _json(["ingest", *inputs, "-p", ADCLICK, "--root", root])
    training = tmp_path / "training"
    filled = _json(["dataset", "-p", ADCLICK, "--root", root, "--out", str(training)])
    assert filled["rows"] > 0 and (training / "_dataset.json").exists()
    again = runner.invoke(app, ["dataset", "-p", ADCLICK, "--root", root, "--out", str(training)])
    assert again.exit_code == 2 and "--overwrite" in again.stderr
    csv = _json(["dataset", "-p", ADCLICK, "--root", root, "--out", str(tmp_path / "csv"), "--sagemaker"])
    assert csv["rows"] + csv["immature_left_out"] == filled["rows"] and csv["rows"] == filled["mature"]
    models = str(tmp_path / "models")
    trained = _json(["train", "-p", ADCLICK, "--data", str(training), "--out", models,
                     "--truth", str(data / "truth")])  # fmt: skip
    assert trained["version"] == "v0001" and trained["metrics"]["model"]["auc"] is not None
    money = _json(["evaluate", "-p", ADCLICK, "--data", str(training), "--model", models])
    assert money["rows"] == trained["rows"]["validation"]
    checked = _json(["verify", "-p", ADCLICK, "--root", root, "--batch", "30m", "--cuts", "1"])
    assert checked["ok"] and checked["differing_rows"] == 0 and checked["leaks"] == 0
