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
also ``uncertainty_sweep``): the work is :mod:`moadepth_core.evaluation.nav_eval`; this file
only decides whether it runs and feeds it frames.
No rclpy import: it runs wherever ``moadepth_core`` does (the node's ``max_uncertainty`` default is
read from its parameter table, which needs the ROS message packages, only when it is used).
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from moadepth_core import geometry
from moadepth_core.data.frames import RGBDFrame
from moadepth_core.data.rosbag.source import DEFAULT_MAX_TIME_DIFF, BagSource
from moadepth_core.errors import DataError, cli_entry
from moadepth_core.evaluation import colorize, nav_eval, report
from moadepth_core.evaluation.metrics import METRIC_KEYS, aggregate, compute_metrics
from moadepth_core.geometry.camera import PinholeCamera

BASELINE_STRIDE = 4  # the constant baseline is scored on every 4th pixel in both directions

# A predictor returns the depth, or (depth, relative uncertainty or None), or None (no prediction).
Predictor = Callable[[int, RGBDFrame], "np.ndarray | tuple[np.ndarray, np.ndarray | None] | None"]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="bag_eval", description=__doc__.split("\n\n")[0])
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


def node_default(name: str) -> float:
    """depth_node's default for parameter ``name``: read from its parameter table, never copied."""
    try:
        from moadepth_ros.node.parameters import BY_NAME
    except ImportError as exc:
        raise DataError(f"cannot read depth_node's default {name} without the ROS message packages ({exc}); "
                        f"pass --{name.replace('_', '-')}") from None
    return float(BY_NAME[name].default)


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
    baseline = _constant_baseline(gt_sub, kw)
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
        result.update(_nav_results(nav, baseline, out))
    (out / "metrics.json").write_text(json.dumps(_jsonable(result), indent=2) + "\n")
    with open(out / "frames.csv", "w", newline="") as f:
        cols = ["index", "name", "stamp_ns", "time_s", *METRIC_KEYS, "valid_pixels",
                *(nav_eval.FRAME_COLUMNS if nav is not None else ())]
        w = csv.DictWriter(f, fieldnames=cols, extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)
    report.plot_metrics_over_time(rows, out / "metrics_over_time.png")
    report.plot_error_histogram(hist, out / "error_histogram.png")
    return result


def _nav_results(nav: nav_eval.NavEvaluation, baseline: dict, out: Path) -> dict:
    """The nav_eval summary, and its pictures written into ``out``."""
    res = nav.summary(constant_depth_m=baseline.get("depth_m"))
    g = nav.grids()
    files = {"costmap": "costmap.png"}
    report.plot_costmap(g["reference"], g["node"], g["grid"].origin, g["grid"].resolution, out / "costmap.png",
                        trajectory=g["trajectory"],
                        title=f"accumulated costmap (marking and clearing) in {nav.fixed_frame}")
    if "unfiltered" in g:
        report.plot_costmap(g["reference"], g["unfiltered"], g["grid"].origin, g["grid"].resolution,
                            out / "costmap_unfiltered.png", trajectory=g["trajectory"],
                            labels=("reference", "node without the uncertainty filter"))
        files["costmap_unfiltered"] = "costmap_unfiltered.png"
    if "uncertainty_sweep" in res:
        report.plot_uncertainty_sweep(res["uncertainty_sweep"], out / "uncertainty_sweep.png",
                                      default=res["costmap"]["max_uncertainty"])
        files["uncertainty_sweep"] = "uncertainty_sweep.png"
    res["costmap"]["files"] = files
    return res


def _constant_baseline(gt_sub: list[np.ndarray], kw: dict) -> dict:
    """Metrics of predicting one depth everywhere: the median of all ground truth (an oracle constant).

    A model that does not beat this has learned nothing about the scene's geometry.
    """
    vals = [g[(g > kw["min_depth"]) & (g < kw["max_depth"])] for g in gt_sub]
    vals = [v for v in vals if v.size]
    if not vals:
        return {"depth_m": float("nan")}
    c = float(np.median(np.concatenate(vals)))
    per = [compute_metrics(np.full_like(g, c), g, **kw) for g in gt_sub]
    agg = aggregate(per)
    return {"depth_m": c, **{k: agg[k] for k in METRIC_KEYS}, "pixel_stride": BASELINE_STRIDE}


def _jsonable(obj):
    if isinstance(obj, dict):
        return {k: _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, np.generic):
        return _jsonable(obj.item())
    return obj


def _sweep_values(text: str | None) -> list[float]:
    if text is None:
        return []
    if text == "default":
        return list(nav_eval.DEFAULT_SWEEP)
    try:
        vals = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise DataError(f"--uncertainty-sweep {text!r} is not a comma-separated list of numbers") from None
    if not vals or any(not (math.isfinite(v) and v >= 0) for v in vals):
        raise DataError(f"--uncertainty-sweep {text!r} needs non-negative numbers (use "
                        f"{nav_eval.FILTER_OFF:g} for the filter off)")
    return vals


def _plan_nav(args, source: BagSource, has_uncertainty: bool, uncertainty_source: str | None
              ) -> tuple[nav_eval.NavEvaluation | None, list | None]:
    """The costmap evaluation to run, or (None, None) after printing the one line that says why not.

    With ``--costmap`` (or ``--uncertainty-sweep``) every reason not to run is an error instead.
    """
    from moadepth_core.data.rosbag.tf_buffer import read_bag_tf
    from moadepth_core.errors import MoadepthError
    from moadepth_core.evaluation.nav2_params import find_costmap_config, load_costmap_params

    asked = args.costmap or args.uncertainty_sweep is not None
    n = len(source) if args.max_frames is None else min(len(source), max(int(args.max_frames), 0))
    try:
        tf = read_bag_tf(args.bag)
        poses = nav_eval.frame_poses(tf, args.fixed_frame,
                                     [(source.stamp_ns(i), source.frame_id(i)) for i in range(n)])
        why = nav_eval.check_poses(poses, tf, args.fixed_frame)
        if why is None:
            params = load_costmap_params(find_costmap_config(args.costmap_config))
    except MoadepthError as exc:
        if asked or args.costmap_config:
            raise
        why = str(exc)
    if why is not None:
        why = why.rstrip(".")
        if asked:
            raise DataError(f"cannot compute the costmap: {why}")
        print(f"costmap, map and temporal evaluation skipped: {why} (pass --costmap to make this an error)",
              file=sys.stderr)
        return None, None
    sweep = _sweep_values(args.uncertainty_sweep)
    if args.max_uncertainty is not None:
        max_unc = args.max_uncertainty
    else:
        max_unc = node_default("max_uncertainty") if has_uncertainty else math.inf
    if (sweep or args.max_uncertainty is not None) and not has_uncertainty:
        raise DataError(f"{'--uncertainty-sweep' if sweep else '--max-uncertainty'} needs the prediction's "
                        f"uncertainty: record the node's depth/confidence next to {args.prediction_topic} "
                        "(or pass --confidence-topic)")
    nav = nav_eval.NavEvaluation(params, poses, args.fixed_frame, stride=args.costmap_stride,
                                 max_uncertainty=max_unc, sweep=sweep, uncertainty_source=uncertainty_source,
                                 reference=f"{source.depth_topic} (registered into the image camera)")
    print(f"costmap: {params.describe()}; fixed frame {args.fixed_frame}", file=sys.stderr)
    return nav, poses


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
    nav, poses = _plan_nav(args, source, unc_source is not None, unc_source)
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
        print(_costmap_line(res["costmap"]))
        for note in res["costmap"].get("notes", []):
            print(f"costmap note: {note}")
    if res["bad_frames"]:
        print(f"skipped {res['bad_frames']} undecodable frames (see bad_frame_errors in metrics.json)")
    if res["missing_predictions"]:
        print(f"{res['missing_predictions']} frames had no prediction on {args.prediction_topic}")
    print(f"wrote {Path(args.out) / 'metrics.json'}")
    return 0


def _costmap_line(c: dict) -> str:
    def f(v) -> str:
        return "undefined" if v is None else f"{v:.3f}"

    acc = c.get("accumulated", {})
    filt = "no filter" if c.get("max_uncertainty") is None else f"max_uncertainty {c['max_uncertainty']:g}"
    return (f"costmap per frame ({filt}): iou {f(c['iou'])}  precision {f(c['precision'])}  recall "
            f"{f(c['recall'])}  phantom {f(c['phantom_cells_per_frame'])}  missed {f(c['missed_cells_per_frame'])} "
            f"cells/frame; accumulated: iou {f(acc.get('iou'))}  precision {f(acc.get('precision'))}  recall "
            f"{f(acc.get('recall'))}")


main = cli_entry(_main, prog="bag_eval")

if __name__ == "__main__":
    sys.exit(main())
