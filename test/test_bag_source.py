"""BagSource and the static TF resolver on small bags written here in the formats robots record."""

from __future__ import annotations

import numpy as np
import pytest

from moadepth_core.data import open_source
from moadepth_core.data.rosbag.messages import header_from_cdr
from moadepth_core.data.rosbag.source import BagSource
from moadepth_core.data.rosbag.tf_buffer import TfBuffer
from moadepth_core.data.rosbag.writer import RGBDBagWriter
from moadepth_core.errors import DataError
from moadepth_core.geometry import compose_transforms, intrinsics_matrix, invert_transform, transform_matrix

H, W = 64, 96
K = intrinsics_matrix(80.0, 80.0, 47.5, 31.5)
T0 = 1_700_000_000 * 1_000_000_000
IMG, DEP = "/camera/color/image_raw", "/camera/depth/image_raw"
IMG_INFO, DEP_INFO = "/camera/color/camera_info", "/camera/depth/camera_info"
OPTICAL_Q = (-0.5, 0.5, -0.5, 0.5)  # camera_link (x fwd, z up) -> optical (z fwd, y down)


def make_frames(n: int, seed: int = 0) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Random-texture images and smooth depth in 0.5..4 m with a few holes."""
    rng = np.random.default_rng(seed)
    rgbs, depths = [], []
    yy, xx = np.mgrid[0:H, 0:W]
    for i in range(n):
        rgbs.append(rng.integers(0, 256, (H, W, 3), dtype=np.uint8))
        d = (1.0 + 0.02 * xx + 0.01 * yy + 0.1 * i).astype(np.float32)
        d[5:9, 10:20] = np.nan
        depths.append(d)
    return rgbs, depths


def write_bag(path, n: int = 4, *, storage: str = "mcap", depth_encoding: str = "32FC1",
              depth_scale: float = 1000.0, image_encoding: str = "rgb8", depth_offsets_ns=None,
              predictions: dict | None = None, skip_depth=(), seed: int = 0):
    """A colour + aligned depth bag; returns (rgbs, depths in metres as stored, stamps)."""
    rgbs, depths = make_frames(n, seed)
    stamps = [T0 + i * 100_000_000 for i in range(n)]
    with RGBDBagWriter(path, storage=storage) as w:
        w.write_tf_static(T0, [("base_link", "camera_color_optical_frame", [0, 0, 0.5], [0, 0, 0, 1])])
        for i, (rgb, d) in enumerate(zip(rgbs, depths, strict=True)):
            st = stamps[i]
            img = {"rgb8": rgb, "bgr8": rgb[..., ::-1], "mono8": rgb[..., 0],
                   "rgba8": np.dstack([rgb, np.full((H, W), 255, np.uint8)])}[image_encoding]
            w.write_image(IMG, st, "camera_color_optical_frame", img, image_encoding)
            w.write_camera_info(IMG_INFO, st, "camera_color_optical_frame", K, W, H)
            if i in skip_depth:
                continue
            dst = st + (depth_offsets_ns[i] if depth_offsets_ns else 0)
            if depth_encoding == "16UC1":
                raw = np.where(np.isfinite(d), np.round(d * depth_scale), 0).astype(np.uint16)
                depths[i] = np.where(raw > 0, raw / np.float32(depth_scale), 0).astype(np.float32)
                w.write_image(DEP, dst, "camera_color_optical_frame", raw, "16UC1")
            else:
                w.write_image(DEP, dst, "camera_color_optical_frame", d, "32FC1")
            w.write_camera_info(DEP_INFO, dst, "camera_color_optical_frame", K, W, H)
            for topic, preds in (predictions or {}).items():
                w.write_image(topic, st, "camera_color_optical_frame", preds[i], "32FC1")
    return rgbs, [np.nan_to_num(d, nan=0.0) for d in depths], stamps


def test_aligned_32fc1_frames_match_what_was_written(tmp_path):
    rgbs, depths, stamps = write_bag(tmp_path / "bag", 5)
    src = open_source(tmp_path / "bag", image_topic=IMG, depth_topic=DEP)
    assert isinstance(src, BagSource) and len(src) == 5
    assert src.stats["unpaired_images"] == 0 and src.stats["unpaired_depths"] == 0
    for i, f in enumerate(src):
        np.testing.assert_array_equal(f.rgb, rgbs[i])
        np.testing.assert_array_equal(f.depth, depths[i])
        np.testing.assert_allclose(f.K, K)
        assert f.stamp_ns == stamps[i]
    assert src.registration_modes == {"same"}
    assert [f.stamp_ns for f in src] == sorted(stamps)  # time order: the trainer splits by index


def test_topics_are_found_without_flags_and_fractions_split_by_time(tmp_path):
    _, _, stamps = write_bag(tmp_path / "bag", 10)
    src = BagSource(tmp_path / "bag")
    assert (src.image_topic, src.depth_topic) == (IMG, DEP)
    first = BagSource(tmp_path / "bag", stop=0.6)
    rest = BagSource(tmp_path / "bag", start=0.6)
    assert [first.stamp_ns(i) for i in range(len(first))] == stamps[:6]
    assert [rest.stamp_ns(i) for i in range(len(rest))] == stamps[6:]


@pytest.mark.parametrize("scale", [1000.0, 5000.0])
def test_16uc1_depth_scale(tmp_path, scale):
    _, depths, _ = write_bag(tmp_path / "bag", 2, depth_encoding="16UC1", depth_scale=scale)
    src = BagSource(tmp_path / "bag", IMG, DEP, depth_scale=None if scale == 1000.0 else scale)
    np.testing.assert_allclose(src[1].depth, depths[1], rtol=1e-6)
    assert (src[1].depth[5:9, 10:20] == 0).all()  # 0 mm = no measurement


@pytest.mark.parametrize("encoding", ["bgr8", "mono8", "rgba8"])
def test_colour_encodings(tmp_path, encoding):
    rgbs, _, _ = write_bag(tmp_path / "bag", 1, image_encoding=encoding)
    rgb = BagSource(tmp_path / "bag", IMG, DEP)[0].rgb
    want = np.repeat(rgbs[0][..., :1], 3, axis=2) if encoding == "mono8" else rgbs[0]
    np.testing.assert_array_equal(rgb, want)


def test_sqlite3_storage(tmp_path):
    rgbs, depths, _ = write_bag(tmp_path / "bag", 3, storage="sqlite3")
    src = open_source(tmp_path / "bag", image_topic=IMG, depth_topic=DEP)
    assert len(src) == 3
    np.testing.assert_array_equal(src[2].depth, depths[2])


def test_pairing_by_nearest_stamp_counts_unpaired(tmp_path):
    offsets = [0, 5_000_000, -8_000_000, 60_000_000, 0]  # 0, 5, -8, 60 ms (too far), frame 4 missing
    write_bag(tmp_path / "bag", 5, depth_offsets_ns=offsets, skip_depth=(4,))
    src = BagSource(tmp_path / "bag", IMG, DEP, max_time_diff=0.02)
    assert len(src) == 3
    assert src.stats["unpaired_images"] == 2 and src.stats["unpaired_depths"] == 1
    wide = BagSource(tmp_path / "bag", IMG, DEP, max_time_diff=0.07)
    assert len(wide) == 4 and wide.stats["unpaired_depths"] == 0  # depth 3 goes to the closer image 4


def test_missing_topic_is_one_sentence_listing_the_topics(tmp_path):
    write_bag(tmp_path / "bag", 1)
    with pytest.raises(DataError) as exc:
        BagSource(tmp_path / "bag", IMG, "/camera/aligned_depth_to_color/image_raw")
    msg = str(exc.value)
    assert "/camera/aligned_depth_to_color/image_raw" in msg and str(tmp_path / "bag") in msg
    assert f"{DEP} (sensor_msgs/msg/Image)" in msg and "/tf_static (tf2_msgs/msg/TFMessage)" in msg
    assert "\n" not in msg


def _mcap_file(bag):
    return next(bag.glob("*.mcap"))


@pytest.mark.parametrize("damage", ["truncate", "garbage"])
def test_truncated_or_corrupt_bag_names_the_file(tmp_path, damage):
    write_bag(tmp_path / "bag", 4)
    f = _mcap_file(tmp_path / "bag")
    data = f.read_bytes()
    f.write_bytes(data[: len(data) // 2] if damage == "truncate" else b"\x89MCAP0\r\n" + bytes(4096))
    with pytest.raises(DataError) as exc:
        src = BagSource(tmp_path / "bag", IMG, DEP)
        for frame in src:  # a lenient reader may only notice while reading
            del frame
    assert "truncated or corrupt" in str(exc.value) and str(tmp_path / "bag") in str(exc.value)


def test_not_a_bag(tmp_path):
    (tmp_path / "bag").mkdir()
    (tmp_path / "bag" / "metadata.yaml").write_text("not: [a bag")
    with pytest.raises(DataError, match="bag"):
        BagSource(tmp_path / "bag", IMG, DEP)


def test_header_from_cdr_reads_stamp_and_frame(tmp_path):
    from rosbags.typesys import Stores, get_typestore

    ts = get_typestore(Stores.ROS2_KILTED)
    t = ts.types
    hdr = t["std_msgs/msg/Header"](stamp=t["builtin_interfaces/msg/Time"](sec=12, nanosec=34), frame_id="cam")
    raw = ts.serialize_cdr(t["sensor_msgs/msg/Image"](header=hdr, height=0, width=0, encoding="", is_bigendian=0,
                                                        step=0, data=np.zeros(0, np.uint8)), "sensor_msgs/msg/Image")
    assert header_from_cdr(raw) == (12_000_000_034, "cam")


# -- static TF ---------------------------------------------------------------------------------------------
def test_static_transforms_chain_and_invert():
    tree = TfBuffer(name="the static transforms")
    A = transform_matrix([1, 0, 0], [0, 0, np.sin(0.3), np.cos(0.3)])
    B = transform_matrix([0, 2, 0], OPTICAL_Q)
    C = transform_matrix([0, 0, 0.1], [0.1, 0, 0, np.sqrt(1 - 0.01)])
    tree.add_static("base", "link", A)
    tree.add_static("/link", "cam", B)  # leading slash ignored, like tf2
    tree.add_static("base", "other", C)
    np.testing.assert_allclose(tree.lookup("base", "cam"), A @ B, atol=1e-12)
    np.testing.assert_allclose(tree.lookup("cam", "other"), invert_transform(A @ B) @ C, atol=1e-12)
    np.testing.assert_allclose(tree.lookup("cam", "cam"), np.eye(4))
    with pytest.raises(DataError, match="'nowhere' was never recorded"):
        tree.lookup("cam", "nowhere")
    tree.add_static("x", "y", np.eye(4))
    with pytest.raises(DataError, match="no chain"):
        tree.lookup("cam", "y")


# -- registration of an offset depth camera --------------------------------------------------------------
def _plane_depth(K_: np.ndarray, hw, n: np.ndarray, d: float) -> np.ndarray:
    """Depth (Z) of the plane n . X = d seen by a camera with K_; invalid (behind / parallel) = 0."""
    v, u = np.mgrid[0:hw[0], 0:hw[1]].astype(np.float64)
    rays = np.stack([(u - K_[0, 2]) / K_[0, 0], (v - K_[1, 2]) / K_[1, 1], np.ones_like(u)], -1)
    z = d / (rays @ n)
    return np.where(z > 0, z, 0).astype(np.float32)


def test_depth_from_an_offset_camera_is_registered_through_a_tf_chain(tmp_path):
    # colour and depth optical frames hang off camera_link by a 3-transform chain (like a RealSense).
    T_link_color = transform_matrix([0, 0, 0], OPTICAL_Q)
    yaw = 0.04
    T_link_depthlink = transform_matrix([0.0, -0.05, 0.01], [0, 0, np.sin(yaw / 2), np.cos(yaw / 2)])
    T_depthlink_depth = transform_matrix([0, 0, 0], OPTICAL_Q)
    T_color_depth = compose_transforms(invert_transform(T_link_color), T_link_depthlink, T_depthlink_depth)
    # a tilted plane in the colour optical frame: Z = 2 + 0.3 X  ->  (-0.3, 0, 1) . X = 2
    n_c, d_c = np.array([-0.3, 0.0, 1.0]), 2.0
    R, t = T_color_depth[:3, :3], T_color_depth[:3, 3]
    n_d, d_d = R.T @ n_c, d_c - n_c @ t  # the same plane in the depth optical frame
    Hd, Wd = 2 * H, 2 * W
    K_d = intrinsics_matrix(150.0, 150.0, 95.0, 63.0)  # another camera: other size and intrinsics
    depth_mm = np.round(_plane_depth(K_d, (Hd, Wd), n_d, d_d) * 1000).astype(np.uint16)
    rgb = np.zeros((H, W, 3), np.uint8)
    with RGBDBagWriter(tmp_path / "bag") as w:
        w.write_tf_static(T0, [
            ("camera_link", "camera_color_optical_frame", [0, 0, 0], OPTICAL_Q),
            ("camera_link", "camera_depth_frame", [0.0, -0.05, 0.01], [0, 0, np.sin(yaw / 2), np.cos(yaw / 2)]),
            ("camera_depth_frame", "camera_depth_optical_frame", [0, 0, 0], OPTICAL_Q),
        ])
        w.write_image(IMG, T0, "camera_color_optical_frame", rgb, "rgb8")
        w.write_camera_info(IMG_INFO, T0, "camera_color_optical_frame", K, W, H)
        w.write_image(DEP, T0, "camera_depth_optical_frame", depth_mm, "16UC1")
        w.write_camera_info(DEP_INFO, T0, "camera_depth_optical_frame", K_d, Wd, Hd)
    src = BagSource(tmp_path / "bag", IMG, DEP)
    got = src[0].depth
    assert src.registration_modes == {"register"}
    want = _plane_depth(K, (H, W), n_c, d_c)
    inner = np.zeros((H, W), bool)
    inner[8:-8, 8:-8] = True
    hit = (got > 0) & inner
    assert hit.sum() > 0.95 * inner.sum()  # a 2x denser depth camera leaves no holes inside
    # nearest-pixel splatting: each value is the plane's depth at a point within half a pixel
    np.testing.assert_allclose(got[hit], want[hit], rtol=0.01)
    assert np.median(np.abs(got[hit] - want[hit]) / want[hit]) < 0.003


def test_missing_transform_is_a_clear_error(tmp_path):
    with RGBDBagWriter(tmp_path / "bag") as w:
        w.write_image(IMG, T0, "color", np.zeros((H, W, 3), np.uint8), "rgb8")
        w.write_camera_info(IMG_INFO, T0, "color", K, W, H)
        w.write_image(DEP, T0, "depth", np.ones((H, W), np.float32), "32FC1")
        w.write_camera_info(DEP_INFO, T0, "depth", K, W, H)
    with pytest.raises(DataError, match="cannot register depth"):
        BagSource(tmp_path / "bag", IMG, DEP)[0]


def test_same_camera_other_size_is_resized_nearest(tmp_path):
    with RGBDBagWriter(tmp_path / "bag") as w:
        w.write_image(IMG, T0, "cam", np.zeros((H, W, 3), np.uint8), "rgb8")
        w.write_camera_info(IMG_INFO, T0, "cam", K, W, H)
        d = np.arange(H * W // 4, dtype=np.float32).reshape(H // 2, W // 2) + 1
        from moadepth_core.geometry import scale_intrinsics

        w.write_image(DEP, T0, "cam", d, "32FC1")
        w.write_camera_info(DEP_INFO, T0, "cam", scale_intrinsics(K, (H, W), (H // 2, W // 2)), W // 2, H // 2)
    src = BagSource(tmp_path / "bag", IMG, DEP)
    np.testing.assert_array_equal(src[0].depth, np.repeat(np.repeat(d, 2, 0), 2, 1))
    assert src.registration_modes == {"resize"}
