"""`moadepth evaluate`: the NYU protocol (docs/PAPER.md) on any RGB-D source, as metrics, a JSON
summary, per-image rows and a grid of samples."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from moadepth_core.cli._args import add_model_args, add_runtime_args, make_estimator
from moadepth_core.errors import DataError, cli_entry
from moadepth_core.evaluation import colorize
from moadepth_core.evaluation.evaluate import (
    NYU_FORMATS,
    evaluate_source,
    open_eval_source,
    sample_grid,
    write_rows_csv,
)
from moadepth_core.evaluation.metrics import METRIC_KEYS
from moadepth_core.files import write_atomic


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="moadepth evaluate", description=__doc__.split("\n\n")[0])
    add_model_args(p)
    add_runtime_args(p)
    p.add_argument("--data", required=True, help="NYU .mat, NYU file list, folder, or rosbag2")
    p.add_argument("--split", default="test", help="NYU .mat split: train | test | all (default test)")
    p.add_argument("--json", help="write the summary here")
    p.add_argument("--out", help="folder for per_image.csv and samples.png")
    p.add_argument("--eigen-crop", action=argparse.BooleanOptionalAction, default=None,
                   help="Eigen crop (default: on for NYU data, off otherwise)")
    p.add_argument("--flip-tta", action="store_true", help="average with the horizontally flipped prediction")
    p.add_argument("--median-scaling", action="store_true",
                   help="scale each prediction by median(gt)/median(pred): relative, not metric, evaluation")
    p.add_argument("--max-images", type=int, default=None, help="evaluate at most N images, evenly spread")
    p.add_argument("--samples", type=int, default=4, help="rows in the samples.png grid")
    p.add_argument("--depth-scale", type=float, default=None, help="16-bit depth units per metre (folders)")
    p.add_argument("--image-topic", help="rosbag2: colour image topic")
    p.add_argument("--depth-topic", help="rosbag2: depth image topic")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


def _main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.max_images is not None and args.max_images < 1:
        raise DataError(f"--max-images must be at least 1, got {args.max_images}")
    from moadepth_core.data import detect_format

    fmt = detect_format(args.data)
    options = {}
    if args.depth_scale is not None and fmt in ("folder", "tum"):
        options["depth_scale"] = args.depth_scale
    if fmt == "bag":
        options.update({k: v for k, v in (("image_topic", args.image_topic), ("depth_topic", args.depth_topic))
                        if v})
    source, fmt = open_eval_source(args.data, split=args.split, **options)
    if len(source) == 0:
        raise DataError(f"{args.data} holds no frames to evaluate")
    eigen = fmt in NYU_FORMATS if args.eigen_crop is None else args.eigen_crop
    est = make_estimator(args.checkpoint, args.allow_untrained, args.device, args.pretrained,
                         backend=args.backend, precision=args.precision)
    summary, rows, samples = evaluate_source(
        est, source, eigen_crop=eigen, median_scaling=args.median_scaling, flip_tta=args.flip_tta,
        max_images=args.max_images, keep_samples=args.samples if args.out else 0, progress=not args.quiet)
    summary = {**summary, "checkpoint": args.checkpoint, "untrained": est.untrained, "data": str(args.data),
               "split": args.split if fmt == "nyu_mat" else None, "eigen_crop": eigen,
               "flip_tta": args.flip_tta, "median_scaling": args.median_scaling, "backend": est.backend,
               "precision": est.precision}
    if args.out:
        out = Path(args.out)
        write_rows_csv(out / "per_image.csv", rows)
        if samples:
            colorize.save_png(out / "samples.png", sample_grid(samples, est.model.cfg.max_depth))
    if args.json:
        write_atomic(Path(args.json), json.dumps(summary, indent=2) + "\n")
    print(f"{summary['images']} images, {summary['valid_pixels']} valid pixels"
          f"{' (Eigen crop)' if eigen else ''}{' (flip TTA)' if args.flip_tta else ''}"
          f"{' (median scaled: relative metrics)' if args.median_scaling else ''}")
    print("  ".join(f"{k} {summary[k]:.4f}" for k in METRIC_KEYS))
    return 0


main = cli_entry(_main, prog="moadepth evaluate")

if __name__ == "__main__":
    sys.exit(main())
