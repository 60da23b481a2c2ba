"""The one frame type every RGB-D source yields, and the source protocol.

Sources differ wildly on disk (HDF5, PNG lists, folders, bags); everything after them
(transforms, evaluation, the CLI) only ever sees :class:`RGBDFrame`, so the conventions
(RGB order, metres, invalid = 0, K in pixels of this image) are enforced once, here.
"""

from __future__ import annotations

import abc
import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from moadepth_core.errors import DataError


@dataclass
class RGBDFrame:
    """One registered RGB-D frame.

    Attributes
    ----------
    rgb : (H, W, 3) uint8, RGB order.
    depth : (H, W) float32 metres, aligned with ``rgb``; invalid = 0 (NaN/Inf/negatives are
        converted to 0 on construction so downstream code needs a single ``depth > 0`` test).
    K : (3, 3) float64 intrinsics in pixels of this image.
    name : stable identifier (used for output file names and per-image metrics).
    stamp_ns : acquisition time in nanoseconds when the source has one.
    """

    rgb: np.ndarray
    depth: np.ndarray
    K: np.ndarray
    name: str
    stamp_ns: int | None = None

    def __post_init__(self) -> None:
        rgb = np.asarray(self.rgb)
        if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
            raise DataError(
                f"frame {self.name!r}: rgb must be an HxWx3 uint8 array, got {rgb.dtype} {rgb.shape}"
            )
        depth = np.asarray(self.depth)
        if depth.ndim == 3 and depth.shape[2] == 1:
            depth = depth[:, :, 0]
        if depth.shape != rgb.shape[:2]:
            raise DataError(
                f"frame {self.name!r}: depth {depth.shape} is not aligned with rgb {rgb.shape[:2]}"
            )
        depth = depth.astype(np.float32, copy=True)
        depth[~np.isfinite(depth) | (depth < 0)] = 0.0
        K = np.asarray(self.K, dtype=np.float64)
        if K.shape != (3, 3):
            raise DataError(f"frame {self.name!r}: K must be 3x3, got shape {K.shape}")
        self.rgb = np.ascontiguousarray(rgb)
        self.depth = depth
        self.K = K
        self.stamp_ns = None if self.stamp_ns is None else int(self.stamp_ns)

    @property
    def hw(self) -> tuple[int, int]:
        """(height, width) of the frame."""
        return self.rgb.shape[0], self.rgb.shape[1]

    @property
    def valid(self) -> np.ndarray:
        """Boolean mask of pixels with a depth measurement."""
        return self.depth > 0


class RGBDSource(Sequence[RGBDFrame], abc.ABC):
    """Random-access sequence of :class:`RGBDFrame`.

    Subclasses implement ``__len__`` and ``_get(i)`` (``i`` already in ``0..len-1``); the base
    handles negative indices, bounds and slices, so every source behaves like a list.
    Subclasses may instead override ``__getitem__`` directly as long as they keep that behaviour.
    """

    @abc.abstractmethod
    def __len__(self) -> int: ...

    def _get(self, index: int) -> RGBDFrame:
        raise NotImplementedError(f"{type(self).__name__} must implement _get() or __getitem__()")

    def __getitem__(self, index):  # type: ignore[override]
        if isinstance(index, slice):
            return self.select(range(*index.indices(len(self))))
        return self._get(_normalise_index(index, len(self)))

    def __iter__(self) -> Iterator[RGBDFrame]:
        for i in range(len(self)):
            yield self[i]

    def select(self, indices: Iterable[int]) -> Subset:
        """A view of this source restricted to ``indices`` (e.g. a train/test split)."""
        return Subset(self, indices)

    def describe(self) -> str:
        """One line for logs and CLIs: what is being read and how many frames."""
        return f"{type(self).__name__}: {len(self)} frames"

    def __repr__(self) -> str:
        return f"<{self.describe()}>"


class Subset(RGBDSource):
    """Frames of ``source`` at ``indices``, in that order (duplicates allowed)."""

    def __init__(self, source: RGBDSource, indices: Iterable[int]) -> None:
        n = len(source)
        self.source = source
        self.indices = [_normalise_index(int(i), n) for i in indices]

    def __len__(self) -> int:
        return len(self.indices)

    def _get(self, index: int) -> RGBDFrame:
        return self.source[self.indices[index]]

    def describe(self) -> str:
        return f"{len(self)} of {self.source.describe()}"


def _normalise_index(index: int, n: int) -> int:
    if not isinstance(index, int | np.integer):
        raise TypeError(f"frame index must be an int or a slice, not {type(index).__name__}")
    i = int(index)
    if i < 0:
        i += n
    if not 0 <= i < n:
        raise IndexError(f"frame index {index} out of range for {n} frames")
    return i


def as_sequence(source: Sequence[RGBDFrame]) -> RGBDSource:
    """Wrap a plain list of frames as a source (handy in tests and scripts)."""
    if isinstance(source, RGBDSource):
        return source
    return ListSource(list(source))


class ListSource(RGBDSource):
    """In-memory frames."""

    def __init__(self, frames: Sequence[RGBDFrame], label: str = "in-memory frames") -> None:
        self.frames = list(frames)
        self.label = label

    def __len__(self) -> int:
        return len(self.frames)

    def _get(self, index: int) -> RGBDFrame:
        return self.frames[index]

    def describe(self) -> str:
        return f"{self.label}: {len(self)} frames"


def _unreadable(path: str | os.PathLike, what: str) -> DataError:
    p = Path(path)
    if not p.exists():
        reason = "no such file"
    elif p.is_dir():
        reason = "it is a directory"
    elif not os.access(p, os.R_OK):
        reason = "permission denied"
    else:
        reason = f"not a readable {what}"
    return DataError(f"cannot read {p}: {reason}")


def read_rgb(path: str | os.PathLike) -> np.ndarray:
    """Read a colour image file as HxWx3 uint8 RGB (OpenCV reads BGR; convert once, here)."""
    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if img is None:
        raise _unreadable(path, "image")
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def read_depth_png(path: str | os.PathLike, depth_scale: float) -> np.ndarray:
    """Read a 16-bit single-channel depth PNG (``depth_scale`` units per metre) as float32 metres.

    An 8-bit or colour PNG is refused: it is almost always a visualisation, not measurements.
    """
    raw = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if raw is None:
        raise _unreadable(path, "image")
    if raw.ndim != 2 or raw.dtype != np.uint16:
        raise DataError(
            f"cannot read {path}: expected a 16-bit single-channel depth PNG, "
            f"got {raw.dtype} with shape {raw.shape}"
        )
    return raw.astype(np.float32) / np.float32(depth_scale)


def read_depth_npy(path: str | os.PathLike) -> np.ndarray:
    """Read an HxW ``.npy`` depth map in metres as float32."""
    try:
        arr = np.load(str(path), allow_pickle=False)
    except (OSError, ValueError) as exc:
        if not Path(path).is_file():
            raise _unreadable(path, "npy file") from exc
        raise DataError(f"cannot read {path}: {exc}") from exc
    arr = np.squeeze(arr) if arr.ndim == 3 else arr
    if arr.ndim != 2 or not np.issubdtype(arr.dtype, np.number):
        raise DataError(f"cannot read {path}: expected an HxW numeric depth array, got {arr.dtype} {arr.shape}")
    return arr.astype(np.float32, copy=False)
