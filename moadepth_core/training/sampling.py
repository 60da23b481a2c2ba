"""Training data: a deterministic order that can resume mid-epoch, and bad frames fatal or skipped.

The order is a pure function of (seed, epoch) (DistributedSampler's permutation) and augmentation
a pure function of (seed, epoch, index) (:class:`RGBDDataset`), so a resumed run that skips the
batches it had already consumed sees exactly the samples an uninterrupted run would.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Sampler

from moadepth_core.config import TrainConfig
from moadepth_core.data import RGBDDataset, RGBDSource, TrainTransform
from moadepth_core.errors import DataError
from moadepth_core.training.distributed import DistContext

log = logging.getLogger("moadepth")


def training_dataset(source: RGBDSource, cfg: TrainConfig) -> SkippingDataset:
    """``source`` resized to the model input with ``data.augment``, bad frames per ``skip_bad_frames``."""
    size = tuple(cfg.model.image_size)
    a = cfg.data.augment
    transform = TrainTransform(size, scale_range=(a.scale_min, a.scale_max), hflip_p=0.5 if a.hflip else 0.0,
                               brightness=a.color_jitter, contrast=a.color_jitter, saturation=a.color_jitter)
    return SkippingDataset(RGBDDataset(source, transform, seed=cfg.seed), cfg.data.skip_bad_frames)


class ResumableSampler(Sampler[int]):
    """A DistributedSampler (also for one process) that can start part-way into its epoch."""

    def __init__(self, dataset: Dataset, dist: DistContext, seed: int) -> None:
        self.inner = DistributedSampler(dataset, num_replicas=dist.world_size, rank=dist.rank, shuffle=True,
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


def worker_error_sentence(exc: Exception) -> str:
    """A DataLoader worker re-raises our error with its traceback in the message: keep the last sentence."""
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    last = lines[-1] if lines else ""
    prefix = f"{type(exc).__module__}.{type(exc).__name__}: "
    return last[len(prefix):] if last.startswith(prefix) else last


def epoch_loader(dataset: SkippingDataset, sampler: ResumableSampler, cfg: TrainConfig, epoch: int,
                 batch_in_epoch: int, device: torch.device) -> DataLoader:
    """The DataLoader of ``epoch``, starting after the ``batch_in_epoch`` batches already trained on."""
    sampler.set_epoch(epoch, skip=batch_in_epoch * cfg.batch_size)
    dataset.set_epoch(epoch)
    workers = cfg.data.num_workers
    return DataLoader(dataset, batch_size=cfg.batch_size, sampler=sampler, drop_last=True,
                      num_workers=workers, pin_memory=device.type == "cuda",
                      persistent_workers=False, prefetch_factor=2 if workers else None)
