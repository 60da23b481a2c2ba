"""`moadepth train`: config + data + run folder -> :class:`moadepth_core.training.trainer.Trainer`.

The same ``main(argv)`` runs one process or, under ``torchrun --nproc_per_node=K -m
moadepth_core.train ...``, one rank of a DistributedDataParallel job (RANK/WORLD_SIZE/LOCAL_RANK
from torchrun). This module only turns arguments into a resolved config and sources; the loop
lives in ``trainer.py``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path

import yaml

from moadepth_core.config import TrainConfig, apply_overrides, from_dict, load_yaml
from moadepth_core.data import RGBDSource, detect_format, open_source
from moadepth_core.errors import CheckpointError, ConfigError, DataError, cli_entry
from moadepth_core.evaluation.evaluate import NYU_FORMATS
from moadepth_core.training.distributed import cleanup, init_distributed

log = logging.getLogger("moadepth")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="moadepth train", description=__doc__.split("\n\n")[0])
    p.add_argument("--config", help="YAML of overrides (config/train_nyu.yaml, config/train_synth.yaml); "
                                     "optional with --resume (the checkpoint's config is used)")
    p.add_argument("--data", help="training data (overrides data.train): NYU .mat, file list, folder, rosbag2")
    p.add_argument("--val-data", help="validation data (overrides data.val)")
    p.add_argument("--out", help="run folder (overrides out)")
    p.add_argument("--max-steps", type=int, help="stop after this many optimiser steps (overrides max_steps)")
    p.add_argument("--device", help="auto | cpu | cuda | cuda:N (overrides device)")
    p.add_argument("--pretrained", help="CLIP weights: openai (hub), a local file, or none (random init)")
    p.add_argument("--resume", nargs="?", const="", metavar="CKPT",
                   help="continue a run exactly (default: OUT/last.pt)")
    p.add_argument("--image-topic", help="rosbag2 colour image topic (overrides data.image_topic)")
    p.add_argument("--depth-topic", help="rosbag2 depth image topic (overrides data.depth_topic)")
    p.add_argument("--supervision", choices=("depth", "photometric", "mixed"),
                   help="depth (default): ground-truth depth; photometric: a bag's images and /tf, no depth in the "
                        "loss; mixed: both (overrides supervision)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override any config key, e.g. --set optim.lr=1e-4 (value parsed as YAML)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def parse_overrides(items: Sequence[str]) -> dict:
    out = {}
    for item in items:
        if "=" not in item:
            raise ConfigError(f"--set expects KEY=VALUE, got '{item}'")
        key, value = item.split("=", 1)
        try:
            out[key.strip()] = yaml.safe_load(value)
        except yaml.YAMLError:
            raise ConfigError(f"--set {key}: cannot parse value '{value}' as YAML") from None
    return out


def resolve_config(args: argparse.Namespace) -> tuple[TrainConfig, str | None]:
    """Config file (or the resumed checkpoint's config) + command-line overrides; returns (cfg, resume path)."""
    resume = None
    out = args.out
    if args.resume is not None:
        if args.resume:
            resume = args.resume
        else:
            run = out or (load_yaml(args.config).out if args.config else None)
            if not run:
                raise ConfigError("--resume without a checkpoint needs --out RUN (or a config naming out) to find "
                                  "RUN/last.pt")
            resume = str(Path(run) / "last.pt")
        if not Path(resume).is_file():
            raise CheckpointError(f"cannot resume: checkpoint {resume} does not exist")
    if args.config:
        cfg = load_yaml(args.config)
    elif resume is not None:
        from moadepth_core.model.checkpoint import read_checkpoint

        data = read_checkpoint(resume)
        if not isinstance(data.get("train_config"), dict):
            raise CheckpointError(f"checkpoint {resume} stores no training config; pass --config FILE")
        cfg = from_dict(TrainConfig, data["train_config"], source=f"{resume} (train_config)")
    else:
        raise ConfigError("no --config given; use e.g. --config config/train_synth.yaml")
    overrides = parse_overrides(args.set)
    for key, value in (("data.train", args.data), ("data.val", args.val_data), ("out", args.out),
                       ("max_steps", args.max_steps), ("device", args.device),
                       ("model.pretrained", args.pretrained), ("data.image_topic", args.image_topic),
                       ("data.depth_topic", args.depth_topic), ("supervision", args.supervision)):
        if value is not None:
            overrides[key] = value
    cfg = apply_overrides(cfg, overrides)
    if cfg.max_steps is not None and cfg.max_steps < 1:
        raise ConfigError(f"max_steps must be at least 1, got {cfg.max_steps}")
    for name in ("batch_size", "epochs", "log_every"):
        if getattr(cfg, name) < 1:
            raise ConfigError(f"{name} must be at least 1, got {getattr(cfg, name)}")
    if not 0.0 <= cfg.data.val_fraction < 1.0:
        raise ConfigError(f"data.val_fraction must be in [0, 1), got {cfg.data.val_fraction}")
    from moadepth_core.evaluation.metrics import METRIC_KEYS

    if cfg.best_metric not in METRIC_KEYS:
        raise ConfigError(f"best_metric '{cfg.best_metric}' is not one of {', '.join(METRIC_KEYS)}")
    return cfg, resume


def _source_options(cfg: TrainConfig, fmt: str) -> dict:
    """Pass each format only the options it takes (bag topics only to bags)."""
    d = cfg.data
    if fmt == "file_list" and d.data_root:
        return {"data_root": d.data_root}
    if fmt in ("folder", "tum") and d.depth_scale is not None:
        return {"depth_scale": d.depth_scale}
    if fmt == "bag":
        return {"image_topic": d.image_topic, "depth_topic": d.depth_topic}
    return {}


def open_training_data(cfg: TrainConfig) -> tuple[RGBDSource, RGBDSource | None, bool]:
    """(train, val, eigen crop for val). Without ``data.val`` the LAST ``val_fraction`` of the frames
    validate: for bags and trajectories, whose frames are in time order, that is a split by time
    (a random split would validate on near-copies of training frames)."""
    if not cfg.data.train:
        raise ConfigError("no training data: pass --data PATH or set data.train in the config")
    fmt = detect_format(cfg.data.train)
    source = open_source(cfg.data.train, split=cfg.data.train_split, **_source_options(cfg, fmt))
    if len(source) == 0:
        raise DataError(f"{cfg.data.train} holds no frames")
    if cfg.data.val:
        vfmt = detect_format(cfg.data.val)
        val = open_source(cfg.data.val, split=cfg.data.val_split, **_source_options(cfg, vfmt))
        return source, val, vfmt in NYU_FORMATS
    n = len(source)
    n_val = int(round(n * cfg.data.val_fraction))
    if n_val == 0:
        return source, None, False
    if n - n_val < 1:
        raise DataError(f"{cfg.data.train} has {n} frames: too few to hold out {n_val} for validation")
    return source.select(range(n - n_val)), source.select(range(n - n_val, n)), fmt in NYU_FORMATS


def _main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.getLogger("moadepth").setLevel(logging.INFO)
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    cfg, resume = resolve_config(args)
    out = Path(cfg.out)
    if resume is None and (out / "last.pt").exists():
        raise ConfigError(f"{out} already holds a training run (last.pt); pass --resume to continue it or choose "
                          f"another --out")
    if cfg.supervision == "depth":
        train_src, val_src, eigen = open_training_data(cfg)
    else:
        from moadepth_core.training.sampling import open_sequence_training_data

        train_src, val_src, eigen = open_sequence_training_data(cfg)
    ctx = init_distributed(cfg.device)
    try:
        from moadepth_core.training.trainer import Trainer

        if ctx.is_main:
            log.info("train: %s; validation: %s", train_src.describe(),
                     val_src.describe() if val_src is not None else "none")
        trainer = Trainer(cfg, train_src, val_src, out, ctx, resume=resume, val_eigen_crop=eigen,
                          progress=not args.no_progress)
        summary = trainer.fit()
        _debug_dump(trainer)
    finally:
        cleanup(ctx)
    if ctx.is_main:
        val = summary["val"] or {}
        figures = "  ".join(f"{k} {val[k]:.4f}" for k in ("abs_rel", "rmse", "delta1") if k in val)
        print(f"done: {summary['steps']} steps, last checkpoint {out / 'last.pt'}"
              f"{'; validation ' + figures if figures else ''}")
    return 0


def _debug_dump(trainer) -> None:
    """Test hook: with MOADEPTH_DEBUG_DUMP=DIR every rank writes a hash of its trainable parameters."""
    where = os.environ.get("MOADEPTH_DEBUG_DUMP")
    if not where:
        return
    import hashlib

    from moadepth_core.training.distributed import unwrap

    h = hashlib.sha256()
    for name, p in sorted(unwrap(trainer.model).named_parameters()):
        if p.requires_grad:
            h.update(name.encode())
            h.update(p.detach().cpu().contiguous().numpy().tobytes())
    Path(where).mkdir(parents=True, exist_ok=True)
    Path(where, f"rank{trainer.dist.rank}.json").write_text(json.dumps(
        {"rank": trainer.dist.rank, "world_size": trainer.dist.world_size, "params_sha256": h.hexdigest(),
         "step": trainer.step, "checkpoints_written": trainer.saves}))


main = cli_entry(_main, prog="moadepth train")

if __name__ == "__main__":
    sys.exit(main())
