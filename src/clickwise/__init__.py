"""clickwise: streaming machine learning for ad-click prediction.

>>> import clickwise
>>> pipeline = clickwise.load_pipeline(clickwise.example_path("adclick"))
>>> pipeline.name, pipeline.label.horizon
('adclick', 900000)
"""

import os

# Polars configures its allocator (jemalloc) to hand freed pages back to the system after 0.5 s.
# A catch-up frees and reallocates each window's frames every second or so, and pages the system
# took back cost far more to touch again than pages kept (see clickwise.memory). Keep them for 3 s:
# long enough for the next window to reuse them, short enough that the frames' memory goes back
# once the windows are done and the run building that follows takes the same pages (measured on
# the 27M-event catch-up against 60 s: 24.8 s against 28.5 s, peak RSS 5.4 GiB against 8.2 GiB).
# A user's own setting wins; polars appends this to its own (later settings win) when it is
# imported after this module.
os.environ.setdefault("_RJEM_MALLOC_CONF", "dirty_decay_ms:3000,muzzy_decay_ms:3000")

from clickwise.errors import (  # noqa: E402 (after the allocator setting)
    ClickwiseError,
    EnrichmentError,
    InputError,
    PipelineError,
    StorageError,
    TimeFormatError,
)
from clickwise.events import DeadLetters, Ingestor, IngestReport, Lake, ingest
from clickwise.examples import example_path
from clickwise.spec import Pipeline, load_pipeline, parse_pipeline
from clickwise.storage import Root, open_root

__version__ = "0.1.0"

__all__ = [
    "Client",
    "ClickwiseError",
    "ClientError",
    "DeadLetters",
    "EnrichmentError",
    "IngestReport",
    "Ingestor",
    "InputError",
    "Lake",
    "Pipeline",
    "PipelineError",
    "Root",
    "StorageError",
    "TimeFormatError",
    "__version__",
    "example_path",
    "ingest",
    "load_pipeline",
    "open_root",
    "parse_pipeline",
]


def __getattr__(name: str) -> object:
    """``clickwise.Client`` and ``clickwise.ClientError``, imported on first use (they bring the HTTP
    client library)."""
    if name in ("Client", "ClientError"):
        from clickwise.serve import client

        return getattr(client, name)
    raise AttributeError(f"module 'clickwise' has no attribute {name!r}")
