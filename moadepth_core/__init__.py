"""moadepth core: MoA-DepthCLIP monocular depth in plain PyTorch (no ROS imports).

The public API, as open_clip's package root gives it::

    from moadepth_core import build_model, DepthEstimator, load_estimator, open_source, Trainer

Names resolve on first use (PEP 562), so ``import moadepth_core.runtime`` stays torch-free: the
node's path must never pay for importing torch (docs/ARCHITECTURE.md, "The torch-free runtime").
"""

from __future__ import annotations

import importlib
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, Any

try:
    __version__ = version("moadepth_ros")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+source"

_PUBLIC = {
    "build_model": "moadepth_core.model.network",
    "MoADepthCLIP": "moadepth_core.model.network",
    "load_checkpoint": "moadepth_core.model.checkpoint",
    "save_checkpoint": "moadepth_core.model.checkpoint",
    "DepthEstimator": "moadepth_core.runtime.torch.estimator",
    "load_estimator": "moadepth_core.runtime.loader",
    "DepthResult": "moadepth_core.runtime.processing",
    "open_source": "moadepth_core.data",
    "RGBDFrame": "moadepth_core.data",
    "Trainer": "moadepth_core.training.trainer",
    "compute_metrics": "moadepth_core.evaluation.metrics",
    "ModelConfig": "moadepth_core.config",
    "TrainConfig": "moadepth_core.config",
    "MoadepthError": "moadepth_core.errors",
}
__all__ = [
    "__version__",
    "build_model",
    "MoADepthCLIP",
    "load_checkpoint",
    "save_checkpoint",
    "DepthEstimator",
    "load_estimator",
    "DepthResult",
    "open_source",
    "RGBDFrame",
    "Trainer",
    "compute_metrics",
    "ModelConfig",
    "TrainConfig",
    "MoadepthError",
]

if TYPE_CHECKING:  # for type checkers and IDEs; at run time __getattr__ imports on demand
    from moadepth_core.config import ModelConfig, TrainConfig
    from moadepth_core.data import RGBDFrame, open_source
    from moadepth_core.errors import MoadepthError
    from moadepth_core.evaluation.metrics import compute_metrics
    from moadepth_core.model.checkpoint import load_checkpoint, save_checkpoint
    from moadepth_core.model.network import MoADepthCLIP, build_model
    from moadepth_core.runtime.loader import load_estimator
    from moadepth_core.runtime.processing import DepthResult
    from moadepth_core.runtime.torch.estimator import DepthEstimator
    from moadepth_core.training.trainer import Trainer


def __getattr__(name: str) -> Any:
    module = _PUBLIC.get(name)
    if module is None:
        raise AttributeError(f"module 'moadepth_core' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
