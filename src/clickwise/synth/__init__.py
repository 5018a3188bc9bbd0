"""The synthetic ad-stream generator: realistic impressions, clicks, predictions and their truth.

>>> import tempfile
>>> with tempfile.TemporaryDirectory() as out:
...     summary = generate(out, users=200, hours=1, seed=7, start_ms=1_700_000_000_000)
>>> summary.impressions > 0, summary.truth == summary.impressions
(True, True)

See :func:`generate` (files) and :func:`iter_event_batches` (the same events, batch by batch).
"""

from clickwise.synth.config import SynthConfig
from clickwise.synth.generate import GenerateSummary, generate
from clickwise.synth.stream import iter_event_batches

__all__ = ["GenerateSummary", "SynthConfig", "generate", "iter_event_batches"]
