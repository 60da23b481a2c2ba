"""RGB-D sources (NYU .mat, NYU file lists, folders, TUM, rosbag2) and sample transforms.

:func:`open_source` is the one entry point CLIs use: users pass a path and get frames,
whatever the format on disk.
"""

from __future__ import annotations

import inspect
import os
from pathlib import Path

from moadepth_core.data.folder import (
    DEFAULT_DEPTH_SCALE,
    TUM_DEPTH_SCALE,
    FolderSource,
    associate_by_stamp,
    read_intrinsics,
    write_folder_frame,
    write_intrinsics,
)
from moadepth_core.data.frames import (
    ListSource,
    RGBDFrame,
    RGBDSource,
    Subset,
    read_depth_npy,
    read_depth_png,
    read_rgb,
)
from moadepth_core.data.nyu import NYU_K, NYUFileListSource, NYUMatSource, load_nyu_split
from moadepth_core.data.transforms import EvalTransform, RGBDDataset, TrainTransform, resize_depth, resize_rgb
from moadepth_core.errors import DataError

__all__ = [
    "DEFAULT_DEPTH_SCALE",
    "NYU_K",
    "TUM_DEPTH_SCALE",
    "EvalTransform",
    "FolderSource",
    "ListSource",
    "NYUFileListSource",
    "NYUMatSource",
    "RGBDDataset",
    "RGBDFrame",
    "RGBDSource",
    "Subset",
    "TrainTransform",
    "associate_by_stamp",
    "detect_format",
    "load_nyu_split",
    "open_source",
    "read_depth_npy",
    "read_depth_png",
    "read_intrinsics",
    "read_rgb",
    "resize_depth",
    "resize_rgb",
    "write_folder_frame",
    "write_intrinsics",
]

_EXPECTED = (
    "expected an NYU .mat file, a BTS/AdaBins .txt file list, a folder with rgb/ and depth/ "
    "(or a TUM RGB-D sequence), or a rosbag2 (directory with metadata.yaml, .mcap or .db3)"
)


def detect_format(path: str | os.PathLike) -> str:
    """One of "nyu_mat", "file_list", "folder", "tum", "bag" for ``path``, or DataError."""
    p = Path(path)
    if not p.exists():
        raise DataError(f"{p} does not exist; {_EXPECTED}")
    if p.is_file():
        suffix = p.suffix.lower()
        if suffix == ".mat":
            return "nyu_mat"
        if suffix == ".txt":
            return "file_list"
        if suffix in (".mcap", ".db3"):
            return "bag"
    elif p.is_dir():
        if (p / "metadata.yaml").is_file():
            return "bag"
        if (p / "rgb").is_dir():
            return "tum" if (p / "rgb.txt").is_file() else "folder"
    raise DataError(f"{p} is not a dataset moadepth can read: {_EXPECTED}")


def open_source(path: str | os.PathLike, split: str | None = None, **options) -> RGBDSource:
    """Open any supported RGB-D dataset at ``path``.

    ``split`` ("train" | "test" | "all") applies to the NYU ``.mat`` (default "test"); other
    ``options`` go to the detected source: ``splits_path`` (NYU .mat), ``data_root`` (file
    list, default the list's folder), ``depth_scale``/``K``/``max_time_diff``/``pairing``
    (folder, TUM), anything the bag reader accepts (bag).
    """
    fmt = detect_format(path)
    if fmt == "nyu_mat":
        return _construct(NYUMatSource, path, fmt, split=split or "test", **options)
    if fmt == "file_list":
        return _construct(NYUFileListSource, path, fmt, **options)
    if fmt in ("folder", "tum"):
        options.setdefault("pairing", "timestamp" if fmt == "tum" else "name")
        return _construct(FolderSource, path, fmt, **options)
    try:
        from moadepth_core.data.rosbag.source import BagSource
    except ImportError as exc:
        raise DataError(f"{path} is a rosbag2 recording, but bag support is unavailable ({exc})") from exc
    return _construct(BagSource, path, fmt, **options)


def _construct(cls, path, fmt: str, **options) -> RGBDSource:
    """Reject options the detected format does not take with a sentence, not a TypeError."""
    try:
        inspect.signature(cls).bind(path, **options)
    except TypeError as exc:
        raise DataError(f"{path} was detected as {fmt} ({cls.__name__}), which cannot take these options: {exc}") \
            from None
    return cls(path, **options)
