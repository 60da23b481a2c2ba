"""Costmap, map and temporal evaluation in bag_eval (issue 20) on small synth bags with the robot's motion."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from moadepth_core.data.rosbag.tf_buffer import read_bag_tf
from moadepth_core.evaluation import nav_eval
from moadepth_core.evaluation.nav2_params import find_costmap_config, load_costmap_params
from moadepth_ros.tools import bag_eval
from nav_bags import CONF, DEP, IMG, PRED, nav_cfg, write_nav_bag

# bag_eval reads depth_node's parameter table (rcl_interfaces) for its defaults
pytestmark = pytest.mark.ros


def _run(bag, out, *extra):
    return bag_eval.main(["--bag", str(bag), "--image-topic", IMG, "--depth-topic", DEP, "--prediction-topic", PRED,
                          "--out", str(out), "--quiet", "--costmap-stride", "2", *extra])


def _error(capsys) -> str:
    """The error line: the last line on stderr (the bag's description comes first), one sentence."""
    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert line.startswith("bag_eval: error: ")
    return line


@pytest.fixture(scope="module")
def exact_bag(tmp_path_factory):
    """The prediction is the reference itself; confidence 1 on the left half of the image, 0 on the right."""
    path = tmp_path_factory.mktemp("nav") / "bag"

    def conf(i, d):
        c = np.ones_like(d)
        c[:, d.shape[1] // 2:] = 0.0
        return c

    write_nav_bag(path, nav_cfg(frames=5), pred=lambda i, d: d, conf=conf)
    return path


def test_exact_prediction_scores_one_and_everything_is_written(exact_bag, tmp_path, capsys):
    out = tmp_path / "out"
    assert _run(exact_bag, out, "--max-uncertainty", "1000") == 0
    m = json.loads((out / "metrics.json").read_text())
    c = m["costmap"]
    assert c["frames"] == 5 and c["uncertainty_source"] == f"1 - {CONF}"
    for key in ("iou", "precision", "recall", "iou_within_1_cell", "precision_within_1_cell",
                "recall_within_1_cell"):
        assert c[key] == pytest.approx(1.0), key
        assert c["accumulated"][key] == pytest.approx(1.0), key
    assert c["phantom_cells_per_frame"] == 0 and c["missed_cells_per_frame"] == 0
    assert c["accumulated"]["reference_cells"] > 20  # the scene does put obstacles in view
    assert DEP in c["reference"] and c["fixed_frame"] == "odom"
    assert m["map"]["iou"] == pytest.approx(1.0) and m["map"]["accuracy_median_m"] == 0.0
    assert m["map"]["completeness_median_m"] == 0.0
    t = m["temporal"]
    assert t["pairs"] == 4 and t["prediction_median_rel"] == pytest.approx(t["reference_median_rel"])
    assert t["reference_median_rel"] < 0.02  # the poses are right: warping the previous frame lands on this one
    # the best constant depth is a wall of phantoms
    b = c["baseline_constant"]
    assert b["precision"] < 0.5 and b["phantom_cells_per_frame"] > 10
    with open(out / "frames.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 5 and set(nav_eval.FRAME_COLUMNS) <= set(rows[0])
    assert float(rows[1]["costmap_iou"]) == pytest.approx(1.0)
    for name in c["files"].values():
        assert (out / name).is_file(), name
    assert "costmap per frame" in capsys.readouterr().out


def test_the_filter_drops_uncertain_points_and_the_sweep_is_written(exact_bag, tmp_path):
    out = tmp_path / "out"
    assert _run(exact_bag, out, "--uncertainty-sweep", "0.5,1000") == 0
    m = json.loads((out / "metrics.json").read_text())
    c = m["costmap"]
    # the node's default filter keeps the confident left half: nothing phantom, some obstacles missed
    assert c["max_uncertainty"] == bag_eval.node_default("max_uncertainty") < 1
    assert c["precision"] == pytest.approx(1.0) and c["recall"] < 1.0
    assert c["unfiltered"]["recall"] == pytest.approx(1.0)
    sweep = m["uncertainty_sweep"]
    assert [s["max_uncertainty"] for s in sweep] == [0.5, 1000.0]
    assert all({"max_uncertainty", "precision", "recall", "iou"} <= set(s) for s in sweep)
    assert sweep[0]["recall"] == pytest.approx(c["recall"]) and sweep[1]["recall"] == pytest.approx(1.0)
    assert (out / "uncertainty_sweep.png").is_file()


def test_without_tf_the_costmap_is_skipped_with_one_line(tmp_path, capsys):
    write_nav_bag(tmp_path / "bag", nav_cfg(frames=2), tf=False, pred=lambda i, d: d)
    assert _run(tmp_path / "bag", tmp_path / "out") == 0
    err = capsys.readouterr().err
    (line,) = [ln for ln in err.splitlines() if "skipped" in ln]
    assert "costmap" in line and "/tf" in line and "--costmap" in line
    m = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert "costmap" not in m and np.isfinite(m["abs_rel"])  # the pixel metrics are still there


def test_costmap_asked_for_without_tf_is_a_one_sentence_error(tmp_path, capsys):
    write_nav_bag(tmp_path / "bag", nav_cfg(frames=2), tf=False, pred=lambda i, d: d)
    assert _run(tmp_path / "bag", tmp_path / "out", "--costmap") == 2
    err = _error(capsys)
    assert err.startswith("bag_eval: error: cannot compute the costmap")
    assert "no /tf" in err


def test_a_wrong_fixed_frame_names_both_frames_and_the_known_ones(exact_bag, tmp_path, capsys):
    assert _run(exact_bag, tmp_path / "out", "--costmap", "--fixed-frame", "map") == 2
    err = _error(capsys)
    assert "'map'" in err and "'camera_color_optical_frame'" in err
    assert "odom" in err and "base_link" in err  # the frames the bag has


def test_a_band_that_marks_nothing_gives_undefined_metrics_with_a_note(exact_bag, tmp_path, capsys):
    cfg = tmp_path / "nav2.yaml"
    cfg.write_text(find_costmap_config().read_text().replace("max_obstacle_height: 1.80",
                                                            "max_obstacle_height: 0.05")
                   .replace("min_obstacle_height: 0.10", "min_obstacle_height: 0.01"))
    assert load_costmap_params(cfg).height_band == (0.01, 0.05)
    assert _run(exact_bag, tmp_path / "out", "--costmap", "--costmap-config", str(cfg)) == 0
    c = json.loads((tmp_path / "out" / "metrics.json").read_text())["costmap"]
    assert c["iou"] is None and c["recall"] is None and c["accumulated"]["recall"] is None
    assert any("undefined" in n for n in c["notes"])
    assert "undefined" in capsys.readouterr().out


def test_a_nav2_file_without_an_obstacle_layer_is_one_sentence(exact_bag, tmp_path, capsys):
    cfg = tmp_path / "nav2.yaml"
    cfg.write_text("local_costmap:\n  ros__parameters:\n    plugins: [inflation_layer]\n")
    assert _run(exact_bag, tmp_path / "out", "--costmap-config", str(cfg)) == 2
    err = _error(capsys)
    assert str(cfg) in err and "ObstacleLayer" in err


def test_the_sweep_needs_an_uncertainty(tmp_path, capsys):
    write_nav_bag(tmp_path / "bag", nav_cfg(frames=2), pred=lambda i, d: d)
    assert _run(tmp_path / "bag", tmp_path / "out", "--uncertainty-sweep") == 2
    assert "depth/confidence" in _error(capsys)


def test_default_config_is_found_from_anywhere(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = find_costmap_config()
    assert path.is_file() and path.name == "nav2_depth_costmap.yaml"


def test_frames_without_a_pose_are_left_out_and_counted(exact_bag):
    tf = read_bag_tf(exact_bag)
    lo, hi = tf.time_range("base_link")
    cam = "camera_color_optical_frame"
    poses = nav_eval.frame_poses(tf, "odom", [(lo, cam), (hi + 10**9, cam)])
    assert poses[0].T is not None and poses[1].T is None and "after the last" in poses[1].error
    assert nav_eval.check_poses(poses, tf, "odom") is None
    assert "after the last" in nav_eval.check_poses(poses[1:], tf, "odom")
