"""The procedural RGB-D generator: exact depth, determinism, folder and rosbag2 output."""

from __future__ import annotations

import json
import math
from pathlib import Path

import cv2
import numpy as np
import pytest

from moadepth_core.cli import synth as synth_cli
from moadepth_core.data import synth
from moadepth_core.data.rosbag.writer import RGBDBagWriter
from moadepth_core.data.synth import Box, Cylinder, Scene, SynthConfig, camera_pose, make_scene, render
from moadepth_core.data.synth.trajectory import rot_z
from moadepth_core.errors import DataError
from moadepth_core.geometry.transforms import quaternion_to_matrix

W, H = 160, 120
# cx, cy on integer pixels so the centre pixel's ray is exactly the optical axis
K = np.array([[100.0, 0.0, 80.0], [0.0, 100.0, 60.0], [0.0, 0.0, 1.0]])


def small_cfg(**kw) -> SynthConfig:
    base = dict(width=W, height=H, fx=100.0, fy=100.0, frames=3, seed=7)
    base.update(kw)
    return SynthConfig(**base)


def empty_room(size=(6.0, 5.0, 3.0)) -> Scene:
    """A bare room reusing real materials: only the walls, floor and ceiling can be hit."""
    return Scene(size=size, materials=make_scene(0).materials[:6], light=(3.0, 2.5, 2.7))


# --- geometry and exact depth ------------------------------------------------------------------------
def test_camera_pose_axes():
    """Yaw 0 looks along world +x; optical x is world -y (right), optical y is world -z (down)."""
    T = camera_pose((1.0, 2.0, 0.5), yaw=0.0)
    np.testing.assert_allclose(T[:3, :3] @ [0, 0, 1], [1, 0, 0], atol=1e-12)
    np.testing.assert_allclose(T[:3, :3] @ [1, 0, 0], [0, -1, 0], atol=1e-12)
    np.testing.assert_allclose(T[:3, :3] @ [0, 1, 0], [0, 0, -1], atol=1e-12)
    down = camera_pose((0, 0, 0), yaw=0.0, pitch=math.radians(-30))
    assert (down[:3, :3] @ [0, 0, 1])[2] < 0  # negative pitch looks down


def test_empty_room_depth_is_analytic_z():
    """Every pixel's depth equals the nearest plane's distance along the optical axis."""
    room = empty_room()
    o = np.array([1.0, 2.5, 1.5])
    _, depth = render(room, camera_pose(o, yaw=0.0), K, W, H)
    u = np.arange(W)[None, :]
    v = np.arange(H)[:, None]
    xc = (u - K[0, 2]) / K[0, 0] + 0 * v  # optical x per unit Z (world -y)
    yc = (v - K[1, 2]) / K[1, 1] + 0 * u  # optical y per unit Z (world -z)
    L, Wd, Hh = room.size
    with np.errstate(divide="ignore"):
        cand = np.stack([
            np.full(xc.shape, L - o[0]),  # far wall x = L
            np.where(yc > 0, o[2] / yc, np.inf),  # floor: h / (ray's downward component)
            np.where(yc < 0, (Hh - o[2]) / -yc, np.inf),  # ceiling
            np.where(xc > 0, o[1] / xc, np.inf),  # right wall y = 0
            np.where(xc < 0, (Wd - o[1]) / -xc, np.inf),  # left wall y = W
        ])
    expected = cand.min(axis=0)
    assert depth.dtype == np.float32 and depth.shape == (H, W)
    np.testing.assert_allclose(depth, expected, rtol=2e-6)
    # the far wall is a plane of constant Z, so its depth is constant even at oblique pixels:
    # depth is Z, not ray length (which grows towards the corners)
    wall = cand.argmin(axis=0) == 0
    assert wall.sum() > 1000
    np.testing.assert_allclose(depth[wall], 5.0, rtol=1e-6)
    ray_len = depth * np.sqrt(1 + xc**2 + yc**2)
    assert ray_len[wall].max() > 5.3


def test_backprojection_lands_on_the_floor():
    """A pitched camera: centre pixel depth = ray length on the axis, back-projected floor points have z=0."""
    room = empty_room()
    h, pitch = 1.5, math.radians(-30)
    T = camera_pose((3.0, 2.5, h), yaw=0.3, pitch=pitch)
    _, depth = render(room, T, K, W, H)
    assert depth[60, 80] == pytest.approx(h / math.sin(-pitch), rel=1e-6)
    v, u = np.mgrid[100:120, 40:120]
    z = depth[v, u].astype(np.float64)
    pts = np.stack([(u - K[0, 2]) / K[0, 0] * z, (v - K[1, 2]) / K[1, 1] * z, z], axis=-1)
    world = pts @ T[:3, :3].T + T[:3, 3]
    np.testing.assert_allclose(world[..., 2], 0.0, atol=1e-5)


def test_box_and_cylinder_depth():
    room = empty_room()
    room.boxes.append(Box((3.0, 2.0, 0.0), (3.5, 3.0, 2.0), 0))
    room.cylinders.append(Cylinder(2.0, 1.0, 0.25, 0.0, 0.5, 1))
    room.materials += [room.materials[0], room.materials[1]]
    _, depth = render(room, camera_pose((1.0, 2.5, 1.0), yaw=0.0), K, W, H)
    assert depth[60, 80] == pytest.approx(2.0, rel=1e-6)  # box front face x = 3
    # looking straight down onto the bin's lid from 1.5 m: depth = 1.5 - 0.5
    down = camera_pose((2.0, 1.0, 1.5), yaw=0.0, pitch=-math.pi / 2)
    _, d2 = render(room, down, K, W, H)
    assert d2[60, 80] == pytest.approx(1.0, rel=1e-6)
    # the side of the bin seen horizontally: distance to the axis minus the radius
    side = camera_pose((2.0, 2.5, 0.25), yaw=-math.pi / 2)
    _, d3 = render(room, side, K, W, H)
    assert d3[60, 80] == pytest.approx(1.5 - 0.25, rel=1e-5)


def test_render_rejects_camera_outside_room():
    with pytest.raises(DataError):
        render(empty_room(), camera_pose((10.0, 1.0, 1.0), 0.0), K, W, H)


# --- scenes, trajectories, determinism ---------------------------------------------------------------
def test_scene_is_a_function_of_the_seed():
    a, b, c = make_scene(3), make_scene(3), make_scene(4)
    assert a.describe() == b.describe()
    assert a.describe() != c.describe()
    for s in range(8):
        sc = make_scene(s)
        L, Wd, Hh = sc.size
        assert 4 <= L <= 9 and 3 <= Wd <= 7 and 2.4 <= Hh <= 3.2
        kinds = [p.kind for p in [*sc.boxes, *sc.cylinders]
                 if p.kind not in ("table_leg", "table_item", "shelf_board")]
        assert 4 <= len(kinds) <= 10


@pytest.mark.parametrize("free", [False, True])
def test_trajectory_is_smooth_and_collision_free(free):
    for seed in range(4):
        sc = make_scene(seed)
        cfg = small_cfg(frames=40, seed=seed, free_poses=free)
        poses = synth.trajectory(sc, cfg)
        assert len(poses) == 40
        pos = np.array([T[:3, 3] for T in poses])
        L, Wd, Hh = sc.size
        assert np.all(pos > 0.1) and np.all(pos < [L - 0.1, Wd - 0.1, Hh - 0.04])
        steps = np.linalg.norm(np.diff(pos[:, :2], axis=0), axis=1)
        assert steps.max() <= cfg.speed / cfg.fps * 1.05
        for T in poses:
            np.testing.assert_allclose(T[:3, :3] @ T[:3, :3].T, np.eye(3), atol=1e-9)
        for p in [*sc.boxes, *sc.cylinders]:
            if isinstance(p, Box):
                lo, hi = np.array(p.lo[:2]), np.array(p.hi[:2])
                dist = np.linalg.norm(np.maximum(np.maximum(lo - pos[:, :2], pos[:, :2] - hi), 0), axis=1)
            else:
                dist = np.hypot(pos[:, 0] - p.x, pos[:, 1] - p.y) - p.r
            assert dist.min() > 0.3
        if not free:
            np.testing.assert_allclose(pos[:, 2], cfg.camera_height)
            fwd = np.array([T[:3, 2] for T in poses])  # optical axis in world
            np.testing.assert_allclose(np.degrees(np.arcsin(fwd[:, 2])), cfg.camera_pitch_deg, atol=1e-9)


def test_render_is_deterministic_and_seed_dependent():
    cfg = small_cfg()
    outs = []
    for seed in (5, 5, 6):
        sc = make_scene(seed)
        T = synth.trajectory(sc, small_cfg(seed=seed))[1]
        outs.append(render(sc, T, cfg.K(), W, H))
    assert np.array_equal(outs[0][0], outs[1][0]) and np.array_equal(outs[0][1], outs[1][1])
    assert not np.array_equal(outs[0][1], outs[2][1])
    rgb, depth = outs[0]
    assert rgb.dtype == np.uint8 and rgb.shape == (H, W, 3)
    assert np.isfinite(depth).all() and depth.min() > 0
    assert rgb.std() > 5  # textured, not flat


def test_generate_is_byte_identical(tmp_path):
    cfg = small_cfg(frames=2)
    synth.generate(cfg, tmp_path / "a", bag=True, progress=False)
    synth.generate(small_cfg(frames=2), tmp_path / "b", bag=True, progress=False)
    files = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*") if p.is_file())
    assert len(files) >= 9
    for f in files:
        assert (tmp_path / "a" / f).read_bytes() == (tmp_path / "b" / f).read_bytes(), f


# --- folder output -------------------------------------------------------------------------------------
def test_folder_output_complete_and_consistent(tmp_path):
    cfg = small_cfg(frames=3, cx=81.0, cy=58.5)
    report = synth.generate(cfg, tmp_path / "ds", progress=False)
    out = tmp_path / "ds"
    assert report["frames"] == 3 and report["frames_per_second"] > 0
    intr = json.loads((out / "intrinsics.json").read_text())
    assert intr == {"fx": 100.0, "fy": 100.0, "cx": 81.0, "cy": 58.5, "width": W, "height": H,
                    "depth_scale": 1000}
    meta = json.loads((out / "synth.json").read_text())
    assert meta["config"]["seed"] == 7 and meta["config"]["frames"] == 3
    assert sorted(p.name for p in (out / "rgb").iterdir()) == ["000000.png", "000001.png", "000002.png"]
    assert sorted(p.name for p in (out / "depth").iterdir()) == ["000000.npy", "000001.npy", "000002.npy"]
    scene = make_scene(cfg.seed)
    poses = synth.trajectory(scene, cfg)
    lines = [ln for ln in (out / "poses.txt").read_text().splitlines() if not ln.startswith("#")]
    assert len(lines) == 3
    for i, line in enumerate(lines):
        vals = [float(v) for v in line.split()]
        assert vals[0] == pytest.approx(synth.frame_stamp_ns(i, cfg.fps) / 1e9, abs=1e-9)
        np.testing.assert_allclose(vals[1:4], poses[i][:3, 3], atol=1e-8)
        np.testing.assert_allclose(quaternion_to_matrix(vals[4:]), poses[i][:3, :3], atol=1e-8)
        rgb, depth = render(scene, poses[i], cfg.K(), W, H)
        png = cv2.imread(str(out / "rgb" / f"{i:06d}.png"), cv2.IMREAD_UNCHANGED)
        assert np.array_equal(png[:, :, ::-1], rgb)  # saved as RGB (cv2 writes BGR)
        d = np.load(out / "depth" / f"{i:06d}.npy")
        assert d.dtype == np.float32 and np.array_equal(d, depth)


def test_generate_refuses_non_empty_output(tmp_path):
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "keep").write_text("mine")
    with pytest.raises(DataError, match="not empty"):
        synth.generate(small_cfg(frames=1), tmp_path / "x", progress=False)


def test_cli(tmp_path, capsys):
    rc = synth_cli.main(["--out", str(tmp_path / "c"), "--frames", "2", "--width", "64", "--height", "48",
                     "--fx", "50", "--fy", "50", "--seed", "2", "--free-poses", "--quiet"])
    assert rc == 0
    assert "frames/s" in capsys.readouterr().out
    assert len(list((tmp_path / "c" / "rgb").iterdir())) == 2
    assert synth_cli.main(["--out", str(tmp_path / "c"), "--frames", "1"]) == 2
    assert "error" in capsys.readouterr().err
    assert synth_cli.main(["--out", str(tmp_path / "d"), "--frames", "0"]) == 2


# --- rosbag2 ---------------------------------------------------------------------------------------------
def read_bag(path: Path) -> dict[str, list]:
    from rosbags.highlevel import AnyReader

    out: dict[str, list] = {}
    with AnyReader([path]) as reader:
        types = {c.topic: c.msgtype for c in reader.connections}
        qos = {c.topic: c.ext.offered_qos_profiles for c in reader.connections}
        for conn, ts, raw in reader.messages():
            out.setdefault(conn.topic, []).append((ts, reader.deserialize(raw, conn.msgtype)))
    out["__types__"] = types  # type: ignore[assignment]
    out["__qos__"] = qos  # type: ignore[assignment]
    return out


def test_bag_round_trip(tmp_path):
    cfg = small_cfg(frames=3)
    synth.generate(cfg, tmp_path / "ds", bag=True, progress=False)
    bag = read_bag(tmp_path / "ds" / "bag")
    assert bag["__types__"] == {
        "/camera/color/image_raw": "sensor_msgs/msg/Image",
        "/camera/color/camera_info": "sensor_msgs/msg/CameraInfo",
        "/camera/depth/image_raw": "sensor_msgs/msg/Image",
        "/camera/depth/camera_info": "sensor_msgs/msg/CameraInfo",
        "/tf": "tf2_msgs/msg/TFMessage",
        "/tf_static": "tf2_msgs/msg/TFMessage",
    }
    scene = make_scene(cfg.seed)
    poses = synth.trajectory(scene, cfg)
    for topic in ("/camera/color/image_raw", "/camera/color/camera_info", "/camera/depth/image_raw",
                  "/camera/depth/camera_info"):
        assert len(bag[topic]) == 3
        for i, (ts, msg) in enumerate(bag[topic]):
            stamp = synth.frame_stamp_ns(i, cfg.fps)
            assert ts == stamp
            assert msg.header.stamp.sec * 10**9 + msg.header.stamp.nanosec == stamp
            assert msg.header.frame_id == "camera_color_optical_frame"
            assert (msg.width, msg.height) == (W, H)
    for i in range(3):
        rgb, depth = render(scene, poses[i], cfg.K(), W, H)
        col = bag["/camera/color/image_raw"][i][1]
        assert (col.encoding, col.step, col.is_bigendian) == ("rgb8", W * 3, 0)
        assert np.array_equal(np.asarray(col.data).reshape(H, W, 3), rgb)
        dep = bag["/camera/depth/image_raw"][i][1]
        assert (dep.encoding, dep.step, dep.is_bigendian) == ("32FC1", W * 4, 0)
        assert np.array_equal(np.asarray(dep.data).view("<f4").reshape(H, W), depth)
        for topic in ("/camera/color/camera_info", "/camera/depth/camera_info"):
            info = bag[topic][i][1]
            np.testing.assert_array_equal(np.asarray(info.k).reshape(3, 3), cfg.K())
            np.testing.assert_array_equal(np.asarray(info.p).reshape(3, 4)[:, :3], cfg.K())
            assert info.distortion_model == "plumb_bob" and list(info.d) == [0.0] * 5
    (ts, tf), = bag["/tf_static"]
    assert ts == synth.frame_stamp_ns(0, cfg.fps)
    by_child = {t.child_frame_id: t for t in tf.transforms}
    mount = by_child["camera_link"]
    assert mount.header.frame_id == "base_link"
    assert mount.transform.translation.z == pytest.approx(cfg.camera_height)
    optical = by_child["camera_color_optical_frame"]
    assert optical.header.frame_id == "camera_link"
    q = optical.transform.rotation
    np.testing.assert_allclose([q.x, q.y, q.z, q.w], [-0.5, 0.5, -0.5, 0.5], atol=1e-12)
    # chaining the static transforms reproduces the camera pose relative to the robot base
    qm = mount.transform.rotation
    R_base_opt = quaternion_to_matrix([qm.x, qm.y, qm.z, qm.w]) @ quaternion_to_matrix([q.x, q.y, q.z, q.w])
    T0 = poses[0]
    yaw = math.atan2(T0[1, 2], T0[0, 2])
    np.testing.assert_allclose(rot_z(yaw) @ R_base_opt, T0[:3, :3], atol=1e-9)
    (prof,) = bag["__qos__"]["/tf_static"]
    assert prof.durability.name == "TRANSIENT_LOCAL" and prof.depth == 1


@pytest.mark.parametrize("free", [False, True])
def test_bag_tf_gives_the_rendered_camera_pose_at_each_image_stamp(tmp_path, free):
    """/tf (odom -> base_link, or -> camera_link without a robot) chained with /tf_static is the rendered pose."""
    from moadepth_core.data.rosbag.tf_buffer import read_bag_tf

    cfg = small_cfg(frames=4, free_poses=free)
    synth.generate(cfg, tmp_path / "ds", bag=True, progress=False)
    bag = read_bag(tmp_path / "ds" / "bag")
    moving = "camera_link" if free else "base_link"
    assert len(bag["/tf"]) == 4 and bag["__qos__"]["/tf"] == []  # a plain topic, not latched
    for i, (ts, msg) in enumerate(bag["/tf"]):
        (t,) = msg.transforms
        assert ts == synth.frame_stamp_ns(i, cfg.fps)
        assert t.header.stamp.sec * 10**9 + t.header.stamp.nanosec == ts
        assert (t.header.frame_id, t.child_frame_id) == ("odom", moving)
        if not free:  # a robot on the floor: no height, roll or pitch in odom -> base_link
            assert abs(t.transform.translation.z) < 1e-12
            assert abs(t.transform.rotation.x) < 1e-12 and abs(t.transform.rotation.y) < 1e-12
    tf = read_bag_tf(tmp_path / "ds" / "bag")
    poses = synth.trajectory(make_scene(cfg.seed), cfg)
    for i, (_, img) in enumerate(bag["/camera/color/image_raw"]):
        stamp = img.header.stamp.sec * 10**9 + img.header.stamp.nanosec
        np.testing.assert_allclose(tf.lookup("odom", img.header.frame_id, stamp), poses[i], atol=1e-9)
    # between two frames the pose interpolates (the robot moves continuously)
    mid = (synth.frame_stamp_ns(1, cfg.fps) + synth.frame_stamp_ns(2, cfg.fps)) // 2
    T = tf.lookup("odom", "camera_color_optical_frame", mid)
    np.testing.assert_allclose(T[:3, 3], (poses[1][:3, 3] + poses[2][:3, 3]) / 2, atol=1e-9)


@pytest.mark.parametrize("storage", ["sqlite3", "mcap"])
def test_bag_writer_encodings(tmp_path, storage):
    rng = np.random.default_rng(0)
    arrays = {
        "bgr8": rng.integers(0, 256, (5, 7, 3), dtype=np.uint8),
        "rgba8": rng.integers(0, 256, (5, 7, 4), dtype=np.uint8),
        "mono8": rng.integers(0, 256, (5, 7), dtype=np.uint8),
        "16UC1": rng.integers(0, 65536, (5, 7), dtype=np.uint16),
        "32FC1": np.where(rng.random((5, 7)) < 0.2, np.nan, rng.random((5, 7))).astype(np.float32),
    }
    path = tmp_path / "b"
    with RGBDBagWriter(path, storage=storage) as w:
        w.add_topic("/img/bgr8", "sensor_msgs/msg/Image")
        for i, (enc, arr) in enumerate(arrays.items()):
            w.write_image(f"/img/{enc}", 1000 + i, "cam", arr, enc)
        w.write_camera_info("/info", 5, "cam", K, W, H)
        w.write_tf_static(7, [("a", "b", (1.0, 2.0, 3.0), (0.0, 0.0, 0.0, 1.0))])
    ext = {"sqlite3": "*.db3", "mcap": "*.mcap"}[storage]
    assert list(path.glob(ext))
    bag = read_bag(path)
    for i, (enc, arr) in enumerate(arrays.items()):
        (ts, msg), = bag[f"/img/{enc}"]
        assert ts == 1000 + i and msg.encoding == enc and msg.is_bigendian == 0
        bpp = arr.itemsize * (arr.shape[2] if arr.ndim == 3 else 1)
        assert msg.step == arr.shape[1] * bpp
        back = np.asarray(msg.data).view(arr.dtype.newbyteorder("<")).reshape(arr.shape)
        np.testing.assert_array_equal(back, arr)
    (_, info), = bag["/info"]
    np.testing.assert_array_equal(np.asarray(info.k), K.ravel())
    (_, tf), = bag["/tf_static"]
    t = tf.transforms[0]
    assert (t.header.frame_id, t.child_frame_id, t.transform.translation.y) == ("a", "b", 2.0)


def test_bag_writer_errors(tmp_path):
    with pytest.raises(DataError):
        RGBDBagWriter(tmp_path / "x", storage="rosbag1")
    (tmp_path / "exists").mkdir()
    with pytest.raises(DataError, match="exists"):
        RGBDBagWriter(tmp_path / "exists")
    with RGBDBagWriter(tmp_path / "ok") as w:
        with pytest.raises(DataError, match="encoding"):
            w.write_image("/i", 0, "f", np.zeros((2, 2), np.uint8), "yuv422")
        with pytest.raises(DataError, match="does not match"):
            w.write_image("/i", 0, "f", np.zeros((2, 2), np.uint8), "rgb8")
        w.add_topic("/t", "sensor_msgs/msg/Image")
        with pytest.raises(DataError, match="already registered"):
            w.add_topic("/t", "sensor_msgs/msg/CameraInfo")
