"""What Nav2 and a mapper would see: costmap-, map- and temporal-level evaluation of depth over a run.

Why: AbsRel and delta1 do not say whether floor noise becomes phantom obstacles that stop the robot,
whether a box in the path gets marked at all, or whether the map stays consistent while the robot
moves. Given the run's poses (a bag's ``/tf`` and ``/tf_static`` in a :class:`TfBuffer`), this
module puts each frame's predicted and reference depth into the fixed frame and applies the user's
Nav2 layer (:mod:`.costmap`) to both, so ``bag_eval`` stays a thin loop over frames.

Per frame (:meth:`NavEvaluation.add`):

- both depths are back-projected with the image camera's K, every ``stride``-th pixel (what the
  node's ``point_stride`` does), through :func:`moadepth_core.geometry.postprocess.depth_cloud`,
  the node's own call, so the prediction's points above ``max_uncertainty`` are dropped by the
  node's own rule; the reference keeps all its valid pixels;
- the camera's pose in the fixed frame at the image stamp comes from the TfBuffer (interpolated);
- costmap: each variant (the node's filter, no filter, each sweep threshold, and at the end the
  best constant depth) marks an empty layer (marking only, compared per frame), and the main
  variants also update a layer accumulated over the run (clearing then marking, as Nav2);
- map: 3-D voxels (``map_voxel`` m) of the points within the source's ``obstacle_max_range``,
  accumulated over the run;
- temporal: the previous frame's depth is warped into this camera with the two poses
  (:func:`moadepth_core.geometry.register_depth`) and the median relative disagreement with this
  frame's depth is kept, for the prediction and for the reference (the reference's value is the
  floor that occlusions and resampling set; flicker shows above it).

:meth:`NavEvaluation.summary` gives the ``costmap``, ``map``, ``temporal`` and
``uncertainty_sweep`` entries of ``metrics.json``. Undefined ratios are ``None`` with a note,
never a division by zero.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from moadepth_core import geometry
from moadepth_core.data.rosbag.tf_buffer import TfBuffer
from moadepth_core.errors import DataError
from moadepth_core.evaluation.costmap import Costmap, GridSpec, mark_frame
from moadepth_core.evaluation.costmap_metrics import RATIO_KEYS, compare_grids, summarize_frames
from moadepth_core.evaluation.nav2_params import CostmapParams
from moadepth_core.geometry.pointcloud import unpack_points
from moadepth_core.geometry.postprocess import depth_cloud

DEFAULT_STRIDE = 4
DEFAULT_MAP_VOXEL = 0.05
# max_uncertainty values bag_eval --uncertainty-sweep tries; FILTER_OFF is the node's "no filter"
FILTER_OFF = 1000.0
DEFAULT_SWEEP = (0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5, 0.6, 0.8, 1.0, FILTER_OFF)
# per-frame columns nav_eval adds to frames.csv
FRAME_COLUMNS = ("costmap_iou", "costmap_precision", "costmap_recall", "costmap_predicted_cells",
                 "costmap_reference_cells", "costmap_phantom_cells", "costmap_missed_cells",
                 "temporal_prediction", "temporal_reference")


def _sentence(exc: BaseException) -> str:
    return str(exc).strip().rstrip(".")


@dataclass
class FramePose:
    """Where one image was taken: stamp, its camera frame id and T_fixed_camera (None: no pose)."""

    stamp_ns: int
    frame_id: str
    T: np.ndarray | None
    error: str | None = None


def frame_poses(tf: TfBuffer, fixed_frame: str, frames: Sequence[tuple[int, str]]) -> list[FramePose]:
    """T_fixed_camera at each (stamp, camera frame id); a frame tf cannot place gets its sentence in ``error``."""
    out = []
    for stamp, frame_id in frames:
        try:
            out.append(FramePose(int(stamp), frame_id, tf.lookup(fixed_frame, frame_id, int(stamp))))
        except DataError as exc:
            out.append(FramePose(int(stamp), frame_id, None, _sentence(exc)))
    return out


def check_poses(poses: Sequence[FramePose], tf: TfBuffer, fixed_frame: str) -> str | None:
    """None when the costmap can run; otherwise the one sentence saying why not."""
    if not poses:
        return "there are no frames to place"
    if not tf.has_dynamic:
        return (f"{tf.name} has no /tf (only static transforms, frames: {', '.join(tf.frames) or 'none'}), "
                f"so the camera's motion in {fixed_frame!r} is unknown")
    if all(p.T is None for p in poses):
        return poses[0].error
    return None


def cloud_points(depth: np.ndarray, K: np.ndarray, stride: int, uncertainty: np.ndarray | None = None,
                 max_uncertainty: float = math.inf) -> np.ndarray:
    """(N, 3) float64 finite camera-frame points of a depth image (0/NaN invalid), by the node's own call.

    ``uncertainty`` above ``max_uncertainty`` drops the point (postprocess.depth_cloud's rule).
    """
    d = np.where(np.isfinite(depth) & (depth > 0), depth, np.nan).astype(np.float32)
    cloud = depth_cloud(d, K, uncertainty=uncertainty, max_uncertainty=max_uncertainty, stride=stride)
    pts = unpack_points(cloud).reshape(-1, 3)
    return pts[np.isfinite(pts).all(axis=1)].astype(np.float64)


def _voxel_keys(pts: np.ndarray, voxel: float) -> np.ndarray:
    return np.unique(np.floor(pts / voxel).astype(np.int64), axis=0)


def _median_rel(a: np.ndarray, b: np.ndarray) -> float | None:
    """Median |a - b| / b over pixels valid in both; None when none is."""
    ok = np.isfinite(a) & np.isfinite(b) & (a > 0) & (b > 0)
    if not ok.any():
        return None
    return float(np.median(np.abs(a[ok] - b[ok]) / b[ok]))


@dataclass
class _Variant:
    """One way of turning the prediction into points: its per-frame comparisons and accumulated layer."""

    name: str
    max_uncertainty: float
    rows: list[dict] = field(default_factory=list)
    layer: Costmap | None = None


class NavEvaluation:
    """Accumulates costmap, map and temporal agreement frame by frame (see the module docstring).

    Parameters
    ----------
    params : the Nav2 layer (:func:`~moadepth_core.evaluation.nav2_params.load_costmap_params`).
    poses : :func:`frame_poses` of every frame that will be added (they fix the grid's extent).
    fixed_frame : the frame the grids live in (``odom``).
    max_uncertainty : the node's filter applied to the prediction's points (``inf``: none).
    sweep : further ``max_uncertainty`` values, compared per frame (``uncertainty_sweep``).
    uncertainty_source : what the uncertainty is (for the record); None when there is none.
    """

    def __init__(self, params: CostmapParams, poses: Sequence[FramePose], fixed_frame: str = "odom", *,
                 stride: int = DEFAULT_STRIDE, max_uncertainty: float = math.inf, sweep: Sequence[float] = (),
                 uncertainty_source: str | None = None, map_voxel: float = DEFAULT_MAP_VOXEL,
                 reference: str = "reference depth") -> None:
        if int(stride) < 1:
            raise DataError(f"costmap point stride must be >= 1, got {stride}")
        if not map_voxel > 0:
            raise DataError(f"map voxel size must be positive, got {map_voxel}")
        for t in (max_uncertainty, *sweep):
            if not t >= 0:
                raise DataError(f"max_uncertainty {t} must be a non-negative number")
        placed = [p for p in poses if p.T is not None]
        if not placed:
            raise DataError(poses[0].error if poses else "no frames to place in the costmap")
        self.params, self.fixed_frame, self.stride = params, fixed_frame, int(stride)
        self.reference, self.map_voxel = reference, float(map_voxel)
        self.uncertainty_source = uncertainty_source
        self.max_uncertainty = float(max_uncertainty)
        self.sweep = sorted({float(t) for t in sweep})
        origins = np.array([p.T[:2, 3] for p in placed])
        margin = max(params.obstacle_max_range, params.raytrace_max_range) + 2 * params.resolution
        self.grid = GridSpec.covering(origins, params.resolution, margin)
        self._ref_layer = Costmap(params, self.grid)
        filtered = np.isfinite(self.max_uncertainty)
        self.node = _Variant("node", self.max_uncertainty, layer=Costmap(params, self.grid))
        self.unfiltered = _Variant("unfiltered", math.inf, layer=Costmap(params, self.grid)) if filtered else None
        self._sweep = [_Variant(f"sweep {t:g}", t) for t in self.sweep]
        self._map_pred: list[np.ndarray] = []
        self._map_ref: list[np.ndarray] = []
        self._temporal: list[tuple[float | None, float | None]] = []
        self._prev: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None = None  # T, K, pred, ref
        self._placed: list[tuple[np.ndarray, np.ndarray, tuple[int, int]]] = []  # for the constant baseline
        self.trajectory: list[tuple[float, float]] = []
        self.without_pose: list[str] = []
        self._ref_cells_any = False
        self._ref_grids: list[np.ndarray] = []

    # -- per frame ------------------------------------------------------------------------------------
    def add(self, pose: FramePose, K: np.ndarray, pred: np.ndarray, ref: np.ndarray,
            uncertainty: np.ndarray | None = None) -> dict:
        """Score one frame; returns its :data:`FRAME_COLUMNS` (empty when the frame has no pose)."""
        if pose.T is None:
            self.without_pose.append(pose.error or f"no pose at {pose.stamp_ns} ns")
            self._prev = None
            return {}
        T, hw = pose.T, ref.shape[:2]
        origin = T[:3, 3]
        self.trajectory.append((float(origin[0]), float(origin[1])))
        self._placed.append((T, np.asarray(K, dtype=np.float64), hw))
        to_fixed = lambda p: geometry.transform_points(T, p)  # noqa: E731
        ref_pts = to_fixed(cloud_points(ref, K, self.stride))
        ref_grid = mark_frame(ref_pts, origin, self.params, self.grid)
        self._ref_grids.append(ref_grid)
        self._ref_cells_any |= bool(ref_grid.any())
        self._ref_layer.update(ref_pts, origin)
        row: dict = {}
        unc = uncertainty
        variants = [self.node, *([self.unfiltered] if self.unfiltered else []), *self._sweep]
        node_pts = None
        for v in variants:
            pts = to_fixed(cloud_points(pred, K, self.stride, unc, v.max_uncertainty if unc is not None else math.inf))
            cmp = compare_grids(mark_frame(pts, origin, self.params, self.grid), ref_grid)
            v.rows.append(cmp)
            if v.layer is not None:
                v.layer.update(pts, origin)
            if v is self.node:
                node_pts = pts
                row.update({"costmap_iou": cmp["iou"], "costmap_precision": cmp["precision"],
                            "costmap_recall": cmp["recall"], "costmap_predicted_cells": cmp["predicted_cells"],
                            "costmap_reference_cells": cmp["reference_cells"],
                            "costmap_phantom_cells": cmp["phantom_cells"], "costmap_missed_cells": cmp["missed_cells"]})
        r2 = self.params.obstacle_max_range ** 2
        for pts, store in ((node_pts, self._map_pred), (ref_pts, self._map_ref)):
            near = pts[((pts - origin) ** 2).sum(axis=1) <= r2]
            if len(near):
                store.append(_voxel_keys(near, self.map_voxel))
        t_pred = t_ref = None
        # temporal agreement on every stride-th pixel: the subsampled image is a camera of its own, K / stride
        s = self.stride
        Ks = np.asarray(K, dtype=np.float64).copy()
        Ks[:2] /= s
        pred_s, ref_s = _zero_invalid(pred[::s, ::s]), _zero_invalid(ref[::s, ::s])
        if self._prev is not None:
            T0, K0, pred0, ref0 = self._prev
            T_cur_prev = geometry.compose_transforms(geometry.invert_transform(T), T0)
            t_pred = _median_rel(geometry.register_depth(pred0, K0, Ks, T_cur_prev, pred_s.shape), pred_s)
            t_ref = _median_rel(geometry.register_depth(ref0, K0, Ks, T_cur_prev, ref_s.shape), ref_s)
            self._temporal.append((t_pred, t_ref))
        self._prev = (T, Ks, pred_s, ref_s)
        row.update({"temporal_prediction": t_pred, "temporal_reference": t_ref})
        return row

    # -- the run --------------------------------------------------------------------------------------
    def grids(self) -> dict:
        """The accumulated obstacle grids (reference, node, unfiltered), the grid and the camera's path, for pictures."""
        out = {"grid": self.grid, "reference": self._ref_layer.obstacles, "node": self.node.layer.obstacles,
               "trajectory": np.array(self.trajectory).reshape(-1, 2)}
        if self.unfiltered is not None:
            out["unfiltered"] = self.unfiltered.layer.obstacles
        return out

    def _costmap_of(self, v: _Variant) -> dict:
        out = summarize_frames(v.rows, self.reference)
        acc = compare_grids(v.layer.obstacles, self._ref_layer.obstacles) if v.layer is not None else None
        if acc is not None:
            out["accumulated"] = acc
        return out

    def constant_baseline(self, depth_m: float) -> dict:
        """The costmap of predicting ``depth_m`` everywhere (a plane facing each camera: a wall of phantoms)."""
        v = _Variant("constant", math.inf, layer=Costmap(self.params, self.grid))
        for (T, K, hw), ref_grid in zip(self._placed, self._ref_grids, strict=True):
            pts = geometry.transform_points(T, cloud_points(np.full(hw, depth_m, np.float32), K, self.stride))
            v.rows.append(compare_grids(mark_frame(pts, T[:3, 3], self.params, self.grid), ref_grid))
            v.layer.update(pts, T[:3, 3])
        return {"depth_m": float(depth_m), **self._costmap_of(v)}

    def summary(self, constant_depth_m: float | None = None) -> dict:
        """``costmap``, ``map``, ``temporal`` and (with a sweep) ``uncertainty_sweep`` for metrics.json."""
        costmap = self._costmap_of(self.node)
        costmap.update({
            "config": self.params.describe(),
            "fixed_frame": self.fixed_frame,
            "point_stride": self.stride,
            "max_uncertainty": self.max_uncertainty if np.isfinite(self.max_uncertainty) else None,
            "uncertainty_source": self.uncertainty_source,
            "frames_without_pose": len(self.without_pose),
            "grid": {"resolution": self.grid.resolution, "origin": list(self.grid.origin),
                     "width": self.grid.nx, "height": self.grid.ny},
        })
        notes = list(self.params.notes)
        if self.without_pose:
            notes.append(f"{len(self.without_pose)} frames had no pose and were left out; the first: "
                         f"{self.without_pose[0]}")
        if not self._ref_cells_any:
            notes.append(f"the reference marks no obstacle cell in any frame with {self.params.describe()}: "
                         "precision, recall and IoU are undefined (check the height band and ranges against "
                         "the scene)")
        if notes:
            costmap["notes"] = notes
        if self.unfiltered is not None:
            costmap["unfiltered"] = self._costmap_of(self.unfiltered)
        if constant_depth_m is not None and np.isfinite(constant_depth_m) and constant_depth_m > 0:
            costmap["baseline_constant"] = self.constant_baseline(constant_depth_m)
        out = {"costmap": costmap, "map": self._map_summary(), "temporal": self._temporal_summary()}
        if self._sweep:
            out["uncertainty_sweep"] = [
                {"max_uncertainty": v.max_uncertainty, **{k: s[k] for k in RATIO_KEYS},
                 "phantom_cells_per_frame": s["phantom_cells_per_frame"],
                 "missed_cells_per_frame": s["missed_cells_per_frame"]}
                for v in self._sweep for s in [summarize_frames(v.rows, self.reference)]]
        return out

    def _map_summary(self) -> dict:
        out: dict = {"voxel_m": self.map_voxel, "max_range_m": self.params.obstacle_max_range,
                     "fixed_frame": self.fixed_frame}
        P = _voxel_keys(np.concatenate(self._map_pred), 1.0) if self._map_pred else np.zeros((0, 3), np.int64)
        R = _voxel_keys(np.concatenate(self._map_ref), 1.0) if self._map_ref else np.zeros((0, 3), np.int64)
        out["predicted_voxels"], out["reference_voxels"] = len(P), len(R)
        if not len(P) or not len(R):
            out.update(iou=None, accuracy_median_m=None, completeness_median_m=None,
                       note=f"the {'prediction' if not len(P) else 'reference'} has no point within "
                            f"{self.params.obstacle_max_range:g} m: the map metrics are undefined")
            return out
        from scipy.spatial import cKDTree

        inter = len(np.intersect1d(_row_view(P), _row_view(R)))
        out["iou"] = inter / (len(P) + len(R) - inter)
        cp, cr = (P + 0.5) * self.map_voxel, (R + 0.5) * self.map_voxel
        out["accuracy_median_m"] = float(np.median(cKDTree(cr).query(cp)[0]))
        out["completeness_median_m"] = float(np.median(cKDTree(cp).query(cr)[0]))
        return out

    def _temporal_summary(self) -> dict:
        pred = [p for p, _ in self._temporal if p is not None]
        ref = [r for _, r in self._temporal if r is not None]
        out = {
            "prediction_median_rel": float(np.median(pred)) if pred else None,
            "reference_median_rel": float(np.median(ref)) if ref else None,
            "pairs": len(self._temporal),
            "what": "median over consecutive frame pairs of the median |warped previous - current| / current",
        }
        if pred and ref:
            out["flicker_above_reference"] = out["prediction_median_rel"] - out["reference_median_rel"]
        else:
            out["note"] = "fewer than two consecutive placed frames with overlapping depth: undefined"
        return out


def _zero_invalid(d: np.ndarray) -> np.ndarray:
    return np.where(np.isfinite(d) & (d > 0), d, 0.0).astype(np.float32)


def _row_view(a: np.ndarray) -> np.ndarray:
    a = np.ascontiguousarray(a, dtype=np.int64)
    return a.view(np.dtype((np.void, a.dtype.itemsize * a.shape[1]))).ravel()
