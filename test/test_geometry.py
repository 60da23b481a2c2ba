"""geometry: back-projection, intrinsics scaling, transforms, depth registration, focal scaling."""

from __future__ import annotations

import numpy as np
import pytest

from moadepth_core import geometry
from moadepth_core.errors import DataError

K = geometry.intrinsics_matrix(500.0, 480.0, 319.3, 241.7)


def test_backproject_project_round_trip():
    rng = np.random.default_rng(0)
    depth = rng.uniform(0.3, 8.0, (48, 64)).astype(np.float32)
    depth[3, 4] = 0.0
    depth[5, 6] = np.nan
    pts = geometry.backproject(depth, K)
    assert pts.shape == (48, 64, 3) and pts.dtype == np.float32
    assert np.isnan(pts[3, 4]).all() and np.isnan(pts[5, 6]).all()
    u, v = geometry.project_points(pts, K)
    vv, uu = np.mgrid[0:48, 0:64]
    ok = np.isfinite(depth) & (depth > 0)
    np.testing.assert_allclose(u[ok], uu[ok], atol=2e-3)
    np.testing.assert_allclose(v[ok], vv[ok], atol=2e-3)
    np.testing.assert_allclose(pts[..., 2][ok], depth[ok])
    # X = (u - cx) z / fx
    np.testing.assert_allclose(pts[10, 20, 0], (20 - 319.3) * depth[10, 20] / 500.0, rtol=1e-5)


def test_backproject_stride_uses_kept_pixels():
    depth = np.full((10, 13), 2.0, np.float32)
    full = geometry.backproject(depth, K)
    dec = geometry.backproject(depth, K, stride=3)
    assert dec.shape == (4, 5, 3)
    np.testing.assert_array_equal(dec, full[::3, ::3])
    with pytest.raises(DataError, match="stride"):
        geometry.backproject(depth, K, stride=0)


def test_pixel_rays_cached_and_read_only():
    a = geometry.pixel_rays(K, 30, 40)
    assert geometry.pixel_rays(K.copy(), 30, 40) is a
    assert not a.flags.writeable


def test_scale_intrinsics_pixel_centres():
    K2 = geometry.scale_intrinsics(K, (480, 640), (240, 320))
    np.testing.assert_allclose(K2[0, 0], 250.0)
    np.testing.assert_allclose(K2[1, 1], 240.0)
    np.testing.assert_allclose(K2[0, 2], (319.3 + 0.5) * 0.5 - 0.5)
    np.testing.assert_allclose(K2[1, 2], (241.7 + 0.5) * 0.5 - 0.5)
    # a centred principal point stays centred: (W-1)/2 -> (W'-1)/2
    Kc = geometry.intrinsics_matrix(100, 100, 319.5, 239.5)
    np.testing.assert_allclose(geometry.scale_intrinsics(Kc, (480, 640), (224, 224))[:2, 2], [111.5, 111.5])
    np.testing.assert_allclose(geometry.scale_intrinsics(K2, (240, 320), (480, 640)), K)


def test_transforms():
    R = geometry.quaternion_to_matrix([0, 0, np.sin(np.pi / 4), np.cos(np.pi / 4)])  # 90 deg about z
    np.testing.assert_allclose(R @ [1, 0, 0], [0, 1, 0], atol=1e-12)
    T = geometry.transform_matrix([1, 2, 3], [0, 0, np.sin(np.pi / 4), np.cos(np.pi / 4)])
    pts = np.array([[1.0, 0.0, 0.0], [np.nan, 0, 0]], np.float32)
    out = geometry.transform_points(T, pts)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out[0], [1, 3, 3], atol=1e-6)
    assert np.isnan(out[1]).all()
    identity = geometry.compose_transforms(T, geometry.invert_transform(T))
    np.testing.assert_allclose(identity, np.eye(4), atol=1e-12)
    with pytest.raises(DataError, match="quaternion"):
        geometry.quaternion_to_matrix([0, 0, 0, 0])


def test_register_plane_matches_analytic_depth():
    """A fronto-parallel wall at Z=3 m seen by a depth camera; the colour camera sits 5 cm to its
    right and is yawed 5 degrees. Destination depth of the plane n.X = d (in dst frame) is analytic."""
    h, w = 120, 160
    K_src = geometry.intrinsics_matrix(150.0, 150.0, 79.5, 59.5)
    K_dst = geometry.intrinsics_matrix(130.0, 132.0, 80.2, 60.1)
    depth_src = np.full((h, w), 3.0, np.float32)
    yaw = np.deg2rad(5.0)
    T_dst_src = geometry.transform_matrix([-0.05, 0.0, 0.0], [0, np.sin(yaw / 2), 0, np.cos(yaw / 2)])
    out = geometry.register_depth(depth_src, K_src, K_dst, T_dst_src, (h, w))
    # plane in src: n_s = (0,0,1), d_s = 3  ->  dst: n = R n_s, d = d_s + n . t
    R, t = T_dst_src[:3, :3], T_dst_src[:3, 3]
    n = R @ [0, 0, 1.0]
    d = 3.0 + n @ t
    rays = geometry.pixel_rays(K_dst, h, w).astype(np.float64)
    analytic = d / (rays @ n)
    inner = out[20:-20, 30:-30]
    assert (inner > 0).mean() > 0.98  # mild downscale: essentially no holes inside
    hit = inner > 0
    # nearest-pixel projection: error bounded by the depth change across half a pixel
    np.testing.assert_allclose(inner[hit], analytic[20:-20, 30:-30][hit], rtol=2e-3)
    assert out.dtype == np.float32 and out.shape == (h, w)
    nan_out = geometry.register_depth(depth_src * 0, K_src, K_dst, T_dst_src, (h, w), invalid=np.nan)
    assert np.isnan(nan_out).all()


def test_register_keeps_nearest_surface():
    K1 = geometry.intrinsics_matrix(10.0, 10.0, 1.0, 1.0)
    depth = np.zeros((3, 3), np.float32)
    depth[1, 1] = 5.0  # on the optical axis, far
    depth[0, 0] = 2.0  # near, off axis
    # destination camera placed so both points project to its pixel (1, 1):
    # point A = (0,0,5), point B = (-0.2,-0.2,2). Put the dst centre on the line through A and B.
    A, B = np.array([0, 0, 5.0]), np.array([-0.2, -0.2, 2.0])
    direction = (A - B) / np.linalg.norm(A - B)
    centre = B - direction  # 1 m behind B along the line
    z = direction
    x = np.cross([0, 1.0, 0], z)
    x /= np.linalg.norm(x)
    y = np.cross(z, x)
    R_dst_src = np.stack([x, y, z])  # rows: dst axes in src coordinates
    T = np.eye(4)
    T[:3, :3] = R_dst_src
    T[:3, 3] = -R_dst_src @ centre
    out = geometry.register_depth(depth, K1, K1, T, (3, 3))
    np.testing.assert_allclose(out[1, 1], np.linalg.norm(B - centre), rtol=1e-5)
    assert (out > 0).sum() == 1


def test_resize_nearest():
    d = np.arange(16, dtype=np.float32).reshape(4, 4)
    np.testing.assert_array_equal(geometry.resize_nearest(d, (2, 2)), [[5, 7], [13, 15]])
    up = geometry.resize_nearest(d, (8, 8))
    np.testing.assert_array_equal(up[::2, ::2], d)
    # register with identical cameras of another size equals a nearest resize on a flat scene
    flat = np.full((4, 4), 2.0, np.float32)
    K4 = geometry.intrinsics_matrix(4, 4, 1.5, 1.5)
    K2 = geometry.scale_intrinsics(K4, (4, 4), (2, 2))
    np.testing.assert_allclose(geometry.register_depth(flat, K4, K2, np.eye(4), (2, 2)), 2.0)


def test_scale_depth_for_focal():
    depth = np.array([[2.0, 0.0, np.nan]], np.float32)
    out = geometry.scale_depth_for_focal(depth, 600.0, 300.0)
    np.testing.assert_array_equal(out[0, :2], [4.0, 0.0])
    assert np.isnan(out[0, 2]) and out.dtype == np.float32
    # consistent with geometry: same pixel extent, twice the focal -> twice as far
    size_m, focal_train = 1.0, 300.0
    pixels = focal_train * size_m / 2.0
    assert np.isclose(600.0 * size_m / pixels, out[0, 0])
    with pytest.raises(DataError, match="focal"):
        geometry.scale_depth_for_focal(depth, 0.0, 300.0)


def test_pinhole_camera_focal_at_another_size_is_the_scaled_cameras():
    cam = geometry.PinholeCamera.from_K(K, (480, 640))
    assert cam.hw == (480, 640) and cam.focal_px == 500.0 and not cam.K.flags.writeable
    for hw in [(64, 96), (224, 224), (479, 641), (1080, 1920)]:
        # one formula: the focal at a size is bit for bit the fx of the K scaled to it
        assert cam.focal_at(hw) == cam.scaled(hw).K[0, 0] == geometry.scale_intrinsics(K, (480, 640), hw)[0, 0]
        assert cam.focal_at(hw) == geometry.focal_at_size(500.0, (480, 640), hw) == 500.0 * (hw[1] / 640)
    np.testing.assert_array_equal(cam.scaled((240, 320)).K, geometry.scale_intrinsics(K, (480, 640), (240, 320)))
    with pytest.raises(DataError, match="focal"):
        geometry.PinholeCamera.from_K(np.zeros((3, 3)), (480, 640))
    with pytest.raises(DataError, match="empty"):
        geometry.PinholeCamera.from_K(K, (480, 0))
