"""The training loop as a class (ZoeDepth-style ``train_on_batch`` / ``validate``), separate from the CLI.

Exact resume is a design goal, not a best effort: the data order is a pure function of
(seed, epoch) (DistributedSampler's permutation), augmentation a pure function of
(seed, epoch, index) (:class:`RGBDDataset`), and a resumed run skips the batches of the
current epoch it had already consumed. So a run stopped after N steps and resumed reaches the
same parameters as one that never stopped (with the same number of processes).

Files (rank 0 only, every write atomic: temp file + rename): ``RUN/last.pt`` (with optimiser,
scheduler, position and RNG states), ``RUN/best.pt`` (by ``best_metric`` on validation),
``RUN/config.yaml`` (the resolved config), ``RUN/metrics.csv``; TensorBoard scalars when
``torch.utils.tensorboard`` imports.
"""

from __future__ import annotations

import contextlib
import csv
import io
import logging
import math
import random
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Sampler

from moadepth_core.config import TrainConfig, save_yaml, to_dict
from moadepth_core.data import RGBDDataset, RGBDSource, TrainTransform
from moadepth_core.errors import CheckpointError, DataError, MoadepthError
from moadepth_core.evaluation.evaluate import evaluate_source
from moadepth_core.evaluation.metrics import METRIC_KEYS, is_better
from moadepth_core.files import write_atomic
from moadepth_core.model.adapters import gate_entropy
from moadepth_core.model.checkpoint import load_checkpoint, read_checkpoint, save_checkpoint
from moadepth_core.model.network import MoADepthCLIP, build_model
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

log = logging.getLogger("moadepth")

GROUP_OF_PART = {"backbone_tuned": "tuned_blocks", "adapters": "adapters", "decoder_heads": "decoder_heads"}


# ---------------------------------------------------------------------------------------------
# Data: deterministic order, resumable mid-epoch, bad frames either fatal or skipped and counted
# ---------------------------------------------------------------------------------------------
class ResumableSampler(Sampler[int]):
    """A DistributedSampler (also for one process) that can start part-way into its epoch."""

    def __init__(self, dataset: Dataset, ctx: DistContext, seed: int) -> None:
        self.inner = DistributedSampler(dataset, num_replicas=ctx.world_size, rank=ctx.rank, shuffle=True,
                                        seed=seed, drop_last=True)
        self.skip = 0

    def set_epoch(self, epoch: int, skip: int = 0) -> None:
        self.inner.set_epoch(epoch)
        self.skip = skip

    def __iter__(self) -> Iterator[int]:
        return iter(list(self.inner)[self.skip:])

    def __len__(self) -> int:
        return len(self.inner) - self.skip


class SkippingDataset(Dataset):
    """With ``skip_bad_frames``, an unreadable frame is replaced by the next readable one and counted.

    The count travels inside the sample (``skipped``), so it adds up correctly across DataLoader
    worker processes.
    """

    def __init__(self, dataset: RGBDDataset, skip_bad: bool, max_tries: int = 32) -> None:
        self.dataset = dataset
        self.skip_bad = skip_bad
        self.max_tries = max_tries

    def set_epoch(self, epoch: int) -> None:
        self.dataset.set_epoch(epoch)

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> dict:
        skipped = 0
        for k in range(self.max_tries if self.skip_bad else 1):
            try:
                sample = self.dataset[(index + k) % len(self.dataset)]
                sample["skipped"] = skipped
                return sample
            except DataError as exc:
                if not self.skip_bad:
                    raise
                log.warning("skipping unreadable training frame: %s", exc)
                skipped += 1
        raise DataError(f"{self.max_tries} training frames in a row from index {index} are unreadable; "
                        f"check the dataset")


def _worker_error_sentence(exc: Exception) -> str:
    """A DataLoader worker re-raises our error with its traceback in the message: keep the last sentence."""
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    last = lines[-1] if lines else ""
    prefix = f"{type(exc).__module__}.{type(exc).__name__}: "
    return last[len(prefix):] if last.startswith(prefix) else last


# ---------------------------------------------------------------------------------------------
# RNG state <-> plain tensors/lists, so torch.load(weights_only=True) accepts a checkpoint
# ---------------------------------------------------------------------------------------------
def capture_rng_state() -> dict[str, Any]:
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    version, py_state, gauss = random.getstate()
    state = {
        "torch": torch.get_rng_state(),
        "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "cached_gaussian": float(cached)},
        "python": {"version": int(version), "state": [int(v) for v in py_state], "gauss": gauss},
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"],
                         n["cached_gaussian"]))
    p = state["python"]
    random.setstate((p["version"], tuple(p["state"]), p["gauss"]))
    if "cuda" in state and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


# ---------------------------------------------------------------------------------------------
# Small helpers
# ---------------------------------------------------------------------------------------------
def param_groups(model: MoADepthCLIP, cfg: TrainConfig) -> list[dict]:
    """Tuned CLIP blocks at ``optim.lr``, adapters at ``adapter_lr``, decoder + heads at ``head_lr``."""
    o = cfg.optim
    lrs = {"tuned_blocks": o.lr, "adapters": o.adapter_lr if o.adapter_lr is not None else o.lr,
           "decoder_heads": o.head_lr if o.head_lr is not None else o.lr}
    groups: dict[str, list] = {k: [] for k in lrs}
    for name, p in model.named_parameters():
        if p.requires_grad:
            groups[GROUP_OF_PART[model.part_of(name)]].append(p)
    return [{"params": ps, "lr": lrs[k], "name": k} for k, ps in groups.items() if ps]


def lr_factor(step: int, total: int, schedule: str, warmup: int) -> float:
    """Multiplier of the base lr at ``step`` (linear warm-up, then constant or cosine to zero)."""
    if warmup > 0 and step < warmup:
        return (step + 1) / warmup
    if schedule == "cosine":
        t = (step - warmup) / max(1, total - warmup)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, t)))
    return 1.0


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


class MetricsLog:
    """``metrics.csv``, rewritten whole via temp + rename on every append, so a kill never tears it."""

    def __init__(self, path: Path, fields: list[str], keep_until_step: int | None = None) -> None:
        self.path = path
        self.fields = fields
        self.rows: list[dict] = []
        if keep_until_step is not None and path.exists():
            # A killed run may have logged past its last checkpoint: those rows are redone on resume.
            with path.open(newline="") as f:
                self.rows = [r for r in csv.DictReader(f) if r.get("step", "").isdigit()
                             and int(r["step"]) <= keep_until_step]

    def append(self, row: dict) -> None:
        self.rows.append({k: row.get(k, "") for k in self.fields})
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=self.fields, extrasaction="ignore")
        w.writeheader()
        w.writerows(self.rows)
        write_atomic(self.path, buf.getvalue())


def _fmt(v: Any) -> Any:
    return f"{v:.6g}" if isinstance(v, float) else v


# ---------------------------------------------------------------------------------------------
# The trainer
# ---------------------------------------------------------------------------------------------
class Trainer:
    """Owns the model, optimiser, data and run folder of one training run (one process of a DDP job)."""

    def __init__(self, cfg: TrainConfig, train_source: RGBDSource, val_source: RGBDSource | None,
                 out_dir: str | Path, ctx: DistContext, *, resume: str | Path | None = None,
                 pretrained: str | None = None, val_eigen_crop: bool = False, progress: bool = True) -> None:
        self.cfg = cfg
        self.ctx = ctx
        self.device = ctx.device
        self.out = Path(out_dir)
        self.progress = progress and ctx.is_main
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
        self.ddp_model = wrap_model(self.model, ctx, find_unused_parameters=cfg.model.fusion != "learned")

        size = tuple(cfg.model.image_size)
        a = cfg.data.augment
        transform = TrainTransform(size, scale_range=(a.scale_min, a.scale_max), hflip_p=0.5 if a.hflip else 0.0,
                                   brightness=a.color_jitter, contrast=a.color_jitter, saturation=a.color_jitter)
        self.dataset = SkippingDataset(RGBDDataset(train_source, transform, seed=cfg.seed), cfg.data.skip_bad_frames)
        need = cfg.batch_size * ctx.world_size
        if len(train_source) < need:
            raise DataError(f"the training data has {len(train_source)} frames, fewer than one batch of {need} "
                            f"(batch_size {cfg.batch_size} x {ctx.world_size} processes)")
        self.sampler = ResumableSampler(self.dataset, ctx, cfg.seed)
        self.steps_per_epoch = len(self.sampler.inner) // cfg.batch_size
        self.total_steps = cfg.epochs * self.steps_per_epoch
        if cfg.max_steps is not None:
            self.total_steps = min(self.total_steps, cfg.max_steps)
        self.train_focal_px = mean_focal_px(train_source, size)

        self.optimizer = torch.optim.AdamW(param_groups(unwrap(self.model), cfg), lr=cfg.optim.lr,
                                           betas=tuple(cfg.optim.betas), weight_decay=cfg.optim.weight_decay)
        total, sched, warm = self.total_steps, cfg.optim.schedule, cfg.optim.warmup_steps
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer,
                                                           lambda s: lr_factor(s, total, sched, warm))
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.amp_dtype == torch.float16)
        if ckpt is not None:
            self._load_training_state(ckpt["training_state"], resume)

        self.n_gates = len(cfg.model.adapter_blocks)
        fields = ["kind", "step", "epoch", "loss", "ce", "l1", "silog", "lr", "images_per_s",
                  *[f"gate_entropy_{i}" for i in range(self.n_gates)], *METRIC_KEYS, "images", "valid_pixels",
                  "skipped_frames"]
        self.metrics_log = self.tb = None
        if ctx.is_main:
            self.out.mkdir(parents=True, exist_ok=True)
            write_atomic(self.out / "config.yaml", lambda f: save_yaml(cfg, f.name))  # save_yaml writes by name
            self.metrics_log = MetricsLog(self.out / "metrics.csv", fields,
                                          keep_until_step=self.step if ckpt is not None else -1)
            self.tb = _tensorboard(self.out)

    # -- state ----------------------------------------------------------------------------------
    def training_state(self) -> dict[str, Any]:
        return {"optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
                "scaler": self.scaler.state_dict(), "step": self.step, "epoch": self.epoch,
                "batch_in_epoch": self.batch_in_epoch, "best": self.best, "world_size": self.ctx.world_size,
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
        if ts.get("world_size", 1) != self.ctx.world_size and self.ctx.is_main:
            log.warning("resuming a %s-process run with %s processes: the data order differs from an "
                        "uninterrupted run", ts.get("world_size"), self.ctx.world_size)
        if self.batch_in_epoch >= self.steps_per_epoch:  # the dataset shrank since the checkpoint
            self.epoch, self.batch_in_epoch = self.epoch + 1, 0
        for group in self.optimizer.param_groups:  # the device may differ from the saving run's
            for p in group["params"]:
                for k, v in self.optimizer.state.get(p, {}).items():
                    if torch.is_tensor(v) and k != "step":
                        self.optimizer.state[p][k] = v.to(p.device)

    def save(self, name: str, metrics: dict | None = None, with_state: bool = True) -> None:
        if not self.ctx.is_main:
            return
        save_checkpoint(self.out / name, unwrap(self.model), train_focal_px=self.train_focal_px, step=self.step,
                        metrics=metrics, training_state=self.training_state() if with_state else None,
                        extra={"train_config": to_dict(self.cfg), "epoch": self.epoch})
        self.saves += 1

    # -- one step -------------------------------------------------------------------------------
    def train_on_batch(self, batch: dict) -> dict[str, float]:
        """Forward, loss, backward, clip, step. Returns the loss terms and gate entropies (floats)."""
        image = batch["image"].to(self.device, non_blocking=True)
        depth = batch["depth"].to(self.device, non_blocking=True)
        ctx = (torch.autocast(self.device.type, dtype=self.amp_dtype) if self.amp_dtype is not None
               else contextlib.nullcontext())
        with ctx:
            out = self.ddp_model(image)
        terms = depth_loss(out, depth, self.cfg.loss, self.edges)
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

    def raise_if_nan(self, loss: torch.Tensor) -> None:
        """Stop with a sentence (on every rank together) instead of training on NaN."""
        bad = broadcast_flag(not bool(torch.isfinite(loss.detach()).item()), self.ctx)
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
        if self.ctx.is_main:
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
                self.save("best.pt", metrics, with_state=False)
            log.info("validation at step %d: %s", self.step,
                     "  ".join(f"{k} {metrics[k]:.4f}" for k in ("abs_rel", "rmse", "delta1")))
        barrier(self.ctx)
        return metrics

    def _log_row(self, row: dict) -> None:
        if self.metrics_log is not None:
            self.metrics_log.append({k: _fmt(v) for k, v in row.items()})
        if self.tb is not None:
            for k, v in row.items():
                if isinstance(v, float) and math.isfinite(v):
                    self.tb.add_scalar(f"{row['kind']}/{k}", v, self.step)

    # -- the loop -------------------------------------------------------------------------------
    def _loader(self) -> DataLoader:
        self.sampler.set_epoch(self.epoch, skip=self.batch_in_epoch * self.cfg.batch_size)
        self.dataset.set_epoch(self.epoch)
        workers = self.cfg.data.num_workers
        return DataLoader(self.dataset, batch_size=self.cfg.batch_size, sampler=self.sampler, drop_last=True,
                          num_workers=workers, pin_memory=self.device.type == "cuda",
                          persistent_workers=False, prefetch_factor=2 if workers else None)

    def fit(self) -> dict[str, Any]:
        """Train until ``epochs`` or ``max_steps``; returns a summary (steps, last validation, best)."""
        cfg = self.cfg
        if self.ctx.is_main:
            log.info("training %d steps (%d per epoch, batch %d x %d processes) on %s, precision %s -> %s",
                     self.total_steps, self.steps_per_epoch, cfg.batch_size, self.ctx.world_size, self.device,
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
                    for batch in self._loader():
                        self.skipped += int(batch["skipped"].sum())
                        r = self.train_on_batch(batch)
                        self.step += 1
                        self.batch_in_epoch += 1
                        images += batch["image"].shape[0] * self.ctx.world_size
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
                            self.save("last.pt", last_val)
                            saved_at = self.step
                        if self.step >= self.total_steps:
                            break
                except MoadepthError as exc:
                    if "Traceback" in str(exc):  # raised in a DataLoader worker: keep its last sentence
                        raise type(exc)(_worker_error_sentence(exc)) from None
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
            self.save("last.pt", last_val)
        barrier(self.ctx)
        if self.tb is not None:
            self.tb.close()
        if self.skipped and self.ctx.is_main:
            log.warning("%d unreadable training frames were skipped", self.skipped)
        return {"steps": self.step, "epoch": self.epoch, "val": last_val, "best": self.best,
                "skipped_frames": self.skipped, "train_focal_px": self.train_focal_px}

    def _log_train(self, acc: dict, n: int, images: int, t0: float) -> None:
        means = {k: all_reduce_mean(v / max(n, 1), self.ctx) for k, v in sorted(acc.items())}
        if not self.ctx.is_main:
            return
        row = {"kind": "train", "step": self.step, "epoch": self.epoch, **means,
               "lr": self.optimizer.param_groups[0]["lr"],
               "images_per_s": images / max(time.perf_counter() - t0, 1e-9), "skipped_frames": self.skipped}
        self._log_row(row)


def _tensorboard(out: Path):
    """A SummaryWriter when tensorboard is installed; silently nothing otherwise."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except Exception:  # ImportError, or a broken install: CSV logging is enough
        return None
    return SummaryWriter(log_dir=str(out / "tb"))

