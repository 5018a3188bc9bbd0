"""The catch-up's memory setting: inside ``reused_memory`` glibc keeps large freed blocks in its
heap instead of mapping each one afresh, and Arrow allocates from that heap; afterwards the
defaults are back."""

from __future__ import annotations

import ctypes
import ctypes.util
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from clickwise.memory import reused_memory


class _MallInfo2(ctypes.Structure):
    _fields_ = [
        (name, ctypes.c_size_t)
        for name in (
            "arena",
            "ordblks",
            "smblks",
            "hblks",
            "hblkhd",
            "usmblks",
            "fsmblks",
            "uordblks",
            "fordblks",
            "keepcost",
        )
    ]


def _mapped_blocks() -> int:
    """How many blocks glibc holds as separate mappings now."""
    library = ctypes.util.find_library("c")
    mallinfo2 = getattr(ctypes.CDLL(library), "mallinfo2", None) if library else None
    if mallinfo2 is None:
        pytest.skip("needs glibc 2.33 or newer")
    mallinfo2.restype = _MallInfo2
    return int(mallinfo2().hblks)


def _blocks_while_holding_a_large_array() -> int:
    data = np.ones(64 * 2**20, dtype=np.uint8)  # (beyond glibc's largest mapping threshold)
    blocks = _mapped_blocks()
    del data
    return blocks


def _check_in_this_process() -> None:
    before = _mapped_blocks()
    pool = pa.default_memory_pool().backend_name
    assert _blocks_while_holding_a_large_array() == before + 1  # glibc's default: a mapping
    with reused_memory():
        assert _blocks_while_holding_a_large_array() == before  # kept in the heap instead
        assert pa.default_memory_pool().backend_name == "system"  # Arrow allocates from it too
        kept = pa.allocate_buffer(1 << 20)
    assert _blocks_while_holding_a_large_array() == before + 1  # the default again
    assert pa.default_memory_pool().backend_name == pool
    del kept  # (freed by the pool that made it)


def test_large_blocks_come_from_the_heap_inside_and_from_mappings_after() -> None:
    """In a fresh process: in this one, earlier tests may have left a large free block in the heap,
    which glibc would hand out for the array instead of a mapping."""
    _mapped_blocks()  # (skips without glibc 2.33)
    result = subprocess.run(
        [sys.executable, "-c", "import test_memory; test_memory._check_in_this_process()"],
        cwd=Path(__file__).parent,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
