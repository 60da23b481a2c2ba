"""NYU Depth V2: the official labelled ``.mat`` and the BTS/AdaBins file lists.

Both describe the same camera; the labelled set is what the paper's Table 1 is measured on
(654 test frames via ``splits.mat``), the lists are how most training code reads the ~24k
"sync" frames.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from moadepth_core.data.frames import RGBDFrame, RGBDSource, read_depth_png, read_rgb
from moadepth_core.errors import DataError

#: NYU Depth V2 RGB camera intrinsics at 640x480 (Silberman et al. toolbox).
NYU_FX, NYU_FY, NYU_CX, NYU_CY = 518.8579, 519.4696, 325.5824, 253.7362
NYU_K = np.array([[NYU_FX, 0.0, NYU_CX], [0.0, NYU_FY, NYU_CY], [0.0, 0.0, 1.0]], dtype=np.float64)
NYU_HW = (480, 640)
#: Depth scale of the BTS/AdaBins ``sync_depth`` PNGs: millimetres.
NYU_PNG_DEPTH_SCALE = 1000.0

_SPLIT_KEYS = {"train": "trainNdxs", "test": "testNdxs"}


class NYUMatSource(RGBDSource):
    """Frames of the official ``nyu_depth_v2_labeled.mat`` (MATLAB v7.3 = HDF5).

    The h5py handle is opened lazily and per process: HDF5 handles do not survive ``fork``, so
    a handle opened in the parent and used by DataLoader workers gives corrupt reads.
    """

    def __init__(
        self, mat_path: str | os.PathLike, split: str = "test", splits_path: str | os.PathLike | None = None
    ) -> None:
        self.mat_path = Path(mat_path)
        if split not in ("train", "test", "all"):
            raise DataError(f"NYU split must be 'train', 'test' or 'all', not {split!r}")
        self.split = split
        self._h5 = None
        self._pid: int | None = None
        n_total = self._check_layout()
        self.n_total = n_total
        if split == "all":
            self.indices = np.arange(n_total)
            self.splits_path = None if splits_path is None else Path(splits_path)
        else:
            self.splits_path = Path(splits_path) if splits_path else self.mat_path.with_name("splits.mat")
            self.indices = load_nyu_split(self.splits_path, split, n_total)

    def _check_layout(self) -> int:
        """Validate once, up front, so a wrong file fails at open time and not in a worker."""
        h5py = _import_h5py()
        if not self.mat_path.is_file():
            raise DataError(f"cannot read {self.mat_path}: no such file")
        try:
            with h5py.File(self.mat_path, "r") as f:
                missing = [k for k in ("images", "depths") if k not in f]
                if missing:
                    raise DataError(
                        f"cannot read {self.mat_path}: no {' or '.join(missing)} dataset; "
                        "expected the official nyu_depth_v2_labeled.mat"
                    )
                img_shape, dep_shape = f["images"].shape, f["depths"].shape
        except OSError as exc:
            raise DataError(
                f"cannot read {self.mat_path}: not a MATLAB v7.3 (HDF5) file ({exc})"
            ) from exc
        if len(img_shape) != 4 or img_shape[1] != 3 or len(dep_shape) != 3 or dep_shape[0] != img_shape[0] \
                or tuple(dep_shape[1:]) != tuple(img_shape[2:]):
            raise DataError(
                f"cannot read {self.mat_path}: images {img_shape} / depths {dep_shape} do not have the "
                "labelled-set layout (N,3,W,H) / (N,W,H)"
            )
        return int(img_shape[0])

    def _file(self):
        if self._h5 is None or self._pid != os.getpid():
            self._h5 = _import_h5py().File(self.mat_path, "r")
            self._pid = os.getpid()
        return self._h5

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_h5"], state["_pid"] = None, None
        return state

    def __len__(self) -> int:
        return len(self.indices)

    def _get(self, index: int) -> RGBDFrame:
        j = int(self.indices[index])
        f = self._file()
        try:
            rgb = np.asarray(f["images"][j]).transpose(2, 1, 0)  # (3,W,H) -> (H,W,3)
            depth = np.asarray(f["depths"][j], dtype=np.float32).T  # (W,H) -> (H,W)
        except (OSError, KeyError) as exc:
            raise DataError(f"cannot read frame {j} of {self.mat_path}: {exc}") from exc
        K = NYU_K.copy() if rgb.shape[:2] == NYU_HW else _centre_K(NYU_FX, NYU_FY, rgb.shape[:2])
        return RGBDFrame(rgb=rgb.astype(np.uint8, copy=False), depth=depth, K=K, name=f"nyu_{j:04d}")

    def close(self) -> None:
        """Release the HDF5 handle (reopened on the next access)."""
        if self._h5 is not None:
            self._h5.close()
        self._h5, self._pid = None, None

    def describe(self) -> str:
        return f"NYU Depth V2 labelled {self.mat_path} ({self.split} split): {len(self)} frames"


def load_nyu_split(splits_path: str | os.PathLike, split: str, n_total: int | None = None) -> np.ndarray:
    """0-based frame indices of ``split`` from the official ``splits.mat`` (stored 1-based)."""
    import scipy.io

    splits_path = Path(splits_path)
    if not splits_path.is_file():
        raise DataError(
            f"cannot read {splits_path}: no such file; the NYU {split!r} split needs the official "
            "splits.mat (pass splits_path=, or split='all')"
        )
    try:
        mat = scipy.io.loadmat(str(splits_path))
    except Exception as exc:  # scipy raises a zoo of types (ValueError, MatReadError, ...)
        raise DataError(f"cannot read {splits_path}: {exc}") from exc
    key = _SPLIT_KEYS[split]
    if key not in mat:
        raise DataError(f"cannot read {splits_path}: no {key!r} variable; expected the official splits.mat")
    idx = np.asarray(mat[key]).astype(np.int64).ravel() - 1
    if idx.size == 0 or idx.min() < 0 or (n_total is not None and idx.max() >= n_total):
        raise DataError(
            f"{splits_path}: {key} indices must be 1-based and within 1..{n_total}, "
            f"found {idx.min() + 1 if idx.size else 'none'}..{idx.max() + 1 if idx.size else 'none'}"
        )
    return idx


class NYUFileListSource(RGBDSource):
    """Frames listed in a BTS/AdaBins file (``rgb_path depth_path focal`` per line).

    Lines whose depth is ``None`` (present in the BTS train list) have no ground truth and are
    skipped; their number is kept in :attr:`skipped`.
    """

    def __init__(self, list_path: str | os.PathLike, data_root: str | os.PathLike | None = None) -> None:
        self.list_path = Path(list_path)
        self.data_root = Path(data_root) if data_root is not None else self.list_path.parent
        self.entries: list[tuple[str, str, float]] = []
        self.skipped = 0
        try:
            text = self.list_path.read_text()
        except (OSError, UnicodeDecodeError) as exc:
            reason = "no such file" if not self.list_path.exists() else (getattr(exc, "strerror", None) or exc)
            raise DataError(f"cannot read {self.list_path}: {reason}") from exc
        for lineno, line in enumerate(text.splitlines(), start=1):
            fields = line.split()
            if not fields:
                continue
            if len(fields) != 3:
                raise DataError(
                    f"{self.list_path} line {lineno}: expected 'rgb_path depth_path focal', got {line.strip()!r}"
                )
            rgb_rel, depth_rel, focal_s = fields
            if depth_rel == "None":
                self.skipped += 1
                continue
            try:
                focal = float(focal_s)
            except ValueError:
                focal = float("nan")
            if not np.isfinite(focal) or focal <= 0:
                raise DataError(f"{self.list_path} line {lineno}: focal {focal_s!r} is not a positive number")
            self.entries.append((rgb_rel.lstrip("/"), depth_rel.lstrip("/"), focal))
        if not self.entries:
            raise DataError(f"{self.list_path} lists no frames with ground-truth depth")

    def __len__(self) -> int:
        return len(self.entries)

    def _get(self, index: int) -> RGBDFrame:
        rgb_rel, depth_rel, focal = self.entries[index]
        rgb_path, depth_path = self.data_root / rgb_rel, self.data_root / depth_rel
        rgb = read_rgb(rgb_path)
        depth = read_depth_png(depth_path, NYU_PNG_DEPTH_SCALE)
        if depth.shape != rgb.shape[:2]:
            raise DataError(f"{depth_path}: depth size {depth.shape} differs from {rgb_path} {rgb.shape[:2]}")
        if rgb.shape[:2] == NYU_HW:
            K = np.array([[focal, 0.0, NYU_CX], [0.0, focal, NYU_CY], [0.0, 0.0, 1.0]])
        else:
            K = _centre_K(focal, focal, rgb.shape[:2])
        return RGBDFrame(rgb=rgb, depth=depth, K=K, name=str(Path(rgb_rel).with_suffix("")))

    def describe(self) -> str:
        extra = f", {self.skipped} lines without depth skipped" if self.skipped else ""
        return f"NYU file list {self.list_path} (root {self.data_root}): {len(self)} frames{extra}"


def _centre_K(fx: float, fy: float, hw: tuple[int, int]) -> np.ndarray:
    """Intrinsics with the principal point at the image centre (pixel centres at integers)."""
    h, w = hw
    return np.array([[fx, 0.0, (w - 1) / 2.0], [0.0, fy, (h - 1) / 2.0], [0.0, 0.0, 1.0]])


def _import_h5py():
    try:
        import h5py
    except ImportError as exc:  # pragma: no cover - h5py is a hard requirement
        raise DataError("reading NYU .mat files needs h5py (pip install h5py)") from exc
    return h5py
