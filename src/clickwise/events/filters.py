"""Evaluate a filter definition on a column of events (stream ``where`` and aggregation filters)."""

from __future__ import annotations

import polars as pl

from clickwise.spec import FilterDef


def filter_expr(definition: FilterDef) -> pl.Expr:
    """A boolean polars expression; null values never match (except ``is_null``)."""
    column = pl.col(definition.field)
    value = definition.value
    op = definition.op
    if op == "is_null":
        return column.is_null()
    if op == "not_null":
        return column.is_not_null()
    if op in ("in", "not_in"):
        assert isinstance(value, list)  # checked by FilterDef
        member = column.is_in(value)
        return (member if op == "in" else ~member).fill_null(False)
    compare = {
        "eq": column.eq(value),
        "ne": column.ne(value),
        "gt": column.gt(value),
        "ge": column.ge(value),
        "lt": column.lt(value),
        "le": column.le(value),
    }[op]
    return compare.fill_null(False)
