"""Hand freed memory back to the operating system.

Why: big tensors and protobufs are freed in pieces that glibc keeps mapped, so a process that built
something large and dropped it still looks large to ``top`` and to the OOM killer
(docs/PERFORMANCE.md has what it saves).
"""

from __future__ import annotations

import contextlib
import ctypes
import gc


def return_free_heap() -> None:
    """Collect garbage, then ``malloc_trim(0)``; a no-op off glibc."""
    gc.collect()
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)
