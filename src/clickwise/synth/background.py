"""Write streams on background threads while the main thread draws the next chunk.

Parquet encoding and numpy both release the GIL, so on two cores drawing and writing overlap. Each
stream has one thread, so its batches are written in order and the files stay byte-identical. At most
``depth`` batches per stream wait in memory; the producer blocks beyond that.
"""

from __future__ import annotations

from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from types import TracebackType

import pyarrow as pa

from clickwise.synth.writer import StreamWriter


class BackgroundWriters:
    """A context manager; :meth:`write` queues a batch, :meth:`close` waits and returns the paths.

    An error in a writer thread is raised in the caller at its next :meth:`write` or :meth:`close`.
    """

    def __init__(self, writers: dict[str, StreamWriter], depth: int = 4) -> None:
        self._writers = writers
        self._depth = depth
        self._threads = {name: ThreadPoolExecutor(1, thread_name_prefix=f"synth-{name}") for name in writers}
        self._queued: dict[str, deque[Future[None]]] = {name: deque() for name in writers}

    def write(self, stream: str, table: pa.Table) -> None:
        """Queue ``table`` behind the earlier batches of ``stream``."""
        queued = self._queued[stream]
        while len(queued) >= self._depth:
            queued.popleft().result()
        queued.append(self._threads[stream].submit(self._writers[stream].write, table))

    def close(self) -> dict[str, tuple[Path, ...]]:
        """Finish every queued batch, close the files and return each stream's paths."""
        for queued in self._queued.values():
            while queued:
                queued.popleft().result()
        closing = {name: self._threads[name].submit(writer.close) for name, writer in self._writers.items()}
        return {name: future.result() for name, future in closing.items()}

    def __enter__(self) -> BackgroundWriters:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        for thread in self._threads.values():
            thread.shutdown(wait=True, cancel_futures=exc is not None)
