"""bag_eval end to end on bags the tests write: metrics equal a direct computation, clear errors."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from moadepth_core.evaluation.metrics import METRIC_KEYS, aggregate, compute_metrics
from moadepth_ros.tools import bag_eval
from test_bag_source import DEP, IMG, write_bag

# bag_eval reads depth_node's parameter table (rcl_interfaces) for its defaults
pytestmark = pytest.mark.ros

PRED = "/depth/image"


def _direct(preds, gts, **kw):
    rows = [compute_metrics(np.where(p > 0, p, np.nan), g, **kw) for p, g in zip(preds, gts, strict=True)]
    return aggregate(rows)


def _check(out, want, frames):
    m = json.loads((out / "metrics.json").read_text())
    for k in METRIC_KEYS:
        assert m[k] == pytest.approx(want[k], rel=1e-6, abs=1e-9), k
    assert m["frames"] == frames and m["valid_pixels"] == want["valid_pixels"]
    for name in ("frames.csv", "metrics_over_time.png", "error_histogram.png", *m["files"]["samples"]):
        assert (out / name).is_file(), name
    with open(out / "frames.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == frames and set(METRIC_KEYS) <= set(rows[0])
    return m


def _preds(depths, seed=1):
    rng = np.random.default_rng(seed)
    return [(np.where(d > 0, d, 2.0) * rng.uniform(0.8, 1.25, d.shape)).astype(np.float32) for d in depths]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    from moadepth_core.model.checkpoint import save_checkpoint
    from model_cache import fresh_model

    path = tmp_path_factory.mktemp("ckpt") / "model.pt"
    save_checkpoint(path, fresh_model(image_size=[64, 96]), train_focal_px=80.0)
    return path


def test_network_metrics_equal_direct_computation(tmp_path, checkpoint):
    from moadepth_core.runtime.torch.estimator import DepthEstimator

    rgbs, depths, _ = write_bag(tmp_path / "bag", 3)
    rc = bag_eval.main(["--bag", str(tmp_path / "bag"), "--image-topic", IMG, "--depth-topic", DEP,
                        "--checkpoint", str(checkpoint), "--out", str(tmp_path / "out"), "--quiet"])
    assert rc == 0
    est = DepthEstimator(str(checkpoint))
    preds = [est.predict(rgb).depth for rgb in rgbs]
    m = _check(tmp_path / "out", _direct(preds, depths), 3)
    assert m["settings"]["checkpoint"] == str(checkpoint) and m["settings"]["untrained"] is False
    assert m["paired"] == 3 and m["unpaired_images"] == 0 and m["unpaired_depths"] == 0
    assert np.isfinite(m["baseline_constant"]["abs_rel"])


@pytest.mark.parametrize("storage,encoding", [("mcap", "32FC1"), ("mcap", "16UC1"), ("sqlite3", "32FC1")])
def test_recorded_predictions_are_scored(tmp_path, storage, encoding):
    _, depths, _ = write_bag(tmp_path / "probe", 4, seed=3)
    preds = _preds(depths)
    _, depths, _ = write_bag(tmp_path / "bag", 4, storage=storage, depth_encoding=encoding, seed=3,
                             predictions={PRED: preds})
    rc = bag_eval.main(["--bag", str(tmp_path / "bag"), "--image-topic", IMG, "--depth-topic", DEP,
                        "--prediction-topic", PRED, "--out", str(tmp_path / "out"), "--quiet"])
    assert rc == 0
    _check(tmp_path / "out", _direct(preds, depths), 4)


def test_median_scaling_max_frames_and_missing_predictions(tmp_path):
    _, depths, _ = write_bag(tmp_path / "probe", 5)
    preds = _preds(depths)
    _, depths, _ = write_bag(tmp_path / "bag", 5, predictions={PRED: preds})
    out = tmp_path / "out"
    rc = bag_eval.main(["--bag", str(tmp_path / "bag"), "--image-topic", IMG, "--depth-topic", DEP,
                        "--prediction-topic", PRED, "--out", str(out), "--median-scaling", "--max-frames", "4",
                        "--quiet"])
    assert rc == 0
    _check(out, _direct(preds[:4], depths[:4], median_scaling=True), 4)


def test_missing_topic_is_a_one_line_error(tmp_path, capsys):
    write_bag(tmp_path / "bag", 1)
    rc = bag_eval.main(["--bag", str(tmp_path / "bag"), "--image-topic", "/cam/rgb", "--depth-topic", DEP,
                        "--allow-untrained", "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and err.startswith("bag_eval: error:") and "\n" not in err
    assert "/cam/rgb" in err and f"{IMG} (sensor_msgs/msg/Image)" in err


def test_truncated_bag_is_a_one_line_error(tmp_path, capsys):
    write_bag(tmp_path / "bag", 3)
    f = next((tmp_path / "bag").glob("*.mcap"))
    f.write_bytes(f.read_bytes()[:20000])
    rc = bag_eval.main(["--bag", str(tmp_path / "bag"), "--image-topic", IMG, "--depth-topic", DEP,
                        "--allow-untrained", "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and "truncated or corrupt" in err and str(tmp_path / "bag") in err


def test_untrained_network_must_be_asked_for(tmp_path, capsys):
    write_bag(tmp_path / "bag", 1)
    rc = bag_eval.main(["--bag", str(tmp_path / "bag"), "--image-topic", IMG, "--depth-topic", DEP,
                        "--out", str(tmp_path / "out")])
    assert rc == 2 and "--allow-untrained" in capsys.readouterr().err


def test_undecodable_frame_stops_or_is_skipped_and_counted(tmp_path, capsys):
    from moadepth_core.data.rosbag.writer import RGBDBagWriter
    from test_bag_source import H, W

    _, depths, _ = write_bag(tmp_path / "probe", 3)
    preds = _preds(depths)
    # the same frames, but image 1 carries half the bytes its header promises
    rgbs, depths, stamps = write_bag(tmp_path / "good", 3, predictions={PRED: preds})
    with RGBDBagWriter(tmp_path / "bag") as w:
        for i, st in enumerate(stamps):
            if i == 1:
                msg = w.typestore.types["sensor_msgs/msg/Image"](
                    header=w.header(st, "camera_color_optical_frame"), height=H, width=W, encoding="rgb8",
                    is_bigendian=0, step=3 * W, data=rgbs[i].reshape(-1)[: H * W])
                w.write_message(IMG, "sensor_msgs/msg/Image", st, msg)
            else:
                w.write_image(IMG, st, "camera_color_optical_frame", rgbs[i], "rgb8")
            w.write_camera_info("/camera/color/camera_info", st, "camera_color_optical_frame",
                                np.array([[80, 0, 47.5], [0, 80, 31.5], [0, 0, 1.0]]), W, H)
            w.write_image(DEP, st, "camera_color_optical_frame", depths[i], "32FC1")
            w.write_image(PRED, st, "camera_color_optical_frame", preds[i], "32FC1")
    argv = ["--bag", str(tmp_path / "bag"), "--image-topic", IMG, "--depth-topic", DEP, "--prediction-topic", PRED,
            "--out", str(tmp_path / "out"), "--quiet"]
    assert bag_eval.main(argv) == 2
    assert "needs" in capsys.readouterr().err  # the decoder's sentence: data shorter than step x height
    assert bag_eval.main([*argv, "--skip-bad-frames"]) == 0
    m = _check(tmp_path / "out", _direct([preds[0], preds[2]], [depths[0], depths[2]]), 2)
    assert m["bad_frames"] == 1
