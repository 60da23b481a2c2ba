"""Files written whole or not at all. No torch here: the runtime's graph cache writes through it.

Why: a run killed mid-save, or a reader racing a writer (a node starting while another exports the
same graph), must never see half a file. Every file moadepth writes for others to read (checkpoints,
graphs, aliases, metrics, summaries) goes through :func:`write_atomic`.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO


def write_atomic(path: str | Path, data: bytes | str | Callable[[BinaryIO], None], *, fsync: bool = True) -> None:
    """Write ``data`` to ``path`` through a temp file beside it and a rename.

    ``data``: bytes, text (UTF-8), or a function that writes to the open binary file (whose ``name``
    is the temp file's path, for writers that take a path). ``fsync``: flush to the disk before the
    rename, so a power cut leaves the old file or the new one, never an empty one; off where the file
    is a cache that costs only a rebuild. The temp file goes whatever happens; OSError propagates
    (the caller decides whether a failed write matters).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # Unique per process and call, hidden, and never matching a reader's glob (``*.onnx``, ``*.pt``).
    tmp = path.with_name(f".{path.name}.{os.getpid()}-{uuid.uuid4().hex[:8]}.tmp")
    try:
        with tmp.open("xb") as f:
            if callable(data):
                data(f)
            else:
                f.write(data.encode() if isinstance(data, str) else data)
            if fsync:
                f.flush()
                os.fsync(f.fileno())
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)
