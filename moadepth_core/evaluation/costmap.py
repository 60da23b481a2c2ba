"""The obstacle cells Nav2 would mark from a depth image's points: nav2_costmap_2d's rules in numpy.

Why: a depth node is judged by what a robot's costmap does with its output, so the evaluation
applies the user's own Nav2 layer (:class:`~moadepth_core.evaluation.nav2_params.CostmapParams`)
to the points of the prediction and of the reference depth, and compares the cells.

What Nav2 does, mirrored here (ObservationBuffer::bufferCloud, ObstacleLayer::updateBounds and
raytraceFreespace, VoxelLayer::updateBounds and raytraceFreespace, Costmap2D::raytraceLine):

1. The cloud goes into the fixed frame; the sensor origin is the camera frame's origin there.
2. The observation buffer keeps points with ``min_obstacle_height <= z <= max_obstacle_height``
   (the source's band); marking and clearing both see only these.
3. Clearing first, then marking (as updateBounds). Clearing walks Bresenham's line, in cells,
   from the sensor's cell towards each kept point, the endpoint clipped to the grid, from
   ``ceil(raytrace_min_range / res)`` cells to at most ``ceil(raytrace_max_range / res)`` cells,
   and frees every cell it visits (so the endpoint cell is freed, then re-marked if the point marks).
4. Marking: a point marks when its height is within the layer's band (``z < min`` or ``z > max``
   is dropped) and its 3-D squared distance to the sensor origin is in ``[min_range^2, max_range^2)``.
   Its cell is ``floor(x / res)`` in the fixed frame (see :class:`GridSpec`).
5. VoxelLayer: the point's voxel ``floor((z - origin_z) / z_resolution)`` (points below
   ``origin_z`` go to voxel 0, points at or above the grid's top mark nothing) is set; a column is
   an obstacle when more than ``mark_threshold`` of its voxels are marked. Clearing walks a 3-D
   line to the point shortened by two cells and clipped to ``[origin_z, top - 0.01 m]``, and
   frees the voxels it visits; the column stays an obstacle while more than ``mark_threshold``
   voxels remain.

Deviations, and why:

- Non-finite points (the node publishes NaN where depth is invalid) are dropped before anything
  else; Nav2 would feed NaN into its comparisons and cell casts, which is undefined behaviour.
- The grid is a fixed window in the fixed frame covering the run (:meth:`GridSpec.covering`), not
  a rolling window: the accumulated map of a run needs one frame of reference. Points outside it
  are dropped, as Nav2 drops points outside its map.
- Costs are obstacle / not obstacle: unknown and free are not told apart, inflation and
  footprint clearing are not applied (they act on both grids alike and would hide the depth's
  own errors), and each frame's observation is used once (``observation_persistence`` 0).
- Costmap2D::raytraceLine computes its step count in unsigned arithmetic; when the dominant-axis
  length is shorter than the minimum raytrace range in cells it wraps and clears past the
  endpoint. Here such a ray clears nothing.
- VoxelLayer's 3-D walk runs here on integer voxel indices with the same Bresenham error terms
  as the 2-D walk; Nav2 walks fractional voxel coordinates, which can differ by one voxel where
  a line grazes a voxel's corner. ``unknown_threshold`` is not modelled (it only tells free from
  unknown).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from moadepth_core.errors import DataError
from moadepth_core.evaluation.nav2_params import CostmapParams


@dataclass(frozen=True)
class GridSpec:
    """A window of costmap cells in the fixed frame: cell ``(iy, ix)`` holds ``floor(x / res) == ix0 + ix``."""

    resolution: float
    ix0: int  # floor(x / resolution) of column 0
    iy0: int
    nx: int
    ny: int

    @classmethod
    def covering(cls, xy: np.ndarray, resolution: float, margin_m: float = 0.5) -> GridSpec:
        """The smallest window holding every (x, y) of ``xy`` (N, 2) plus ``margin_m`` on each side."""
        xy = np.asarray(xy, dtype=np.float64).reshape(-1, 2)
        xy = xy[np.isfinite(xy).all(axis=1)]
        if not len(xy) or resolution <= 0:
            raise DataError("a costmap grid needs at least one finite position and a positive resolution")
        lo = np.floor((xy.min(axis=0) - margin_m) / resolution).astype(int)
        hi = np.floor((xy.max(axis=0) + margin_m) / resolution).astype(int)
        return cls(float(resolution), int(lo[0]), int(lo[1]), int(hi[0] - lo[0] + 1), int(hi[1] - lo[1] + 1))

    @property
    def shape(self) -> tuple[int, int]:
        return self.ny, self.nx

    @property
    def origin(self) -> tuple[float, float]:
        """World (x, y) of the grid's lower-left corner."""
        return self.ix0 * self.resolution, self.iy0 * self.resolution

    def cells(self, xy: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(ix, iy, inside) of world points ``xy`` (..., 2): grid indices and whether they are in the window."""
        xy = np.asarray(xy, dtype=np.float64)
        ix = np.floor(xy[..., 0] / self.resolution).astype(np.int64) - self.ix0
        iy = np.floor(xy[..., 1] / self.resolution).astype(np.int64) - self.iy0
        return ix, iy, (ix >= 0) & (ix < self.nx) & (iy >= 0) & (iy < self.ny)

    def empty(self) -> np.ndarray:
        return np.zeros(self.shape, dtype=bool)


def _check(points: np.ndarray, origin: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    pts = np.asarray(points, dtype=np.float64).reshape(-1, 3)
    o = np.asarray(origin, dtype=np.float64).reshape(3)
    if not np.isfinite(o).all():
        raise DataError(f"sensor origin {tuple(o)} is not finite")
    return pts, o


def observed(points: np.ndarray, origin: np.ndarray, params: CostmapParams) -> np.ndarray:
    """The points an ObservationBuffer keeps: finite and within the source's height band (inclusive)."""
    pts, _ = _check(points, origin)
    z = pts[:, 2]
    keep = np.isfinite(pts).all(axis=1) & (z >= params.min_obstacle_height) & (z <= params.max_obstacle_height)
    return pts[keep]


def marking_mask(points: np.ndarray, origin: np.ndarray, params: CostmapParams) -> np.ndarray:
    """Which observed points mark: within the layer's band and ``min_range <= distance < max_range``."""
    pts, o = _check(points, origin)
    z = pts[:, 2]
    d2 = ((pts - o) ** 2).sum(axis=1)
    return ((z >= params.layer_min_obstacle_height) & (z <= params.layer_max_obstacle_height)
            & (d2 < params.obstacle_max_range ** 2) & (d2 >= params.obstacle_min_range ** 2))


def _cell_distance(metres: float, resolution: float) -> int:
    """Costmap2D::cellDistance: ceil(metres / resolution), at least 0."""
    return int(max(0.0, math.ceil(metres / resolution)))


def bresenham(start: np.ndarray, delta: np.ndarray, steps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Cells Nav2's Bresenham walk visits: ``steps[r] + 1`` cells per ray ``r`` (``steps`` >= 0).

    ``start`` (R, D) integer start cells, ``delta`` (R, D) the integer line direction (end - start of
    the full line, whose pattern the walk follows). Closed form of bresenham2D's loop: after ``i``
    steps along the dominant axis ``a``, axis ``k`` has moved ``(|da| // 2 + i |dk|) // |da|`` cells.
    Returns (cells (M, D), ray index (M,)).
    """
    start = np.asarray(start, dtype=np.int64)
    delta = np.asarray(delta, dtype=np.int64)
    steps = np.asarray(steps, dtype=np.int64)
    n = steps + 1
    ray = np.repeat(np.arange(len(start)), n)
    i = np.arange(ray.size) - np.repeat(np.cumsum(n) - n, n)
    ad = np.abs(delta)
    da = ad.max(axis=1)
    sgn = np.where(delta > 0, 1, -1)
    da_r = np.maximum(da[ray], 1)
    moved = ((da[ray] // 2)[:, None] + i[:, None] * ad[ray]) // da_r[:, None]
    return start[ray] + sgn[ray] * moved, ray


def _unique_rays(start: np.ndarray, delta: np.ndarray, steps: np.ndarray) -> tuple[np.ndarray, ...]:
    """Drop repeated rays: a walk is a function of (start, delta, steps), and a dense cloud repeats them
    many times over (the cells freed are the same set, only computed once)."""
    if len(start) < 2:
        return start, delta, steps
    rows = np.unique(np.concatenate([start, delta, steps[:, None]], axis=1), axis=0)
    d = start.shape[1]
    return rows[:, :d], rows[:, d:2 * d], rows[:, 2 * d]


def _clear_rays_2d(grid: GridSpec, pts: np.ndarray, o: np.ndarray, params: CostmapParams) -> tuple:
    """(ix, iy) of every cell ObstacleLayer::raytraceFreespace frees for these observed points."""
    res = grid.resolution
    ox, oy = o[0], o[1]
    (x0,), (y0,), (inside,) = grid.cells(o[None, :2])
    if not inside or not len(pts):
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    gx, gy = grid.origin
    end_x, end_y = gx + grid.nx * res, gy + grid.ny * res
    wx, wy = pts[:, 0].copy(), pts[:, 1].copy()
    a, b = wx - ox, wy - oy
    with np.errstate(divide="ignore", invalid="ignore"):
        m = wx < gx
        t = (gx - ox) / a
        wx, wy = np.where(m, gx, wx), np.where(m, oy + b * t, wy)
        m = wy < gy
        t = (gy - oy) / b
        wx, wy = np.where(m, ox + a * t, wx), np.where(m, gy, wy)
        m = wx > end_x
        t = (end_x - ox) / a
        wx, wy = np.where(m, end_x - 0.001, wx), np.where(m, oy + b * t, wy)
        m = wy > end_y
        t = (end_y - oy) / b
        wx, wy = np.where(m, ox + a * t, wx), np.where(m, end_y - 0.001, wy)
    x1, y1, ok = grid.cells(np.stack([wx, wy], axis=1))
    x1, y1 = x1[ok], y1[ok]
    max_len = _cell_distance(params.raytrace_max_range, res)
    min_len = _cell_distance(params.raytrace_min_range, res)
    dx, dy = x1 - x0, y1 - y0
    dist = np.hypot(dx, dy)
    keep = dist >= min_len
    dx, dy, dist = dx[keep], dy[keep], dist[keep]
    with np.errstate(divide="ignore", invalid="ignore"):
        unit_x = np.where(dist > 0, dx / dist, 0.0)
        unit_y = np.where(dist > 0, dy / dist, 0.0)
        scale = np.where(dist > 0, np.minimum(1.0, max_len / dist), 1.0)
    sx = (x0 + unit_x * min_len).astype(np.int64)  # (unsigned int) cast: truncation, values are >= 0
    sy = (y0 + unit_y * min_len).astype(np.int64)
    da = np.maximum(np.abs(dx), np.abs(dy))
    length = (scale * da).astype(np.int64) - min_len
    use = length >= 0  # see the module docstring: Nav2's unsigned wrap-around is not mirrored
    steps = np.minimum(length, da)[use]
    cells, _ = bresenham(*_unique_rays(np.stack([sx, sy], 1)[use], np.stack([dx, dy], 1)[use], steps))
    cx, cy = cells[:, 0], cells[:, 1]
    inb = (cx >= 0) & (cx < grid.nx) & (cy >= 0) & (cy < grid.ny)
    return cx[inb], cy[inb]


class Costmap:
    """One layer's obstacle grid over a run: :meth:`update` clears then marks, as Nav2's updateBounds."""

    def __init__(self, params: CostmapParams, grid: GridSpec) -> None:
        self.params, self.grid = params, grid
        self._cells = grid.empty()
        self._voxels = np.zeros((grid.ny, grid.nx, params.z_voxels), dtype=bool) if params.is_voxel else None

    @property
    def obstacles(self) -> np.ndarray:
        """(ny, nx) bool: the cells Nav2 would hold as LETHAL_OBSTACLE."""
        if self._voxels is not None:
            return self._voxels.sum(axis=2) > self.params.mark_threshold
        return self._cells.copy()

    def update(self, points: np.ndarray, origin: np.ndarray, clear: bool | None = None) -> None:
        """Add one observation (points and sensor origin in the fixed frame); ``clear`` defaults to the source's."""
        pts, o = _check(points, origin)
        obs = observed(pts, o, self.params)
        if self.params.clearing if clear is None else clear:
            if self._voxels is not None:
                self._clear_voxels(obs, o)
            else:
                cx, cy = _clear_rays_2d(self.grid, obs, o, self.params)
                self._cells[cy, cx] = False
        if self.params.marking:
            self._mark(obs[marking_mask(obs, o, self.params)])

    def _mark(self, pts: np.ndarray) -> None:
        ix, iy, inside = self.grid.cells(pts[:, :2])
        if self._voxels is None:
            self._cells[iy[inside], ix[inside]] = True
            return
        p = self.params
        iz = np.floor((np.maximum(pts[:, 2], p.origin_z) - p.origin_z) / p.z_resolution).astype(np.int64)
        ok = inside & (iz >= 0) & (iz < p.z_voxels)
        self._voxels[iy[ok], ix[ok], iz[ok]] = True

    def _voxel_coords(self, w: np.ndarray) -> np.ndarray:
        """worldToMap3DFloat: fractional voxel coordinates (x, y in cells, z in voxels) of world points."""
        g, p = self.grid, self.params
        gx, gy = g.origin
        return np.stack([(w[..., 0] - gx) / g.resolution, (w[..., 1] - gy) / g.resolution,
                         (w[..., 2] - p.origin_z) / p.z_resolution], axis=-1)

    def _clear_voxels(self, pts: np.ndarray, o: np.ndarray) -> None:
        g, p = self.grid, self.params
        size = np.array([g.nx, g.ny, p.z_voxels], dtype=np.float64)
        so = self._voxel_coords(o)
        if not ((so >= 0).all() and (so < size).all()) or not len(pts):
            return
        gx, gy = g.origin
        lo = np.array([gx, gy, p.origin_z])
        hi = np.array([gx + g.nx * g.resolution, gy + g.ny * g.resolution, p.origin_z + p.z_voxels * p.z_resolution])
        d = pts - o
        dist = np.linalg.norm(d, axis=1)
        with np.errstate(divide="ignore", invalid="ignore"):
            shrink = np.clip(np.where(dist > 0, (dist - 2 * g.resolution) / dist, 0.0), 0.0, 1.0)
            w = o + d * shrink[:, None]
            a = w - o
            t = np.ones(len(w))
            out = np.zeros(len(w), dtype=bool)
            top = w[:, 2] > hi[2]
            t = np.where(top, np.maximum(0.0, np.minimum(t, (hi[2] - 0.01 - o[2]) / a[:, 2])), t)
            low = ~top & (w[:, 2] < lo[2])
            t = np.where(low, np.minimum(t, (lo[2] - o[2]) / a[:, 2]), t)
            out |= top | low
            for k in (0, 1):
                m = w[:, k] < lo[k]
                t = np.where(m, np.minimum(t, (lo[k] - o[k]) / a[:, k]), t)
                out |= m
                m = w[:, k] > hi[k]
                t = np.where(m, np.minimum(t, (hi[k] - o[k]) / a[:, k]), t)
                out |= m
        t = np.where(out & (t > 0), t - 1e-5, np.where(out & (t < 0), t + 1e-5, t))
        end = self._voxel_coords(o + a * t[:, None])
        ok = (end >= 0).all(axis=1) & (end < size).all(axis=1)
        end = end[ok]
        max_len = _cell_distance(p.raytrace_max_range, g.resolution)
        min_len = _cell_distance(p.raytrace_min_range, g.resolution)
        full = end - so
        dist = np.linalg.norm(full, axis=1)
        keep = dist.astype(np.int64) >= min_len
        end, full, dist = end[keep], full[keep], dist[keep]
        with np.errstate(divide="ignore", invalid="ignore"):
            unit = np.where(dist[:, None] > 0, full / dist[:, None], 0.0)
            rest = np.maximum(dist - min_len, 0.0)
            scale = np.where(rest > 0, np.minimum(1.0, (max_len - min_len) / rest), 1.0)
        start = np.floor(so + unit * min_len).astype(np.int64)
        delta = np.floor(end).astype(np.int64) - start
        da = np.abs(delta).max(axis=1)
        steps = np.minimum((scale * da).astype(np.int64), da)
        start, delta, steps = _unique_rays(start, delta, np.maximum(steps, 0))
        cells, _ = bresenham(start, delta, steps)
        inb = ((cells >= 0) & (cells < size.astype(np.int64))).all(axis=1)
        c = cells[inb]
        self._voxels[c[:, 1], c[:, 0], c[:, 2]] = False


def mark_frame(points: np.ndarray, origin: np.ndarray, params: CostmapParams, grid: GridSpec) -> np.ndarray:
    """The obstacle cells one observation marks on an empty layer (marking only, no clearing)."""
    cm = Costmap(params, grid)
    cm.update(points, origin, clear=False)
    return cm.obstacles
