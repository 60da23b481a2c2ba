"""``bag_eval``: offline, deterministic depth evaluation of a rosbag2 RGB-D recording (no DDS).

Either runs the network on every paired image (``--checkpoint`` / ``--allow-untrained``) or,
with ``--prediction-topic``, scores depth maps already in the bag (what ``bag_replay --record``
captured from the running node), so the node's real outputs are what gets measured.
Frames, pairing and registration come from :class:`moadepth_core.data.rosbag.source.BagSource`;
the metrics are the NYU protocol of :mod:`moadepth_core.evaluation.metrics`.

Writes ``OUT/metrics.json`` (INTERFACES.md keys, counts, the settings, a best-constant-depth
baseline for context), ``OUT/frames.csv`` (one row per frame) and PNG plots.

When the bag holds the robot's motion (``/tf``), or with ``--costmap``, it also scores what Nav2
and a mapper would see (keys ``costmap``, ``map``, ``temporal``, with ``--uncertainty-sweep``
also ``uncertainty_sweep``): the work is :mod:`moadepth_core.evaluation.nav_eval`;
:mod:`~moadepth_ros.tools.bag_eval_costmap` decides whether it runs and this file feeds it frames.
The command line is :mod:`~moadepth_ros.tools.bag_eval_args`, the files written
:mod:`~moadepth_ros.tools.bag_eval_report`.
No rclpy import: it runs wherever ``moadepth_core`` does (the node's ``max_uncertainty`` default is
read from its parameter table, which needs the ROS message packages, only when it is used).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from moadepth_core import geometry
from moadepth_core.data.frames import RGBDFrame
from moadepth_core.data.rosbag.source import BagSource
from moadepth_core.errors import DataError, cli_entry
from moadepth_core.evaluation import colorize, nav_eval, report
from moadepth_core.evaluation.metrics import METRIC_KEYS, aggregate, compute_metrics
from moadepth_core.geometry.camera import PinholeCamera
from moadepth_ros.tools.bag_eval_args import build_parser, nav2_default
from moadepth_ros.tools.bag_eval_costmap import costmap_line, nav_results, node_default, plan_nav
from moadepth_ros.tools.bag_eval_report import BASELINE_STRIDE, constant_baseline, write_outputs

__all__ = ["Predictor", "build_parser", "evaluate", "main", "nav2_default", "network_predictor", "node_default",
           "topic_predictor"]

# A predictor returns the depth, or (depth, relative uncertainty or None), or None (no prediction).
Predictor = Callable[[int, RGBDFrame], "np.ndarray | tuple[np.ndarray, np.ndarray | None] | None"]


def network_predictor(checkpoint: str | None, allow_untrained: bool, device: str = "auto",
                      focal_scaling: bool = False) -> tuple[Predictor, dict]:
    """A predictor running :class:`DepthEstimator` on the frame's image, and what it was."""
    from moadepth_core.runtime.torch.estimator import DepthEstimator

    est = DepthEstimator(checkpoint, allow_untrained=allow_untrained, device=device)

    def predict(_: int, frame: RGBDFrame) -> tuple[np.ndarray, np.ndarray]:
        res = est.predict(frame.rgb)
        depth = res.depth
        if focal_scaling and est.train_focal_px:
            f_model = PinholeCamera.from_K(frame.K, frame.hw).focal_at(est.model_size)
            depth = geometry.scale_depth_for_focal(depth, f_model, est.train_focal_px)
        return depth, res.uncertainty  # relative (std / depth): a scale factor leaves it unchanged

    return predict, {"checkpoint": est.checkpoint_path, "untrained": est.untrained, "device": str(est.device),
                     "focal_scaling": bool(focal_scaling)}


def topic_predictor(source: BagSource, topic: str, confidence_topic: str | None = None) -> tuple[Predictor, dict]:
    """A predictor reading the recorded depth on ``topic`` with the image's stamp (None if dropped).

    With ``confidence_topic`` (the node's ``depth/confidence``, 1 - relative uncertainty clipped to
    0..1) the uncertainty is ``1 - confidence``: exact below 1, while every uncertainty of 1 or more
    reads as 1, so thresholds of 1 and above cannot be told apart.
    """

    def predict(index: int, frame: RGBDFrame):
        depth = source.extra(index, topic, frame.hw)
        if depth is None or confidence_topic is None:
            return depth
        conf = source.extra(index, confidence_topic, frame.hw)
        return depth, None if conf is None else (1.0 - np.clip(conf, 0.0, 1.0)).astype(np.float32)

    return predict, {"prediction_topic": topic, "confidence_topic": confidence_topic}


def evaluate(source: BagSource, predict: Predictor, out_dir: str | Path, *, settings: dict,
             median_scaling: bool = False, eigen_crop: bool = False, min_depth: float = 1e-3,
             max_depth: float = 10.0, max_frames: int | None = None, samples: int = 4,
             progress: bool = True, skip_bad: bool = False, nav: nav_eval.NavEvaluation | None = None,
             poses: list[nav_eval.FramePose] | None = None) -> dict:
    """Score ``predict`` on every frame of ``source``; writes metrics.json, frames.csv and plots.

    ``nav`` (with the ``poses`` of the frames) adds the costmap, map and temporal evaluation.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    n = len(source) if max_frames is None else min(len(source), max(int(max_frames), 0))
    if n == 0:
        raise DataError(f"bag {source.path} has no paired image/depth frames to evaluate ({source.describe()})")
    sample_idx = set(np.unique(np.linspace(0, n - 1, min(samples, n)).round().astype(int)).tolist()) \
        if samples > 0 else set()
    kw = dict(min_depth=min_depth, max_depth=max_depth, eigen_crop=eigen_crop, median_scaling=median_scaling)
    rows: list[dict] = []
    hist = np.zeros(len(report.ERROR_BIN_EDGES) - 1, dtype=np.int64)
    gt_sub: list[np.ndarray] = []
    missing = 0
    bad: list[str] = []
    t0_stamp = None
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=n, unit="frame", desc="bag_eval", file=sys.stderr)
    started = time.perf_counter()
    sample_files = []
    try:
        for i in range(n):
            try:
                frame = source[i]
                pred = predict(i, frame)
            except DataError as exc:
                if not skip_bad:
                    raise
                bad.append(f"frame {i}: {exc}")
                if bar is not None:
                    bar.update(1)
                continue
            if bar is not None:
                bar.update(1)
            if pred is None:
                missing += 1
                continue
            pred, unc = pred if isinstance(pred, tuple) else (pred, None)
            pred = np.where(np.isfinite(pred) & (pred > 0), pred, np.nan).astype(np.float32)
            gt = frame.depth
            m = compute_metrics(pred, gt, **kw)
            stamp = frame.stamp_ns or 0
            t0_stamp = stamp if t0_stamp is None else t0_stamp
            rows.append({"index": i, "name": frame.name, "stamp_ns": stamp, "time_s": (stamp - t0_stamp) / 1e9,
                         **m})
            if nav is not None:
                rows[-1].update(nav.add(poses[i], frame.K, pred, gt, unc))
            valid = np.isfinite(pred) & (gt > min_depth) & (gt < max_depth)
            if eigen_crop:
                from moadepth_core.evaluation.metrics import eigen_crop_mask

                valid &= eigen_crop_mask(*gt.shape)
            if valid.any():
                p = pred
                if median_scaling:
                    p = pred * (np.median(gt[valid]) / max(float(np.median(pred[valid])), 1e-12))
                hist += report.error_histogram(np.clip(p, min_depth, max_depth), gt, valid)
            gt_sub.append(gt[::BASELINE_STRIDE, ::BASELINE_STRIDE].copy())
            if i in sample_idx:
                path = out / f"sample_{i:06d}.png"
                colorize.save_png(path, report.sample_panel(frame.rgb, gt, pred))
                sample_files.append(path.name)
    finally:
        if bar is not None:
            bar.close()
    seconds = time.perf_counter() - started
    if not rows:
        raise DataError(f"bag {source.path}: none of the {n} frames has a prediction to score")

    summary = aggregate(rows)
    frames = summary.pop("images")
    baseline = constant_baseline(gt_sub, kw)
    result = {
        **{k: summary[k] for k in METRIC_KEYS},
        "frames": frames,
        "valid_pixels": summary["valid_pixels"],
        "frames_scored": len(rows),
        "missing_predictions": missing,
        "bad_frames": len(bad),
        "bad_frame_errors": bad[:20],
        **{k: source.stats[k] for k in ("images", "depths", "paired", "unpaired_images", "unpaired_depths")},
        "registration": sorted(source.registration_modes),
        "baseline_constant": baseline,
        "seconds": round(seconds, 3),
        "frames_per_second": round(n / max(seconds, 1e-9), 3),
        "settings": {**settings, "median_scaling": median_scaling, "eigen_crop": eigen_crop,
                     "min_depth": min_depth, "max_depth": max_depth, "max_frames": max_frames},
        "files": {"frames_csv": "frames.csv", "metrics_over_time": "metrics_over_time.png",
                  "error_histogram": "error_histogram.png", "samples": sample_files},
    }
    if nav is not None:
        result.update(nav_results(nav, baseline, out))
    write_outputs(out, result, rows, hist, with_nav=nav is not None)
    return result


def _sibling(topic: str, name: str) -> str:
    return f"{topic.rsplit('/', 1)[0]}/{name}"


def _main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.prediction_topic is None and not args.checkpoint and not args.allow_untrained:
        raise DataError("bag_eval needs --checkpoint, --prediction-topic, or --allow-untrained to run a "
                        "random-weight network")
    if args.confidence_topic and not args.prediction_topic:
        raise DataError("--confidence-topic goes with --prediction-topic (a run of the model has its own uncertainty)")
    extra = [args.prediction_topic] if args.prediction_topic else []
    if args.confidence_topic:
        extra.append(args.confidence_topic)

    def open_source(extra_topics):
        return BagSource(args.bag, image_topic=args.image_topic, depth_topic=args.depth_topic,
                         camera_info_topic=args.camera_info_topic,
                         depth_camera_info_topic=args.depth_camera_info_topic, depth_scale=args.depth_scale,
                         max_time_diff=args.max_time_diff, start=args.start, stop=args.stop,
                         extra_topics=extra_topics)

    source = open_source(extra)
    conf_topic = args.confidence_topic
    if args.prediction_topic and conf_topic is None:
        guess = _sibling(args.prediction_topic, "confidence")
        if source.topics().get(guess) == "sensor_msgs/msg/Image":
            conf_topic = guess
            source = open_source([*extra, guess])
    print(source.describe(), file=sys.stderr)
    if args.prediction_topic:
        predict, what = topic_predictor(source, args.prediction_topic, conf_topic)
        unc_source = f"1 - {conf_topic}" if conf_topic else None
    else:
        predict, what = network_predictor(args.checkpoint, args.allow_untrained, args.device, args.focal_scaling)
        unc_source = "the model's relative uncertainty"
    nav, poses = plan_nav(args, source, unc_source is not None, unc_source)
    settings = {"bag": str(args.bag), "image_topic": source.image_topic, "depth_topic": source.depth_topic,
                "camera_info_topic": source.camera_info_topic,
                "depth_camera_info_topic": source.depth_camera_info_topic, "depth_scale": args.depth_scale,
                "max_time_diff": args.max_time_diff, "start": args.start, "stop": args.stop, **what}
    res = evaluate(source, predict, args.out, settings=settings, median_scaling=args.median_scaling,
                   eigen_crop=args.eigen_crop, min_depth=args.min_depth, max_depth=args.max_depth,
                   max_frames=args.max_frames, samples=args.samples, progress=not args.quiet,
                   skip_bad=args.skip_bad_frames, nav=nav, poses=poses)
    b = res["baseline_constant"]
    print(f"{res['frames']} frames: abs_rel {res['abs_rel']:.4f}  rmse {res['rmse']:.4f} m  "
          f"delta1 {res['delta1']:.4f}  (best constant {b.get('depth_m', float('nan')):.2f} m: abs_rel "
          f"{b.get('abs_rel', float('nan')):.4f}, delta1 {b.get('delta1', float('nan')):.4f})")
    if "costmap" in res:
        print(costmap_line(res["costmap"]))
        for note in res["costmap"].get("notes", []):
            print(f"costmap note: {note}")
    if res["bad_frames"]:
        print(f"skipped {res['bad_frames']} undecodable frames (see bad_frame_errors in metrics.json)")
    if res["missing_predictions"]:
        print(f"{res['missing_predictions']} frames had no prediction on {args.prediction_topic}")
    print(f"wrote {Path(args.out) / 'metrics.json'}")
    return 0


main = cli_entry(_main, prog="bag_eval")

if __name__ == "__main__":
    sys.exit(main())
