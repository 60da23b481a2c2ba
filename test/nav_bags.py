"""Small synth bags with the robot's motion for the costmap tests: rendered frames, /tf, and a prediction."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from moadepth_core.data.rosbag.writer import RGBDBagWriter
from moadepth_core.data.synth import SynthConfig, make_scene, render, trajectory
from moadepth_core.data.synth.trajectory import (
    COLOR_FRAME,
    frame_stamp_ns,
    motion_transform,
    mount_transforms,
)

IMG, DEP, INFO = "/camera/color/image_raw", "/camera/depth/image_raw", "/camera/color/camera_info"
PRED, CONF = "/depth/image", "/depth/confidence"


def nav_cfg(frames: int = 6, **kw) -> SynthConfig:
    base = dict(width=128, height=96, fx=80.0, fy=80.0, frames=frames, seed=3, camera_pitch_deg=-15.0)
    base.update(kw)
    return SynthConfig(**base)


def write_nav_bag(path: Path, cfg: SynthConfig, *, tf: bool = True,
                  pred: Callable[[int, np.ndarray], np.ndarray] | None = None,
                  conf: Callable[[int, np.ndarray], np.ndarray] | None = None) -> list[np.ndarray]:
    """A synth run as a bag (colour, registered depth, CameraInfo, /tf_static, /tf unless ``tf=False``),
    with ``pred(i, depth)`` on PRED and ``conf(i, depth)`` on CONF when given. Returns the depths."""
    scene = make_scene(cfg.seed)
    K = cfg.K()
    depths = []
    with RGBDBagWriter(path) as w:
        w.write_tf_static(frame_stamp_ns(0, cfg.fps), mount_transforms(cfg))
        for i, T in enumerate(trajectory(scene, cfg)):
            st = frame_stamp_ns(i, cfg.fps)
            rgb, depth = render(scene, T, K, cfg.width, cfg.height)
            depths.append(depth)
            if tf:
                w.write_tf(st, [motion_transform(T, cfg)])
            w.write_image(IMG, st, COLOR_FRAME, rgb, "rgb8")
            w.write_camera_info(INFO, st, COLOR_FRAME, K, cfg.width, cfg.height)
            w.write_image(DEP, st, COLOR_FRAME, depth, "32FC1")
            if pred is not None:
                w.write_image(PRED, st, COLOR_FRAME, np.asarray(pred(i, depth), np.float32), "32FC1")
            if conf is not None:
                w.write_image(CONF, st, COLOR_FRAME, np.asarray(conf(i, depth), np.float32), "32FC1")
    return depths
