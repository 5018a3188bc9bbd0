"""``train``: a training set in, a new model version out (booster, ``model.json``, ``report.html``).

Steps: read the mature rows (refusing a set built from other definitions), split by time (see
:mod:`clickwise.model.split`), learn the category vocabularies on the training rows, fit the model on
every model feature and a **baseline** on the event features only (what is known without any lookup
table, so the difference is what the tables are worth), measure both on the validation rows, and
publish the version atomically in the models folder.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa

from clickwise.model._io import dump_json
from clickwise.model.backends import Booster, Learner, Matrix, Schedule, learner
from clickwise.model.dataset import EVENT_ID, TrainingSet, read_training_set
from clickwise.model.encoding import MAX_CATEGORIES, Encoding
from clickwise.model.errors import TrainingDataError
from clickwise.model.metrics import summarize
from clickwise.model.predictor import CARD_FORMAT
from clickwise.model.registry import CARD, join, publish
from clickwise.model.report import render
from clickwise.model.split import TimeSplit, time_split
from clickwise.model.truth import compare_with_truth, score_auc
from clickwise.spec import Pipeline
from clickwise.time import Clock, SystemClock, format_ms

SEGMENT_SCORE = "segment_score_last"
"""A feature holding the third stream's raw score; its AUC alone is reported when the pipeline has it."""

REPORT = "report.html"
MIN_POSITIVES = 50
"""Fewer positive rows than this in a part of the split draws a warning. An AUC measured on ``n``
positives has a standard error of about ``0.5 / sqrt(n)`` or more at the AUCs of click models (Hanley
and McNeil), so with 50 positives it is uncertain by +-0.07 and two models that differ by less than
0.1 cannot be told apart; early stopping on so few positives picks its number of trees by noise."""
PHASES = ("reading the training set", "training the model", "training the baseline", "writing the report")


@dataclass(frozen=True)
class TrainResult:
    """A published model version. ``card`` is its ``model.json``; the predictions are those of the
    saved model on the validation rows, in time order (kept in memory, not in the JSON)."""

    version: str
    model_dir: str
    card: dict[str, Any]
    validation_predictions: np.ndarray = field(repr=False)
    baseline_predictions: np.ndarray = field(repr=False)

    @property
    def metrics(self) -> dict[str, Any]:
        return dict(self.card["metrics"])

    def to_json(self) -> dict[str, Any]:
        """What ``clickwise train --json`` prints."""
        split = self.card["split"]
        parts = ("fit", "early_stop", "validation")
        return {
            "version": self.version,
            "model_dir": self.model_dir,
            "kind": self.card["kind"],
            "pipeline": self.card["pipeline"],
            "trees": self.card["trees"],
            "max_rounds": self.card["max_rounds"],
            "rows": {part: (split[part] or {}).get("rows", 0) for part in parts},
            "positives": {part: (split[part] or {}).get("positives", 0) for part in parts},
            "metrics": self.metrics,
            "warnings": self.card["warnings"],
        }


@dataclass(frozen=True)
class _Fitted:
    booster: Booster | None
    params: dict[str, Any]
    validation: np.ndarray


def train(
    pipeline: Pipeline,
    data: str,
    out: str,
    *,
    truth: str | None = None,
    progress: Callable[..., None] | None = None,
    clock: Clock | None = None,
) -> TrainResult:
    """Train ``pipeline.model`` on the training set at ``data``; publish a new version under ``out``.

    ``truth`` is the synthetic generator's truth folder, for Bayes-optimal comparisons.
    ``progress(done, total, phase)`` is called as work advances.
    """
    step = _steps(progress)
    backend = learner(pipeline.model.kind)
    schedule, params = Schedule.from_params(pipeline.model.params)
    max_categories = int(pipeline.model.params.get("max_categories", MAX_CATEGORIES))
    step(0)
    extra = [SEGMENT_SCORE] if SEGMENT_SCORE in pipeline.features else []
    data_set = read_training_set(pipeline, data, extra=extra)
    if data_set.rows == 0:
        raise TrainingDataError(f"training set {data!r} has no rows with a mature label yet")
    event_ms, labels = data_set.event_ms(), data_set.labels()
    split = time_split(
        event_ms,
        pipeline.model.validation_fraction,
        horizon_ms=data_set.horizon_ms,
        early_stopping=schedule.stopping_rounds > 0,
    )
    _check_classes(split, event_ms, labels)
    encoding = Encoding.fit(
        _rows(data_set.table, split.train), data_set.features, max_categories=max_categories
    )

    step(1)
    model = _fit(backend, encoding, data_set, split, schedule, params, lambda d, t: step(1, d, t))
    if model.booster is None:
        raise TrainingDataError(f"pipeline {pipeline.name!r} gives the model no features to learn from")
    step(2)
    base_encoding = _subset(encoding, [spec.name for spec in data_set.features if spec.kind == "event"])
    baseline = _fit(backend, base_encoding, data_set, split, schedule, params, None)

    step(3)
    y_valid = labels[split.validation.start : split.validation.stop]
    metrics = _metrics(data_set, split, y_valid, model, baseline, base_encoding, truth)
    gain = model.booster.gain()
    card: dict[str, Any] = {
        "format": CARD_FORMAT,
        "version": None,
        "kind": backend.kind,
        "created_ms": (clock or SystemClock()).now_ms(),
        "model_file": backend.file_name,
        "pipeline": {"name": pipeline.name, "fingerprint": pipeline.fingerprint()},
        "label": {"name": data_set.label, "horizon_ms": data_set.horizon_ms},
        "features": [spec.to_json() for spec in data_set.features],
        "encoding": encoding.to_json(),
        "data": _data_record(data_set, event_ms),
        "split": {
            "validation_fraction": pipeline.model.validation_fraction,
            **split.describe(event_ms, labels),
        },
        "params": model.params,
        "trees": model.booster.trees,
        "max_rounds": schedule.rounds,
        "metrics": metrics,
        "importance": {"gain": gain},
        "warnings": few_positives(split.describe(event_ms, labels)),
    }
    curves = {"model": (y_valid, model.validation), "baseline": (y_valid, baseline.validation)}
    booster_bytes = model.booster.to_bytes()

    def files_for(version: str) -> dict[str, bytes]:
        versioned = {**card, "version": version}
        html = render(versioned, curves, gain)
        return {backend.file_name: booster_bytes, REPORT: html.encode(), CARD: dump_json(versioned)}

    version = publish(out, files_for)
    step(4)
    return TrainResult(
        version, join(out, version), {**card, "version": version}, model.validation, baseline.validation
    )


def few_positives(split: Mapping[str, Any], *, minimum: int = MIN_POSITIVES) -> list[str]:
    """Warnings for the parts of a split (as :meth:`TimeSplit.describe` records it) that hold fewer
    than ``minimum`` positive rows.

    >>> few_positives({"fit": {"rows": 900, "positives": 300}, "early_stop": None,
    ...                "validation": {"rows": 300, "positives": 12}})  # doctest: +NORMALIZE_WHITESPACE
    ['the validation rows hold 12 positives (fewer than 50): their AUC is uncertain by about +-0.14,
      too much to compare models; train on a longer period']
    """
    warnings = []
    names = {"fit": "training", "early_stop": "early-stopping", "validation": "validation"}
    for part, name in names.items():
        values = split.get(part)
        if values is not None and values["positives"] < minimum:
            noise = 0.5 / max(values["positives"], 1) ** 0.5
            purpose = {
                "fit": "the model has little to learn from",
                "early_stop": "they pick the number of trees by noise",
                "validation": f"their AUC is uncertain by about +-{noise:.2f}, too much to compare models",
            }[part]
            warnings.append(
                f"the {name} rows hold {values['positives']} positives (fewer than {minimum}): "
                f"{purpose}; train on a longer period"
            )
    return warnings


def _steps(progress: Callable[..., None] | None) -> Callable[..., None]:
    """``step(phase_index, done=0, total=0)``; boosting rounds report progress inside a phase."""

    def step(index: int, done: int = 0, total: int = 0) -> None:
        if progress is not None:
            phase = PHASES[min(index, len(PHASES) - 1)]
            if total:
                progress(done, total, phase)
            else:
                progress(index, len(PHASES), phase)

    return step


def _rows(table: pa.Table, rows: range) -> pa.Table:
    return table.slice(rows.start, len(rows))


def _subset(encoding: Encoding, names: list[str]) -> Encoding:
    specs = tuple(spec for spec in encoding.features if spec.name in names)
    vocabularies = {name: vocab for name, vocab in encoding.vocabularies.items() if name in names}
    return Encoding(specs, vocabularies, encoding.unknown_code)


def _matrix(encoding: Encoding, table: pa.Table, rows: range) -> Matrix:
    return Matrix(encoding.matrix(_rows(table, rows)), encoding.names, encoding.categorical_indices)


def _fit(
    backend: Learner,
    encoding: Encoding,
    data_set: TrainingSet,
    split: TimeSplit,
    schedule: Schedule,
    params: Mapping[str, Any],
    progress: Callable[[int, int], None] | None,
) -> _Fitted:
    """Fit on ``split.fit`` (stopping on ``split.early_stop``); predict the validation rows with the
    booster as saved. Without features, the model is the training click rate."""
    labels, table = data_set.labels(), data_set.table
    if not encoding.features:
        rate = float(labels[split.train.start : split.train.stop].mean())
        return _Fitted(None, {"constant": rate}, np.full(len(split.validation), rate))
    fit = (_matrix(encoding, table, split.fit), labels[split.fit.start : split.fit.stop])
    stop = None
    if split.early_stop is not None:
        stop = (
            _matrix(encoding, table, split.early_stop),
            labels[split.early_stop.start : split.early_stop.stop],
        )
    booster, effective = backend.fit(fit, stop, schedule, params, progress)
    return _Fitted(booster, effective, booster.predict(_matrix(encoding, table, split.validation).values))


def _check_classes(split: TimeSplit, event_ms: np.ndarray, labels: np.ndarray) -> None:
    for name, rows in (("training", split.train), ("validation", split.validation)):
        clicks = int(labels[rows.start : rows.stop].sum())
        if clicks == 0 or clicks == len(rows):
            raise TrainingDataError(
                f"the {name} rows ({len(rows)}, {format_ms(int(event_ms[rows.start]))} to "
                f"{format_ms(int(event_ms[rows.stop - 1]))}) have {clicks} positive labels; a model needs "
                "both clicked and unclicked rows in each part: use a longer period of data"
            )


def _metrics(
    data_set: TrainingSet,
    split: TimeSplit,
    y_valid: np.ndarray,
    model: _Fitted,
    baseline: _Fitted,
    base_encoding: Encoding,
    truth: str | None,
) -> dict[str, Any]:
    valid = _rows(data_set.table, split.validation)
    metrics: dict[str, Any] = {
        "model": summarize(y_valid, model.validation),
        "baseline": {
            **summarize(y_valid, baseline.validation),
            "features": base_encoding.names,
            "kind": "constant" if baseline.booster is None else "same learner and params",
        },
        "truth": None,
        "segment_score_last": None,
    }
    if truth is not None:
        metrics["truth"] = compare_with_truth(
            truth, valid.column(EVENT_ID), y_valid, model.validation, baseline.validation
        )
    if SEGMENT_SCORE in valid.column_names:
        metrics["segment_score_last"] = score_auc(valid.column(SEGMENT_SCORE), y_valid)
    return metrics


def _data_record(data_set: TrainingSet, event_ms: np.ndarray) -> dict[str, Any]:
    manifest = data_set.manifest or {}
    return {
        "url": data_set.url,
        "format": manifest.get("format", "parquet"),
        # a SageMaker set's texts travel as codes: the model keeps the list it was trained with
        "set_encodings": manifest.get("encodings"),
        "from_ms": int(event_ms[0]),
        "to_ms": int(event_ms[-1]),
        "rows_read": data_set.rows_read,
        "mature_rows": data_set.rows,
        "manifest": data_set.manifest is not None,
        "manifest_from_ms": manifest.get("from_ms"),
        "manifest_to_ms": manifest.get("to_ms"),
    }
