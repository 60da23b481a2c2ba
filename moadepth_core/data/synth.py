"""Procedural indoor RGB-D scenes with exact depth: the embedded default dataset.

Why: no real RGB-D data can be downloaded here, yet training, evaluation, the
ROS node and the bag tools all need images with *known* depth and intrinsics.
Each scene is a closed room (floor, walls, ceiling) with axis-aligned boxes
(tables, shelves, cabinets, crates) and vertical cylinders (pillars, bins),
ray cast with numpy so depth is exact, not estimated.

Conventions: world frame z up (metres); camera optical frame x right, y down,
z forward; depth is the Z coordinate along the optical axis (REP 118), never the
ray length. Ray directions are built with camera-frame z = 1, so the ray
parameter of the first hit *is* the depth.

Everything is a pure function of the seed and the config: the same seed gives
byte-identical files.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from moadepth_core.errors import DataError, MoadepthError, cli_entry

# Fixed start time for stamps so that bags are deterministic (2023-11-14T22:13:20Z).
START_NS = 1_700_000_000 * 1_000_000_000

COLOR_FRAME = "camera_color_optical_frame"
# camera_link (x forward, y left, z up) -> optical frame (x right, y down, z forward).
R_LINK_OPTICAL = np.array([[0.0, 0.0, 1.0], [-1.0, 0.0, 0.0], [0.0, -1.0, 0.0]])

# Texture patterns.
PLAIN, CHECKER, STRIPES, NOISE, WOOD, TILES = range(6)
PATTERN_NAMES = ["plain", "checker", "stripes", "noise", "wood", "tiles"]


# --------------------------------------------------------------------------------------------------
# Configuration and scene description
# --------------------------------------------------------------------------------------------------
@dataclass
class SynthConfig:
    """What to render: camera, mounting, trajectory and how many frames."""

    width: int = 640
    height: int = 480
    fx: float = 525.0
    fy: float = 525.0
    cx: float | None = None  # None: image centre ((width - 1) / 2)
    cy: float | None = None
    camera_height: float = 0.6  # metres above the floor (robot mount)
    camera_pitch_deg: float = -10.0  # elevation of the optical axis; negative looks down
    free_poses: bool = False  # free 6-DoF hand-held-like poses instead of a robot mount
    frames: int = 100
    seed: int = 0
    fps: float = 10.0  # stamp rate
    speed: float = 0.5  # m/s along the path

    def K(self) -> np.ndarray:
        cx = (self.width - 1) / 2.0 if self.cx is None else self.cx
        cy = (self.height - 1) / 2.0 if self.cy is None else self.cy
        return np.array([[self.fx, 0.0, cx], [0.0, self.fy, cy], [0.0, 0.0, 1.0]])

    def validate(self) -> None:
        if self.width < 8 or self.height < 8:
            raise DataError(f"Image size {self.width}x{self.height} is too small; use at least 8x8.")
        if self.fx <= 0 or self.fy <= 0:
            raise DataError(f"Focal lengths must be positive, got fx={self.fx}, fy={self.fy}.")
        if self.frames < 1:
            raise DataError(f"--frames must be at least 1, got {self.frames}.")
        if self.fps <= 0 or self.speed < 0:
            raise DataError(f"fps must be positive and speed non-negative, got {self.fps}, {self.speed}.")
        if not 0.05 <= self.camera_height <= 2.3:
            raise DataError(f"Camera height {self.camera_height} m must lie between 0.05 and 2.3 m.")
        if not -80.0 <= self.camera_pitch_deg <= 80.0:
            raise DataError(f"Camera pitch {self.camera_pitch_deg} deg must lie between -80 and 80.")


@dataclass
class Material:
    """Procedural surface appearance; texture coordinates are world-space metres on the surface."""

    pattern: int
    color1: tuple[float, float, float]
    color2: tuple[float, float, float]
    scale: float  # feature period in metres
    phase: float = 0.0  # offsets the noise lattice so surfaces do not look alike


@dataclass
class Box:
    """Axis-aligned solid box [lo, hi] in world coordinates."""

    lo: tuple[float, float, float]
    hi: tuple[float, float, float]
    material: int
    kind: str = "box"


@dataclass
class Cylinder:
    """Vertical solid cylinder with its axis at (x, y), radius r, spanning z0..z1."""

    x: float
    y: float
    r: float
    z0: float
    z1: float
    material: int
    kind: str = "cylinder"


@dataclass
class Scene:
    """A closed room [0, size] with primitives, one light and a collision-free camera path."""

    size: tuple[float, float, float]  # room length (x), width (y), height (z)
    boxes: list[Box] = field(default_factory=list)
    cylinders: list[Cylinder] = field(default_factory=list)
    materials: list[Material] = field(default_factory=list)  # first 6: room faces -x,+x,-y,+y,floor,ceiling
    light: tuple[float, float, float] = (0.0, 0.0, 0.0)
    path: np.ndarray = field(default_factory=lambda: np.zeros((0, 2)))  # closed loop (M, 2) in xy
    seed: int = 0

    def describe(self) -> dict:
        """JSON-friendly summary, written to synth.json for provenance."""
        return {
            "seed": self.seed,
            "room_size_m": [round(float(v), 4) for v in self.size],
            "boxes": [
                {"kind": b.kind, "lo": [round(float(v), 4) for v in b.lo],
                 "hi": [round(float(v), 4) for v in b.hi], "material": b.material}
                for b in self.boxes
            ],
            "cylinders": [
                {"kind": c.kind, "xy": [round(c.x, 4), round(c.y, 4)], "r": round(c.r, 4),
                 "z": [round(c.z0, 4), round(c.z1, 4)], "material": c.material}
                for c in self.cylinders
            ],
            "materials": [
                {"pattern": PATTERN_NAMES[m.pattern], "scale": round(m.scale, 4)} for m in self.materials
            ],
        }


# --------------------------------------------------------------------------------------------------
# Scene generation
# --------------------------------------------------------------------------------------------------
def _random_color(rng: np.random.Generator, lo: float = 0.15, hi: float = 0.9) -> tuple[float, float, float]:
    return tuple(float(v) for v in rng.uniform(lo, hi, size=3))  # type: ignore[return-value]


def _random_material(rng: np.random.Generator, patterns: Sequence[int]) -> Material:
    pattern = int(rng.choice(patterns))
    c1 = _random_color(rng)
    # second colour: a darker/lighter variant or a contrasting colour
    if rng.random() < 0.6:
        c2 = tuple(float(np.clip(v * rng.uniform(0.45, 0.8), 0, 1)) for v in c1)
    else:
        c2 = _random_color(rng)
    scale = {PLAIN: 0.5, CHECKER: rng.uniform(0.1, 0.5), STRIPES: rng.uniform(0.05, 0.3),
             NOISE: rng.uniform(0.1, 0.6), WOOD: rng.uniform(0.05, 0.15), TILES: rng.uniform(0.25, 0.6)}[pattern]
    return Material(pattern, c1, c2, float(scale), float(rng.uniform(0, 100)))  # type: ignore[arg-type]


def _loop_path(L: float, W: float, rng: np.random.Generator, samples: int = 2048) -> np.ndarray:
    """A smooth closed loop (perturbed ellipse) around the room centre, clear of the walls."""
    a = max(L / 2 - 1.1, 0.5)
    b = max(W / 2 - 1.0, 0.45)
    th = np.linspace(0.0, 2 * np.pi, samples, endpoint=False)
    k1, k2 = rng.uniform(0, 2 * np.pi, size=2)
    rad = 1.0 + 0.12 * np.sin(2 * th + k1) + 0.06 * np.sin(3 * th + k2)
    return np.stack([L / 2 + a * rad * np.cos(th), W / 2 + b * rad * np.sin(th)], axis=1)


def _rect_clear(path: np.ndarray, lo: np.ndarray, hi: np.ndarray, clearance: float) -> bool:
    """True when every path point is at least ``clearance`` from the axis-aligned rectangle."""
    d = np.maximum(np.maximum(lo - path, path - hi), 0.0)
    return bool(np.min(np.hypot(d[:, 0], d[:, 1])) >= clearance)


def _rects_overlap(lo1, hi1, lo2, hi2, gap: float = 0.05) -> bool:
    return bool(np.all(lo1 < hi2 + gap) and np.all(lo2 < hi1 + gap))


def make_scene(seed: int) -> Scene:
    """Build a random furnished room from ``seed`` (pure: the same seed gives the same scene)."""
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), 0x5EED]))
    L = float(rng.uniform(4.0, 9.0))
    W = float(rng.uniform(3.0, 7.0))
    H = float(rng.uniform(2.4, 3.2))
    path = _loop_path(L, W, rng)
    scene = Scene(size=(L, W, H), path=path, seed=int(seed))

    # Room faces: walls share a look, floor and ceiling have their own.
    wall = _random_material(rng, [PLAIN, NOISE, STRIPES])
    wall.color1 = tuple(float(v) for v in rng.uniform(0.55, 0.95, 3))  # type: ignore[assignment]
    walls = [dataclasses.replace(wall, phase=float(rng.uniform(0, 100))) for _ in range(4)]
    if rng.random() < 0.4:  # one accent wall
        walls[int(rng.integers(4))] = _random_material(rng, [PLAIN, STRIPES, CHECKER, NOISE])
    floor = _random_material(rng, [WOOD, TILES, CHECKER, NOISE])
    ceiling = Material(PLAIN, (0.92, 0.92, 0.9), (0.85, 0.85, 0.83), 0.5, float(rng.uniform(0, 100)))
    scene.materials = [*walls, floor, ceiling]
    scene.light = (L / 2 + float(rng.uniform(-0.5, 0.5)), W / 2 + float(rng.uniform(-0.5, 0.5)), H - 0.25)

    furniture_patterns = [PLAIN, CHECKER, STRIPES, NOISE, WOOD]
    target = int(rng.integers(4, 11))
    footprints: list[tuple[np.ndarray, np.ndarray]] = []
    clearance = 0.4
    count = 0
    for _ in range(400):
        if count >= target:
            break
        kind = str(rng.choice(["table", "shelf", "cabinet", "crate", "pillar", "bin"],
                              p=[0.2, 0.2, 0.2, 0.15, 0.1, 0.15]))
        against_wall = kind in ("shelf", "cabinet") or rng.random() < 0.5
        if kind == "table":
            sx, sy, sz = rng.uniform(0.6, 1.6), rng.uniform(0.5, 0.9), rng.uniform(0.7, 0.78)
        elif kind == "shelf":
            sx, sy, sz = rng.uniform(0.6, 1.5), rng.uniform(0.3, 0.45), rng.uniform(1.4, min(2.2, H - 0.2))
        elif kind == "cabinet":
            sx, sy, sz = rng.uniform(0.5, 1.2), rng.uniform(0.4, 0.6), rng.uniform(0.5, 1.0)
        elif kind == "crate":
            sx = sy = sz = rng.uniform(0.3, 0.6)
        elif kind == "pillar":
            sx = sy = 2 * rng.uniform(0.12, 0.3)
            sz = H
            against_wall = False
        else:  # bin
            sx = sy = 2 * rng.uniform(0.12, 0.25)
            sz = rng.uniform(0.3, 0.8)
        if rng.random() < 0.5 and kind not in ("pillar", "bin"):
            sx, sy = sy, sx
        if sx > L - 0.2 or sy > W - 0.2:
            continue
        if against_wall:
            side = int(rng.integers(4))
            gap = rng.uniform(0.0, 0.05)
            if side < 2:  # -x / +x wall: the short axis faces the room
                sx, sy = min(sx, sy), max(sx, sy)
                x = gap if side == 0 else L - gap - sx
                y = rng.uniform(0.05, W - sy - 0.05)
            else:
                sx, sy = max(sx, sy), min(sx, sy)
                y = gap if side == 2 else W - gap - sy
                x = rng.uniform(0.05, L - sx - 0.05)
        else:
            x = rng.uniform(0.05, L - sx - 0.05)
            y = rng.uniform(0.05, W - sy - 0.05)
        if x < 0 or y < 0 or x + sx > L or y + sy > W:
            continue
        lo = np.array([x, y], dtype=float)
        hi = lo + [sx, sy]
        if not _rect_clear(path, lo, hi, clearance):
            continue
        if any(_rects_overlap(lo, hi, a, b) for a, b in footprints):
            continue
        footprints.append((lo, hi))
        count += 1
        mat = len(scene.materials)
        scene.materials.append(_random_material(rng, furniture_patterns))
        if kind in ("pillar", "bin"):
            scene.cylinders.append(Cylinder(float(x + sx / 2), float(y + sy / 2), float(sx / 2), 0.0,
                                            float(sz), mat, kind))
        elif kind == "table":
            top = 0.04
            scene.boxes.append(Box((x, y, sz - top), (x + sx, y + sy, sz), mat, "table"))
            leg = 0.05
            for lx, ly in ((x, y), (x + sx - leg, y), (x, y + sy - leg), (x + sx - leg, y + sy - leg)):
                scene.boxes.append(Box((lx, ly, 0.0), (lx + leg, ly + leg, sz - top), mat, "table_leg"))
            if rng.random() < 0.6:  # something on the table
                ox, oy, oz = rng.uniform(0.15, 0.35), rng.uniform(0.15, 0.35), rng.uniform(0.1, 0.35)
                px = rng.uniform(x + 0.02, x + sx - ox - 0.02)
                py = rng.uniform(y + 0.02, y + sy - oy - 0.02)
                m2 = len(scene.materials)
                scene.materials.append(_random_material(rng, furniture_patterns))
                scene.boxes.append(Box((px, py, sz), (px + ox, py + oy, sz + oz), m2, "table_item"))
        else:
            scene.boxes.append(Box((x, y, 0.0), (x + sx, y + sy, sz), mat, kind))
            if kind == "shelf":  # boards sticking out a little give the shelf some depth structure
                n = int(sz // 0.4)
                for i in range(1, n + 1):
                    z = i * sz / (n + 1)
                    bx0, by0, bx1, by1 = x - 0.02, y - 0.02, x + sx + 0.02, y + sy + 0.02
                    scene.boxes.append(Box((bx0, by0, z), (bx1, by1, z + 0.025), mat, "shelf_board"))
    for b in scene.boxes:
        b.lo = tuple(float(v) for v in b.lo)  # type: ignore[assignment]
        b.hi = tuple(float(v) for v in b.hi)  # type: ignore[assignment]
    return scene


# --------------------------------------------------------------------------------------------------
# Rendering
# --------------------------------------------------------------------------------------------------
_RAY_CACHE: dict[tuple, tuple[np.ndarray, np.ndarray]] = {}


def camera_rays(K: np.ndarray, width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
    """Camera-frame ray components (x/z of shape (1, W), y/z of shape (H, 1)) for pixel centres."""
    K = np.asarray(K, dtype=np.float64)
    key = (float(K[0, 0]), float(K[1, 1]), float(K[0, 2]), float(K[1, 2]), float(K[0, 1]), width, height)
    if key not in _RAY_CACHE:
        v = np.arange(height, dtype=np.float64)[:, None]
        u = np.arange(width, dtype=np.float64)[None, :]
        yc = ((v - K[1, 2]) / K[1, 1]).astype(np.float32)
        xc = ((u - K[0, 2]) / K[0, 0]).astype(np.float32)  # skew (K[0, 1]) is assumed 0, as in ROS cameras
        _RAY_CACHE.clear()
        _RAY_CACHE[key] = (xc, yc)
    return _RAY_CACHE[key]


def _safe_inv(d: np.ndarray) -> np.ndarray:
    """1/d with exact zeros mapped to a huge finite value so slab maths never meets 0 * inf."""
    with np.errstate(divide="ignore"):
        inv = np.float32(1.0) / d
    bad = ~np.isfinite(inv)
    if bad.any():
        inv[bad] = np.float32(1e30)
    return inv


def _project_bbox(lo, hi, R_cw: np.ndarray, t_cw: np.ndarray, K: np.ndarray, width: int, height: int):
    """Pixel rectangle (r0, r1, c0, c1) that conservatively covers an AABB, or None if behind.

    Restricting each primitive's intersection to its screen rectangle is what
    makes the renderer fast: most furniture covers a small part of the image.
    """
    corners = np.array([[x, y, z] for x in (lo[0], hi[0]) for y in (lo[1], hi[1]) for z in (lo[2], hi[2])])
    pc = corners @ R_cw.T + t_cw
    z = pc[:, 2]
    if np.all(z <= 1e-6):
        return None
    if np.any(z <= 1e-3):  # straddles the camera plane: projection is unbounded, test everything
        return 0, height, 0, width
    u = K[0, 0] * pc[:, 0] / z + K[0, 2]
    v = K[1, 1] * pc[:, 1] / z + K[1, 2]
    c0 = max(int(np.floor(u.min())) - 1, 0)
    c1 = min(int(np.ceil(u.max())) + 2, width)
    r0 = max(int(np.floor(v.min())) - 1, 0)
    r1 = min(int(np.ceil(v.max())) + 2, height)
    if c0 >= c1 or r0 >= r1:
        return None
    return r0, r1, c0, c1


_NOISE_N = 256
# Lattice values for value noise: fixed (not seed dependent) so textures are a pure function of the
# material; padded by one row/column so the +1 neighbours never need a wrap.
_NOISE_TABLE = np.random.default_rng(20240601).random((_NOISE_N + 1, _NOISE_N + 1), dtype=np.float32)
_NOISE_TABLE[-1, :] = _NOISE_TABLE[0, :]
_NOISE_TABLE[:, -1] = _NOISE_TABLE[:, 0]
_NOISE_FLAT = _NOISE_TABLE.ravel()


def _value_noise(u: np.ndarray, v: np.ndarray, phase: float) -> np.ndarray:
    """Smooth 2-D value noise in [0, 1] (bilinear on a small lattice table: cache friendly and fast)."""
    u = u + np.float32(phase)
    v = v + np.float32(phase * 0.7)
    iu = np.floor(u)
    iv = np.floor(v)
    fu = u - iu
    fv = v - iv
    fu = fu * fu * (np.float32(3) - np.float32(2) * fu)
    fv = fv * fv * (np.float32(3) - np.float32(2) * fv)
    idx = (iu.astype(np.int32) & (_NOISE_N - 1)) * (_NOISE_N + 1) + (iv.astype(np.int32) & (_NOISE_N - 1))
    n00 = _NOISE_FLAT.take(idx)
    n01 = _NOISE_FLAT.take(idx + 1)
    n10 = _NOISE_FLAT.take(idx + (_NOISE_N + 1))
    n11 = _NOISE_FLAT.take(idx + (_NOISE_N + 2))
    a = n00 + (n10 - n00) * fu
    b = n01 + (n11 - n01) * fu
    return a + (b - a) * fv


def _pattern(mat: Material, u: np.ndarray, v: np.ndarray, footprint: np.ndarray) -> np.ndarray:
    """Blend weight in [0, 1] between the material's two colours at surface coordinates (u, v).

    Contrast fades where a pixel's footprint approaches the feature size, a
    cheap stand-in for mip-mapping that keeps distant checkers from aliasing.
    """
    s = np.float32(mat.scale)
    fade = np.clip(1.0 - footprint * (2.0 / s), 0.0, 1.0).astype(np.float32)
    if mat.pattern == PLAIN:
        return np.float32(0.3) * _value_noise(u * 2.0, v * 2.0, mat.phase)
    if mat.pattern == CHECKER:
        p = ((np.floor(u / s) + np.floor(v / s)) % 2).astype(np.float32)
    elif mat.pattern == STRIPES:
        p = (0.5 + 0.5 * np.sin(u * np.float32(2 * np.pi) / s)).astype(np.float32)
        p = np.clip((p - 0.5) * 3 + 0.5, 0, 1)
    elif mat.pattern == NOISE:
        p = 0.65 * _value_noise(u / s, v / s, mat.phase) + 0.35 * _value_noise(u * 4 / s, v * 4 / s, mat.phase)
    elif mat.pattern == WOOD:
        warp = _value_noise(u * 0.8, v * 6.0, mat.phase)
        g = v / s + 2.5 * warp
        p = (g - np.floor(g)) ** 3
        p = 0.7 * p + 0.3 * _value_noise(u * 0.5 / s, v * 8.0, mat.phase + 3.0)
    else:  # TILES
        fu = u / s - np.floor(u / s)
        fv = v / s - np.floor(v / s)
        grout = (np.minimum(np.minimum(fu, 1 - fu), np.minimum(fv, 1 - fv)) < 0.03).astype(np.float32)
        p = np.maximum(0.25 * _value_noise(u / s, v / s, mat.phase), grout)
    p = p.astype(np.float32)
    return 0.5 + (p - 0.5) * fade


def render(
    scene: Scene, pose_T_world_cam: np.ndarray, K: np.ndarray, width: int, height: int
) -> tuple[np.ndarray, np.ndarray]:
    """Ray cast ``scene`` from a camera at ``pose_T_world_cam`` (world <- optical frame).

    Returns (rgb HxWx3 uint8, depth HxW float32 metres along the optical axis).
    The camera must be inside the room; every ray then hits something.
    """
    T = np.asarray(pose_T_world_cam, dtype=np.float64)
    R, o = T[:3, :3], T[:3, 3]
    L, W, H = scene.size
    if not (0 < o[0] < L and 0 < o[1] < W and 0 < o[2] < H):
        raise DataError(f"Camera position {o.round(3).tolist()} is outside the room {list(scene.size)}.")
    K = np.asarray(K, dtype=np.float64)
    xc, yc = camera_rays(K, width, height)
    f32 = np.float32
    # World ray directions with camera z = 1, so the hit parameter t is the depth.
    d = [f32(R[i, 0]) * xc + f32(R[i, 1]) * yc + f32(R[i, 2]) for i in range(3)]
    inv = [_safe_inv(di) for di in d]
    oo = [f32(v) for v in o]

    # Room (seen from inside): exit distance per axis, nearest wins.
    t_best = None
    face = None
    for ax, size in enumerate((L, W, H)):
        pos = d[ax] > 0
        # |1/d| so a ray parallel to a wall (d == 0) gets a huge positive distance, never a negative one
        t_ax = np.where(pos, f32(size) - oo[ax], oo[ax]) * np.abs(inv[ax])
        f_ax = np.where(pos, 2 * ax + 1, 2 * ax).astype(np.int16)
        if t_best is None:
            t_best, face = t_ax, f_ax
        else:
            closer = t_ax < t_best
            t_best = np.where(closer, t_ax, t_best)
            face = np.where(closer, f_ax, face)
    assert t_best is not None and face is not None
    ids = face  # 0..5 room faces; 6 + i for primitive i

    R_cw = R.T
    t_cw = -R.T @ o
    prims: list[Box | Cylinder] = [*scene.boxes, *scene.cylinders]
    rects: list[tuple[int, int, int, int] | None] = []
    for pid, prim in enumerate(prims):
        if isinstance(prim, Box):
            lo, hi = prim.lo, prim.hi
        else:
            lo = (prim.x - prim.r, prim.y - prim.r, prim.z0)
            hi = (prim.x + prim.r, prim.y + prim.r, prim.z1)
        rect = _project_bbox(lo, hi, R_cw, t_cw, K, width, height)
        rects.append(rect)
        if rect is None:
            continue
        r0, r1, c0, c1 = rect
        sl = (slice(r0, r1), slice(c0, c1))
        tb = t_best[sl]
        if isinstance(prim, Box):
            tn = tf = None
            for ax in range(3):
                a = (f32(lo[ax]) - oo[ax]) * inv[ax][sl]
                b = (f32(hi[ax]) - oo[ax]) * inv[ax][sl]
                near, far = np.minimum(a, b), np.maximum(a, b)
                tn = near if tn is None else np.maximum(tn, near)
                tf = far if tf is None else np.minimum(tf, far)
            hit = (tn <= tf) & (tn > 0) & (tn < tb)
            t_hit = tn
        else:
            dx, dy, dz = d[0][sl], d[1][sl], d[2][sl]
            ex, ey = oo[0] - f32(prim.x), oo[1] - f32(prim.y)
            a = dx * dx + dy * dy
            b = ex * dx + ey * dy  # half of the usual b
            c = ex * ex + ey * ey - f32(prim.r) ** 2
            disc = b * b - a * c
            with np.errstate(invalid="ignore", divide="ignore"):
                ts = (-b - np.sqrt(np.maximum(disc, 0))) / a
            z = oo[2] + ts * dz
            side = (disc > 0) & (ts > 0) & (z >= prim.z0) & (z <= prim.z1)
            t_hit = np.where(side, ts, np.inf).astype(f32)
            # caps: the camera can look down onto a bin (top) or up at a floating one (bottom)
            for zc in (prim.z1, prim.z0):
                if (zc - oo[2]) * (1 if zc == prim.z1 else -1) >= 0:
                    continue  # camera on the inner side of this cap's plane: cap faces away
                tc = (f32(zc) - oo[2]) * inv[2][sl]
                px, py = ex + tc * dx, ey + tc * dy
                cap = (tc > 0) & (px * px + py * py <= f32(prim.r) ** 2) & (tc < t_hit)
                t_hit = np.where(cap, tc, t_hit)
            hit = t_hit < tb
        if np.any(hit):
            t_best[sl] = np.where(hit, t_hit, tb)
            ids[sl] = np.where(hit, pid + 6, ids[sl])

    depth = t_best.astype(np.float32)
    rgb = _shade(scene, prims, ids, depth, d, oo, float(K[0, 0]))
    return rgb, depth


def _shade(scene: Scene, prims: list, ids: np.ndarray, depth: np.ndarray, d: list[np.ndarray],
           oo: list, fx: float) -> np.ndarray:
    """Texture and light every pixel, one surface at a time, touching each pixel once.

    Pixels are grouped by surface id with one stable counting sort, so each
    surface's normal, texture and Lambert term are computed on just its pixels.
    """
    f32 = np.float32
    height, width = depth.shape
    flat_ids = ids.ravel()
    order = np.argsort(flat_ids, kind="stable")
    bounds = np.concatenate([[0], np.cumsum(np.bincount(flat_ids, minlength=6 + len(prims)))])
    # one gather puts every surface's pixels next to each other; groups are then plain slices
    srt = np.stack([depth.ravel(), d[0].ravel(), d[1].ravel(), d[2].ravel()]).take(order, axis=1)
    out_sorted = np.empty((height * width, 3), dtype=np.float32)
    lpos = [f32(v) for v in scene.light]
    inv_fx = f32(1.0 / fx)
    for gid in range(6 + len(prims)):
        a, b = bounds[gid], bounds[gid + 1]
        if a == b:
            continue
        t, dx, dy, dz = srt[0, a:b], srt[1, a:b], srt[2, a:b], srt[3, a:b]
        x, y, z = oo[0] + t * dx, oo[1] + t * dy, oo[2] + t * dz
        if gid < 6:
            ax = gid // 2
            sign = f32(1.0 if gid % 2 == 0 else -1.0)  # room normals point inward
            nx, ny, nz = [sign if k == ax else f32(0.0) for k in range(3)]
            mat = scene.materials[gid]
            u, v = [(y, z), (y, z), (x, z), (x, z), (x, y), (x, y)][gid]
            if ax < 2:
                u = u + f32(7.0 * gid)  # walls do not share texture phase along the corner
        else:
            prim = prims[gid - 6]
            mat = scene.materials[prim.material]
            if isinstance(prim, Box):
                dist = np.stack([np.abs(x - f32(prim.lo[0])), np.abs(x - f32(prim.hi[0])),
                                 np.abs(y - f32(prim.lo[1])), np.abs(y - f32(prim.hi[1])),
                                 np.abs(z - f32(prim.lo[2])), np.abs(z - f32(prim.hi[2]))])
                f = dist.argmin(axis=0)
                ax = f // 2
                sign = np.where(f % 2 == 0, f32(-1.0), f32(1.0))
                nx = np.where(ax == 0, sign, f32(0.0))
                ny = np.where(ax == 1, sign, f32(0.0))
                nz = np.where(ax == 2, sign, f32(0.0))
                u = np.where(ax == 0, y, x)
                v = np.where(ax == 2, y, z)
            else:
                ex, ey = x - f32(prim.x), y - f32(prim.y)
                on_cap = (np.abs(z - f32(prim.z1)) < 1e-4) | (np.abs(z - f32(prim.z0)) < 1e-4)
                rad = np.maximum(np.sqrt(ex * ex + ey * ey), f32(1e-6))
                nx = np.where(on_cap, f32(0.0), ex / rad)
                ny = np.where(on_cap, f32(0.0), ey / rad)
                nz = np.where(on_cap, np.sign(z - f32((prim.z0 + prim.z1) / 2)), f32(0.0)).astype(f32)
                u = np.where(on_cap, x, np.arctan2(ey, ex) * f32(prim.r))
                v = np.where(on_cap, y, z)
        # pixel footprint on the surface (metres), larger at grazing angles: drives texture fading
        dn = np.sqrt(dx * dx + dy * dy + dz * dz)
        cosv = np.abs(nx * dx + ny * dy + nz * dz) / dn
        foot = t * inv_fx * dn / np.maximum(cosv, f32(0.15))
        w = _pattern(mat, u, v, foot)
        # Lambert from one point light with soft distance falloff, plus ambient
        lx, ly, lz = lpos[0] - x, lpos[1] - y, lpos[2] - z
        dist2 = lx * lx + ly * ly + lz * lz
        ndotl = (nx * lx + ny * ly + nz * lz) / np.sqrt(dist2)
        shade = f32(0.32) + f32(0.85) * np.maximum(ndotl, f32(0.0)) / (f32(1.0) + f32(0.04) * dist2)
        c1 = np.asarray(mat.color1, dtype=np.float32) * f32(255.0)
        c2 = np.asarray(mat.color2, dtype=np.float32) * f32(255.0)
        out_sorted[a:b] = (c1 + (c2 - c1) * w[:, None]) * shade[:, None]
    out = np.empty_like(out_sorted)
    out[order] = out_sorted
    np.clip(out + f32(0.5), 0, 255, out=out)
    return out.astype(np.uint8).reshape(height, width, 3)


# --------------------------------------------------------------------------------------------------
# Poses and trajectories
# --------------------------------------------------------------------------------------------------
def rot_z(a: float) -> np.ndarray:
    c, s = math.cos(a), math.sin(a)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def rot_y(a: float) -> np.ndarray:
    c, s = math.cos(a), math.sin(a)
    return np.array([[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]])


def rot_x(a: float) -> np.ndarray:
    c, s = math.cos(a), math.sin(a)
    return np.array([[1.0, 0.0, 0.0], [0.0, c, -s], [0.0, s, c]])


def quat_from_matrix(R: np.ndarray) -> np.ndarray:
    """Unit quaternion (x, y, z, w) with w >= 0 for a rotation matrix."""
    R = np.asarray(R, dtype=np.float64)
    tr = np.trace(R)
    if tr > 0:
        s = math.sqrt(tr + 1.0) * 2
        q = [(R[2, 1] - R[1, 2]) / s, (R[0, 2] - R[2, 0]) / s, (R[1, 0] - R[0, 1]) / s, 0.25 * s]
    elif R[0, 0] > R[1, 1] and R[0, 0] > R[2, 2]:
        s = math.sqrt(1.0 + R[0, 0] - R[1, 1] - R[2, 2]) * 2
        q = [0.25 * s, (R[0, 1] + R[1, 0]) / s, (R[0, 2] + R[2, 0]) / s, (R[2, 1] - R[1, 2]) / s]
    elif R[1, 1] > R[2, 2]:
        s = math.sqrt(1.0 + R[1, 1] - R[0, 0] - R[2, 2]) * 2
        q = [(R[0, 1] + R[1, 0]) / s, 0.25 * s, (R[1, 2] + R[2, 1]) / s, (R[0, 2] - R[2, 0]) / s]
    else:
        s = math.sqrt(1.0 + R[2, 2] - R[0, 0] - R[1, 1]) * 2
        q = [(R[0, 2] + R[2, 0]) / s, (R[1, 2] + R[2, 1]) / s, 0.25 * s, (R[1, 0] - R[0, 1]) / s]
    q = np.array(q)
    q /= np.linalg.norm(q)
    return -q if q[3] < 0 else q


def camera_pose(position: Sequence[float], yaw: float, pitch: float = 0.0, roll: float = 0.0) -> np.ndarray:
    """World <- optical frame for a camera_link at ``position`` with yaw, elevation ``pitch`` and roll.

    ``pitch`` > 0 looks up (an elevation angle); in REP 103 terms the link is
    rotated by -pitch about its y axis.
    """
    T = np.eye(4)
    T[:3, :3] = rot_z(yaw) @ rot_y(-pitch) @ rot_x(roll) @ R_LINK_OPTICAL
    T[:3, 3] = position
    return T


def mount_transforms(cfg: SynthConfig) -> list[tuple[str, str, list[float], list[float]]]:
    """Static transforms for /tf_static: base_link -> camera_link (robot mount) and the optical rotation."""
    out = []
    if not cfg.free_poses:
        q = quat_from_matrix(rot_y(-math.radians(cfg.camera_pitch_deg)))
        out.append(("base_link", "camera_link", [0.0, 0.0, float(cfg.camera_height)], q.tolist()))
    out.append(("camera_link", COLOR_FRAME, [0.0, 0.0, 0.0], quat_from_matrix(R_LINK_OPTICAL).tolist()))
    return out


def trajectory(scene: Scene, cfg: SynthConfig) -> list[np.ndarray]:
    """Smooth collision-free camera poses (world <- optical, 4x4) along the scene's loop.

    By default the camera rides a robot: fixed height and pitch, yaw following the
    path with a slow look-around. ``free_poses`` adds height, pitch and roll
    oscillations like a hand-held camera.
    """
    rng = np.random.default_rng(np.random.SeedSequence([int(cfg.seed), 0x7AA1]))
    path = scene.path
    seg = np.diff(np.vstack([path, path[:1]]), axis=0)
    seglen = np.hypot(seg[:, 0], seg[:, 1])
    cum = np.concatenate([[0.0], np.cumsum(seglen)])
    total = cum[-1]
    heading = np.unwrap(np.arctan2(seg[:, 1], seg[:, 0]))
    closed = np.vstack([path, path[:1]])
    start = rng.uniform(0, total)
    direction = 1.0 if rng.random() < 0.5 else -1.0
    step = cfg.speed / cfg.fps
    ph = rng.uniform(0, 2 * np.pi, size=6)
    poses = []
    H = scene.size[2]
    mids = (cum[:-1] + cum[1:]) / 2
    for i in range(cfg.frames):
        s = (start + direction * i * step) % total
        x = np.interp(s, cum, closed[:, 0])
        y = np.interp(s, cum, closed[:, 1])
        # heading at mid-segments, interpolated smoothly along the arc length
        yaw = float(np.interp(s, mids, heading))
        if direction < 0:
            yaw += math.pi
        tsec = i / cfg.fps
        yaw += math.radians(25.0) * math.sin(0.35 * tsec + ph[0])
        if cfg.free_poses:
            z = float(np.clip(0.35 + 0.75 * (1 + math.sin(0.23 * tsec + ph[1])), 0.2, H - 0.3))
            pitch = math.radians(-8.0 + 18.0 * math.sin(0.31 * tsec + ph[2]))
            roll = math.radians(10.0 * math.sin(0.41 * tsec + ph[3]))
        else:
            z, pitch, roll = cfg.camera_height, math.radians(cfg.camera_pitch_deg), 0.0
        z = min(z, H - 0.05)
        poses.append(camera_pose((x, y, z), yaw, pitch, roll))
    return poses


# --------------------------------------------------------------------------------------------------
# Dataset writing
# --------------------------------------------------------------------------------------------------
def stamp_ns(i: int, fps: float) -> int:
    return START_NS + int(round(i * 1e9 / fps))


def generate(cfg: SynthConfig, out_dir: str | Path, bag: bool = False, progress: bool = True,
             bag_storage: str = "mcap") -> dict:
    """Render ``cfg.frames`` frames into ``out_dir`` (folder form, plus ``out_dir/bag`` if ``bag``).

    Returns a small report: frames, seconds, frames_per_second, out_dir.
    """
    import cv2

    cfg.validate()
    out = Path(out_dir)
    if out.exists() and any(out.iterdir()):
        raise DataError(f"Output folder {out} exists and is not empty; choose a new --out.")
    (out / "rgb").mkdir(parents=True, exist_ok=True)
    (out / "depth").mkdir(parents=True, exist_ok=True)
    K = cfg.K()
    scene = make_scene(cfg.seed)
    poses = trajectory(scene, cfg)

    intr = {"fx": float(K[0, 0]), "fy": float(K[1, 1]), "cx": float(K[0, 2]), "cy": float(K[1, 2]),
            "width": cfg.width, "height": cfg.height, "depth_scale": 1000}
    (out / "intrinsics.json").write_text(json.dumps(intr, indent=2) + "\n")
    meta = {"generator": "moadepth synth", "config": dataclasses.asdict(cfg), "K": K.tolist(),
            "world_frame": "z up, metres; room spans [0, size]",
            "poses": "poses.txt: TUM 'timestamp tx ty tz qx qy qz qw', world <- camera optical frame",
            "depth": "depth/NNNNNN.npy float32 metres along the optical axis (REP 118)",
            "scene": scene.describe()}
    (out / "synth.json").write_text(json.dumps(meta, indent=2) + "\n")

    writer = None
    if bag:
        from moadepth_core.data.rosbag.writer import RGBDBagWriter

        writer = RGBDBagWriter(out / "bag", storage=bag_storage).open()
        writer.add_topic("/camera/color/image_raw", "sensor_msgs/msg/Image")
        writer.add_topic("/camera/color/camera_info", "sensor_msgs/msg/CameraInfo")
        writer.add_topic("/camera/depth/image_raw", "sensor_msgs/msg/Image")
        writer.add_topic("/camera/depth/camera_info", "sensor_msgs/msg/CameraInfo")
        writer.write_tf_static(stamp_ns(0, cfg.fps), mount_transforms(cfg))

    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=cfg.frames, unit="frame", desc="synth", file=sys.stderr)
    lines = ["# timestamp tx ty tz qx qy qz qw (world <- camera optical frame, world z up)"]
    t0 = time.perf_counter()
    try:
        for i, T in enumerate(poses):
            rgb, depth = render(scene, T, K, cfg.width, cfg.height)
            name = f"{i:06d}"
            if not cv2.imwrite(str(out / "rgb" / f"{name}.png"), rgb[:, :, ::-1]):
                raise DataError(f"Could not write {out / 'rgb' / (name + '.png')}.")
            np.save(out / "depth" / f"{name}.npy", depth)
            st = stamp_ns(i, cfg.fps)
            q = quat_from_matrix(T[:3, :3])
            lines.append(f"{st // 1_000_000_000}.{st % 1_000_000_000:09d} " + " ".join(f"{v:.9f}" for v in (*T[:3, 3], *q)))
            if writer is not None:
                writer.write_image("/camera/color/image_raw", st, COLOR_FRAME, rgb, "rgb8")
                writer.write_camera_info("/camera/color/camera_info", st, COLOR_FRAME, K, cfg.width, cfg.height)
                ros_depth = np.where(np.isfinite(depth) & (depth > 0), depth, np.float32(np.nan))
                writer.write_image("/camera/depth/image_raw", st, COLOR_FRAME, ros_depth, "32FC1")
                writer.write_camera_info("/camera/depth/camera_info", st, COLOR_FRAME, K, cfg.width, cfg.height)
            if bar is not None:
                bar.update(1)
    finally:
        if writer is not None:
            writer.close()
        if bar is not None:
            bar.close()
    seconds = time.perf_counter() - t0
    (out / "poses.txt").write_text("\n".join(lines) + "\n")
    return {"frames": cfg.frames, "seconds": seconds, "frames_per_second": cfg.frames / max(seconds, 1e-9),
            "out_dir": str(out)}


def _build_parser() -> argparse.ArgumentParser:
    d = SynthConfig()
    p = argparse.ArgumentParser(prog="moadepth synth", description=__doc__.split("\n\n")[0])
    p.add_argument("--out", required=True, help="output folder (must be new or empty)")
    p.add_argument("--frames", type=int, default=d.frames)
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--bag", action="store_true", help="also write a rosbag2 at OUT/bag")
    p.add_argument("--bag-storage", choices=["mcap", "sqlite3"], default="mcap")
    p.add_argument("--width", type=int, default=d.width)
    p.add_argument("--height", type=int, default=d.height)
    p.add_argument("--fx", type=float, default=d.fx)
    p.add_argument("--fy", type=float, default=d.fy)
    p.add_argument("--cx", type=float, default=None, help="default: image centre")
    p.add_argument("--cy", type=float, default=None, help="default: image centre")
    p.add_argument("--camera-height", type=float, default=d.camera_height, help="metres (robot mount)")
    p.add_argument("--camera-pitch", type=float, default=d.camera_pitch_deg,
                   help="degrees, negative looks down (robot mount)")
    p.add_argument("--free-poses", action="store_true", help="free 6-DoF poses instead of a robot mount")
    p.add_argument("--fps", type=float, default=d.fps, help="stamp rate in Hz")
    p.add_argument("--speed", type=float, default=d.speed, help="camera speed along the path, m/s")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


def _main(argv: Sequence[str] | None = None) -> int:
    args = _build_parser().parse_args(argv)
    cfg = SynthConfig(width=args.width, height=args.height, fx=args.fx, fy=args.fy, cx=args.cx, cy=args.cy,
                      camera_height=args.camera_height, camera_pitch_deg=args.camera_pitch,
                      free_poses=args.free_poses, frames=args.frames, seed=args.seed, fps=args.fps,
                      speed=args.speed)
    try:
        report = generate(cfg, args.out, bag=args.bag, progress=not args.quiet, bag_storage=args.bag_storage)
    except MoadepthError:
        raise
    except OSError as exc:
        raise DataError(f"Could not write the dataset to {args.out}: {exc}.") from exc
    print(f"wrote {report['frames']} frames to {report['out_dir']} in {report['seconds']:.2f} s "
          f"({report['frames_per_second']:.1f} frames/s at {cfg.width}x{cfg.height})")
    return 0


main = cli_entry(_main, prog="moadepth synth")

if __name__ == "__main__":
    sys.exit(main())
