"""The public API is pinned: adding or removing a name is a deliberate change to this list."""

import clickwise

EXPECTED = [
    "Client", "ClickwiseError", "ClientError", "DeadLetters", "EnrichmentError", "IngestReport", "Ingestor",
    "InputError", "Lake", "Pipeline", "PipelineError", "Root", "StorageError", "TimeFormatError",
    "__version__", "example_path", "ingest", "load_pipeline", "open_root", "parse_pipeline",
]  # fmt: skip


def test_all_is_pinned() -> None:
    assert clickwise.__all__ == EXPECTED


def test_every_exported_name_exists() -> None:
    for name in clickwise.__all__:
        assert getattr(clickwise, name) is not None, name


def test_errors_share_one_root() -> None:
    for name in ("ClientError", "EnrichmentError", "InputError", "PipelineError", "StorageError",
                 "TimeFormatError"):  # fmt: skip
        assert issubclass(getattr(clickwise, name), clickwise.ClickwiseError)
