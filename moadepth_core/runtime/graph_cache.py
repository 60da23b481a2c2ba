"""The on-disk cache of exported ONNX graphs, and the checkpoint aliases that find a graph without
building the network. No torch here: a warm start reads this module only.

Two kinds of entry, both in one folder (:func:`default_cache_dir`):

- ``moadepth-<key>.onnx``: a graph. An fp32 graph is keyed by the graph version, size and every
  weight's bytes (``runtime.torch.backends``), so changed weights or a changed graph never reuse a stale file; an
  int8 graph by the key of the fp32 graph it was quantised from (``runtime.int8``).
- ``moadepth-checkpoint-<key>.json``: an alias, keyed by the graph version, the requested input size,
  precision and CLIP weights override, and the checkpoint file's bytes. It names the graph that
  checkpoint exported to, plus what inference needs besides the graph (model size, training focal
  length). It is written only after the checkpoint was loaded and its frozen CLIP weights matched
  its fingerprint, so the graph it names holds the weights that checkpoint stands for.

Why aliases: finding a graph by its weights means building the network first, which means importing
torch and open_clip and loading the weights: most of a start's memory and time (docs/PERFORMANCE.md).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

from moadepth_core.files import write_atomic

log = logging.getLogger("moadepth")

#: Bumped whenever the exported graph's structure changes for the same weights (a faster formulation),
#: so a cache written by older code is not reused. 2: the bin head without a softmax op; 3: the
#: backbone's own attention formulation; 4: a dynamic batch axis (issue 21), so neither a graph nor a
#: checkpoint alias left by a batch-1 export is ever taken for a batched one.
GRAPH_VERSION = 4

#: Graphs kept in the cache, most recently used first: a ViT-B/32 graph is ~360 MB (fp32) or ~100 MB
#: (int8), and every retrained checkpoint makes new ones; 6 is fp32 + int8 for three checkpoints.
CACHE_KEEP = 6

GRAPH_GLOB = "moadepth-*.onnx"
ALIAS_PREFIX = "moadepth-checkpoint-"


def default_cache_dir() -> Path | None:
    """``$MOADEPTH_ONNX_CACHE`` (empty: no cache), else ``$XDG_CACHE_HOME/moadepth`` or ``~/.cache/moadepth``.

    Why a cache: exporting takes seconds, which would otherwise delay every node start.
    """
    env = os.environ.get("MOADEPTH_ONNX_CACHE")
    if env is not None:
        return Path(env).expanduser() if env else None
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "moadepth"


def cache_hit(path: Path | None) -> bool:
    """True when ``path`` holds a cached entry, which then counts as just used (for pruning)."""
    if path is None or not path.is_file():
        return False
    with contextlib.suppress(OSError):  # a read-only cache still serves
        os.utime(path)
    return True


def prune_cache(cache_dir: Path, keep: int = CACHE_KEEP) -> list[Path]:
    """Delete all but the ``keep`` most recently used graphs in ``cache_dir``, and the aliases whose
    graph is gone; returns what went."""
    graphs = sorted(cache_dir.glob(GRAPH_GLOB), key=lambda f: f.stat().st_mtime_ns, reverse=True)
    gone = []
    for old in graphs[keep:]:
        with contextlib.suppress(OSError):  # another process may have pruned it first
            old.unlink()
            gone.append(old)
    for alias in cache_dir.glob(f"{ALIAS_PREFIX}*.json"):
        if read_alias(alias, touch=False) is None:
            with contextlib.suppress(OSError):
                alias.unlink()
                gone.append(alias)
    return gone


@dataclass(frozen=True)
class CachedGraph:
    """What an alias says: the graph file and what inference needs besides it."""

    graph_file: Path
    model_size: tuple[int, int]
    train_focal_px: float | None


def checkpoint_alias(cache_dir: Path, checkpoint: str | Path, input_size: tuple[int, int] | None,
                     precision: str, pretrained: str | None = None) -> Path:
    """The alias file for this checkpoint (its bytes) started with these settings.

    ``input_size`` as requested (None: the checkpoint's training size), ``precision`` resolved.
    OSError when the checkpoint cannot be read.
    """
    size = f"{int(input_size[0])}x{int(input_size[1])}" if input_size else "trained"
    h = hashlib.sha256(f"alias v{GRAPH_VERSION} {size} {precision} pretrained={pretrained or ''}\n".encode())
    with open(checkpoint, "rb") as f:
        h.update(hashlib.file_digest(f, "sha256").digest())
    return Path(cache_dir) / f"{ALIAS_PREFIX}{h.hexdigest()[:16]}.json"


def write_alias(alias: Path, entry: CachedGraph) -> None:
    """Record ``entry`` under ``alias`` (the graph must already be in the same folder); a read-only
    cache only costs the next start its speed, so a failure is logged, not raised."""
    record = {"graph": entry.graph_file.name, "model_size": list(entry.model_size),
              "train_focal_px": entry.train_focal_px}
    try:
        write_atomic(alias, json.dumps(record), fsync=False)  # a torn alias is a miss: the next start rebuilds
    except OSError as exc:
        log.warning("could not record the checkpoint's graph in %s: %s", alias.parent, exc)


def read_alias(alias: Path, touch: bool = True) -> CachedGraph | None:
    """The entry under ``alias`` when it and its graph are there and readable, else None (a miss:
    the caller builds the network). ``touch``: count the alias and graph as just used."""
    try:
        record = json.loads(alias.read_text())
        graph = alias.parent / Path(record["graph"]).name
        h, w = (int(v) for v in record["model_size"])
        focal = record["train_focal_px"]
        entry = CachedGraph(graph, (h, w), None if focal is None else float(focal))
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if not graph.is_file():
        return None
    if touch:
        cache_hit(alias)
        cache_hit(graph)
    return entry
