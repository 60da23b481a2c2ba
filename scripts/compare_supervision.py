"""The supervision comparison table of docs/TRAINING.md ("Without a depth sensor"): one row per model on
the same held-out frames, no median scaling.

    python scripts/compare_supervision.py --bag TEST_BAG [--run NAME=CHECKPOINT ...] [--untrained-config CFG]
        [--md OUT.md] [--json OUT.json]

Rows: ``untrained`` (the network the runs start from: ``--untrained-config`` with its seed), ``best
constant`` (the one depth minimising mean per-image AbsRel on these frames, found by search: an oracle
that knows the test depth), then each ``--run``. Columns: AbsRel, delta1, RMSE (moadepth's evaluation)
and the scale ratio, the median over valid pixels of predicted / true depth (1 = metric scale).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from moadepth_core.data.rosbag.source import BagSource
from moadepth_core.errors import cli_entry
from moadepth_core.evaluation.evaluate import evaluate_source, predict_depth


def constant_row(frames) -> dict:
    gts = [f.depth[f.depth > 1e-3] for f in frames]
    grid = np.exp(np.linspace(np.log(0.2), np.log(10.0), 400))
    absrel = np.array([np.mean([np.mean(np.abs(c - g) / g) for g in gts]) for c in grid])
    c = float(grid[absrel.argmin()])
    d1 = np.mean([np.mean(np.maximum(c / g, g / c) < 1.25) for g in gts])
    rmse = np.mean([np.sqrt(np.mean((c - g) ** 2)) for g in gts])
    ratio = float(np.median(np.concatenate([c / g for g in gts])))
    return {"abs_rel": float(absrel.min()), "delta1": float(d1), "rmse": float(rmse), "scale_ratio": ratio,
            "note": f"{c:.2f} m everywhere"}


def model_row(est, source) -> dict:
    m, _, _ = evaluate_source(est, source, progress=False)
    ratios = []
    for f in source:
        pred = predict_depth(est, f.rgb, False)
        v = f.depth > 1e-3
        ratios.append(pred[v] / f.depth[v])
    return {"abs_rel": m["abs_rel"], "delta1": m["delta1"], "rmse": m["rmse"],
            "scale_ratio": float(np.median(np.concatenate(ratios)))}


def _main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="compare_supervision", description=__doc__.split("\n\n")[0])
    p.add_argument("--bag", required=True, help="held-out bag with depth (scores only)")
    p.add_argument("--image-topic", default="/camera/color/image_raw")
    p.add_argument("--depth-topic", default="/camera/depth/image_raw")
    p.add_argument("--run", action="append", default=[], metavar="NAME=CKPT")
    p.add_argument("--untrained-config", help="training config of the runs: adds the untrained row")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="overrides for that config")
    p.add_argument("--md"), p.add_argument("--json")
    args = p.parse_args(argv)
    from moadepth_core.runtime.torch.estimator import DepthEstimator

    src = BagSource(args.bag, image_topic=args.image_topic, depth_topic=args.depth_topic)
    frames = list(src)
    rows: dict[str, dict] = {}
    if args.untrained_config:
        import yaml

        from moadepth_core.config import apply_overrides, load_yaml
        from moadepth_core.model.network import build_model
        from moadepth_core.training.rng_state import seed_everything

        cfg = load_yaml(args.untrained_config)
        cfg = apply_overrides(cfg, {k: yaml.safe_load(v) for k, v in (s.split("=", 1) for s in args.set)})
        seed_everything(cfg.seed)  # the same initial network every run starts from
        rows["untrained"] = model_row(DepthEstimator(None, model=build_model(cfg.model), device="cpu"), src)
    rows["best constant"] = constant_row(frames)
    for item in args.run:
        name, ckpt = item.split("=", 1)
        rows[name] = model_row(DepthEstimator(ckpt, device="cpu"), src)
    lines = [f"{len(frames)} held-out frames of {args.bag}, no median scaling", "",
             "| row | AbsRel | δ1 | RMSE (m) | scale ratio |", "| --- | --- | --- | --- | --- |"]
    for name, r in rows.items():
        note = f" ({r['note']})" if "note" in r else ""
        lines.append(f"| {name}{note} | {r['abs_rel']:.3f} | {r['delta1']:.3f} | {r['rmse']:.3f} | "
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
