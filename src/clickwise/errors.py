"""The error classes of clickwise.

Every error a user can act on is a :class:`ClickwiseError`; the subclasses say which layer refused
what. Bad *records* are not errors: they go to dead letters with a reason (see ``clickwise.events``).
"""

from __future__ import annotations


class ClickwiseError(Exception):
    """Root of every error clickwise raises on purpose."""


class PipelineError(ClickwiseError):
    """The pipeline file is missing, unreadable or invalid.

    The message names the file, the field path, the bad value and what is allowed.
    """


class TimeFormatError(ClickwiseError, ValueError):
    """A time value or time format could not be understood."""


class StorageError(ClickwiseError):
    """The root (local folder or object store) could not be read or written."""


class InputError(ClickwiseError):
    """An input file or source could not be opened or has an unknown format."""


class EnrichmentError(ClickwiseError):
    """An enrichment could not be set up (for example a missing or unreadable .mmdb file)."""
