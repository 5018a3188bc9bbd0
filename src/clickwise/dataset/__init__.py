"""Training sets: backfill from the lake and the tables, streaming rows, and their files."""

from clickwise.dataset.backfill import BackfillReport, backfill, exposure_rows
from clickwise.dataset.writer import META_FILE, DatasetError, DatasetWriter

__all__ = ["META_FILE", "BackfillReport", "DatasetError", "DatasetWriter", "backfill", "exposure_rows"]
