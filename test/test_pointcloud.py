"""pack_points against the ``pointcloud2`` PyPI package (a port of sensor_msgs_py.point_cloud2)."""

from __future__ import annotations

import types

import numpy as np
import pointcloud2 as pc2
import pytest

from moadepth_core.errors import DataError
from moadepth_core.geometry import pointcloud

HEADER = types.SimpleNamespace(frame_id="cam", stamp=types.SimpleNamespace(sec=0, nanosec=0))


def _xyz_rgb(h=6, w=7, seed=0):
    rng = np.random.default_rng(seed)
    xyz = rng.uniform(-3, 3, (h, w, 3)).astype(np.float32)
    xyz[1, 2] = np.nan
    xyz[-1, 0] = np.nan
    rgb = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    return xyz, rgb


def _ref_fields(packed):
    return [pc2.PointField(name, off, dt, cnt) for name, off, dt, cnt in packed.fields]


def test_xyz_matches_reference():
    xyz, _ = _xyz_rgb()
    packed = pointcloud.pack_points(xyz)
    assert (packed.height, packed.width, packed.point_step, packed.row_step) == (6, 7, 16, 16 * 7)
    assert packed.fields == [("x", 0, 7, 1), ("y", 4, 7, 1), ("z", 8, 7, 1)]
    assert packed.is_dense is False and len(packed.data) == packed.row_step * packed.height
    ref = pc2.create_cloud(HEADER, _ref_fields(packed), xyz.reshape(-1, 3), step=16)
    # same point_step and field spec -> read both back with the reference reader
    mine = types.SimpleNamespace(**{**ref.__dict__, "data": packed.data, "height": 6, "width": 7,
                                    "row_step": packed.row_step})
    got = pc2.read_points(mine)
    exp = pc2.read_points(ref)
    for name in "xyz":
        np.testing.assert_array_equal(got[name], exp[name])  # NaN positions equal too
    # bytes equal on the data fields (padding bytes 12..16 are unspecified in the reference)
    a = np.frombuffer(packed.data, np.uint8).reshape(-1, 16)[:, :12]
    b = np.frombuffer(ref.data, np.uint8).reshape(-1, 16)[:, :12]
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(pointcloud.unpack_points(packed), xyz)


@pytest.mark.parametrize("pcl_layout", [False, True])
def test_xyzrgb_matches_reference_bytes(pcl_layout):
    xyz, rgb = _xyz_rgb(5, 9, seed=1)
    packed = pointcloud.pack_points(xyz, rgb, pcl_layout=pcl_layout)
    step = 32 if pcl_layout else 16
    assert packed.point_step == step and packed.fields[-1] == ("rgb", 16 if pcl_layout else 12, 7, 1)
    # reference: structured array with rgb as the float32 whose bits are 0x00RRGGBB
    dtype = pc2.dtype_from_fields(_ref_fields(packed), point_step=step)
    pts = np.zeros((5, 9), dtype=dtype)
    pts["x"], pts["y"], pts["z"] = xyz[..., 0], xyz[..., 1], xyz[..., 2]
    rgb_u32 = (rgb[..., 0].astype(np.uint32) << 16) | (rgb[..., 1].astype(np.uint32) << 8) | rgb[..., 2]
    pts["rgb"] = rgb_u32.view(np.float32)
    ref = pc2.create_cloud(HEADER, _ref_fields(packed), pts, step=step)
    assert (ref.height, ref.width, ref.point_step, ref.row_step) == (5, 9, packed.point_step, packed.row_step)
    assert packed.data == ref.data
    np.testing.assert_array_equal(pointcloud.unpack_rgb(packed), rgb)
    # a known colour's bits: pure red -> 0x00FF0000
    red = pointcloud.pack_points(np.ones((1, 1, 3), np.float32), np.array([[[255, 0, 0]]], np.uint8))
    assert np.frombuffer(red.data, "<u4")[3] == 0x00FF0000 and red.is_dense


def test_bad_inputs():
    with pytest.raises(DataError, match="HxWx3"):
        pointcloud.pack_points(np.zeros((4, 3), np.float32))
    with pytest.raises(DataError, match="uint8"):
        pointcloud.pack_points(np.zeros((2, 2, 3), np.float32), np.zeros((2, 2, 3), np.float32))


@pytest.mark.parametrize("binary", [True, False])
@pytest.mark.parametrize("with_rgb", [True, False])
def test_ply_round_trip(tmp_path, binary, with_rgb):
    xyz, rgb = _xyz_rgb(4, 5, seed=2)
    n = pointcloud.write_ply(tmp_path / "sub" / "c.ply", xyz, rgb if with_rgb else None, binary=binary)
    keep = np.isfinite(xyz).all(axis=2)
    assert n == keep.sum() == 18
    got_xyz, got_rgb = pointcloud.read_ply(tmp_path / "sub" / "c.ply")
    np.testing.assert_array_equal(got_xyz, xyz[keep])
    if with_rgb:
        np.testing.assert_array_equal(got_rgb, rgb[keep])
    else:
        assert got_rgb is None
