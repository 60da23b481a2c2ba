"""The training loop as a class (ZoeDepth-style ``train_on_batch`` / ``validate``), separate from the CLI.

Exact resume is a design goal, not a best effort: a run stopped after N steps and resumed reaches
the same parameters as one that never stopped (with the same number of processes). The data order
(:mod:`.sampling`), the RNG states (:mod:`.rng_state`) and the optimiser state travel in ``last.pt``;
the run folder's files are :mod:`.run_files`.
"""

from __future__ import annotations

import contextlib
import logging
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from moadepth_core.config import TrainConfig, to_dict
from moadepth_core.data import RGBDSource
from moadepth_core.errors import CheckpointError, DataError, MoadepthError
from moadepth_core.evaluation.evaluate import evaluate_source
from moadepth_core.evaluation.metrics import is_better
from moadepth_core.model.adapters import gate_entropy
from moadepth_core.model.checkpoint import load_checkpoint, read_checkpoint, save_checkpoint
from moadepth_core.model.network import build_model
from moadepth_core.runtime.torch.estimator import DepthEstimator
from moadepth_core.runtime.torch.precision import autocast_dtype
from moadepth_core.training.distributed import (
    DistContext,
    all_reduce_mean,
    barrier,
    broadcast_flag,
    unwrap,
    wrap_model,
)
from moadepth_core.training.losses import depth_loss
from moadepth_core.training.optim import build_optimizer
from moadepth_core.training.photometric import photometric_loss
from moadepth_core.training.rng_state import capture_rng_state, restore_rng_state, seed_everything
from moadepth_core.training.run_files import BEST_CHECKPOINT, LAST_CHECKPOINT, RunFiles, metrics_fields
from moadepth_core.training.sampling import (
    ResumableSampler,
    epoch_loader,
    training_dataset,
    worker_error_sentence,
)

log = logging.getLogger("moadepth")


def mean_focal_px(source: RGBDSource, size_hw: tuple[int, int], max_frames: int = 16) -> float | None:
    """Mean focal length (px) of training frames at the model input, as TrainTransform sees them unzoomed.

    TrainTransform (like DepthEstimator) resizes the frame to the model size, so the horizontal
    focal at the input is ``fx · w/W``; inference rescales metric depth against it.
    """
    h, w = size_hw
    n = len(source)
    if n == 0:
        return None
    vals = []
    for i in sorted({int(v) for v in np.linspace(0, n - 1, min(n, max_frames))}):
        try:
            frame = source[i]
        except DataError:  # an unreadable frame fails (or is skipped) where training meets it
            continue
        W = frame.hw[1]
        vals.append(float(frame.K[0, 0]) * w / W)
    return float(np.mean(vals)) if vals else None


class Trainer:
    """Owns the model, optimiser, data and run folder of one training run (one process of a DDP job)."""

    def __init__(self, cfg: TrainConfig, train_source: RGBDSource, val_source: RGBDSource | None,
                 out_dir: str | Path, dist: DistContext, *, resume: str | Path | None = None,
                 pretrained: str | None = None, val_eigen_crop: bool = False, progress: bool = True) -> None:
        self.cfg = cfg
        self.dist = dist
        self.device = dist.device
        self.out = Path(out_dir)
        self.progress = progress and dist.is_main
        self.val_source = val_source
        self.val_eigen_crop = val_eigen_crop
        self.step = self.epoch = self.batch_in_epoch = 0
        self.best: float | None = None
        self.saves = 0  # checkpoints this process wrote (rank 0 only ever writes)
        self.skipped = 0
        self.amp_dtype = autocast_dtype(cfg.precision, self.device)

        seed_everything(cfg.seed)
        ckpt = None
        if resume is not None:
            ckpt = read_checkpoint(resume)
            if not isinstance(ckpt.get("training_state"), dict):
                raise CheckpointError(f"checkpoint {resume} holds no training state (a best.pt or exported "
                                      f"model?); resume from the run's last.pt")
            model, _ = load_checkpoint(resume, pretrained=pretrained, data=ckpt)
            cfg.model = model.cfg
        else:
            model = build_model(cfg.model, pretrained=pretrained)
        self.model = model.to(self.device).train()
        self.edges = unwrap(self.model).head.edges
        # Every trainable parameter is in the graph unless a fixed fusion leaves the fusion conv unused.
        self.ddp_model = wrap_model(self.model, dist, find_unused_parameters=cfg.model.fusion != "learned")

        self.dataset = training_dataset(train_source, cfg)
        need = cfg.batch_size * dist.world_size
        if len(train_source) < need:
            raise DataError(f"the training data has {len(train_source)} frames, fewer than one batch of {need} "
                            f"(batch_size {cfg.batch_size} x {dist.world_size} processes)")
        self.sampler = ResumableSampler(self.dataset, dist, cfg.seed)
        self.steps_per_epoch = len(self.sampler.inner) // cfg.batch_size
        self.total_steps = cfg.epochs * self.steps_per_epoch
        if cfg.max_steps is not None:
            self.total_steps = min(self.total_steps, cfg.max_steps)
        self.train_focal_px = mean_focal_px(train_source, tuple(cfg.model.image_size))

        self.optimizer, self.scheduler = build_optimizer(unwrap(self.model), cfg, self.total_steps)
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.amp_dtype == torch.float16)
        if ckpt is not None:
            self._load_training_state(ckpt["training_state"], resume)

        self.n_gates = len(cfg.model.adapter_blocks)
        self.run_files = None
        if dist.is_main:
            self.run_files = RunFiles(self.out, cfg, metrics_fields(self.n_gates, cfg.supervision),
                                      keep_until_step=self.step if ckpt is not None else -1)

    # -- state ----------------------------------------------------------------------------------
    def training_state(self) -> dict[str, Any]:
        return {"optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
                "scaler": self.scaler.state_dict(), "step": self.step, "epoch": self.epoch,
                "batch_in_epoch": self.batch_in_epoch, "best": self.best, "world_size": self.dist.world_size,
                "rng": capture_rng_state()}

    def _load_training_state(self, ts: dict, path) -> None:
        try:
            self.optimizer.load_state_dict(ts["optimizer"])
            self.scheduler.load_state_dict(ts["scheduler"])
            if ts.get("scaler"):
                self.scaler.load_state_dict(ts["scaler"])
            self.step, self.epoch = int(ts["step"]), int(ts["epoch"])
            self.batch_in_epoch, self.best = int(ts["batch_in_epoch"]), ts.get("best")
            restore_rng_state(ts["rng"])
        except (KeyError, ValueError, TypeError, RuntimeError) as exc:
            raise CheckpointError(f"checkpoint {path} has a training state this run cannot use "
                                  f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})") \
                from None
        if ts.get("world_size", 1) != self.dist.world_size and self.dist.is_main:
            log.warning("resuming a %s-process run with %s processes: the data order differs from an "
                        "uninterrupted run", ts.get("world_size"), self.dist.world_size)
        if self.batch_in_epoch >= self.steps_per_epoch:  # the dataset shrank since the checkpoint
            self.epoch, self.batch_in_epoch = self.epoch + 1, 0
        for group in self.optimizer.param_groups:  # the device may differ from the saving run's
            for p in group["params"]:
                for k, v in self.optimizer.state.get(p, {}).items():
                    if torch.is_tensor(v) and k != "step":
                        self.optimizer.state[p][k] = v.to(p.device)

    def save(self, name: str, metrics: dict | None = None, with_state: bool = True) -> None:
        if not self.dist.is_main:
            return
        save_checkpoint(self.out / name, unwrap(self.model), train_focal_px=self.train_focal_px, step=self.step,
                        metrics=metrics, training_state=self.training_state() if with_state else None,
                        extra={"train_config": to_dict(self.cfg), "epoch": self.epoch})
        self.saves += 1

    # -- one step -------------------------------------------------------------------------------
    def train_on_batch(self, batch: dict) -> dict[str, float]:
        """Forward, loss, backward, clip, step. Returns the loss terms and gate entropies (floats)."""
        image = batch["image"].to(self.device, non_blocking=True)
        autocast = (torch.autocast(self.device.type, dtype=self.amp_dtype) if self.amp_dtype is not None
                    else contextlib.nullcontext())
        with autocast:
            out = self.ddp_model(image)
        terms = self.loss_terms(out, batch)
        self.raise_if_nan(terms["loss"])
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(terms["loss"]).backward()
        if self.cfg.optim.grad_clip > 0:
            self.scaler.unscale_(self.optimizer)
            torch.nn.utils.clip_grad_norm_([p for g in self.optimizer.param_groups for p in g["params"]],
                                           self.cfg.optim.grad_clip)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.scheduler.step()
        result = {k: float(v.detach()) for k, v in terms.items()}
        with torch.no_grad():
            for i, g in enumerate(out["gate_weights"]):
                result[f"gate_entropy_{i}"] = float(gate_entropy(g.float()))
        return result

    def loss_terms(self, out: dict, batch: dict) -> dict[str, torch.Tensor]:
        """The loss of ``cfg.supervision``: depth (ground truth), photometric (view synthesis from the
        camera's motion; the batch holds no depth) or mixed (both; depth only where the frame has it)."""
        dev = self.device
        if self.cfg.supervision == "depth":
            return depth_loss(out, batch["depth"].to(dev, non_blocking=True), self.cfg.loss, self.edges)
        pc = self.cfg.photometric
        frames = batch["frames"].to(dev, non_blocking=True)
        terms = photometric_loss(out["depth"], frames[:, 0], frames[:, 1:], batch["K"].to(dev),
                                 batch["T_src_tgt"].to(dev), batch["source_valid"].to(dev), alpha=pc.ssim_weight,
                                 smoothness_weight=pc.smoothness_weight, automask=pc.automask)
        if self.cfg.supervision == "mixed":
            d = depth_loss(out, batch["depth"].to(dev, non_blocking=True), self.cfg.loss, self.edges)
            terms.update({k: v for k, v in d.items() if k != "loss"})
            terms["loss"] = terms["loss"] + pc.depth_weight * d["loss"]
        return terms

    def raise_if_nan(self, loss: torch.Tensor) -> None:
        """Stop with a sentence (on every rank together) instead of training on NaN."""
        bad = broadcast_flag(not bool(torch.isfinite(loss.detach()).item()), self.dist)
        if bad:
            raise MoadepthError(f"the training loss became {float(loss):.4g} at step {self.step + 1} "
                                f"(epoch {self.epoch}); lower optim.lr, check the data for bad depth, or use "
                                f"precision fp32")

    # -- validation -----------------------------------------------------------------------------
    def validate(self) -> dict | None:
        """NYU-protocol metrics on the validation frames (rank 0; the others wait)."""
        if self.val_source is None or len(self.val_source) == 0:
            return None
        metrics = None
        if self.dist.is_main:
            model = unwrap(self.model)
            try:
                est = DepthEstimator(None, model=model, device=str(self.device))
                metrics, _, _ = evaluate_source(est, self.val_source, eigen_crop=self.val_eigen_crop,
                                                max_images=self.cfg.data.max_val_images, progress=False)
            finally:
                model.train()
            row = {"kind": "val", "step": self.step, "epoch": self.epoch, **metrics}
            self._log_row(row)
            value = metrics.get(self.cfg.best_metric)
            if value is not None and is_better(self.cfg.best_metric, value, self.best):
                self.best = value
                self.save(BEST_CHECKPOINT, metrics, with_state=False)
            log.info("validation at step %d: %s", self.step,
                     "  ".join(f"{k} {metrics[k]:.4f}" for k in ("abs_rel", "rmse", "delta1")))
        barrier(self.dist)
        return metrics

    def _log_row(self, row: dict) -> None:
        if self.run_files is not None:
            self.run_files.log_row(row, self.step)

    # -- the loop -------------------------------------------------------------------------------
    def fit(self) -> dict[str, Any]:
        """Train until ``epochs`` or ``max_steps``; returns a summary (steps, last validation, best)."""
        cfg = self.cfg
        if self.dist.is_main:
            log.info("training %d steps (%d per epoch, batch %d x %d processes) on %s, precision %s -> %s",
                     self.total_steps, self.steps_per_epoch, cfg.batch_size, self.dist.world_size, self.device,
                     {None: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}[self.amp_dtype], self.out)
        bar = None
        if self.progress:
            from tqdm import tqdm

            bar = tqdm(total=self.total_steps, initial=self.step, unit="step", desc="train", file=sys.stderr,
                       dynamic_ncols=True)
        last_val: dict | None = None
        validated_at = saved_at = -1
        acc: dict[str, float] = {}
        n_acc, t0, images = 0, time.perf_counter(), 0
        try:
            while self.epoch < cfg.epochs and self.step < self.total_steps:
                try:
                    for batch in epoch_loader(self.dataset, self.sampler, cfg, self.epoch, self.batch_in_epoch,
                                              self.device):
                        self.skipped += int(batch["skipped"].sum())
                        r = self.train_on_batch(batch)
                        self.step += 1
                        self.batch_in_epoch += 1
                        images += batch["image"].shape[0] * self.dist.world_size
                        for k, v in r.items():
                            acc[k] = acc.get(k, 0.0) + v
                        n_acc += 1
                        if bar is not None:
                            rate = images / max(time.perf_counter() - t0, 1e-9)
                            bar.update(1)
                            bar.set_postfix(loss=f"{r['loss']:.3f}", img_s=f"{rate:.1f}", epoch=self.epoch)
                        if self.step % cfg.log_every == 0 or self.step == self.total_steps:
                            self._log_train(acc, n_acc, images, t0)
                            acc, n_acc, t0, images = {}, 0, time.perf_counter(), 0
                        if cfg.val_every and self.step % cfg.val_every == 0:
                            last_val, validated_at = self.validate(), self.step
                        if cfg.ckpt_every and self.step % cfg.ckpt_every == 0:
                            self.save(LAST_CHECKPOINT, last_val)
                            saved_at = self.step
                        if self.step >= self.total_steps:
                            break
                except MoadepthError as exc:
                    if "Traceback" in str(exc):  # raised in a DataLoader worker: keep its last sentence
                        raise type(exc)(worker_error_sentence(exc)) from None
                    raise
                if self.batch_in_epoch >= self.steps_per_epoch:
                    self.epoch, self.batch_in_epoch = self.epoch + 1, 0
                    if cfg.val_at_epoch_end and validated_at != self.step:
                        last_val, validated_at = self.validate(), self.step
        finally:
            if bar is not None:
                bar.close()
        if validated_at != self.step:
            last_val = self.validate()
        if saved_at != self.step:
            self.save(LAST_CHECKPOINT, last_val)
        barrier(self.dist)
        if self.run_files is not None:
            self.run_files.close()
        if self.skipped and self.dist.is_main:
            log.warning("%d unreadable training frames were skipped", self.skipped)
        return {"steps": self.step, "epoch": self.epoch, "val": last_val, "best": self.best,
                "skipped_frames": self.skipped, "train_focal_px": self.train_focal_px,
                "sequence": getattr(self.dataset.dataset.source, "stats", None) if cfg.supervision != "depth" else None}

    def _log_train(self, acc: dict, n: int, images: int, t0: float) -> None:
        means = {k: all_reduce_mean(v / max(n, 1), self.dist) for k, v in sorted(acc.items())}
        if not self.dist.is_main:
            return
        row = {"kind": "train", "step": self.step, "epoch": self.epoch, **means,
               "lr": self.optimizer.param_groups[0]["lr"],
               "images_per_s": images / max(time.perf_counter() - t0, 1e-9), "skipped_frames": self.skipped}
        self._log_row(row)

