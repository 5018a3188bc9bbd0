"""Small value types shared by the pipeline definitions: durations, windows, names."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel as _BaseModel
from pydantic import BeforeValidator, ConfigDict, Field, WithJsonSchema

from clickwise.time import parse_duration_ms

NAME_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]{0,63}$"


class Definition(_BaseModel):
    """Base of every pipeline definition: immutable, and unknown keys are errors."""

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)


def _duration(value: Any) -> int:
    try:
        return parse_duration_ms(value)
    except ValueError as exc:
        raise ValueError(str(exc)) from None


def _window(value: Any) -> int | None:
    if value is None or value == "lifetime":
        return None
    return _duration(value)


_DURATION_SCHEMA = {
    "anyOf": [
        {"type": "string", "pattern": r"^\d+\s*(ms|s|min|m|h|d|w)$", "examples": ["15m", "24h", "7d"]},
        {"type": "integer", "minimum": 0, "description": "milliseconds"},
    ]
}

Duration = Annotated[int, BeforeValidator(_duration), WithJsonSchema(_DURATION_SCHEMA)]
"""Milliseconds; written in the file as ``15m``, ``24h``, ``7d`` (or a bare number of ms)."""

Window = Annotated[
    int | None,
    BeforeValidator(_window),
    WithJsonSchema({"anyOf": [*_DURATION_SCHEMA["anyOf"], {"const": "lifetime"}]}),
]
"""A window length in ms, or ``None`` for ``lifetime`` (every event before the read time)."""

Name = Annotated[str, Field(pattern=NAME_PATTERN)]
"""Names of streams, fields, tables and features: letters, digits, underscore; 64 at most."""
