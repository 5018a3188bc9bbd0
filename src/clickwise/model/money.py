"""The money: replaying a model's validation period under the pipeline's decision policy.

Two policies over the same impressions:

- **serve-all**: buy every impression.
- **policy**: block an impression when any ``decision.block`` rule holds (a rule on a null feature
  does not hold); otherwise serve it when ``p_click * value_per_click > cost``, else skip it.

For each: impressions bought, spend (sum of cost), clicks kept, clicks lost, value (clicks kept x
value per click) and net (value - spend). ``money_saved`` = net(policy) - net(serve-all). Blocked
impressions are counted under the first rule that holds. A sweep of the threshold multiplier ``m``
(serve when ``p * value > m * cost``, blocks unchanged) shows where the savings peak.

>>> replay([0.5, 0.01], [1, 0], [0.25, 0.25], [-1, -1], value_per_click=1.0).money_saved
0.25
"""

from __future__ import annotations

import operator
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc

from clickwise.model._io import dump_json
from clickwise.model.dataset import EVENT_MS, read_training_set
from clickwise.model.errors import ModelError, TrainingDataError
from clickwise.model.plots import savings_png
from clickwise.model.predictor import Predictor
from clickwise.model.report import MONEY_JSON, MONEY_PNG
from clickwise.model.truth import bot_rows
from clickwise.spec import EventFeature, Pipeline
from clickwise.spec.features import DecisionDef, RuleDef
from clickwise.storage import open_root

MULTIPLIERS = tuple(float(m) for m in np.round(np.geomspace(0.1, 10.0, 41), 4))
"""Threshold multipliers of the sweep: 0.1 to 10, evenly on a log scale, 1.0 included."""

SKIPPED = "expected value not above cost"

_COMPARE = {
    "eq": pc.equal,
    "ne": pc.not_equal,
    "gt": pc.greater,
    "ge": pc.greater_equal,
    "lt": pc.less,
    "le": pc.less_equal,
}


@dataclass(frozen=True)
class PolicyOutcome:
    """What a policy bought and earned on the replayed impressions."""

    impressions: int
    spend: float
    clicks: int
    clicks_lost: int
    value: float
    net: float


@dataclass(frozen=True)
class Withheld:
    """Impressions not bought for one reason: how many, the clicks they would have had, their cost."""

    impressions: int
    clicks: int
    spend_avoided: float


@dataclass(frozen=True)
class Replay:
    """Both policies on one set of impressions."""

    serve_all: PolicyOutcome
    policy: PolicyOutcome
    money_saved: float
    blocked: dict[str, Withheld]
    skipped: Withheld


@dataclass(frozen=True)
class MoneyReport:
    """The replay of a model's validation period, JSON-able with :meth:`to_json`."""

    model_version: str
    pipeline: str
    rows: int
    from_ms: int
    to_ms: int
    value_per_click: float
    cost: str
    serve_all: PolicyOutcome
    policy: PolicyOutcome
    money_saved: float
    blocked: dict[str, Withheld]
    skipped: Withheld
    sweep: list[dict[str, float]]
    best_multiplier: float
    best_saved: float
    files: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def outcome(
    served: np.ndarray, clicked: np.ndarray, cost: np.ndarray, value_per_click: float
) -> PolicyOutcome:
    """Totals of the impressions a policy served."""
    clicks = int(clicked[served].sum())
    spend = float(cost[served].sum())
    value = clicks * value_per_click
    lost = int(clicked[~served].sum())
    return PolicyOutcome(int(served.sum()), spend, clicks, lost, value, value - spend)


def _withheld(rows: np.ndarray, clicked: np.ndarray, cost: np.ndarray) -> Withheld:
    return Withheld(int(rows.sum()), int(clicked[rows].sum()), float(cost[rows].sum()))


def replay(
    p_click: Sequence[float] | np.ndarray,
    clicked: Sequence[int] | np.ndarray,
    cost: Sequence[float] | np.ndarray,
    first_rule: Sequence[int] | np.ndarray,
    *,
    value_per_click: float,
    rule_names: Sequence[str] = (),
    multiplier: float = 1.0,
) -> Replay:
    """Serve-all against the policy; ``first_rule`` is the index of the first block rule that holds
    for each row (-1: none), ``rule_names`` name those rules."""
    p, y = np.asarray(p_click, dtype=np.float64), np.asarray(clicked).astype(bool)
    c, rule = np.asarray(cost, dtype=np.float64), np.asarray(first_rule, dtype=np.int64)
    blocked = rule >= 0
    skipped = ~blocked & ~(p * value_per_click > multiplier * c)
    served = ~blocked & ~skipped
    all_rows = np.ones(len(p), dtype=bool)
    serve_all = outcome(all_rows, y, c, value_per_click)
    policy = outcome(served, y, c, value_per_click)
    names = list(rule_names) or [f"rule {i}" for i in range(int(rule.max(initial=-1)) + 1)]
    by_rule = {name: _withheld(rule == i, y, c) for i, name in enumerate(names)}
    return Replay(serve_all, policy, policy.net - serve_all.net, by_rule, _withheld(skipped, y, c))


def evaluate(
    pipeline: Pipeline, data: str, model_dir: str, out: str | None = None, *, truth: str | None = None
) -> MoneyReport:
    """Replay the validation rows of the model at ``model_dir`` (the rows of its time split, read from
    the training set at ``data``) with ``pipeline.decision``; with ``out``, also write
    ``money.json`` and ``savings.png`` there.

    ``truth`` (generated data) names which impressions came from bots: their clicks are fraud and
    worth nothing, so they count as no click in both policies.
    """
    decision = pipeline.decision
    if decision is None:
        raise ModelError(f"pipeline {pipeline.name!r} has no 'decision:' section (cost, value_per_click)")
    predictor = Predictor.load(model_dir, pipeline=pipeline)
    cost_column = _cost_column(pipeline, decision)
    wanted = list(dict.fromkeys([*predictor.features, *(r.feature for r in decision.block)]))
    data_set = read_training_set(pipeline, data, features=wanted, extra=[cost_column] if cost_column else [])
    split = predictor.card["split"]
    first_ms, last_ms = split["cut_ms"], split["validation"]["to_ms"]
    event_ms = data_set.event_ms()
    start = int(np.searchsorted(event_ms, first_ms, side="left"))
    stop = int(np.searchsorted(event_ms, last_ms, side="right"))
    rows = data_set.table.slice(start, stop - start)
    notes = []
    if rows.num_rows != split["validation"]["rows"]:
        notes.append(
            f"the model validated on {split['validation']['rows']} rows of this period; the training set now "
            f"has {rows.num_rows} mature rows in it (was it rebuilt or extended?)"
        )
    if rows.num_rows == 0:
        raise TrainingDataError(f"training set {data!r} has no mature rows in the model's validation period")
    cost, cost_text = _costs(rows, decision, cost_column, notes)
    names = [_rule_name(rule) for rule in decision.block]
    first_rule = first_rule_holding(rows, decision.block)
    p = predictor.predict(rows)
    y = rows.column(data_set.label).to_numpy()
    if truth is not None:
        bots = bot_rows(truth, rows.column("event_id"))
        fraud = int(np.count_nonzero(y.astype(bool) & bots))
        y = np.where(bots, 0, y)
        notes.append(f"{fraud} clicks came from bots (truth file) and count as worth nothing")
    result = replay(p, y, cost, first_rule, value_per_click=decision.value_per_click, rule_names=names)
    sweep = [
        {"multiplier": m, **_sweep_point(p, y, cost, first_rule, decision.value_per_click, m)}
        for m in MULTIPLIERS
    ]
    best = max(sweep, key=lambda point: (point["saved"], -abs(np.log(point["multiplier"]))))
    report = MoneyReport(
        model_version=predictor.version,
        pipeline=pipeline.name,
        rows=rows.num_rows,
        from_ms=int(rows.column(EVENT_MS)[0].as_py()),
        to_ms=int(rows.column(EVENT_MS)[-1].as_py()),
        value_per_click=decision.value_per_click,
        cost=cost_text,
        serve_all=result.serve_all,
        policy=result.policy,
        money_saved=result.money_saved,
        blocked=result.blocked,
        skipped=result.skipped,
        sweep=sweep,
        best_multiplier=best["multiplier"],
        best_saved=best["saved"],
        notes=notes,
    )
    return _write(report, out) if out is not None else report


def first_rule_holding(table: pa.Table, rules: Sequence[RuleDef]) -> np.ndarray:
    """For each row, the index of the first block rule that holds, or -1 (null features never match)."""
    first = np.full(table.num_rows, -1, dtype=np.int64)
    for i, rule in enumerate(rules):
        column = table.column(rule.feature)
        try:
            holds = pc.fill_null(_COMPARE[rule.op](column, pa.scalar(rule.value)), False).to_numpy()
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError) as exc:
            raise ModelError(
                f"block rule {_rule_name(rule)!r} cannot compare feature {rule.feature!r} ({column.type}) "
                f"with {rule.value!r}; fix the rule's value in the pipeline's 'decision:' section"
            ) from exc
        first[(first < 0) & holds] = i
    return first


_PYTHON_COMPARE = {
    "eq": operator.eq,
    "ne": operator.ne,
    "gt": operator.gt,
    "ge": operator.ge,
    "lt": operator.lt,
    "le": operator.le,
}


def rule_holds(value: Any, rule: RuleDef) -> bool:
    """Whether a block rule holds for one feature value (a null never matches), as in
    :func:`first_rule_holding`."""
    if value is None:
        return False
    try:
        return bool(_PYTHON_COMPARE[rule.op](value, rule.value))
    except TypeError as exc:
        raise ModelError(
            f"block rule {_rule_name(rule)!r} cannot compare feature {rule.feature!r} ({value!r}) "
            f"with {rule.value!r}; fix the rule's value in the pipeline's 'decision:' section"
        ) from exc


def _sweep_point(
    p: np.ndarray, y: np.ndarray, cost: np.ndarray, first_rule: np.ndarray, value: float, m: float
) -> dict[str, float]:
    result = replay(p, y, cost, first_rule, value_per_click=value, multiplier=m)
    return {"net": result.policy.net, "saved": result.money_saved}


def _rule_name(rule: RuleDef) -> str:
    return f"{rule.feature} {rule.op} {orjson.dumps(rule.value).decode()}"


def _cost_column(pipeline: Pipeline, decision: DecisionDef) -> str | None:
    """The training-set column holding each impression's cost (``None`` for a constant cost)."""
    if isinstance(decision.cost, float | int):
        return None
    if decision.cost in pipeline.features:
        return decision.cost
    for name, feature in pipeline.features.items():
        if isinstance(feature, EventFeature) and feature.event == decision.cost:
            return name
    raise ModelError(
        f"decision.cost names the exposure field {decision.cost!r}, but no feature carries it into the "
        f"training set; add `{decision.cost}: {{event: {decision.cost}}}` to the pipeline's features"
    )


def _costs(
    rows: pa.Table, decision: DecisionDef, column: str | None, notes: list[str]
) -> tuple[np.ndarray, str]:
    if column is None:
        return np.full(rows.num_rows, float(decision.cost)), f"constant {decision.cost}"
    values = rows.column(column).cast(pa.float64())
    if values.null_count:
        notes.append(f"{values.null_count} rows have no {column!r}; they count as costing 0")
    return values.fill_null(0.0).to_numpy(), f"field {decision.cost}"


def _write(report: MoneyReport, out: str) -> MoneyReport:
    root = open_root(out)
    points = report.sweep
    png = savings_png(
        np.array([point["multiplier"] for point in points]),
        np.array([point["saved"] for point in points]),
        report.best_multiplier,
    )
    root.write_bytes(MONEY_PNG, png)
    files = {"plot": f"{root.url}/{MONEY_PNG}", "json": f"{root.url}/{MONEY_JSON}"}
    written = replace(report, files=files)
    root.write_bytes(MONEY_JSON, dump_json(written.to_json()))
    return written
