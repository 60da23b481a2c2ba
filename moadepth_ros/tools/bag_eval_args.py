"""``bag_eval``'s command line: the argument parser and the defaults it names.

No rclpy import, like the rest of ``bag_eval``.
"""

from __future__ import annotations

import argparse

from moadepth_core.data.rosbag.source import DEFAULT_MAX_TIME_DIFF
from moadepth_core.evaluation import nav_eval

#: The first line of ``bag_eval --help``.
DESCRIPTION = "``bag_eval``: offline, deterministic depth evaluation of a rosbag2 RGB-D recording (no DDS)."


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="bag_eval", description=DESCRIPTION)
    p.add_argument("--bag", required=True, help="rosbag2 directory (or .mcap/.db3 file)")
    p.add_argument("--image-topic", required=True)
    p.add_argument("--depth-topic", required=True, help="ground-truth depth (16UC1 mm or 32FC1 m)")
    p.add_argument("--camera-info-topic", help="default: camera_info next to the image topic")
    p.add_argument("--depth-camera-info-topic", help="default: camera_info next to the depth topic")
    p.add_argument("--depth-scale", type=float, help="16-bit depth units per metre (default 1000, REP 118)")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--checkpoint", help="run this checkpoint on every image")
    src.add_argument("--prediction-topic", help="score recorded predictions (32FC1, same stamps as the images)")
    p.add_argument("--allow-untrained", action="store_true", help="run a random-weight network (no checkpoint)")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--median-scaling", action="store_true", help="relative evaluation: scale by median ratio")
    p.add_argument("--eigen-crop", action="store_true", help="NYU Eigen crop (off for robot cameras)")
    p.add_argument("--max-frames", type=int, help="evaluate at most the first N frames")
    p.add_argument("--max-time-diff", type=float, default=DEFAULT_MAX_TIME_DIFF,
                   help="image/depth pairing tolerance in seconds")
    p.add_argument("--start", type=float, default=0.0, help="first fraction of the paired frames to keep")
    p.add_argument("--stop", type=float, default=1.0, help="last fraction of the paired frames to keep")
    p.add_argument("--min-depth", type=float, default=1e-3)
    p.add_argument("--max-depth", type=float, default=10.0)
    p.add_argument("--focal-scaling", action="store_true",
                   help="rescale network depth by this camera's focal length against the training camera's")
    p.add_argument("--device", default="auto")
    p.add_argument("--samples", type=int, default=4, help="sample panels to draw")
    p.add_argument("--skip-bad-frames", action="store_true",
                   help="skip (and count) frames whose messages cannot be decoded instead of stopping")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    nav = p.add_argument_group("costmap, map and temporal evaluation (needs the robot's motion in /tf)")
    nav.add_argument("--costmap", action="store_true",
                     help="compute them, and fail with one sentence if impossible; without this flag they run "
                          "when the bag has /tf and are skipped with one line otherwise")
    nav.add_argument("--costmap-config", metavar="FILE",
                     help="Nav2 params YAML with the obstacle/voxel layer to mirror (default: "
                          f"{nav2_default()}, also found in the installed share/moadepth_ros)")
    nav.add_argument("--fixed-frame", default="odom", help="the frame the costmap and map live in")
    nav.add_argument("--uncertainty-sweep", nargs="?", const="default", metavar="LIST",
                     help="also score the costmap with points above each max_uncertainty in LIST dropped "
                          "(comma-separated; default: " + ",".join(f"{t:g}" for t in nav_eval.DEFAULT_SWEEP)
                          + f"; {nav_eval.FILTER_OFF:g} = filter off)")
    nav.add_argument("--max-uncertainty", type=float,
                     help="the node's filter applied to the prediction's points (default: depth_node's default)")
    nav.add_argument("--confidence-topic",
                     help="with --prediction-topic: the node's depth/confidence (default: 'confidence' next to "
                          "the prediction topic, when recorded)")
    nav.add_argument("--costmap-stride", type=int, default=nav_eval.DEFAULT_STRIDE,
                     help="back-project every n-th pixel in both directions (the node's point_stride)")
    return p


def nav2_default() -> str:
    from moadepth_core.evaluation.nav2_params import DEFAULT_COSTMAP_CONFIG

    return str(DEFAULT_COSTMAP_CONFIG)
