"""The supervision comparison table of docs/TRAINING.md ("Without a depth sensor"): one row per model on
the same held-out frames, no median scaling.

    python scripts/compare_supervision.py --bag TEST_BAG [--run NAME=CHECKPOINT ...] [--untrained-config CFG]
        [--eval-dir DIR] [--md OUT.md] [--json OUT.json]

Rows: ``untrained`` (the network the runs start from: ``--untrained-config`` with its seed, saved as a
checkpoint), ``best constant`` (the one depth minimising mean per-image AbsRel on these frames, found by
search: an oracle that knows the test depth), then each ``--run``. Every row is scored by ``bag_eval``'s
own loop (:func:`moadepth_ros.tools.bag_eval.evaluate`, its costmap planned by ``bag_eval --costmap``
on the bag's /tf, no uncertainty filter, as the demo's node runs): AbsRel, delta1, RMSE, costmap IoU
(per frame, Nav2's layer on the prediction against the same layer on the exact depth) and the scale
ratio (:func:`moadepth_core.evaluation.metrics.scale_ratio`, 1 = metric scale). ``--eval-dir`` keeps
each row's bag_eval output (metrics.json, costmap.png, ...) in DIR/<row>.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import tempfile
from pathlib import Path

import numpy as np

from moadepth_core.data.rosbag.source import BagSource
from moadepth_core.errors import cli_entry
from moadepth_core.evaluation.metrics import scale_ratio


def best_constant(frames) -> float:
    """The depth that, predicted everywhere, minimises mean per-image AbsRel on ``frames`` (log-grid search)."""
    gts = [f.depth[f.depth > 1e-3] for f in frames]
    grid = np.exp(np.linspace(np.log(0.2), np.log(10.0), 400))
    absrel = np.array([np.mean([np.mean(np.abs(c - g) / g) for g in gts]) for c in grid])
    return float(grid[absrel.argmin()])


def score(source: BagSource, predict, out: Path, what: dict) -> dict:
    """One row: bag_eval's evaluation of ``predict`` with its costmap (``bag_eval --costmap``, no filter)."""
    from moadepth_ros.tools import bag_eval
    from moadepth_ros.tools.bag_eval_costmap import plan_nav

    args = bag_eval.build_parser().parse_args([
        "--bag", str(source.path), "--image-topic", source.image_topic, "--depth-topic", source.depth_topic,
        "--out", str(out), "--costmap", "--allow-untrained"])
    nav, poses = plan_nav(args, source, False, None)
    pairs = []

    def keep(i, frame):  # the same prediction feeds the metrics, the costmap and the scale ratio
        pred = predict(i, frame)
        pairs.append(((pred[0] if isinstance(pred, tuple) else pred), frame.depth))
        return pred

    res = bag_eval.evaluate(source, keep, out, settings={**what, "bag": str(source.path)},
                            min_depth=args.min_depth, max_depth=args.max_depth, samples=0, progress=False,
                            nav=nav, poses=poses)
    c = res["costmap"]
    return {"abs_rel": res["abs_rel"], "delta1": res["delta1"], "rmse": res["rmse"], "costmap_iou": c["iou"],
            "costmap_precision": c["precision"], "costmap_recall": c["recall"],
            "scale_ratio": scale_ratio(pairs, min_depth=args.min_depth, max_depth=args.max_depth)}


def _main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="compare_supervision", description=__doc__.split("\n\n")[0])
    p.add_argument("--bag", required=True, help="held-out bag with depth and /tf (scores only)")
    p.add_argument("--image-topic", default="/camera/color/image_raw")
    p.add_argument("--depth-topic", default="/camera/depth/image_raw")
    p.add_argument("--run", action="append", default=[], metavar="NAME=CKPT")
    p.add_argument("--untrained-config", help="training config of the runs: adds the untrained row")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="overrides for that config")
    p.add_argument("--eval-dir", help="keep each row's bag_eval output in DIR/<row> (default: a temporary folder)")
    p.add_argument("--md"), p.add_argument("--json")
    args = p.parse_args(argv)
    from moadepth_ros.tools.bag_eval import network_predictor

    src = BagSource(args.bag, image_topic=args.image_topic, depth_topic=args.depth_topic)
    rows: dict[str, dict] = {}
    with tempfile.TemporaryDirectory(prefix="compare_supervision_") as tmp:
        eval_dir = Path(args.eval_dir or tmp)

        def out(name: str) -> Path:
            return eval_dir / re.sub(r"[^A-Za-z0-9_.-]+", "_", name)

        if args.untrained_config:
            import yaml

            from moadepth_core.config import apply_overrides, load_yaml
            from moadepth_core.model.checkpoint import save_checkpoint
            from moadepth_core.model.network import build_model
            from moadepth_core.training.rng_state import seed_everything

            cfg = load_yaml(args.untrained_config)
            cfg = apply_overrides(cfg, {k: yaml.safe_load(v) for k, v in (s.split("=", 1) for s in args.set)})
            seed_everything(cfg.seed)  # the same initial network every run starts from
            ckpt = Path(tmp) / "untrained.pt"
            save_checkpoint(ckpt, build_model(cfg.model))
            predict, what = network_predictor(str(ckpt), False, "cpu")
            rows["untrained"] = score(src, predict, out("untrained"), what)
        c = best_constant(list(src))
        rows["best constant"] = {**score(src, lambda _, f: np.full(f.hw, c, np.float32), out("best constant"),
                                         {"constant_depth_m": c}), "note": f"{c:.2f} m everywhere"}
        for item in args.run:
            name, ckpt = item.split("=", 1)
            predict, what = network_predictor(ckpt, False, "cpu")
            rows[name] = score(src, predict, out(name), what)
    lines = [f"{len(src)} held-out frames of {args.bag}, no median scaling; costmap IoU per frame, Nav2's layer "
             "(bag_eval --costmap, no uncertainty filter)", "",
             "| row | AbsRel | δ1 | RMSE (m) | costmap IoU | scale ratio |", "| --- | --- | --- | --- | --- | --- |"]
    for name, r in rows.items():
        note = f" ({r['note']})" if "note" in r else ""
        iou = "undefined" if r["costmap_iou"] is None else f"{r['costmap_iou']:.3f}"
        lines.append(f"| {name}{note} | {r['abs_rel']:.3f} | {r['delta1']:.3f} | {r['rmse']:.3f} | {iou} | "
                     f"{r['scale_ratio']:.2f} |")
    text = "\n".join(lines) + "\n"
    print(text)
    if args.md:
        Path(args.md).write_text(text)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2) + "\n")
    return 0


main = cli_entry(_main, prog="compare_supervision")

if __name__ == "__main__":
    sys.exit(main())
