"""Writing a synth run: the folder form (rgb/, depth/, intrinsics.json, synth.json, poses.txt)
and, with ``bag=True``, a rosbag2 of the same frames at ``OUT/bag``."""

from __future__ import annotations

import dataclasses
import json
import sys
import time
from pathlib import Path

import numpy as np

from moadepth_core.data.synth.config import SynthConfig
from moadepth_core.data.synth.renderer import render
from moadepth_core.data.synth.scene import Scene, make_scene
from moadepth_core.data.synth.trajectory import (
    COLOR_FRAME,
    frame_stamp_ns,
    motion_transform,
    mount_transforms,
    quat_from_matrix,
    trajectory,
)
from moadepth_core.errors import DataError


def generate(cfg: SynthConfig, out_dir: str | Path, bag: bool = False, progress: bool = True,
             bag_storage: str = "mcap", compressed: bool = False) -> dict:
    """Render ``cfg.frames`` frames into ``out_dir`` (folder form, plus ``out_dir/bag`` if ``bag``).

    ``compressed``: the bag records colour as image_transport's ``compressed`` (JPEG, on
    ``/camera/color/image_raw/compressed``) and depth as ``compressedDepth`` (16UC1 millimetres in a PNG,
    on ``/camera/depth/image_raw/compressedDepth``), as a robot records over Wi-Fi or to disk.

    Returns a small report: frames, seconds, frames_per_second, out_dir.
    """
    import cv2

    cfg.validate()
    out = Path(out_dir)
    if out.exists() and any(out.iterdir()):
        raise DataError(f"Output folder {out} exists and is not empty; choose a new --out.")
    (out / "rgb").mkdir(parents=True, exist_ok=True)
    (out / "depth").mkdir(parents=True, exist_ok=True)
    K = cfg.K()
    scene = make_scene(cfg.seed)
    poses = trajectory(scene, cfg)
    _write_metadata(out, cfg, K, scene)
    if compressed and not bag:
        raise DataError("--compressed chooses how the bag records images: add --bag")
    writer = _open_bag(out / "bag", cfg, bag_storage, compressed) if bag else None

    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=cfg.frames, unit="frame", desc="synth", file=sys.stderr)
    lines = ["# timestamp tx ty tz qx qy qz qw (world <- camera optical frame, world z up)"]
    t0 = time.perf_counter()
    try:
        for i, T in enumerate(poses):
            rgb, depth = render(scene, T, K, cfg.width, cfg.height)
            name = f"{i:06d}"
            if not cv2.imwrite(str(out / "rgb" / f"{name}.png"), rgb[:, :, ::-1]):
                raise DataError(f"Could not write {out / 'rgb' / (name + '.png')}.")
            np.save(out / "depth" / f"{name}.npy", depth)
            stamp = frame_stamp_ns(i, cfg.fps)
            lines.append(_tum_pose_line(stamp, T))
            if writer is not None:
                _write_bag_frame(writer, stamp, rgb, depth, K, cfg, T, compressed)
            if bar is not None:
                bar.update(1)
    finally:
        if writer is not None:
            writer.close()
        if bar is not None:
            bar.close()
    seconds = time.perf_counter() - t0
    (out / "poses.txt").write_text("\n".join(lines) + "\n")
    return {"frames": cfg.frames, "seconds": seconds, "frames_per_second": cfg.frames / max(seconds, 1e-9),
            "out_dir": str(out)}


def _write_metadata(out: Path, cfg: SynthConfig, K: np.ndarray, scene: Scene) -> None:
    """intrinsics.json (what the folder reader needs) and synth.json (provenance: config and scene)."""
    intr = {"fx": float(K[0, 0]), "fy": float(K[1, 1]), "cx": float(K[0, 2]), "cy": float(K[1, 2]),
            "width": cfg.width, "height": cfg.height, "depth_scale": 1000}
    (out / "intrinsics.json").write_text(json.dumps(intr, indent=2) + "\n")
    meta = {"generator": "moadepth synth", "config": dataclasses.asdict(cfg), "K": K.tolist(),
            "world_frame": "z up, metres; room spans [0, size]",
            "poses": "poses.txt: TUM 'timestamp tx ty tz qx qy qz qw', world <- camera optical frame",
            "depth": "depth/NNNNNN.npy float32 metres along the optical axis (REP 118)",
            "scene": scene.describe()}
    (out / "synth.json").write_text(json.dumps(meta, indent=2) + "\n")


def _tum_pose_line(stamp: int, T: np.ndarray) -> str:
    """One poses.txt line: ``sec.nsec tx ty tz qx qy qz qw`` (TUM RGB-D trajectory format)."""
    q = quat_from_matrix(T[:3, :3])
    return f"{stamp // 1_000_000_000}.{stamp % 1_000_000_000:09d} " + " ".join(f"{v:.9f}" for v in (*T[:3, 3], *q))


#: The image topics of a synth bag: raw, and with ``compressed`` (image_transport's names).
COLOR_TOPIC, DEPTH_TOPIC = "/camera/color/image_raw", "/camera/depth/image_raw"
COLOR_COMPRESSED_TOPIC, DEPTH_COMPRESSED_TOPIC = COLOR_TOPIC + "/compressed", DEPTH_TOPIC + "/compressedDepth"
#: JPEG quality of ``compressed`` colour (image_transport's compressed plugin defaults to 95 too).
JPEG_QUALITY = 95


def _open_bag(path: Path, cfg: SynthConfig, storage: str, compressed: bool = False):
    """A bag with the four camera topics of a typical RGB-D driver, /tf and the static mount transforms."""
    from moadepth_core.data.rosbag.writer import COMPRESSED_TYPE, RGBDBagWriter

    writer = RGBDBagWriter(path, storage=storage).open()
    image_type = COMPRESSED_TYPE if compressed else "sensor_msgs/msg/Image"
    writer.add_topic(COLOR_COMPRESSED_TOPIC if compressed else COLOR_TOPIC, image_type)
    writer.add_topic("/camera/color/camera_info", "sensor_msgs/msg/CameraInfo")
    writer.add_topic(DEPTH_COMPRESSED_TOPIC if compressed else DEPTH_TOPIC, image_type)
    writer.add_topic("/camera/depth/camera_info", "sensor_msgs/msg/CameraInfo")
    writer.add_topic("/tf", "tf2_msgs/msg/TFMessage")
    writer.write_tf_static(frame_stamp_ns(0, cfg.fps), mount_transforms(cfg))
    return writer


def _write_bag_frame(writer, stamp: int, rgb: np.ndarray, depth: np.ndarray, K: np.ndarray,
                     cfg: SynthConfig, pose: np.ndarray, compressed: bool = False) -> None:
    """The robot's pose on /tf (written first, as a driver's images arrive after the pose they need), then
    colour and depth, which share the colour optical frame: the depth is already registered
    (REP 118 NaN = no return)."""
    writer.write_tf(stamp, [motion_transform(pose, cfg)])
    if compressed:
        from moadepth_core.geometry import compressed as codec

        writer.write_compressed(COLOR_COMPRESSED_TOPIC, stamp, COLOR_FRAME,
                                *codec.encode_rgb8(rgb, "jpeg", quality=JPEG_QUALITY))
    else:
        writer.write_image(COLOR_TOPIC, stamp, COLOR_FRAME, rgb, "rgb8")
    writer.write_camera_info("/camera/color/camera_info", stamp, COLOR_FRAME, K, cfg.width, cfg.height)
    if compressed:  # millimetres, 0 = no return (REP 118), up to 65.535 m
        ok = np.isfinite(depth) & (depth > 0)
        mm = np.where(ok, np.clip(np.rint(depth * 1000.0), 0, 65535), 0).astype(np.uint16)
        writer.write_compressed(DEPTH_COMPRESSED_TOPIC, stamp, COLOR_FRAME,
                                *codec.encode_depth(mm, "16UC1", depth_max=100.0))
        writer.write_camera_info("/camera/depth/camera_info", stamp, COLOR_FRAME, K, cfg.width, cfg.height)
        return
    ros_depth = np.where(np.isfinite(depth) & (depth > 0), depth, np.float32(np.nan))
    writer.write_image(DEPTH_TOPIC, stamp, COLOR_FRAME, ros_depth, "32FC1")
    writer.write_camera_info("/camera/depth/camera_info", stamp, COLOR_FRAME, K, cfg.width, cfg.height)
