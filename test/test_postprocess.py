"""moadepth_core.geometry.postprocess: the maths the depth node publishes, without ROS."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from moadepth_core import geometry
from moadepth_core.errors import DataError
from moadepth_core.geometry import postprocess as post
from moadepth_core.geometry.camera import PinholeCamera
from moadepth_core.geometry.pointcloud import pack_points, unpack_points, unpack_rgb
from moadepth_core.model.head import relative_uncertainty
from moadepth_core.runtime.processing import confidence_from_uncertainty


def _K(h, w):
    return geometry.intrinsics_matrix(0.8 * w, 0.8 * w, w / 2 - 0.3, h / 2 + 0.7)


def test_clip_depth_nans_outside_range_and_invalid():
    d = np.array([[0.05, 0.5, 5.0], [20.0, np.nan, -1.0], [np.inf, 0.0, 10.0]], np.float32)
    out = post.clip_depth(d, 0.1, 10.0)
    expect = np.array([[np.nan, 0.5, 5.0], [np.nan, np.nan, np.nan], [np.nan, np.nan, 10.0]], np.float32)
    np.testing.assert_array_equal(out, expect)
    assert out.dtype == np.float32 and np.isfinite(d[0, 1])  # input untouched


def test_focal_scale_follows_the_camera_at_model_size():
    K = _K(480, 640)
    # fx at 640 wide = 512; the network input is 96 wide -> fx_model = 76.8; trained at 80 px.
    s = post.focal_scale(PinholeCamera.from_K(K, (480, 640)), (64, 96), 80.0)
    assert s == pytest.approx(512 * 96 / 640 / 80.0)
    with pytest.raises(DataError):
        post.focal_scale(PinholeCamera.from_K(K, (480, 640)), (64, 96), 0.0)


def test_camera_for_image_scales_same_aspect_and_refuses_other():
    K = _K(480, 640)
    np.testing.assert_array_equal(PinholeCamera.from_K(K, (480, 640)).for_image((480, 640)).K, K)
    half = PinholeCamera.from_K(K, (480, 640)).for_image((240, 320))
    np.testing.assert_allclose(half.K, geometry.scale_intrinsics(K, (480, 640), (240, 320)))
    assert half.hw == (240, 320)
    with pytest.raises(DataError, match="aspect"):
        PinholeCamera.from_K(K, (480, 640)).for_image((480, 480))
    with pytest.raises(DataError, match="empty"):
        PinholeCamera.from_K(K, (0, 0)).for_image((480, 640))


@pytest.mark.parametrize("stride", [1, 2, 3])
def test_depth_cloud_matches_backprojection_and_stride(stride):
    h, w = 12, 17
    rng = np.random.default_rng(0)
    depth = rng.uniform(0.5, 4.0, (h, w)).astype(np.float32)
    depth[0, 0] = np.nan
    depth[1, 1] = 0.0  # no measurement
    K = _K(h, w)
    rgb = rng.integers(0, 255, (h, w, 3), dtype=np.uint8)
    packed = post.depth_cloud(depth, K, stride=stride, rgb=rgb)
    xyz = unpack_points(packed)
    hs, ws = -(-h // stride), -(-w // stride)
    assert xyz.shape == (hs, ws, 3) and (packed.height, packed.width) == (hs, ws)
    v, u = np.mgrid[0:h:stride, 0:w:stride]
    z = depth[::stride, ::stride]
    ok = z > 0
    np.testing.assert_allclose(xyz[..., 0][ok], ((u - K[0, 2]) / K[0, 0] * z)[ok], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(xyz[..., 1][ok], ((v - K[1, 2]) / K[1, 1] * z)[ok], rtol=1e-5, atol=1e-6)
    assert np.isnan(xyz[~ok]).all()
    np.testing.assert_array_equal(unpack_rgb(packed), rgb[::stride, ::stride])
    assert packed.is_dense is False
    # the fused path gives exactly the bytes of back-projection followed by packing
    reference = pack_points(geometry.backproject(depth, K, stride=stride), rgb[::stride, ::stride])
    assert bytes(packed.data) == bytes(reference.data)
    assert post.depth_cloud(np.ones((4, 4), np.float32), _K(4, 4)).is_dense is True


def test_uncertainty_filter_removes_exactly_the_pixels_over_the_threshold():
    h, w = 10, 10
    depth = np.full((h, w), 2.0, np.float32)
    unc = np.linspace(0.0, 1.0, h * w, dtype=np.float32).reshape(h, w)
    xyz = unpack_points(post.depth_cloud(depth, _K(h, w), uncertainty=unc, max_uncertainty=0.3))
    removed = np.isnan(xyz[..., 2])
    np.testing.assert_array_equal(removed, unc > 0.3)
    # the filter is off at infinity and never touches the input depth
    assert not np.isnan(unpack_points(post.depth_cloud(depth, _K(h, w), uncertainty=unc))).any()
    assert np.isfinite(depth).all()


def test_confidence_follows_the_distribution_peaked_beats_flat():
    """Relative std of the bin distribution -> confidence: a peaked distribution scores higher."""
    centres = torch.linspace(0.5, 10.0, 64)
    peaked = torch.softmax(-((centres - 3.0) ** 2) / 0.01, 0).view(1, -1, 1, 1)
    flat = torch.full((1, 64, 1, 1), 1 / 64)

    def conf(probs):
        depth = (probs * centres.view(1, -1, 1, 1)).sum(1, keepdim=True)
        return confidence_from_uncertainty(relative_uncertainty(probs, centres, depth))

    c_peaked, c_flat = conf(peaked), conf(flat)
    assert float(c_peaked) > 0.9 > float(c_flat)
    assert 0.0 <= float(c_flat) <= 1.0


def test_rgb_resized_to_model_output():
    depth = np.ones((8, 12), np.float32)
    rgb = np.zeros((32, 48, 3), np.uint8)
    rgb[..., 0] = 200
    colours = unpack_rgb(post.depth_cloud(depth, _K(8, 12), rgb=rgb))
    assert colours.shape == (8, 12, 3) and (colours[..., 0] == 200).all()


@pytest.mark.parametrize(("lo", "hi"), [(0.1, 10.0), (0.0, np.inf), (0.30000001, 3.3)])
def test_clip_depth_equals_the_numpy_definition_on_edge_values(lo, hi):
    rng = np.random.default_rng(4)
    d = rng.uniform(-1.0, 12.0, (37, 53)).astype(np.float32)
    specials = [np.nan, np.inf, -np.inf, 0.0, -0.0, 1e-45, np.float32(lo), np.float32(hi),
                np.nextafter(np.float32(lo), np.float32(0)), np.nextafter(np.float32(hi), np.float32(np.inf))]
    d.flat[: len(specials)] = np.array(specials, np.float32)
    with np.errstate(invalid="ignore"):
        bad = ~np.isfinite(d) | (d <= 0) | (d < lo) | (d > hi)
    expect = np.where(bad, np.float32(np.nan), d)
    np.testing.assert_array_equal(post.clip_depth(d, lo, hi), expect)
    out = np.zeros_like(d)
    assert post.clip_depth(d, lo, hi, out=out) is out
    np.testing.assert_array_equal(out, expect)
    same = d.copy()
    post.clip_depth(same, lo, hi, out=same)  # in place is allowed
    np.testing.assert_array_equal(same, expect)
    with pytest.raises(DataError, match="float32"):
        post.clip_depth(d, lo, hi, out=np.zeros(d.shape, np.float64))


def test_depth_cloud_packs_into_a_given_buffer_with_the_same_bytes():
    """The node packs straight into the array.array its PointCloud2 carries: no copy after packing."""
    import array

    h, w = 9, 14
    rng = np.random.default_rng(5)
    depth = rng.uniform(0.5, 4.0, (h, w)).astype(np.float32)
    unc = rng.uniform(0.0, 1.0, (h, w)).astype(np.float32)
    unc[0, :3] = np.nan  # no uncertainty known: not confident
    rgb = rng.integers(0, 255, (h, w, 3), dtype=np.uint8)
    K = _K(h, w)
    fresh = post.depth_cloud(depth, K, uncertainty=unc, max_uncertainty=0.5, rgb=rgb)
    buf = array.array("B", bytes(h * w * 16))
    into = post.depth_cloud(depth, K, uncertainty=unc, max_uncertainty=0.5, rgb=rgb, out=buf)
    assert into.data is buf and bytes(buf) == bytes(fresh.data)
    z = unpack_points(into)[..., 2]
    np.testing.assert_array_equal(np.isnan(z), ~(unc <= 0.5))
    for wrong in (h * w * 16 - 1, h * w * 16 + 16):  # a longer buffer would disagree with the cloud's size
        with pytest.raises(DataError, match="exactly"):
            post.depth_cloud(depth, K, out=array.array("B", bytes(wrong)))
    with pytest.raises(DataError, match="writable"):
        post.depth_cloud(depth, K, out=bytes(h * w * 16))


def _prediction(h, w, seed=0):
    from moadepth_core.runtime.processing import DepthResult

    rng = np.random.default_rng(seed)
    depth = rng.uniform(0.05, 12.0, (h, w)).astype(np.float32)
    return DepthResult(depth, rng.uniform(0.0, 1.0, (h, w)).astype(np.float32))


class _Pool:
    """A buffer per output name, kept between frames (what the node's OutputBuffers does)."""

    def __init__(self):
        self.buffers = {}

    def get(self, name, nbytes):
        if name not in self.buffers or len(self.buffers[name]) != nbytes:
            self.buffers[name] = bytearray(nbytes)
        return self.buffers[name]


@pytest.mark.parametrize(("info_hw", "out_hw"), [((480, 640), (24, 32)), ((96, 128), (24, 32)),
                                                 ((96, 128), (48, 64))])
def test_publishable_equals_the_step_by_step_path(info_hw, out_hw):
    """One call gives the numbers the node computed step by step: calibration fitted to the frame,
    focal scaling at the model size, clipping, the cloud with K at the depth's size."""
    image_hw, model_hw, train_focal = (48, 64), (32, 64), 70.0
    K = _K(*info_hw)
    pred = _prediction(*out_hw)
    rgb = np.random.default_rng(1).integers(0, 255, (*image_hw, 3), dtype=np.uint8)
    settings = post.OutputSettings(min_depth=0.1, max_depth=10.0, focal_scaling=True, train_focal_px=train_focal,
                                   model_hw=model_hw, point_stride=2, max_uncertainty=0.5)
    pool = _Pool()
    out = post.publishable(pred, rgb, PinholeCamera.from_K(K, info_hw), settings, pool)
    # the reference: the formulas the node used before the camera type
    K_img = geometry.scale_intrinsics(K, info_hw, image_hw)
    factor = geometry.scale_depth_for_focal(np.ones(1, np.float32), K_img[0, 0] * model_hw[1] / image_hw[1],
                                            train_focal)[0]
    depth = post.clip_depth(pred.depth * np.float32(factor), 0.1, 10.0)
    K_out = geometry.scale_intrinsics(K, info_hw, out_hw)
    cloud = post.depth_cloud(depth, K_out, uncertainty=pred.uncertainty, max_uncertainty=0.5, stride=2, rgb=rgb)
    np.testing.assert_array_equal(out.depth.array, depth)
    assert out.depth.data is pool.buffers["depth"] and out.camera_problem is None
    np.testing.assert_array_equal(out.camera.K, K_out)
    assert out.camera.hw == out_hw
    np.testing.assert_array_equal(out.confidence.array, pred.confidence)
    assert bytes(out.cloud.data) == bytes(cloud.data) and out.cloud.data is pool.buffers["points"]


def test_publishable_without_a_usable_camera_publishes_plain_depth():
    pred = _prediction(24, 32)
    rgb = np.zeros((24, 32, 3), np.uint8)
    settings = post.OutputSettings(min_depth=0.1, max_depth=10.0, focal_scaling=True, train_focal_px=70.0,
                                   model_hw=(32, 64))
    plain = post.clip_depth(pred.depth, 0.1, 10.0)
    for camera in (None, PinholeCamera.from_K(_K(24, 24), (24, 24))):  # none, and another aspect ratio
        out = post.publishable(pred, rgb, camera, settings)
        np.testing.assert_array_equal(out.depth.array, plain)  # no focal scaling
        assert out.camera is None and out.cloud is None
        assert (out.camera_problem is None) == (camera is None)
    assert "aspect" in out.camera_problem
    off = post.publishable(pred, rgb, PinholeCamera.from_K(_K(24, 32), (24, 32)),
                           post.OutputSettings(min_depth=0.1, max_depth=10.0, publish_points=False))
    assert off.camera is not None and off.cloud is None
    np.testing.assert_array_equal(off.depth.array, plain)  # focal_scaling off


def test_auto_point_stride_follows_the_documented_table():
    from moadepth_core.geometry.postprocess import auto_point_stride, resolve_point_stride

    # docs/ROS.md: with the default 224x224 input, the cloud's long side about 2 x 224
    assert [auto_point_stride(hw, (224, 224)) for hw in ((480, 640), (720, 1280), (1080, 1920))] == [1, 3, 4]
    assert auto_point_stride((224, 224), (224, 224)) == 1 and auto_point_stride((4000, 6000), None) == 1
    assert resolve_point_stride("auto", (720, 1280), (224, 224)) == 3
    assert resolve_point_stride(2, (720, 1280), (224, 224)) == 2


def test_strided_cloud_masks_only_the_kept_pixels_with_the_same_bytes():
    """depth_cloud masks and packs only every stride-th pixel: the bytes of masking the whole image
    first, then striding (what it did before)."""
    from moadepth_core.geometry.pointcloud import pack_depth
    from moadepth_core.geometry.postprocess import depth_cloud

    rng = np.random.default_rng(3)
    h, w = 61, 97
    depth = rng.uniform(0.5, 5.0, (h, w)).astype(np.float32)
    depth[rng.random((h, w)) < 0.1] = np.nan
    unc = rng.uniform(0.0, 1.0, (h, w)).astype(np.float32)
    rgb = rng.integers(0, 255, (h, w, 3), dtype=np.uint8)
    K = geometry.intrinsics_matrix(80.0, 82.0, 47.5, 31.0)
    for stride in (1, 2, 3, 4):
        got = depth_cloud(depth, K, uncertainty=unc, max_uncertainty=0.5, stride=stride, rgb=rgb)
        masked = np.where(unc <= 0.5, depth, np.nan).astype(np.float32)
        want = pack_depth(masked, K, rgb, stride)
        assert (got.height, got.width) == (want.height, want.width) == (-(-h // stride), -(-w // stride))
        assert bytes(got.data) == bytes(want.data) and got.is_dense == want.is_dense


def test_clip_depth_in_place_matches_the_copy():
    rng = np.random.default_rng(5)
    d = rng.uniform(-1.0, 12.0, (37, 53)).astype(np.float32)
    d[::7, ::5] = np.nan
    d[1, 1], d[2, 2] = np.inf, 0.0
    want = post.clip_depth(d, 0.1, 10.0)
    got = d.copy()
    assert post.clip_depth(got, 0.1, 10.0, out=got) is got
    np.testing.assert_array_equal(got, want)


def test_publishable_depth_at_the_frame_size_is_one_resize_that_never_blends_an_invalid_pixel():
    """Depth wanted at the frame's size is resized from the network's in one pass into the message
    buffer: where every model pixel is in range it is the bilinear depth of the prediction, and a
    pixel whose interpolation reads an out-of-range model pixel is NaN (no flying pixels)."""
    from moadepth_core.runtime.processing import DepthResult

    rng = np.random.default_rng(3)
    model = rng.uniform(1.0, 8.0, (24, 32)).astype(np.float32)
    settings = post.OutputSettings(min_depth=0.1, max_depth=10.0)
    rgb = np.zeros((96, 128, 3), np.uint8)
    inside = DepthResult(model, np.zeros_like(model), (96, 128))
    pool = _Pool()
    out = post.publishable(inside, rgb, None, settings, pool)
    assert out.depth.array.shape == (96, 128) and out.depth.data is pool.buffers["depth"]
    np.testing.assert_array_equal(out.depth.array, inside.depth)  # the runtime's own upsampled depth
    far = model.copy()
    far[10, 12] = 50.0  # beyond max_depth
    far[0, 0] = 0.01  # below min_depth, in a corner
    blended = DepthResult(far, np.zeros_like(far), (96, 128))
    got = post.publishable(blended, rgb, None, settings).depth.array
    # the pixels that read model pixel (10, 12) or (0, 0): where the upsampled indicator is non-zero
    indicator = np.zeros_like(far)
    indicator[10, 12] = indicator[0, 0] = 1.0
    reads_invalid = cv2.resize(indicator, (128, 96), interpolation=cv2.INTER_LINEAR) > 0
    assert reads_invalid.sum() >= 2 * 16  # each covers at least its own 4x4 block
    np.testing.assert_array_equal(np.isnan(got), reads_invalid)
    np.testing.assert_array_equal(got[~reads_invalid], inside.depth[~reads_invalid])
    assert np.nanmax(got) <= 10.0 and np.nanmin(got) >= 0.1
