"""Nav2 costmap semantics on hand-built scenes, and the grid metrics on small grids by hand."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from moadepth_core.data.rosbag.tf_buffer import TfBuffer
from moadepth_core.evaluation.costmap import Costmap, GridSpec, bresenham, mark_frame
from moadepth_core.evaluation.costmap_metrics import compare_grids, dilate_1, summarize_frames
from moadepth_core.evaluation.nav2_params import CostmapParams
from moadepth_core.geometry import transform_matrix, transform_points

RES = 0.05
OBST = CostmapParams(path="test", plugin="ObstacleLayer", layer="obstacle_layer", source="cam", resolution=RES,
                     min_obstacle_height=0.1, max_obstacle_height=1.8, layer_max_obstacle_height=1.8,
                     obstacle_min_range=0.2, obstacle_max_range=4.0, raytrace_min_range=0.0,
                     raytrace_max_range=5.0, clearing=True)
VOXEL = dataclasses.replace(OBST, plugin="VoxelLayer", layer="voxel_layer", origin_z=0.0, z_resolution=0.05,
                            z_voxels=16, mark_threshold=2)
GRID = GridSpec(RES, ix0=-20, iy0=-40, nx=120, ny=100)  # x in [-1, 5), y in [-2, 3)
VOXEL0 = dataclasses.replace(VOXEL, mark_threshold=0)  # every marked voxel makes its column an obstacle
CAM = np.array([0.0, 0.0, 0.5])  # sensor origin in the fixed frame


def box_surface(lo, hi, step=0.01) -> np.ndarray:
    """Points on the five visible faces of an axis-aligned box (no bottom), ``step`` apart."""
    lo, hi = np.asarray(lo, float), np.asarray(hi, float)
    axes = [np.append(np.arange(lo[k], hi[k], step), hi[k]) for k in range(3)]
    pts = []
    for k in range(3):
        for v in ((lo[k], hi[k]) if k < 2 else (hi[k],)):
            a, b = [axes[j] for j in range(3) if j != k]
            A, B = np.meshgrid(a, b, indexing="ij")
            face = np.empty((A.size, 3))
            face[:, k] = v
            face[:, [j for j in range(3) if j != k]] = np.stack([A.ravel(), B.ravel()], 1)
            pts.append(face)
    return np.concatenate(pts)


def footprint(lo, hi, grid=GRID) -> set[tuple[int, int]]:
    """The cells floor(x / res) of an axis-aligned box's footprint, computed analytically."""
    xs = range(int(np.floor(lo[0] / RES)), int(np.floor(hi[0] / RES)) + 1)
    ys = range(int(np.floor(lo[1] / RES)), int(np.floor(hi[1] / RES)) + 1)
    return {(x - grid.ix0, y - grid.iy0) for x in xs for y in ys}


def cells_of(obstacles: np.ndarray) -> set[tuple[int, int]]:
    iy, ix = np.nonzero(obstacles)
    return set(zip(ix.tolist(), iy.tolist(), strict=True))


FLOOR = np.stack(np.meshgrid(np.arange(-0.5, 3.5, 0.02), np.arange(-1.5, 1.5, 0.02), [0.0]), -1).reshape(-1, 3)
BOX_LO, BOX_HI = (1.02, -0.27, 0.0), (1.33, 0.18, 0.5)


@pytest.mark.parametrize("params", [OBST, VOXEL0], ids=["obstacle", "voxel"])
def test_a_box_marks_exactly_its_footprint_and_the_floor_nothing(params):
    pts = np.concatenate([box_surface(BOX_LO, BOX_HI), FLOOR])
    assert cells_of(mark_frame(pts, CAM, params, GRID)) == footprint(BOX_LO, BOX_HI)


def test_voxel_layer_with_mark_threshold_keeps_the_box_outline():
    """Inside the outline a column holds only the top face (one voxel); mark_threshold 2 needs three."""
    pts = np.concatenate([box_surface(BOX_LO, BOX_HI), FLOOR])
    full = footprint(BOX_LO, BOX_HI)
    xs, ys = {x for x, _ in full}, {y for _, y in full}
    ring = {(x, y) for x, y in full if x in (min(xs), max(xs)) or y in (min(ys), max(ys))}
    assert cells_of(mark_frame(pts, CAM, VOXEL, GRID)) == ring


def test_a_rotated_odom_to_base_link_lands_the_box_in_the_right_cells():
    """The box and camera are fixed in base_link; the robot is at (2, 1), yawed 90 degrees (the midpoint
    of a 60 -> 120 degree turn): the box's footprint in odom is x in [2 - 0.18, 2 + 0.27], y in [1 + 1.02, 1 + 1.33]."""
    buf = TfBuffer()
    q = lambda deg: Rotation.from_euler("z", deg, degrees=True).as_quat()  # noqa: E731
    buf.add("odom", "base_link", 0, transform_matrix((2, 1, 0), q(60)))
    buf.add("odom", "base_link", 2_000_000, transform_matrix((2, 1, 0), q(120)))
    buf.add_static("base_link", "camera_link", transform_matrix((0, 0, 0.5)))
    T_odom_cam = buf.lookup("odom", "camera_link", 1_000_000)
    T_odom_base = buf.lookup("odom", "base_link", 1_000_000)
    pts = transform_points(T_odom_base, box_surface(BOX_LO, BOX_HI))
    origin = transform_points(T_odom_cam, np.zeros(3))
    np.testing.assert_allclose(origin, [2, 1, 0.5], atol=1e-12)
    want = footprint((2 - 0.18, 1 + 1.02), (2 + 0.27, 1 + 1.33))
    assert cells_of(mark_frame(pts, origin, OBST, GRID)) == want


@pytest.mark.parametrize("params", [OBST, VOXEL0], ids=["obstacle", "voxel"])
def test_points_outside_the_height_band_or_range_never_mark(params):
    d = 1.0 / np.sqrt(2)
    outside = np.array([
        [1.0, 0.0, 0.09],  # below min_obstacle_height
        [1.0, 0.0, 1.81],  # above max_obstacle_height
        [0.1, 0.0, 0.5],  # 0.1 m from the sensor: closer than obstacle_min_range
        [4.0, 0.0, 0.5],  # exactly obstacle_max_range: Nav2 keeps d < max
        [4.5, 0.0, 0.5],
        [np.nan, 0.0, 0.5],
    ])
    assert not mark_frame(outside, CAM, params, GRID).any()
    inside = np.array([[1.0, 1.0, 0.1], [2 * d, 2 * d, 0.5]])  # the band is inclusive at min
    assert cells_of(mark_frame(inside, CAM, params, GRID)) == {(20 - GRID.ix0, 20 - GRID.iy0),
                                                               (28 - GRID.ix0, 28 - GRID.iy0)}


def test_voxel_column_needs_more_than_mark_threshold_voxels():
    col = lambda n, x: np.array([[x, 0.02, 0.12 + 0.05 * k] for k in range(n)])  # noqa: E731
    grid = mark_frame(np.concatenate([col(2, 1.02), col(3, 2.02)]), CAM, VOXEL, GRID)
    assert cells_of(grid) == {(40 - GRID.ix0, -GRID.iy0)}  # the 3-voxel column at x = 2.02 only
    # above the voxel grid's top (16 x 5 cm = 0.8 m) nothing marks, even inside max_obstacle_height
    assert not mark_frame(col(3, 1.02) + [0, 0, 0.7], CAM, VOXEL, GRID).any()


def test_clearing_removes_an_obstacle_that_left_the_view():
    cm = Costmap(OBST, GRID)
    box = box_surface(BOX_LO, BOX_HI)
    wall = box_surface((3.0, -1.5, 0.0), (3.04, 1.5, 0.6))
    cm.update(np.concatenate([box, wall]), CAM)
    assert footprint(BOX_LO, BOX_HI) <= cells_of(cm.obstacles)
    cm.update(wall, CAM)  # the box was carried away: the rays to the wall pass through its cells
    assert cells_of(cm.obstacles) == footprint((3.0, -1.5), (3.04, 1.5))
    # without clearing (the source's clearing: false) the box stays
    keep = Costmap(dataclasses.replace(OBST, clearing=False), GRID)
    keep.update(box, CAM)
    keep.update(wall, CAM)
    assert footprint(BOX_LO, BOX_HI) <= cells_of(keep.obstacles)


def test_voxel_clearing_frees_the_voxels_its_rays_cross():
    """A 3-voxel object at 0.40-0.55 m marks its column; rays from 0.5 m to a wall at 3 m cross
    0.36-0.60 m above it and free all three voxels, while the floor-level band below stays unseen."""
    cm = Costmap(VOXEL, GRID)
    obj = np.array([[1.02, 0.02, 0.42 + 0.05 * k] for k in range(3)])
    wall = box_surface((3.0, -0.5, 0.1), (3.04, 0.5, 0.8))
    cm.update(obj, CAM)
    assert cells_of(cm.obstacles) == {(20 - GRID.ix0, -GRID.iy0)}
    cm.update(wall, CAM)
    assert (20 - GRID.ix0, -GRID.iy0) not in cells_of(cm.obstacles)
    assert cells_of(cm.obstacles) == cells_of(mark_frame(wall, CAM, VOXEL, GRID))


def test_clearing_stops_at_raytrace_max_range():
    params = dataclasses.replace(OBST, raytrace_max_range=0.95)  # 19 cells: up to x = 0.95..1.0
    cm = Costmap(params, GRID)
    cm.update(box_surface(BOX_LO, BOX_HI), CAM)  # the box starts at 1.02 m, in cell 20
    cm.update(box_surface((3.0, -1.5, 0.0), (3.04, 1.5, 0.6)), CAM)
    assert footprint(BOX_LO, BOX_HI) <= cells_of(cm.obstacles)
    with_range = Costmap(dataclasses.replace(params, raytrace_max_range=1.0), GRID)  # 20 cells reach it
    with_range.update(box_surface(BOX_LO, BOX_HI), CAM)
    with_range.update(box_surface((3.0, -1.5, 0.0), (3.04, 1.5, 0.6)), CAM)
    assert (40, 40) not in cells_of(with_range.obstacles) and (41, 40) in cells_of(with_range.obstacles)


def test_bresenham_matches_nav2s_loop_by_hand():
    cells, ray = bresenham(np.array([[0, 0], [3, 3]]), np.array([[5, 2], [-1, -3]]), np.array([5, 3]))
    assert cells[ray == 0].tolist() == [[0, 0], [1, 0], [2, 1], [3, 1], [4, 2], [5, 2]]
    assert cells[ray == 1].tolist() == [[3, 3], [3, 2], [2, 1], [2, 0]]


def test_grid_covering_and_cells_are_floor_of_x_over_resolution():
    g = GridSpec.covering(np.array([[0.01, -0.01], [1.0, 0.5]]), 0.05, margin_m=0.0)
    assert (g.ix0, g.iy0, g.nx, g.ny) == (0, -1, 21, 12)
    ix, iy, inside = g.cells(np.array([[0.049, -0.049], [1.0, 0.5], [1.06, 0.0]]))
    assert ix.tolist() == [0, 20, 21] and iy.tolist() == [0, 11, 1] and inside.tolist() == [True, True, False]


def _g(rows: list[str]) -> np.ndarray:
    return np.array([[c == "#" for c in r] for r in rows])


def test_metrics_by_hand():
    pred = _g(["##...",
               ".....",
               "....#"])
    ref = _g(["#....",
              ".#...",
              "....."])
    m = compare_grids(pred, ref)
    assert (m["predicted_cells"], m["reference_cells"], m["phantom_cells"], m["missed_cells"]) == (3, 2, 2, 1)
    assert m["iou"] == pytest.approx(1 / 4) and m["precision"] == pytest.approx(1 / 3)
    assert m["recall"] == pytest.approx(1 / 2)
    # within one cell: (0,1) touches (1,1); the corner cell (2,4) is two cells from anything
    assert m["precision_within_1_cell"] == pytest.approx(2 / 3) and m["recall_within_1_cell"] == 1.0
    assert m["iou_within_1_cell"] == pytest.approx(2 / 3) and "note" not in m
    assert dilate_1(_g(["#.."])).tolist() == [[True, True, False]]


def test_metrics_are_undefined_not_a_division_by_zero():
    empty = np.zeros((3, 3), bool)
    one = empty.copy()
    one[1, 1] = True
    m = compare_grids(one, empty)
    assert m["recall"] is None and m["iou"] == 0.0 and m["precision"] == 0.0 and "recall is undefined" in m["note"]
    m = compare_grids(empty, empty)
    assert all(m[k] is None for k in ("iou", "precision", "recall", "iou_within_1_cell"))
    s = summarize_frames([m, compare_grids(one, one)], reference="/camera/depth/image_raw")
    assert s["iou"] == 1.0 and s["iou_frames"] == 1 and s["reference"] == "/camera/depth/image_raw"
    assert s["phantom_cells_per_frame"] == 0 and s["missed_cells_per_frame"] == 0
    s = summarize_frames([m], reference="r")
    assert s["iou"] is None and "undefined" in s["note"]
