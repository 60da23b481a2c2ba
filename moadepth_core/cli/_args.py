"""Command-line arguments and the estimator they describe, shared by ``evaluate``, ``predict`` and ``export``."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from moadepth_core.config import ModelConfig
from moadepth_core.runtime.torch.backends import BACKENDS
from moadepth_core.runtime.torch.estimator import DepthEstimator


def make_estimator(checkpoint: str | None, allow_untrained: bool, device: str = "auto",
                   pretrained: str | None = None, image_size: Sequence[int] | None = None, *,
                   backend: str = "torch", precision: str = "fp32") -> DepthEstimator:
    """The estimator every command uses; DepthEstimator refuses no checkpoint unless ``allow_untrained``."""
    cfg = ModelConfig(pretrained="none")
    if image_size:
        cfg.image_size = [int(v) for v in image_size]
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
    p.add_argument("--backend", default="torch", choices=("auto", *BACKENDS),
                   help="inference runtime (default torch; auto: what depth_node picks); see docs/PERFORMANCE.md")
    p.add_argument("--precision", default="fp32", choices=("auto", "fp32", "bf16", "fp16", "int8"),
                   help="default fp32; int8 runs on onnxruntime (--backend onnxruntime or auto): score it "
                        "here before deploying it")
