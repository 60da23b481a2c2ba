"""One randomly initialised network per test process: building it costs seconds."""

from __future__ import annotations

import functools

import torch

from moadepth_core.config import ModelConfig
from moadepth_core.model.network import MoADepthCLIP, build_model


def random_config(**overrides) -> ModelConfig:
    cfg = ModelConfig(pretrained="none")
    for k, v in overrides.items():
        setattr(cfg, k, v)
    return cfg


@functools.lru_cache(maxsize=2)
def _cached(image_size: tuple[int, int]) -> MoADepthCLIP:
    torch.manual_seed(0)
    return build_model(random_config(image_size=list(image_size)))


def shared_model(image_size: tuple[int, int] = (224, 224)) -> MoADepthCLIP:
    """A shared instance: tests must not modify it (use ``fresh_model`` to train)."""
    return _cached(tuple(image_size)).eval()


def fresh_model(**overrides) -> MoADepthCLIP:
    torch.manual_seed(0)
    return build_model(random_config(**overrides))
