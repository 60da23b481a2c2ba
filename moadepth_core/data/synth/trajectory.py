"""Camera poses of a synth run: the path through the room, the robot mount and frame stamps.

The camera frames follow REP 103/105: ``base_link`` (the robot, on the floor) -> ``camera_link``
(x forward, y left, z up) -> the optical frame (x right, y down, z forward). Poses are 4x4
world <- optical frame. The bag's frame tree is built here too: :func:`mount_transforms` gives
/tf_static and :func:`motion_transform` the per-frame /tf beside it.

The world (the room: origin at a corner, z up) is ``odom``: one seed renders one room and one
continuous loop through it, so a bag is one trajectory and odom never jumps. With a robot mount
the moving edge is ``odom -> base_link`` (on the floor, yawing); with ``free_poses`` there is no
robot, and the moving edge is ``odom -> camera_link`` (the hand-held camera's full 6-DoF pose).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from moadepth_core.data.synth.config import SynthConfig
from moadepth_core.data.synth.scene import Scene

# Fixed start time for stamps so that bags are deterministic (2023-11-14T22:13:20Z).
START_NS = 1_700_000_000 * 1_000_000_000

ODOM_FRAME = "odom"
BASE_FRAME = "base_link"
LINK_FRAME = "camera_link"
COLOR_FRAME = "camera_color_optical_frame"
# camera_link (x forward, y left, z up) -> optical frame (x right, y down, z forward).
R_LINK_OPTICAL = np.array([[0.0, 0.0, 1.0], [-1.0, 0.0, 0.0], [0.0, -1.0, 0.0]])


# Axis rotations and matrix -> quaternion; geometry.transforms has the other direction
# (quaternion_to_matrix), which the tests use to check these round-trip.
def rot_z(a: float) -> np.ndarray:
    c, s = math.cos(a), math.sin(a)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def rot_y(a: float) -> np.ndarray:
    c, s = math.cos(a), math.sin(a)
    return np.array([[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]])


def rot_x(a: float) -> np.ndarray:
    c, s = math.cos(a), math.sin(a)
    return np.array([[1.0, 0.0, 0.0], [0.0, c, -s], [0.0, s, c]])


def quat_from_matrix(R: np.ndarray) -> np.ndarray:
    """Unit quaternion (x, y, z, w) with w >= 0 for a rotation matrix."""
    R = np.asarray(R, dtype=np.float64)
    tr = np.trace(R)
    if tr > 0:
        s = math.sqrt(tr + 1.0) * 2
        q = [(R[2, 1] - R[1, 2]) / s, (R[0, 2] - R[2, 0]) / s, (R[1, 0] - R[0, 1]) / s, 0.25 * s]
    elif R[0, 0] > R[1, 1] and R[0, 0] > R[2, 2]:
        s = math.sqrt(1.0 + R[0, 0] - R[1, 1] - R[2, 2]) * 2
        q = [0.25 * s, (R[0, 1] + R[1, 0]) / s, (R[0, 2] + R[2, 0]) / s, (R[2, 1] - R[1, 2]) / s]
    elif R[1, 1] > R[2, 2]:
        s = math.sqrt(1.0 + R[1, 1] - R[0, 0] - R[2, 2]) * 2
        q = [(R[0, 1] + R[1, 0]) / s, 0.25 * s, (R[1, 2] + R[2, 1]) / s, (R[0, 2] - R[2, 0]) / s]
    else:
        s = math.sqrt(1.0 + R[2, 2] - R[0, 0] - R[1, 1]) * 2
        q = [(R[0, 2] + R[2, 0]) / s, (R[1, 2] + R[2, 1]) / s, 0.25 * s, (R[1, 0] - R[0, 1]) / s]
    q = np.array(q)
    q /= np.linalg.norm(q)
    return -q if q[3] < 0 else q


def camera_pose(position: Sequence[float], yaw: float, pitch: float = 0.0, roll: float = 0.0) -> np.ndarray:
    """World <- optical frame for a camera_link at ``position`` with yaw, elevation ``pitch`` and roll.

    ``pitch`` > 0 looks up (an elevation angle); in REP 103 terms the link is
    rotated by -pitch about its y axis.
    """
    T = np.eye(4)
    T[:3, :3] = rot_z(yaw) @ rot_y(-pitch) @ rot_x(roll) @ R_LINK_OPTICAL
    T[:3, 3] = position
    return T


def mount_transforms(cfg: SynthConfig) -> list[tuple[str, str, list[float], list[float]]]:
    """Static transforms for /tf_static: base_link -> camera_link (robot mount) and the optical rotation."""
    out = []
    if not cfg.free_poses:
        q = quat_from_matrix(rot_y(-math.radians(cfg.camera_pitch_deg)))
        out.append((BASE_FRAME, LINK_FRAME, [0.0, 0.0, float(cfg.camera_height)], q.tolist()))
    out.append((LINK_FRAME, COLOR_FRAME, [0.0, 0.0, 0.0], quat_from_matrix(R_LINK_OPTICAL).tolist()))
    return out


def moving_frame(cfg: SynthConfig) -> str:
    """The child of the per-frame /tf edge: ``base_link`` on a robot mount, ``camera_link`` for free poses."""
    return LINK_FRAME if cfg.free_poses else BASE_FRAME


def motion_transform(pose: np.ndarray, cfg: SynthConfig) -> tuple[str, str, list[float], list[float]]:
    """The /tf edge ``odom -> moving_frame(cfg)`` for one camera pose (world <- optical, 4x4).

    Derived from the pose and the static mount (pose @ inverse(mount chain)) so that chaining
    /tf and /tf_static gives back the rendered pose to rounding.
    """
    from moadepth_core.geometry import compose_transforms, invert_transform, transform_matrix

    # mount_transforms is the chain from the moving frame down to the optical frame, in order
    T_root_optical = compose_transforms(*(transform_matrix(xyz, q) for _, _, xyz, q in mount_transforms(cfg)))
    T = compose_transforms(np.asarray(pose, dtype=np.float64), invert_transform(T_root_optical))
    return ODOM_FRAME, moving_frame(cfg), T[:3, 3].tolist(), quat_from_matrix(T[:3, :3]).tolist()


def trajectory(scene: Scene, cfg: SynthConfig) -> list[np.ndarray]:
    """Smooth collision-free camera poses (world <- optical, 4x4) along the scene's loop.

    By default the camera rides a robot: fixed height and pitch, yaw following the
    path with a slow look-around. ``free_poses`` adds height, pitch and roll
    oscillations like a hand-held camera.
    """
    rng = np.random.default_rng(np.random.SeedSequence([int(cfg.seed), 0x7AA1]))
    path = scene.path
    seg = np.diff(np.vstack([path, path[:1]]), axis=0)
    seglen = np.hypot(seg[:, 0], seg[:, 1])
    cum = np.concatenate([[0.0], np.cumsum(seglen)])
    total = cum[-1]
    heading = np.unwrap(np.arctan2(seg[:, 1], seg[:, 0]))
    closed = np.vstack([path, path[:1]])
    start = rng.uniform(0, total)
    direction = 1.0 if rng.random() < 0.5 else -1.0
    step = cfg.speed / cfg.fps
    ph = rng.uniform(0, 2 * np.pi, size=6)
    poses = []
    H = scene.size[2]
    mids = (cum[:-1] + cum[1:]) / 2
    for i in range(cfg.frames):
        s = (start + direction * i * step) % total
        x = np.interp(s, cum, closed[:, 0])
        y = np.interp(s, cum, closed[:, 1])
        # heading at mid-segments, interpolated smoothly along the arc length
        yaw = float(np.interp(s, mids, heading))
        if direction < 0:
            yaw += math.pi
        tsec = i / cfg.fps
        yaw += math.radians(25.0) * math.sin(0.35 * tsec + ph[0])
        if cfg.free_poses:
            z = float(np.clip(0.35 + 0.75 * (1 + math.sin(0.23 * tsec + ph[1])), 0.2, H - 0.3))
            pitch = math.radians(-8.0 + 18.0 * math.sin(0.31 * tsec + ph[2]))
            roll = math.radians(10.0 * math.sin(0.41 * tsec + ph[3]))
        else:
            z, pitch, roll = cfg.camera_height, math.radians(cfg.camera_pitch_deg), 0.0
        z = min(z, H - 0.05)
        poses.append(camera_pose((x, y, z), yaw, pitch, roll))
    return poses


def frame_stamp_ns(i: int, fps: float) -> int:
    """Header stamp of frame ``i``: a fixed start plus ``i / fps`` seconds, so runs are byte-identical."""
    return START_NS + int(round(i * 1e9 / fps))
