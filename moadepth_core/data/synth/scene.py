"""Procedural rooms: a closed box of walls, floor and ceiling, furniture, one light and a camera loop.

The room spans [0, size] in a world frame with z up (metres). Furniture is axis-aligned boxes
(tables, shelves, cabinets, crates) and vertical cylinders (pillars, bins), placed so that the
camera loop (:func:`make_scene`'s ``path``) keeps clear of them.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

# Texture patterns (see renderer._pattern).
PLAIN, CHECKER, STRIPES, NOISE, WOOD, TILES = range(6)
PATTERN_NAMES = ["plain", "checker", "stripes", "noise", "wood", "tiles"]


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
