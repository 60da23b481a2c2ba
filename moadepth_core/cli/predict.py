"""`moadepth predict`: depth for image files, as ``NAME.npy`` (float32 metres at the input size) and ``NAME.png``.

Uses :func:`moadepth_core.evaluation.evaluate.predict_depth`, the same path evaluation scores, so what a
user inspects is exactly what was measured.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from moadepth_core.cli._args import add_model_args, add_runtime_args, make_estimator
from moadepth_core.data import read_rgb
from moadepth_core.errors import DataError, cli_entry
from moadepth_core.evaluation import colorize
from moadepth_core.evaluation.evaluate import predict_depth


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="moadepth predict", description=__doc__.split("\n\n")[0])
    add_model_args(p)
    add_runtime_args(p)
    p.add_argument("images", nargs="+", metavar="IMAGE", help="colour image files (PNG/JPEG)")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--flip-tta", action="store_true", help="average with the horizontally flipped prediction")
    return p


def _main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    paths = [Path(p) for p in args.images]
    stems = [p.stem for p in paths]
    if len(set(stems)) != len(stems):
        dup = next(s for s in stems if stems.count(s) > 1)
        raise DataError(f"two input images share the name '{dup}', so their outputs would overwrite each other")
    rgbs = [read_rgb(p) for p in paths]  # fail on a bad file before the model is built
    est = make_estimator(args.checkpoint, args.allow_untrained, args.device, args.pretrained,
                         backend=args.backend, precision=args.precision)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for path, rgb in zip(paths, rgbs, strict=True):
        depth = predict_depth(est, rgb, args.flip_tta).astype(np.float32)
        np.save(out / f"{path.stem}.npy", depth)
        colorize.save_png(out / f"{path.stem}.png", colorize.colorize_depth(depth, *colorize.depth_range(depth)))
        print(f"{path} -> {out / path.stem}.npy/.png  depth {depth.min():.2f}-{depth.max():.2f} m "
              f"(median {np.median(depth):.2f})")
    return 0


main = cli_entry(_main, prog="moadepth predict")

if __name__ == "__main__":
    sys.exit(main())
