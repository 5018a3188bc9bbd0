"""Training sets: backfill from the lake and the tables, streaming rows, and the skew/leakage check."""

from clickwise.dataset.backfill import BackfillReport, backfill, exposure_rows
from clickwise.dataset.stream import RowEmitter, read_rows
from clickwise.dataset.verify import LeakageCheck, VerifyReport, verify
from clickwise.dataset.writer import META_FILE, DatasetError, DatasetWriter

__all__ = [
    "META_FILE",
    "BackfillReport",
    "DatasetError",
    "DatasetWriter",
    "LeakageCheck",
    "RowEmitter",
    "VerifyReport",
    "backfill",
    "exposure_rows",
    "read_rows",
    "verify",
]
