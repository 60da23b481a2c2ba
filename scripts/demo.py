"""Helpers for scripts/demo.sh: split a bag by time, and write the demo's report folder.

``python scripts/demo.py split --bag IN --first A --rest B --fraction 0.6 --image-topic T``
    copies every message of IN into A (before the image at ``fraction``) or B (from it on);
    latched topics (``/tf_static``) go into both. Training reads A, the node only ever sees B.
``python scripts/demo.py report --out DIR --eval DIR --recording BAG --replay-stats JSON ...``
    writes DIR/report.md and report.html (+ colourised depth, a PLY of one point cloud). With
    ``--supervision photometric --beside LABEL=DEMO_DIR`` it also puts that other demo's scores
    (DEMO_DIR/eval/metrics.json, DEMO_DIR/replay/recording) in one table beside this run's.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

import numpy as np

from moadepth_core.data.rosbag.source import BagSource, header_from_cdr
from moadepth_core.errors import DataError, cli_entry
from moadepth_core.evaluation import colorize, report
from moadepth_core.evaluation.metrics import METRIC_KEYS, scale_ratio
from moadepth_core.geometry.pointcloud import PackedCloud, unpack_points, unpack_rgb, write_ply

LATCHED = ("/tf_static",)


def split_bag(src: Path, first: Path, rest: Path, fraction: float, image_topic: str) -> tuple[int, int]:
    """Split ``src`` at the image with index round(fraction * n) (by header stamp); returns image counts."""
    from rosbags.highlevel import AnyReader
    from rosbags.rosbag2 import StoragePlugin, Writer
    from rosbags.typesys import Stores, get_typestore

    ts = get_typestore(Stores.ROS2_KILTED)
    with AnyReader([src], default_typestore=ts) as reader:
        img = [c for c in reader.connections if c.topic == image_topic]
        if not img:
            raise DataError(f"bag {src} has no topic {image_topic}")
        stamps = sorted(header_from_cdr(raw)[0] for _, _, raw in reader.messages(connections=img))
        cut = stamps[min(max(int(round(fraction * len(stamps))), 1), len(stamps) - 1)]
        writers, conns = {}, {}
        for name, path in (("first", first), ("rest", rest)):
            w = Writer(path, version=9, storage_plugin=StoragePlugin.MCAP)
            w.open()
            writers[name] = w
            for c in reader.connections:
                conns[name, c.topic] = w.add_connection(
                    c.topic, c.msgtype, typestore=ts,
                    offered_qos_profiles=list(getattr(c.ext, "offered_qos_profiles", ()) or ()))
        try:
            for c, log_ns, raw in reader.messages():
                if c.topic in LATCHED:
                    targets = ("first", "rest")
                else:
                    stamp = header_from_cdr(raw)[0] if c.msgtype.startswith("sensor_msgs/") else log_ns
                    targets = ("first",) if stamp < cut else ("rest",)
                for t in targets:
                    writers[t].write(conns[t, c.topic], log_ns, raw)
        finally:
            for w in writers.values():
                w.close()
    n_first = sum(s < cut for s in stamps)
    return n_first, len(stamps) - n_first


def _read_cloud(bag: Path, topic: str, stamp_ns: int) -> PackedCloud | None:
    from rosbags.highlevel import AnyReader
    from rosbags.typesys import Stores, get_typestore

    with AnyReader([bag], default_typestore=get_typestore(Stores.ROS2_KILTED)) as reader:
        conns = [c for c in reader.connections if c.topic == topic]
        for c, _, raw in reader.messages(connections=conns):
            if header_from_cdr(raw)[0] == stamp_ns:
                m = reader.deserialize(raw, c.msgtype)
                return PackedCloud(data=bytes(m.data), height=m.height, width=m.width, point_step=m.point_step,
                                   row_step=m.row_step, is_dense=m.is_dense,
                                   fields=[(f.name, f.offset, f.datatype, f.count) for f in m.fields])
    return None


def write_demo_report(args) -> Path:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    ev = Path(args.eval)
    metrics = json.loads((ev / "metrics.json").read_text())
    replay = json.loads(Path(args.replay_stats).read_text())
    train = json.loads(args.train_info) if args.train_info else {}
    rec = BagSource(args.recording, args.image_topic, args.depth_topic, extra_topics=[args.prediction_topic])
    # one frame in the middle of the test trajectory that the node answered
    answered = [i for i in range(len(rec)) if rec.extra(i, args.prediction_topic) is not None]
    if not answered:
        raise DataError(f"recording {args.recording} holds no prediction on {args.prediction_topic}")
    i = answered[len(answered) // 2]
    frame = rec[i]
    pred = rec.extra(i, args.prediction_topic, frame.hw)
    pred = np.where(pred > 0, pred, np.nan)
    vmin, vmax = colorize.depth_range(frame.depth, pred)
    colorize.save_png(out / "depth_prediction.png", colorize.colorize_depth(pred, vmin, vmax))
    colorize.save_png(out / "depth_ground_truth.png", colorize.colorize_depth(frame.depth, vmin, vmax))
    colorize.save_png(out / "image.png", frame.rgb)
    panel = report.sample_panel(frame.rgb, frame.depth, pred, height=240)
    colorize.save_png(out / "panel.png", panel)
    cloud = _read_cloud(Path(args.recording), args.points_topic, frame.stamp_ns)
    ply_line = "- no point cloud was recorded for this frame"
    if cloud is not None:
        xyz = unpack_points(cloud)
        rgb = unpack_rgb(cloud) if any(f[0] == "rgb" for f in cloud.fields) else None
        n = write_ply(out / "points.ply", xyz, rgb)
        ply_line = f"- [points.ply](points.ply): the node's `points` for the same frame ({n} points, binary PLY)"
    for name in ("metrics_over_time.png", "error_histogram.png"):
        shutil.copy(ev / name, out / name)
    nav_blocks = costmap_blocks(metrics, ev, out)

    photometric = args.supervision == "photometric"
    base = metrics.get("baseline_constant", {})
    table = report.metrics_table({
        ("depth_node (photometric fine-tuning, last.pt)" if photometric else "depth_node (fine-tuned)"):
            {k: _num(metrics.get(k)) for k in METRIC_KEYS},
        f"best constant depth ({_num(base.get('depth_m')):.2f} m)": {k: _num(base.get(k)) for k in METRIC_KEYS},
    })
    lat = replay["latency_ms"]
    honesty = (
        "**Read this first.** These figures come from a *synthetic* site (procedural rooms rendered by "
        "`moadepth synth`) and a CLIP backbone with **random initial weights** (no pretrained weights can be "
        "downloaded here), fine-tuned for a few minutes on a CPU. They show that the workflow runs end to end "
        "and what it measures; they are **not** a real-world accuracy claim. The best-constant-depth row "
        "(one depth, the median of the test ground truth, everywhere) is there for scale: a model that does "
        "not beat it has not learned the scene's geometry.")
    if photometric:
        honesty += (
            "\n\n**No depth in training.** This run fine-tuned with `--supervision photometric`: the loss saw "
            "the camera images, CameraInfo and the robot's /tf only (view synthesis), and the node runs the "
            "last weights (`last.pt`), not `best.pt`, which the validation depth would have chosen. The depth "
            "topic scored validation during training and scores the node here; it never entered the loss.")
    setup = "\n".join([
        f"- site: `moadepth synth --seed {args.seed}`, {args.frames} frames at {frame.hw[1]}x{frame.hw[0]}, "
        f"split by time: first {args.train_frames} frames for fine-tuning, last {args.test_frames} for the node",
        f"- fine-tuning: {train.get('what', 'n/a')}",
        f"- checkpoint: `{args.checkpoint}`",
        f"- node: `depth_node` with use_sim_time:=true {args.node_params}, driven by `bag_replay --rate {replay['rate']:g}` "
        f"(/clock from bag time), outputs recorded to `{args.recording}`",
        f"- scored: `bag_eval --prediction-topic {args.prediction_topic}` on that recording: the node's real "
        f"outputs against the exact synthetic depth ({metrics['frames']} frames, {metrics['valid_pixels']} pixels)",
    ])
    node_lines = "\n".join([
        f"- frames in {replay['frames_in']}, out {replay['frames_out']}, dropped {replay['dropped']} "
        f"(the node keeps only the newest frame while busy)",
        f"- end-to-end latency (publish -> depth received): p50 {_ms(lat['p50'])}, p95 {_ms(lat['p95'])}",
    ])
    files = "\n".join([
        "- [panel.png](panel.png): image | ground truth | prediction | absolute error (shared depth scale)",
        "- [depth_prediction.png](depth_prediction.png), [depth_ground_truth.png](depth_ground_truth.png), "
        "[image.png](image.png)",
        ply_line,
        f"- [metrics.json]({_rel(ev / 'metrics.json', out)}), [frames.csv]({_rel(ev / 'frames.csv', out)}), "
        f"sample panels in [{_rel(ev, out)}]({_rel(ev, out)})",
        f"- replay statistics: [{_rel(Path(args.replay_stats), out)}]({_rel(Path(args.replay_stats), out)})",
    ])
    blocks = [
        ("What this is", honesty),
        ("Set-up", setup),
        ("Depth accuracy on the unseen part of the site", table),
        *([("Without a depth sensor, beside the depth-supervised demo", beside_block(args, metrics))]
          if photometric else []),
        ("One frame", "![image | ground truth | prediction | error](panel.png)"),
        ("Over time", "![metrics over time](metrics_over_time.png)\n\n![error histogram](error_histogram.png)"),
        *nav_blocks,
        ("The node over DDS", node_lines),
        ("Files", files),
    ]
    title = "moadepth demo: fine-tune on your own site" + (" without a depth sensor" if photometric else "")
    md, _ = report.write_report(out, title, blocks)
    return md


def recording_scale_ratio(recording: str | Path, image_topic: str, depth_topic: str, prediction_topic: str,
                          min_depth: float = 1e-3, max_depth: float = 10.0) -> float:
    """The scale ratio (:func:`~moadepth_core.evaluation.metrics.scale_ratio`) of a recording's predictions."""
    rec = BagSource(recording, image_topic, depth_topic, extra_topics=[prediction_topic])

    def pairs():
        for i in range(len(rec)):
            frame = rec[i]
            pred = rec.extra(i, prediction_topic, frame.hw)
            if pred is not None:
                yield pred, frame.depth

    return scale_ratio(pairs(), min_depth=min_depth, max_depth=max_depth)


def _comparison_row(metrics: dict, recording: Path, args) -> dict:
    """AbsRel, delta1, RMSE, scale ratio and the costmap as the node ran (no uncertainty filter) of one demo."""
    c = metrics.get("costmap") or {}
    c = c.get("unfiltered") or c
    s = metrics.get("settings", {})
    ratio = recording_scale_ratio(recording, args.image_topic, args.depth_topic, args.prediction_topic,
                                  s.get("min_depth", 1e-3), s.get("max_depth", 10.0)) \
        if recording.exists() else None
    return {"abs_rel": metrics.get("abs_rel"), "delta1": metrics.get("delta1"), "rmse": metrics.get("rmse"),
            "scale_ratio": ratio if ratio is not None and np.isfinite(ratio) else None, "costmap_iou": c.get("iou"), "costmap_precision": c.get("precision"),
            "costmap_recall": c.get("recall")}


COMPARISON_COLUMNS = (("abs_rel", "AbsRel", 3), ("delta1", "δ1", 3), ("rmse", "RMSE (m)", 3),
                      ("scale_ratio", "scale ratio (median pred ÷ true)", 2), ("costmap_iou", "costmap IoU", 3),
                      ("costmap_precision", "costmap precision", 3), ("costmap_recall", "costmap recall", 3))


def beside_block(args, metrics: dict) -> str:
    """This (photometric) run and, when it ran, the depth-supervised demo (``--beside``) in one table."""
    label, _, other = (args.beside or "").partition("=")
    rows = {"photometric (images + /tf, no depth; last.pt)": _comparison_row(metrics, Path(args.recording), args)}
    other_eval = Path(other) / "eval" if other else None
    note = ""
    if other_eval is None or not (other_eval / "metrics.json").is_file():
        note = (f"- the depth-supervised row: run `make demo` (it writes {other or 'demo-output'}/), then this "
                "demo again, to see it here")
    elif other_eval.resolve() == Path(args.eval).resolve():
        note = f"- no other demo to compare with: {other_eval} is this run's own evaluation"
    else:
        rows[label or other] = _comparison_row(json.loads((other_eval / "metrics.json").read_text()),
                                               Path(other) / "replay" / "recording", args)
    lines = ["| | " + " | ".join(h for _, h, _ in COMPARISON_COLUMNS) + " |",
             "|---" * (len(COMPARISON_COLUMNS) + 1) + "|"]
    for name, r in rows.items():
        lines.append(f"| {name} | " + " | ".join(_f(r.get(k), d) for k, _, d in COMPARISON_COLUMNS) + " |")
    intro = ("The node's recorded depth on the same held-out frames (same seed and split), no median scaling; "
             "the costmap columns are per frame without the uncertainty filter (bag_eval's unfiltered row; "
             "the photometric run's node ran with it off). A scale ratio near 1 with no depth in training is the metric scale that "
             "the known camera motion teaches.")
    return intro + "\n\n" + "\n".join(lines) + ("\n\n" + note if note else "")


COSTMAP_COLUMNS = ("iou", "precision", "recall", "iou_within_1_cell", "phantom_cells_per_frame",
                   "missed_cells_per_frame")


def _f(v, digits: int = 3) -> str:
    return "undefined" if v is None else f"{v:.{digits}f}"


def costmap_blocks(metrics: dict, ev: Path, out: Path) -> list[tuple[str, str]]:
    """The report's costmap sections: a table per method, the picture, the sweep, map and temporal."""
    c = metrics.get("costmap")
    if not c:
        return [("What Nav2 would see", "- not evaluated: the recording has no /tf")]
    for name in c.get("files", {}).values():
        shutil.copy(ev / name, out / name)
    default = c.get("max_uncertainty")
    methods = {}
    if c.get("unfiltered"):
        methods[f"depth_node, max_uncertainty {default:g} (its default)"] = c
        methods["depth_node without the uncertainty filter"] = c["unfiltered"]
    else:
        methods["depth_node (no uncertainty recorded: unfiltered)"] = c
    base = c.get("baseline_constant")
    if base:
        methods[f"best constant depth ({base['depth_m']:.2f} m)"] = base
    cols = [*COSTMAP_COLUMNS, "accumulated iou", "accumulated precision", "accumulated recall"]
    lines = ["| | " + " | ".join(cols) + " |", "|---" * (len(cols) + 1) + "|"]
    for label, m in methods.items():
        acc = m.get("accumulated", {})
        vals = [_f(m.get(k), 1 if k.endswith("per_frame") else 3) for k in COSTMAP_COLUMNS]
        vals += [_f(acc.get(k)) for k in ("iou", "precision", "recall")]
        lines.append(f"| {label} | " + " | ".join(vals) + " |")
    intro = (f"The node's depth and the exact depth both go through the Nav2 layer of `{c['config']}`, in the "
             f"fixed frame `{c['fixed_frame']}` (the robot's /tf). Per frame: each frame marks an empty layer, "
             "averaged over frames; accumulated: the layer over the whole run, marking and clearing. "
             "Precision falls with phantom obstacles, recall with missed ones; `_within_1_cell` forgives a 5 cm "
             "shift.")
    blocks = [("What Nav2 would see: the costmap", intro + "\n\n" + "\n".join(lines))]
    pics = ["![reference | node | difference, the camera's path in green](costmap.png)"]
    if "costmap_unfiltered" in c.get("files", {}):
        pics.append("![the same without the uncertainty filter](costmap_unfiltered.png)")
    blocks.append(("The accumulated costmap (red: phantom, blue: missed)", "\n\n".join(pics)))
    sweep = metrics.get("uncertainty_sweep")
    if sweep:
        rows = ["| max_uncertainty | precision | recall | iou | phantom cells/frame | missed cells/frame |",
                "|---|---|---|---|---|---|"]
        for r in sweep:
            t = r["max_uncertainty"]
            rows.append(f"| {'off' if t >= 1000 else f'{t:g}'}{' (default)' if default == t else ''} | "
                        f"{_f(r['precision'])} | {_f(r['recall'])} | {_f(r['iou'])} | "
                        f"{_f(r['phantom_cells_per_frame'], 1)} | {_f(r['missed_cells_per_frame'], 1)} |")
        blocks.append(("The confidence filter: max_uncertainty sweep",
                       "![precision against recall per max_uncertainty](uncertainty_sweep.png)\n\n" + "\n".join(rows)))
    mp, tp = metrics.get("map", {}), metrics.get("temporal", {})
    blocks.append(("Map and temporal consistency", "\n".join([
        f"- 3-D map ({mp.get('voxel_m', 0.05):g} m voxels within {mp.get('max_range_m', 0):g} m, accumulated "
        f"over the run): IoU {_f(mp.get('iou'))}, accuracy (node voxel -> nearest reference voxel) median "
        f"{_f(mp.get('accuracy_median_m'))} m, completeness (the other way) median "
        f"{_f(mp.get('completeness_median_m'))} m",
        f"- consecutive frames warped with the poses: median relative disagreement {_f(tp.get('prediction_median_rel'))} "
        f"for the node, {_f(tp.get('reference_median_rel'))} for the exact depth (the floor set by occlusions)",
    ])))
    return blocks


def _num(v) -> float:
    return float("nan") if v is None else float(v)


def _ms(v) -> str:
    return "n/a" if v is None else f"{v:.0f} ms"


def _rel(p: Path, start: Path) -> str:
    import os

    return os.path.relpath(p, start)


def _main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="demo.py")
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("split")
    s.add_argument("--bag", required=True)
    s.add_argument("--first", required=True)
    s.add_argument("--rest", required=True)
    s.add_argument("--fraction", type=float, default=0.6)
    s.add_argument("--image-topic", required=True)
    r = sub.add_parser("report")
    for name in ("out", "eval", "recording", "replay-stats", "image-topic", "depth-topic", "checkpoint"):
        r.add_argument(f"--{name}", required=True)
    r.add_argument("--prediction-topic", default="/depth/image")
    r.add_argument("--points-topic", default="/points")
    r.add_argument("--train-info", help="JSON: {'what': '...'}")
    r.add_argument("--node-params", default="", help="the node's non-default parameters, for the record")
    r.add_argument("--supervision", choices=("depth", "photometric"), default="depth",
                   help="what trained the checkpoint (photometric: no depth in the loss)")
    r.add_argument("--beside", metavar="LABEL=DEMO_DIR",
                   help="with --supervision photometric: another demo's output folder to show beside this run")
    for name in ("seed", "frames", "train-frames", "test-frames"):
        r.add_argument(f"--{name}", type=int, default=0)
    args = p.parse_args(argv)
    if args.cmd == "split":
        a, b = split_bag(Path(args.bag), Path(args.first), Path(args.rest), args.fraction, args.image_topic)
        print(f"split {args.bag}: {a} frames -> {args.first}, {b} frames -> {args.rest}")
    else:
        print(f"report: {write_demo_report(args)}")
    return 0


main = cli_entry(_main, prog="demo.py")

if __name__ == "__main__":
    sys.exit(main())
