"""`moadepth evaluate`: the NYU protocol (docs/PAPER.md) on any RGB-D source, plus the one predict-a-frame path.

:func:`predict_depth` is shared by ``predict``, ``evaluate`` and the trainer's validation, so
the depth a user sees, the depth that is scored and the depth that picks ``best.pt`` come from
the same code. The prediction is upsampled to the ground truth's full resolution before
scoring, as the protocol requires (scoring at network resolution flatters coarse models).
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from moadepth_core.errors import DataError, cli_entry
from moadepth_core.evaluation import colorize
from moadepth_core.evaluation.metrics import METRIC_KEYS, aggregate, compute_metrics
from moadepth_core.files import write_atomic
from moadepth_core.runtime.torch.estimator import DepthEstimator

log = logging.getLogger("moadepth")

NYU_FORMATS = ("nyu_mat", "file_list")


def predict_depth(est: DepthEstimator, rgb: np.ndarray, flip_tta: bool = False) -> np.ndarray:
    """HxW float32 metres at ``rgb``'s size; ``flip_tta`` averages with the mirrored image's prediction."""
    return est.predict_flip_averaged(rgb) if flip_tta else est.predict(rgb).depth


def spread_indices(n: int, k: int | None) -> list[int]:
    """``k`` indices spread evenly over ``range(n)`` (all when k is None or >= n)."""
    if k is None or k >= n:
        return list(range(n))
    return sorted({int(round(v)) for v in np.linspace(0, n - 1, max(k, 1))})


def evaluate_source(est: DepthEstimator, source, *, eigen_crop: bool = False, median_scaling: bool = False,
                    flip_tta: bool = False, max_images: int | None = None, keep_samples: int = 0,
                    progress: bool = True, max_depth: float | None = None,
                    ) -> tuple[dict, list[dict], list[tuple]]:
    """Score ``est`` on ``source``; returns (summary, per-image rows, kept (name, rgb, gt, pred) samples)."""
    max_depth = float(max_depth if max_depth is not None else est.model.cfg.max_depth)
    indices = spread_indices(len(source), max_images)
    keep = set(spread_indices(len(indices), keep_samples)) if keep_samples else set()
    rows, samples = [], []
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(indices), unit="img", desc="evaluate", file=sys.stderr, leave=False)
    try:
        for j, i in enumerate(indices):
            frame = source[i]
            pred = predict_depth(est, frame.rgb, flip_tta)
            m = compute_metrics(pred, frame.depth, max_depth=max_depth, eigen_crop=eigen_crop,
                                median_scaling=median_scaling)
            rows.append({"name": frame.name, **m})
            if j in keep:
                samples.append((frame.name, frame.rgb, frame.depth, pred))
            if bar is not None:
                bar.update(1)
                if rows[-1]["valid_pixels"]:
                    bar.set_postfix(abs_rel=f"{m['abs_rel']:.3f}")
    finally:
        if bar is not None:
            bar.close()
    return aggregate(rows), rows, samples


def sample_grid(samples: list[tuple], max_depth: float = 10.0) -> np.ndarray:
    """Rows of image | ground truth | prediction | |error|; one depth and one error scale for all rows."""
    if not samples:
        raise DataError("no samples to draw")
    vmin, vmax = colorize.depth_range(*[s[2] for s in samples], *[s[3] for s in samples])
    errs = [np.where(s[2] > 0, np.abs(s[3] - s[2]), np.nan) for s in samples]
    finite = np.concatenate([e[np.isfinite(e)] for e in errs]) if errs else np.zeros(1)
    emax = float(np.percentile(finite, 99)) if finite.size else 1.0
    rows = []
    for (name, rgb, gt, pred), err in zip(samples, errs, strict=True):
        rows.append(colorize.panel(
            [rgb, colorize.colorize_depth(gt, vmin, vmax), colorize.colorize_depth(pred, vmin, vmax),
             colorize.colorize_error(err, max(emax, 1e-3))],
            [f"{name}", f"gt {vmin:.1f}-{vmax:.1f} m", "prediction", f"|err| 0-{emax:.2f} m"], height=240))
    width = max(r.shape[1] for r in rows)
    padded = [np.pad(r, ((0, 4), (0, width - r.shape[1]), (0, 0)), constant_values=255) for r in rows]
    return np.concatenate(padded, axis=0)


def write_rows_csv(path: Path, rows: list[dict]) -> None:
    """Per-image metrics as CSV, written atomically."""
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=["name", *METRIC_KEYS, "valid_pixels"])
    w.writeheader()
    for r in rows:
        w.writerow({k: r.get(k) for k in w.fieldnames})
    write_atomic(path, buf.getvalue())


def open_eval_source(data: str, split: str | None = None, **options):
    """Open a dataset for evaluation; returns (source, format name)."""
    from moadepth_core.data import detect_format, open_source

    fmt = detect_format(data)
    return open_source(data, split=split, **options), fmt


def make_estimator(checkpoint: str | None, allow_untrained: bool, device: str = "auto",
                   pretrained: str | None = None, image_size: Sequence[int] | None = None, *,
                   backend: str = "torch", precision: str = "fp32") -> DepthEstimator:
    """The estimator every CLI uses; no checkpoint is refused unless ``allow_untrained`` (then loudly warned)."""
    from moadepth_core.config import ModelConfig

    cfg = ModelConfig(pretrained="none")
    if image_size:
        cfg.image_size = [int(v) for v in image_size]
    if checkpoint is None and not allow_untrained:
        from moadepth_core.errors import UntrainedError

        raise UntrainedError("no --checkpoint given: an untrained network's depth is meaningless; pass "
                             "--checkpoint CKPT, or --allow-untrained to run it anyway")
    return DepthEstimator(checkpoint, allow_untrained=allow_untrained, device=device, model_config=cfg,
                          pretrained=pretrained, backend=backend, precision=precision)


def add_model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--checkpoint", help="trained checkpoint (.pt)")
    p.add_argument("--allow-untrained", action="store_true",
                   help="run a randomly initialised network when no checkpoint is given (meaningless depth)")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    p.add_argument("--pretrained", default=None,
                   help="where the frozen CLIP weights are now (hub tag or file), if they moved since training")


def add_runtime_args(p: argparse.ArgumentParser) -> None:
    """How the network runs: the node's backends and precisions, so their accuracy can be checked offline."""
    from moadepth_core.runtime.torch.backends import BACKENDS

    p.add_argument("--backend", default="torch", choices=("auto", *BACKENDS),
                   help="inference runtime (default torch; auto: what depth_node picks); see docs/PERFORMANCE.md")
    p.add_argument("--precision", default="fp32", choices=("auto", "fp32", "bf16", "fp16", "int8"),
                   help="default fp32; int8 runs on onnxruntime (--backend onnxruntime or auto): score it "
                        "here before deploying it")


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
