"""The time-indexed TF buffer: interpolation, chains of static and dynamic edges, error sentences, bags."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from moadepth_core.data.rosbag.tf_buffer import TfBuffer, read_bag_tf
from moadepth_core.data.rosbag.writer import TF_TYPE, RGBDBagWriter
from moadepth_core.errors import DataError
from moadepth_core.geometry import interpolate_transform, transform_matrix, transform_points

S = 1_000_000_000


def _yaw(deg: float, xyz=(0.0, 0.0, 0.0)) -> np.ndarray:
    return transform_matrix(xyz, Rotation.from_euler("z", deg, degrees=True).as_quat())


def test_interpolate_transform_midpoint_is_linear_translation_and_slerp():
    T = interpolate_transform(_yaw(0, (0, 0, 0)), _yaw(90, (2, 4, 0)), 0.5)
    np.testing.assert_allclose(T, _yaw(45, (1, 2, 0)), atol=1e-12)
    np.testing.assert_allclose(interpolate_transform(_yaw(10), _yaw(50), 0.25), _yaw(20), atol=1e-12)
    with pytest.raises(DataError, match="never extrapolated"):
        interpolate_transform(_yaw(0), _yaw(10), 1.5)


def test_slerp_takes_the_short_way_across_180_degrees():
    T = interpolate_transform(_yaw(170), _yaw(-170), 0.5)  # 20 degrees apart through 180, not 340
    np.testing.assert_allclose(T, _yaw(180), atol=1e-12)


def test_lookup_interpolates_between_neighbouring_stamps():
    buf = TfBuffer()
    for i in range(3):
        buf.add("odom", "base_link", i * S, _yaw(30 * i, (i, 0, 0)))
    np.testing.assert_allclose(buf.lookup("odom", "base_link", S // 2), _yaw(15, (0.5, 0, 0)), atol=1e-12)
    np.testing.assert_allclose(buf.lookup("odom", "base_link", 2 * S), _yaw(60, (2, 0, 0)), atol=1e-12)
    # the inverse direction is the inverse transform
    np.testing.assert_allclose(buf.lookup("base_link", "odom", 3 * S // 2) @ _yaw(45, (1.5, 0, 0)), np.eye(4),
                               atol=1e-12)
    assert buf.time_range("base_link") == (0, 2 * S) and buf.has_dynamic


def test_rotated_chain_of_dynamic_and_static_edges():
    """odom -> base_link (moving, yawed 90 deg) -> camera_link (static mount): a point 1 m in front of
    the camera lands where the chain puts it."""
    buf = TfBuffer()
    buf.add("odom", "base_link", 0, _yaw(90, (1, 1, 0)))
    buf.add("odom", "base_link", 2 * S, _yaw(90, (1, 3, 0)))
    buf.add_static("base_link", "camera_link", transform_matrix((0.2, 0, 0.5)))
    T = buf.lookup("odom", "camera_link", S)  # base at (1, 2), facing +y
    np.testing.assert_allclose(transform_points(T, np.array([1.0, 0, 0])), [1, 2 + 0.2 + 1.0, 0.5], atol=1e-12)
    # a lookup between two leaves of the tree goes through their common parent
    buf.add_static("odom", "dock", transform_matrix((5, 0, 0)))
    np.testing.assert_allclose(transform_points(buf.lookup("dock", "camera_link", S), np.zeros(3)),
                               [1 - 5, 2.2, 0.5], atol=1e-12)


def test_out_of_range_stamps_are_refused_unless_within_tolerance():
    buf = TfBuffer(name="bag run1")
    buf.add("odom", "base_link", S, _yaw(0))
    buf.add("odom", "base_link", 2 * S, _yaw(0, (1, 0, 0)))
    with pytest.raises(DataError) as err:
        buf.lookup("odom", "base_link", 3 * S)
    msg = str(err.value)
    assert msg.count(".") >= 1 and "\n" not in msg
    assert "'base_link' to frame 'odom'" in msg and "after the last" in msg and "bag run1" in msg
    assert "known frames: base_link, odom" in msg
    with pytest.raises(DataError, match="before the first"):
        buf.lookup("odom", "base_link", 0)
    tolerant = TfBuffer(tolerance_ns=S // 10)
    tolerant.add("odom", "base_link", S, _yaw(0, (1, 0, 0)))
    tolerant.add("odom", "base_link", 2 * S, _yaw(0, (2, 0, 0)))
    np.testing.assert_allclose(tolerant.lookup("odom", "base_link", 2 * S + S // 20)[:3, 3], [2, 0, 0])


def test_missing_frames_and_unconnected_trees_name_the_frames_the_data_has():
    buf = TfBuffer(name="bag b")
    buf.add("odom", "base_link", 0, np.eye(4))
    buf.add_static("map_a", "map_b", np.eye(4))
    with pytest.raises(DataError, match=r"frame 'map' was never recorded; known frames: base_link, map_a, map_b, odom"):
        buf.lookup("map", "base_link", 0)
    with pytest.raises(DataError, match="no chain of transforms connects them"):
        buf.lookup("map_a", "base_link", 0)
    with pytest.raises(DataError, match="both static and dynamic"):
        buf.add_static("odom", "base_link", np.eye(4))
    with pytest.raises(DataError, match="two parents"):
        buf.add("map_a", "base_link", S, np.eye(4))


def _write_tf_bag(path, poses, static=True):
    with RGBDBagWriter(path) as w:
        if static:
            w.write_tf_static(0, [("base_link", "camera_link", [0.1, 0, 0.4], [0, 0, 0, 1])])
        w.add_topic("/tf", TF_TYPE)  # registered first: /tf is not latched
        for stamp, xyz, q in poses:
            w.write_tf_static(stamp, [("odom", "base_link", xyz, q)], topic="/tf")


def test_read_bag_tf_reads_tf_and_tf_static(tmp_path):
    q90 = Rotation.from_euler("z", 90, degrees=True).as_quat()
    _write_tf_bag(tmp_path / "bag", [(S, [0, 0, 0], [0, 0, 0, 1]), (3 * S, [2, 0, 0], q90)])
    buf = read_bag_tf(tmp_path / "bag")
    assert buf.frames == ["base_link", "camera_link", "odom"] and buf.has_dynamic
    T = buf.lookup("odom", "camera_link", 2 * S)
    np.testing.assert_allclose(T, _yaw(45, (1, 0, 0)) @ transform_matrix((0.1, 0, 0.4)), atol=1e-9)
    static_only = tmp_path / "static"
    _write_tf_bag(static_only, [])
    assert not read_bag_tf(static_only).has_dynamic
    with pytest.raises(DataError, match="does not exist"):
        read_bag_tf(tmp_path / "nope")
