"""`moadepth export --onnx`: the network as ONNX, checked against torch before anyone deploys it.

Inputs: ``image`` float32 (1,3,H,W) in [0, 1] (CLIP normalisation is inside the graph).
Outputs: ``depth`` (1,1,H,W) metres and ``uncertainty`` (1,1,H,W) relative spread.
The size is fixed at export (the position embedding is interpolated for it), so export at
the size the robot's camera will be resized to.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn

from moadepth_core.cli._args import add_model_args, make_estimator
from moadepth_core.errors import DataError, MoadepthError, cli_entry
from moadepth_core.files import write_atomic
from moadepth_core.runtime.torch.backends import DepthOutputs, write_graph

log = logging.getLogger("moadepth")


def export_onnx(model: nn.Module, path: str | Path, size_hw: Sequence[int], opset: int = 18) -> Path:
    """Write ``model`` (fp32, CPU, eval) as one self-contained ONNX file at ``path``, atomically."""
    path = Path(path)
    model = model.float().cpu().eval()
    write_atomic(path, lambda f: write_graph(model, (int(size_hw[0]), int(size_hw[1])), f, opset))
    return path


def check_parity(model: nn.Module, path: str | Path, size_hw: Sequence[int], seed: int = 0) -> dict[str, float]:
    """Max |onnxruntime − torch| of both outputs on one random input."""
    import onnxruntime as ort

    g = torch.Generator().manual_seed(seed)
    x = torch.rand(1, 3, int(size_hw[0]), int(size_hw[1]), generator=g)
    with torch.no_grad():
        ref = DepthOutputs(model.float().cpu().eval())(x)
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = sess.run(["depth", "uncertainty"], {"image": x.numpy()})
    return {name: float(np.max(np.abs(r.numpy() - o))) for name, r, o in zip(("depth", "uncertainty"), ref, got,
                                                                              strict=True)}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="moadepth export", description=__doc__.split("\n\n")[0])
    add_model_args(p)
    p.add_argument("--onnx", required=True, help="output .onnx file")
    p.add_argument("--size", type=int, nargs=2, metavar=("H", "W"), default=None,
                   help="input size (multiples of 32; default: the training size)")
    p.add_argument("--opset", type=int, default=18, help="ONNX opset (the torch exporter implements >= 18)")
    p.add_argument("--tolerance", type=float, default=1e-3,
                   help="max allowed |onnx − torch| depth difference in metres")
    return p


def _main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    est = make_estimator(args.checkpoint, args.allow_untrained, "cpu", args.pretrained)
    model = est.model
    size = tuple(args.size or model.cfg.image_size)
    if size[0] % 32 or size[1] % 32 or min(size) <= 0:
        raise DataError(f"--size {size[0]} {size[1]} must be positive multiples of 32")
    try:
        path = export_onnx(model, args.onnx, size, args.opset)
    except MoadepthError:
        raise
    except Exception as exc:  # the exporter raises many types; the sentence names the cause
        raise MoadepthError(f"ONNX export to {args.onnx} failed at opset {args.opset}: "
                            f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}") from None
    diff = check_parity(model, path, size)
    print(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB, input 1x3x{size[0]}x{size[1]}, opset {args.opset})")
    print(f"onnxruntime vs torch max abs difference: depth {diff['depth']:.3g} m, "
          f"uncertainty {diff['uncertainty']:.3g}")
    if not diff["depth"] <= args.tolerance:
        print(f"moadepth export: error: ONNX output differs from torch by {diff['depth']:.3g} m, above the "
              f"tolerance {args.tolerance:g} m", file=sys.stderr)
        return 1
    return 0


main = cli_entry(_main, prog="moadepth export")

if __name__ == "__main__":
    sys.exit(main())
