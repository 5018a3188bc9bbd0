"""Apply a stream's enrichments to a batch of events: the one function every path uses.

Batch ingest, the streaming loop and the online decision all call :class:`Enricher`, so an event
gets the same country and agent fields wherever it is seen.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import cache
from typing import Any

import pyarrow as pa

from clickwise.enrich.agent import AgentParser
from clickwise.enrich.geo import GeoResolver
from clickwise.spec import AgentEnrichment, GeoEnrichment, Pipeline


@cache
def _geo(mmdb: str | None) -> GeoResolver:
    return GeoResolver(mmdb)


@cache
def _agent() -> AgentParser:
    return AgentParser()


class Enricher:
    """The enrichments of one stream, ready to run (resolvers are built once per process)."""

    def __init__(self, pipeline: Pipeline, stream: str) -> None:
        self._steps = [pipeline.enrichments[name] for name in pipeline.streams[stream].enrich]
        for step in self._steps:  # fail early (e.g. a missing .mmdb), before any data is read
            self._resolver(step)

    @staticmethod
    def _resolver(step: GeoEnrichment | AgentEnrichment) -> Any:
        return _geo(step.mmdb) if isinstance(step, GeoEnrichment) else _agent()

    def enrich_many(self, table: pa.Table) -> pa.Table:
        """Append the enrichment columns to a table of events."""
        for step in self._steps:
            column = table.column(step.input)
            if isinstance(step, GeoEnrichment):
                table = table.append_column(
                    pa.field(step.output, pa.string()), _geo(step.mmdb).country_many(column)
                )
            else:
                parsed = _agent().parse_many(column)
                for name in parsed.column_names:
                    table = table.append_column(f"{step.prefix}{name}", parsed.column(name))
        return table

    def sample(self) -> dict[str, Any]:
        """A typical input for every step (to warm the resolvers up before the first real event)."""
        agent = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0"
        return {step.input: "127.0.0.1" if isinstance(step, GeoEnrichment) else agent for step in self._steps}

    def enrich_one(self, record: Mapping[str, Any]) -> dict[str, Any]:
        """The enrichment fields for one event, equal to what :meth:`enrich_many` gives."""
        out: dict[str, Any] = {}
        for step in self._steps:
            value = record.get(step.input)
            if isinstance(step, GeoEnrichment):
                out[step.output] = _geo(step.mmdb).country_one(value)
            else:
                for name, field in _agent().parse_one(value).items():
                    out[f"{step.prefix}{name}"] = field
        return out
