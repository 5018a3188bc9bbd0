"""Errors of the synthetic ad-stream generator."""

from __future__ import annotations

from clickwise.errors import ClickwiseError, StorageError


class SynthConfigError(ClickwiseError, ValueError):
    """An argument or :class:`~clickwise.synth.SynthConfig` field of the generator is out of range.

    The message names the field, shows the bad value and says what is allowed.
    """


class SynthOutputError(StorageError):
    """The output folder cannot take the generated files (for example it already holds a run)."""
