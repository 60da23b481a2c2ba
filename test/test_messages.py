"""rclpy message adapters: Image / CameraInfo / PointCloud2 round trips, incl. CDR serialisation.

No node and no DDS: only message classes and rclpy.serialization are used.
"""

from __future__ import annotations

import numpy as np
import pytest

rclpy_serialization = pytest.importorskip("rclpy.serialization")
from sensor_msgs.msg import CameraInfo, Image, PointCloud2  # noqa: E402
from std_msgs.msg import Header  # noqa: E402

from moadepth_core import geometry  # noqa: E402
from moadepth_core.errors import DataError  # noqa: E402
from moadepth_core.geometry import pointcloud  # noqa: E402
from moadepth_ros import messages  # noqa: E402

pytestmark = pytest.mark.ros


def _header():
    h = Header()
    h.frame_id = "camera_optical_frame"
    h.stamp.sec = 12
    h.stamp.nanosec = 345
    return h


def _cdr_round_trip(msg):
    return rclpy_serialization.deserialize_message(rclpy_serialization.serialize_message(msg), type(msg))


@pytest.mark.parametrize(
    ("encoding", "dtype", "shape"),
    [("rgb8", np.uint8, (6, 8, 3)), ("bgra8", np.uint8, (6, 8, 4)), ("mono8", np.uint8, (6, 8)),
     ("16UC1", np.uint16, (6, 8)), ("32FC1", np.float32, (6, 8))],
)
def test_image_round_trip(encoding, dtype, shape):
    rng = np.random.default_rng(0)
    arr = (rng.uniform(0, 5, shape) if dtype == np.float32 else rng.integers(0, 200, shape)).astype(dtype)
    msg = messages.numpy_to_image(arr, encoding, _header())
    assert (msg.height, msg.width, msg.encoding, msg.is_bigendian) == (6, 8, encoding, 0)
    assert msg.step * msg.height == len(msg.data)
    assert msg.header.frame_id == "camera_optical_frame" and msg.header.stamp.nanosec == 345
    np.testing.assert_array_equal(messages.image_to_numpy(msg), arr)
    back = _cdr_round_trip(msg)
    assert back == msg
    np.testing.assert_array_equal(messages.image_to_numpy(back), arr)


def test_image_colour_and_depth_helpers():
    bgr = np.zeros((2, 3, 3), np.uint8)
    bgr[..., 0] = 9  # blue
    rgb = messages.image_to_rgb8(messages.numpy_to_image(bgr, "bgr8"))
    assert rgb[0, 0].tolist() == [0, 0, 9]
    mm = np.array([[0, 1500]], np.uint16)
    m = messages.depth_msg_to_metres(messages.numpy_to_image(mm, "16UC1"))
    np.testing.assert_allclose(m, [[0.0, 1.5]])
    assert np.isnan(messages.depth_msg_to_metres(messages.numpy_to_image(mm, "16UC1"), invalid=np.nan)[0, 0])


def test_big_endian_padded_message():
    arr = np.arange(12, dtype=np.uint16).reshape(3, 4) * 300
    rows = arr.astype(">u2").view(np.uint8).reshape(3, 8)
    padded = np.concatenate([rows, np.zeros((3, 4), np.uint8)], axis=1)
    msg = Image(height=3, width=4, encoding="16UC1", is_bigendian=1, step=12)
    msg.data = padded.tobytes()
    np.testing.assert_array_equal(messages.image_to_numpy(msg), arr)


def test_camera_info_make_and_scale():
    K = geometry.intrinsics_matrix(525.0, 520.0, 319.5, 239.5)
    info = messages.make_camera_info(_header(), K, 480, 640)
    K_back, hw = messages.camera_info_to_K(info)
    np.testing.assert_array_equal(K_back, K)
    assert hw == (480, 640)
    P = np.asarray(info.p).reshape(3, 4)
    np.testing.assert_array_equal(P[:, :3], K)
    np.testing.assert_array_equal(P[:, 3], 0)
    np.testing.assert_array_equal(np.asarray(info.r).reshape(3, 3), np.eye(3))
    assert info.distortion_model == "plumb_bob" and len(info.d) == 5
    small = messages.scaled_camera_info(_cdr_round_trip(info), (240, 320))
    K_s, hw_s = messages.camera_info_to_K(small)
    assert hw_s == (240, 320)
    np.testing.assert_allclose(K_s, geometry.scale_intrinsics(K, (480, 640), (240, 320)))
    np.testing.assert_allclose(np.asarray(small.p).reshape(3, 4)[:, :3], K_s)
    assert small.header.frame_id == "camera_optical_frame"
    with pytest.raises(DataError, match="no calibration"):
        messages.camera_info_to_K(CameraInfo())


def test_camera_from_info_parses_once_and_camera_info_msg_scales_p_with_k():
    K = geometry.intrinsics_matrix(525.0, 520.0, 319.5, 239.5)
    info = messages.make_camera_info(_header(), K, 480, 640)
    info.p[3] = -0.06 * 525.0  # a stereo right camera's Tx
    cam = messages.camera_from_info(info)
    np.testing.assert_array_equal(cam.K, K)
    assert cam.hw == (480, 640)
    header = _header()
    header.frame_id = "depth_frame"
    out = messages.camera_info_msg(info, cam.scaled((240, 320)), header)
    assert (out.height, out.width, out.header.frame_id) == (240, 320, "depth_frame")
    np.testing.assert_array_equal(np.asarray(out.k).reshape(3, 3), geometry.scale_intrinsics(K, (480, 640), (240, 320)))
    P = np.asarray(out.p).reshape(3, 4)
    np.testing.assert_array_equal(P[:, :3], geometry.scale_intrinsics(K, (480, 640), (240, 320)))
    assert P[0, 3] == pytest.approx(-0.06 * 525.0 * 0.5)
    bad = messages.make_camera_info(_header(), K, 480, 640)
    bad.k[2] = float("nan")
    with pytest.raises(DataError, match="non-finite"):
        messages.camera_from_info(bad)
    with pytest.raises(DataError, match="empty size"):
        messages.camera_from_info(messages.make_camera_info(_header(), K, 0, 640))


@pytest.mark.parametrize("with_rgb", [False, True])
def test_cloud_to_msg(with_rgb):
    rng = np.random.default_rng(1)
    xyz = rng.uniform(-1, 1, (4, 5, 3)).astype(np.float32)
    xyz[0, 0] = np.nan
    rgb = rng.integers(0, 256, (4, 5, 3), dtype=np.uint8) if with_rgb else None
    packed = pointcloud.pack_points(xyz, rgb)
    msg = messages.cloud_to_msg(packed, _header())
    assert isinstance(msg, PointCloud2)
    assert (msg.height, msg.width, msg.point_step, msg.row_step) == (4, 5, 16, 80)
    assert msg.is_dense is False and msg.is_bigendian is False
    assert len(msg.data) == msg.row_step * msg.height
    names = [(f.name, f.offset, f.datatype, f.count) for f in msg.fields]
    assert names[:3] == [("x", 0, 7, 1), ("y", 4, 7, 1), ("z", 8, 7, 1)]
    assert (names[3:] == [("rgb", 12, 7, 1)]) is with_rgb
    back = _cdr_round_trip(msg)
    assert back == msg
    again = messages.msg_to_packed(back)
    np.testing.assert_array_equal(pointcloud.unpack_points(again), xyz)
    if with_rgb:
        np.testing.assert_array_equal(pointcloud.unpack_rgb(again), rgb)


def test_output_buffers_are_reused_and_carried_without_a_copy():
    from moadepth_ros.messages import OutputBuffers, image_from_buffer

    out = OutputBuffers()
    buf, view = out.image("depth", 3, 4, "32FC1")
    view[...] = np.arange(12, dtype=np.float32).reshape(3, 4)
    msg = image_from_buffer(buf, 3, 4, "32FC1")
    assert msg.data is buf and msg.step == 16
    np.testing.assert_array_equal(messages.image_to_numpy(msg), view)  # decoded independently of the view
    assert out.image("depth", 3, 4, "32FC1")[0] is buf  # same size: the same buffer
    assert out.get("depth", 8) is not buf  # another size: a new one
    with pytest.raises(DataError, match="needs 64 bytes, got 48"):
        image_from_buffer(buf, 4, 4, "32FC1")
