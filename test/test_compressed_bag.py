"""rosbag2 recordings with image_transport's compressed colour and compressedDepth ground truth (issue 21):
``moadepth synth --bag --compressed`` and bags written as the plugins write them, read by BagSource."""

from __future__ import annotations

import struct

import cv2
import numpy as np
import pytest

from moadepth_core.cli import synth as synth_cli
from moadepth_core.data.rosbag.source import BagSource
from moadepth_core.data.rosbag.writer import RGBDBagWriter
from moadepth_core.errors import DataError
from moadepth_core.geometry import compressed


def test_synth_compressed_bag_reads_back_as_the_folder_frames(tmp_path):
    out = tmp_path / "ds"
    assert synth_cli.main(["--out", str(out), "--frames", "3", "--width", "64", "--height", "48", "--fx", "50",
                           "--fy", "50", "--bag", "--compressed", "--quiet"]) == 0
    src = BagSource(out / "bag")
    assert src.image_topic == "/camera/color/image_raw/compressed"
    assert src.depth_topic == "/camera/depth/image_raw/compressedDepth"
    assert src.camera_info_topic == "/camera/color/camera_info"
    assert src.topics()[src.image_topic] == "sensor_msgs/msg/CompressedImage"
    assert len(src) == 3
    for i in range(3):
        f = src[i]
        truth = np.load(out / "depth" / f"{i:06d}.npy")
        ref = cv2.imread(str(out / "rgb" / f"{i:06d}.png"))[:, :, ::-1]
        assert f.rgb.shape == (48, 64, 3) and f.rgb.dtype == np.uint8
        assert np.abs(f.rgb.astype(int) - ref).mean() < 4.0  # JPEG at quality 95
        valid = truth > 0
        assert ((f.depth > 0) == valid).all()
        assert np.abs(f.depth[valid] - truth[valid]).max() <= 0.0005 + 1e-6  # millimetres
    src.close()


def test_synth_compressed_needs_bag(tmp_path, capsys):
    assert synth_cli.main(["--out", str(tmp_path / "x"), "--frames", "1", "--compressed", "--quiet"]) == 2
    assert "add --bag" in capsys.readouterr().err


def _plugin_32fc1(depth, depth_max=10.0, z0=100.0):
    """compressed_depth_image_transport's codec.cpp for 32FC1, step by step (see test_compressed.py)."""
    a = np.float32(np.float32(z0) * (np.float32(z0) + np.float32(1.0)))
    b = np.float32(np.float32(1.0) - a / np.float32(depth_max))
    inv = np.zeros(depth.shape, np.uint16)
    for (i, j), d in np.ndenumerate(depth.astype(np.float32)):
        if d < np.float32(depth_max):
            inv[i, j] = int(a / d + b)
    png = cv2.imencode(".png", inv, [cv2.IMWRITE_PNG_COMPRESSION, 9])[1].tobytes()
    return "32FC1; compressedDepth png", struct.pack("<iff", 0, a, b) + png, a


def _write_bag(path, depth_fmt_data, frames=2, h=24, w=32):
    rng = np.random.default_rng(0)
    K = np.array([[30.0, 0, (w - 1) / 2], [0, 30.0, (h - 1) / 2], [0, 0, 1]])
    rgbs = []
    with RGBDBagWriter(path) as bag:
        for i in range(frames):
            stamp = 1_700_000_000_000_000_000 + i * 100_000_000
            rgb = np.full((h, w, 3), 40 * (i + 1), np.uint8)
            rgbs.append(rgb)
            bag.write_compressed("/cam/color/image_raw/compressed", stamp, "cam", "rgb8; jpeg compressed bgr8",
                                 cv2.imencode(".jpg", rgb[:, :, ::-1])[1].tobytes())
            bag.write_camera_info("/cam/color/camera_info", stamp, "cam", K, w, h)
            fmt, data = depth_fmt_data(i, rng)
            bag.write_compressed("/cam/depth/image_raw/compressedDepth", stamp, "cam", fmt, data)
    return rgbs


def test_compressed_depth_32fc1_ground_truth_from_a_bag_decodes_within_one_quantisation_step(tmp_path):
    truths = []

    def depth(i, rng):
        d = rng.uniform(0.5, 8.0, (24, 32)).astype(np.float32)
        d[:2] = np.nan
        fmt, data, a = _plugin_32fc1(d)
        truths.append((d, a))
        return fmt, data

    rgbs = _write_bag(tmp_path / "bag", depth)
    src = BagSource(tmp_path / "bag")
    assert src.depth_topic == "/cam/depth/image_raw/compressedDepth" and len(src) == 2
    for i, (d, a) in enumerate(truths):
        f = src[i]
        assert (f.depth[:2] == 0).all()  # NaN (q = 0) is invalid = 0 in the core
        ok = np.isfinite(d)
        assert (np.abs(f.depth[ok] - d[ok]) <= d[ok] ** 2 / a * 1.01 + 1e-6).all()
        assert np.abs(f.rgb.astype(int) - rgbs[i]).max() <= 2


def test_a_corrupt_compressed_depth_message_in_a_bag_is_one_sentence(tmp_path):
    def depth(i, rng):
        fmt, data, _ = _plugin_32fc1(np.full((24, 32), 2.0, np.float32))
        return fmt, (data if i == 0 else struct.pack("<iff", 7, 1.0, 1.0) + data[12:])

    _write_bag(tmp_path / "bag", depth)
    src = BagSource(tmp_path / "bag")
    assert src[0].depth.mean() == pytest.approx(2.0, abs=0.01)
    with pytest.raises(DataError, match=r"compressedDepth.*not INV_DEPTH") as err:
        src[1]
    assert str(tmp_path / "bag") in str(err.value) and "\n" not in str(err.value)


def test_encode_depth_16uc1_for_the_synth_bag_keeps_every_millimetre():
    mm = np.arange(0, 65535, 37, dtype=np.uint16)[:1764].reshape(42, 42)
    fmt, data = compressed.encode_depth(mm, "16UC1", depth_max=100.0)
    np.testing.assert_array_equal(compressed.decode_depth(fmt, data)[0], mm)
