"""bag_replay against the real depth_node over DDS (both subprocesses; conftest keeps DDS on localhost)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from moadepth_core.data.rosbag.source import BagSource
from moadepth_core.data.rosbag.writer import RGBDBagWriter
from test_bag_source import IMG, T0, H, K, W, make_frames

pytestmark = pytest.mark.ros

BIN = Path(sys.executable).parent
DEP = "/camera/depth/image_raw"


def _short_bag(path: Path, n: int = 8) -> list[int]:
    """n frames at 10 Hz (stamps = log times), colour + 32FC1 ground truth + infos + /tf_static."""
    rgbs, depths = make_frames(n)
    stamps = [T0 + i * 100_000_000 for i in range(n)]
    with RGBDBagWriter(path) as w:
        w.write_tf_static(T0, [("base_link", "camera_color_optical_frame", [0, 0, 0.5], [0, 0, 0, 1])])
        for st, rgb, d in zip(stamps, rgbs, depths, strict=True):
            w.write_image(IMG, st, "camera_color_optical_frame", rgb, "rgb8")
            w.write_camera_info("/camera/color/camera_info", st, "camera_color_optical_frame", K, W, H)
            w.write_image(DEP, st, "camera_color_optical_frame", d, "32FC1")
            w.write_camera_info("/camera/depth/camera_info", st, "camera_color_optical_frame", K, W, H)
    return stamps


@pytest.fixture
def node():
    from depth_node_harness import checkpoint_file

    proc = subprocess.Popen(
        [str(BIN / "depth_node"), "--ros-args", "-p", f"checkpoint:={checkpoint_file()}", "-p", "use_sim_time:=true",
         "-r", f"image:={IMG}", "-r", "camera_info:=/camera/color/camera_info", "-r", "__ns:=/cam"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=os.environ.copy(), text=True)
    yield proc
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@pytest.mark.slow
def test_replay_against_the_node_counts_add_up_and_recording_is_evaluable(tmp_path, node):
    stamps = _short_bag(tmp_path / "bag")
    res = subprocess.run(
        [str(BIN / "bag_replay"), "--bag", str(tmp_path / "bag"), "--image-topic", IMG, "--depth-topic", DEP,
         "--output-ns", "/cam", "--record", str(tmp_path / "rec"), "--json", str(tmp_path / "stats.json"),
         "--wait-for-subscribers", "--wait-timeout", "90", "--drain-timeout", "10"],
        capture_output=True, text=True, timeout=180, env=os.environ.copy())
    assert res.returncode == 0, res.stderr + res.stdout
    stats = json.loads((tmp_path / "stats.json").read_text())
    assert stats["frames_in"] == len(stamps)
    assert stats["frames_in"] == stats["frames_out"] + stats["dropped"]
    assert stats["frames_out"] >= 1 and stats["unexpected_outputs"] == 0 and stats["duplicate_outputs"] == 0
    assert stats["latency_ms"]["p50"] is not None and stats["latency_ms"]["p95"] >= stats["latency_ms"]["p50"]
    assert stats["outputs"]["depth"]["topic"] == "/cam/depth/image"

    # every recorded output stamp is an input stamp
    rec = BagSource(tmp_path / "rec", IMG, DEP, extra_topics=["/cam/depth/image"])
    assert [rec.stamp_ns(i) for i in range(len(rec))] == stamps  # inputs and ground truth recorded
    out_stamps = [m.stamp_ns for m in rec._msgs["/cam/depth/image"]]
    assert len(out_stamps) == stats["frames_out"] and set(out_stamps) <= set(stamps)

    res = subprocess.run(
        [str(BIN / "bag_eval"), "--bag", str(tmp_path / "rec"), "--image-topic", IMG, "--depth-topic", DEP,
         "--prediction-topic", "/cam/depth/image", "--out", str(tmp_path / "eval"), "--quiet"],
        capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    m = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert m["frames"] == stats["frames_out"] and m["missing_predictions"] == stats["dropped"]


def test_no_node_is_a_bounded_clear_error(tmp_path):
    _short_bag(tmp_path / "bag", 2)
    res = subprocess.run(
        [str(BIN / "bag_replay"), "--bag", str(tmp_path / "bag"), "--image-topic", IMG,
         "--wait-for-subscribers", "--wait-timeout", "1.5"],
        capture_output=True, text=True, timeout=60, env=os.environ.copy())
    assert res.returncode == 2 and "no node answered" in res.stderr


def test_missing_image_topic(tmp_path):
    _short_bag(tmp_path / "bag", 1)
    res = subprocess.run([str(BIN / "bag_replay"), "--bag", str(tmp_path / "bag"), "--image-topic", "/nope"],
                         capture_output=True, text=True, timeout=60, env=os.environ.copy())
    assert res.returncode == 2 and "/nope" in res.stderr and IMG in res.stderr
