"""The folder form (what ``moadepth synth`` writes and robot teams fill) and TUM RGB-D.

Layout (docs/ARCHITECTURE.md)::

    DIR/rgb/NNNNNN.png|jpg
    DIR/depth/NNNNNN.png   16-bit, depth_scale units per metre (default 1000)
    DIR/depth/NNNNNN.npy   float32 metres
    DIR/intrinsics.json    {"fx", "fy", "cx", "cy", "width", "height", "depth_scale"}

TUM RGB-D uses the same two directories but names files by timestamp, lists them in
``rgb.txt`` / ``depth.txt`` and stores depth at 5000 units per metre; frames are paired by
nearest timestamp because the two cameras are not triggered together.
"""

from __future__ import annotations

import json
import os
from decimal import Decimal, InvalidOperation
from pathlib import Path

import cv2
import numpy as np

from moadepth_core.data.frames import RGBDFrame, RGBDSource, read_depth_npy, read_depth_png, read_rgb
from moadepth_core.errors import DataError

RGB_SUFFIXES = (".png", ".jpg", ".jpeg")
DEPTH_SUFFIXES = (".npy", ".png")  # .npy first: lossless metres win if both exist
DEFAULT_DEPTH_SCALE = 1000.0
TUM_DEPTH_SCALE = 5000.0
INTRINSICS_FILE = "intrinsics.json"


def read_intrinsics(root: str | os.PathLike) -> dict | None:
    """``intrinsics.json`` of a folder as a dict with K (3x3) and the optional fields, or None."""
    path = Path(root) / INTRINSICS_FILE
    if not path.exists():
        return None
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise DataError(f"cannot read {path}: {exc}") from exc
    if not isinstance(data, dict):
        raise DataError(f"cannot read {path}: expected a JSON object with fx, fy, cx, cy")
    missing = [k for k in ("fx", "fy", "cx", "cy") if k not in data]
    if missing:
        raise DataError(f"{path} lacks {', '.join(missing)}; it needs fx, fy, cx, cy (pixels)")
    try:
        fx, fy, cx, cy = (float(data[k]) for k in ("fx", "fy", "cx", "cy"))
        width = int(data["width"]) if data.get("width") is not None else None
        height = int(data["height"]) if data.get("height") is not None else None
        scale = float(data["depth_scale"]) if data.get("depth_scale") is not None else None
    except (TypeError, ValueError) as exc:
        raise DataError(f"{path}: intrinsics must be numbers ({exc})") from exc
    if fx <= 0 or fy <= 0 or (scale is not None and scale <= 0):
        raise DataError(f"{path}: fx, fy and depth_scale must be positive")
    K = np.array([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]])
    return {"K": K, "width": width, "height": height, "depth_scale": scale, "path": path}


class FolderSource(RGBDSource):
    """RGB-D frames from the folder form or a TUM RGB-D sequence.

    Parameters
    ----------
    root : the folder holding ``rgb/`` and ``depth/``.
    depth_scale : units per metre of 16-bit depth PNGs; default: intrinsics.json's
        ``depth_scale``, else 1000 (name pairing) or 5000 (TUM timestamp pairing).
    pairing : "name" pairs ``rgb/X.*`` with ``depth/X.*``; "timestamp" reads TUM's
        ``rgb.txt``/``depth.txt`` and pairs by nearest stamp within ``max_time_diff`` seconds.
    K : 3x3 intrinsics; overrides intrinsics.json (TUM ships none).
    """

    def __init__(
        self,
        root: str | os.PathLike,
        depth_scale: float | None = None,
        pairing: str = "name",
        max_time_diff: float = 0.02,
        K: np.ndarray | None = None,
    ) -> None:
        self.root = Path(root)
        if not (self.root / "rgb").is_dir():
            raise DataError(f"{self.root} is not a folder dataset: it has no rgb/ directory")
        if pairing not in ("name", "timestamp"):
            raise DataError(f"pairing must be 'name' or 'timestamp', not {pairing!r}")
        self.pairing = pairing
        intr = read_intrinsics(self.root)
        if K is not None:
            self.K = np.asarray(K, dtype=np.float64)
            if self.K.shape != (3, 3):
                raise DataError(f"K must be a 3x3 matrix, got shape {self.K.shape}")
            self.size_hw = None
        elif intr is not None:
            self.K = intr["K"]
            self.size_hw = (intr["height"], intr["width"]) if intr["width"] and intr["height"] else None
        else:
            raise DataError(
                f"{self.root} has no {INTRINSICS_FILE} and no K was given; write {INTRINSICS_FILE} "
                '{"fx","fy","cx","cy","width","height"} or pass K='
            )
        if depth_scale is None:
            depth_scale = intr["depth_scale"] if intr is not None and intr["depth_scale"] else None
        if depth_scale is None:
            depth_scale = TUM_DEPTH_SCALE if pairing == "timestamp" else DEFAULT_DEPTH_SCALE
        if not depth_scale > 0:
            raise DataError(f"depth_scale must be positive, not {depth_scale}")
        self.depth_scale = float(depth_scale)
        self.unpaired = 0
        if pairing == "name":
            self.pairs = self._pair_by_name()
        else:
            self.pairs = self._pair_by_timestamp(max_time_diff)
        if not self.pairs:
            raise DataError(f"{self.root}: no RGB image has a matching depth image ({pairing} pairing)")

    def _pair_by_name(self) -> list[tuple[Path, Path, str, int | None]]:
        rgb = {p.stem: p for p in sorted((self.root / "rgb").iterdir()) if p.suffix.lower() in RGB_SUFFIXES}
        depth: dict[str, Path] = {}
        depth_dir = self.root / "depth"
        if depth_dir.is_dir():
            for p in sorted(depth_dir.iterdir()):
                suffix = p.suffix.lower()
                if suffix in DEPTH_SUFFIXES and (p.stem not in depth or suffix == ".npy"):
                    depth[p.stem] = p
        names = sorted(set(rgb) & set(depth))
        self.unpaired = len(rgb) - len(names)
        return [(rgb[n], depth[n], n, None) for n in names]

    def _pair_by_timestamp(self, max_time_diff: float) -> list[tuple[Path, Path, str, int | None]]:
        rgb = _read_tum_list(self.root / "rgb.txt")
        depth = _read_tum_list(self.root / "depth.txt")
        pairs = associate_by_stamp([s for s, _ in rgb], [s for s, _ in depth], max_time_diff)
        self.unpaired = len(rgb) - len(pairs)
        out = []
        for i, j in pairs:
            stamp, rel = rgb[i]
            out.append((self.root / rel, self.root / depth[j][1], Path(rel).stem, stamp))
        return out

    def __len__(self) -> int:
        return len(self.pairs)

    def _get(self, index: int) -> RGBDFrame:
        rgb_path, depth_path, name, stamp = self.pairs[index]
        rgb = read_rgb(rgb_path)
        if depth_path.suffix.lower() == ".npy":
            depth = read_depth_npy(depth_path)
        else:
            depth = read_depth_png(depth_path, self.depth_scale)
        if depth.shape != rgb.shape[:2]:
            raise DataError(f"{depth_path}: depth size {depth.shape} differs from {rgb_path} {rgb.shape[:2]}")
        if self.size_hw is not None and rgb.shape[:2] != self.size_hw:
            raise DataError(
                f"{rgb_path} is {rgb.shape[1]}x{rgb.shape[0]} but {self.root / INTRINSICS_FILE} is for "
                f"{self.size_hw[1]}x{self.size_hw[0]}"
            )
        return RGBDFrame(rgb=rgb, depth=depth, K=self.K.copy(), name=name, stamp_ns=stamp)

    def describe(self) -> str:
        kind = "TUM RGB-D" if self.pairing == "timestamp" else "folder"
        extra = f", {self.unpaired} RGB images without depth skipped" if self.unpaired else ""
        return f"{kind} {self.root} (depth scale {self.depth_scale:g}/m): {len(self)} frames{extra}"


def _parse_stamp_ns(text: str) -> int:
    """Seconds as written (``1305031102.175304``) to integer ns without float rounding."""
    return int(Decimal(text) * 1_000_000_000)


def _read_tum_list(path: Path) -> list[tuple[int, str]]:
    """``timestamp filename`` lines of a TUM ``rgb.txt``/``depth.txt``, sorted by time."""
    try:
        text = path.read_text()
    except OSError as exc:
        reason = "no such file" if not path.exists() else (exc.strerror or exc)
        raise DataError(f"cannot read {path}: {reason} (TUM timestamp pairing needs it)") from exc
    out = []
    for lineno, line in enumerate(text.splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        fields = line.split()
        try:
            if len(fields) != 2:
                raise InvalidOperation
            out.append((_parse_stamp_ns(fields[0]), fields[1]))
        except InvalidOperation:
            raise DataError(f"{path} line {lineno}: expected 'timestamp filename', got {line!r}") from None
    out.sort()
    return out


def associate_by_stamp(rgb_ns: list[int], depth_ns: list[int], max_time_diff: float) -> list[tuple[int, int]]:
    """Pair each RGB stamp with the nearest unused depth stamp within ``max_time_diff`` seconds.

    Greedy by smallest difference, one-to-one, like TUM's ``associate.py``; returns index
    pairs sorted by RGB time. Inputs must be sorted.
    """
    if not rgb_ns or not depth_ns:
        return []
    d = np.asarray(depth_ns, dtype=np.int64)
    limit = int(round(max_time_diff * 1e9))
    candidates = []
    for i, t in enumerate(rgb_ns):
        k = int(np.searchsorted(d, t))
        for j in (k - 2, k - 1, k, k + 1):
            if 0 <= j < len(d) and abs(int(d[j]) - t) <= limit:
                candidates.append((abs(int(d[j]) - t), i, j))
    candidates.sort()
    used_r, used_d, pairs = set(), set(), []
    for _, i, j in candidates:
        if i not in used_r and j not in used_d:
            used_r.add(i)
            used_d.add(j)
            pairs.append((i, j))
    return sorted(pairs)


def write_intrinsics(
    root: str | os.PathLike, K: np.ndarray, width: int, height: int, depth_scale: float = DEFAULT_DEPTH_SCALE
) -> Path:
    """Write ``root/intrinsics.json`` for the folder form; returns its path."""
    K = np.asarray(K, dtype=np.float64)
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    data = {
        "fx": float(K[0, 0]), "fy": float(K[1, 1]), "cx": float(K[0, 2]), "cy": float(K[1, 2]),
        "width": int(width), "height": int(height), "depth_scale": float(depth_scale),
    }
    path = root / INTRINSICS_FILE
    path.write_text(json.dumps(data, indent=2) + "\n")
    return path


def write_folder_frame(
    root: str | os.PathLike,
    index: int,
    rgb: np.ndarray,
    depth_m: np.ndarray,
    K: np.ndarray | None = None,
    depth_format: str = "npy",
    depth_scale: float = DEFAULT_DEPTH_SCALE,
) -> tuple[Path, Path]:
    """Write one frame as ``rgb/NNNNNN.png`` + ``depth/NNNNNN.{npy,png}``; returns both paths.

    ``K`` (optional) writes ``intrinsics.json`` if the folder has none yet. PNG depth is stored
    as round(metres * depth_scale) in uint16; invalid (0, NaN, Inf, negative) and values beyond
    the 16-bit range become 0 rather than a wrong, saturated distance.
    """
    if depth_format not in ("npy", "png"):
        raise DataError(f"depth_format must be 'npy' or 'png', not {depth_format!r}")
    root = Path(root)
    rgb = np.asarray(rgb)
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise DataError(f"rgb must be an HxWx3 uint8 array, got {rgb.dtype} {rgb.shape}")
    depth = np.asarray(depth_m, dtype=np.float32)
    if depth.shape != rgb.shape[:2]:
        raise DataError(f"depth {depth.shape} is not aligned with rgb {rgb.shape[:2]}")
    depth = np.where(np.isfinite(depth) & (depth > 0), depth, 0).astype(np.float32)
    (root / "rgb").mkdir(parents=True, exist_ok=True)
    (root / "depth").mkdir(parents=True, exist_ok=True)
    if K is not None and not (root / INTRINSICS_FILE).exists():
        write_intrinsics(root, K, rgb.shape[1], rgb.shape[0], depth_scale)
    stem = f"{int(index):06d}"
    rgb_path = root / "rgb" / f"{stem}.png"
    if not cv2.imwrite(str(rgb_path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)):
        raise DataError(f"cannot write {rgb_path}")
    depth_path = root / "depth" / f"{stem}.{depth_format}"
    if depth_format == "npy":
        np.save(depth_path, depth)
    else:
        units = np.round(depth.astype(np.float64) * depth_scale)
        units[units > 65535] = 0
        if not cv2.imwrite(str(depth_path), units.astype(np.uint16)):
            raise DataError(f"cannot write {depth_path}")
    return rgb_path, depth_path
