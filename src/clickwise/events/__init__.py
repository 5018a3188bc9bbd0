"""Events: reading inputs, validating them against stream schemas, the lake, dead letters."""

from clickwise.events.deadletters import DeadLetters
from clickwise.events.ingest import Ingestor, IngestReport, StreamCounts, ingest
from clickwise.events.lake import Lake
from clickwise.events.validate import ARRIVAL_MS, EVENT_MS

__all__ = [
    "ARRIVAL_MS",
    "EVENT_MS",
    "DeadLetters",
    "IngestReport",
    "Ingestor",
    "Lake",
    "StreamCounts",
    "ingest",
]
