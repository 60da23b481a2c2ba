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
    """``source`` resized to the model input with ``data.augment``, bad frames per ``skip_bad_frames``.

    With ``supervision`` photometric or mixed, ``source`` is a sequence (``BagSequence``) and the samples
    are frame sequences with their poses (:mod:`moadepth_core.data.sequence`).
    """
    size = tuple(cfg.model.image_size)
    a = cfg.data.augment
    if cfg.supervision != "depth":
        from moadepth_core.data.sequence import SequenceDataset, SequenceTransform

        if not hasattr(source, "item"):
            raise DataError(f"supervision {cfg.supervision} trains on frame sequences with the camera's motion "
                            f"(a rosbag2 with /tf), not on {source.describe()}")
        transform = SequenceTransform(size, scale_range=(a.scale_min, a.scale_max), hflip_p=0.5 if a.hflip else 0.0,
                                      color_jitter=a.color_jitter, with_depth=cfg.supervision == "mixed")
        return SkippingDataset(SequenceDataset(source, transform, seed=cfg.seed), cfg.data.skip_bad_frames)
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


def open_sequence_training_data(cfg: TrainConfig) -> tuple:
    """(train, val, eigen crop for val) for ``supervision`` photometric or mixed.

    Training reads ``data.train`` (a rosbag2) as a :class:`BagSequence`: images, CameraInfo and /tf only
    (``mixed`` also the depth topic, where a frame has it). Validation is ``data.val`` when given, else the
    LAST ``val_fraction`` of the bag (by time) with its depth topic: depth scores the run, it never trains a
    ``photometric`` one. A bag without a depth topic validates nothing.
    """
    from moadepth_core.data import detect_format, open_source
    from moadepth_core.data.rosbag.messages import IMAGE_TYPE
    from moadepth_core.data.rosbag.sequence import BagSequence
    from moadepth_core.data.rosbag.source import BagSource
    from moadepth_core.errors import ConfigError
    from moadepth_core.evaluation.evaluate import NYU_FORMATS

    d, pc = cfg.data, cfg.photometric
    if not d.train:
        raise ConfigError("no training data: pass --data BAG or set data.train in the config")
    fmt = detect_format(d.train)
    if fmt != "bag":
        raise ConfigError(f"supervision {cfg.supervision} learns from a rosbag2 with the camera's motion in /tf; "
                          f"{d.train} is a {fmt} dataset (use --supervision depth)")
    split = 1.0 - d.val_fraction if not d.val and d.val_fraction > 0 else 1.0
    probe = BagSource(d.train, image_topic=d.image_topic, images_only=True)
    topics = probe.topics()
    probe.close()
    has_depth = topics.get(d.depth_topic) == IMAGE_TYPE
    if cfg.supervision == "mixed" and not has_depth:
        log.warning("supervision mixed: bag %s has no depth topic %s, so every frame trains photometrically",
                    d.train, d.depth_topic)
    train = BagSequence(d.train, image_topic=d.image_topic, frame_offset=pc.frame_offset,
                        min_translation=pc.min_translation, fixed_frame=pc.fixed_frame, camera_frame=pc.camera_frame,
                        depth_topic=d.depth_topic if cfg.supervision == "mixed" and has_depth else None, stop=split)
    log.info("photometric: %s; %s", train.describe(), ", ".join(f"{k} {v}" for k, v in train.stats.items()))
    if d.val:
        vfmt = detect_format(d.val)
        opts = {"image_topic": d.image_topic, "depth_topic": d.depth_topic} if vfmt == "bag" else {}
        return train, open_source(d.val, split=d.val_split, **opts), vfmt in NYU_FORMATS
    if split == 1.0:
        return train, None, False
    if not has_depth:
        log.info("bag %s has no depth topic %s: no validation metrics (depth only ever scores a photometric run)",
                 d.train, d.depth_topic)
        return train, None, False
    val = BagSource(d.train, image_topic=d.image_topic, depth_topic=d.depth_topic, depth_scale=d.depth_scale,
                    start=split)
    return train, val, False
