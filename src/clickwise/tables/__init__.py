"""Lookup tables: keyed, windowed aggregations, durable, exact as of any moment in retention."""

from clickwise.tables.engine import TableReadError, Tables, UpdateReport
from clickwise.tables.state import StateError

__all__ = ["StateError", "TableReadError", "Tables", "UpdateReport"]
