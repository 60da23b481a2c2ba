"""Sequence items -> self-supervised training samples (``supervision: photometric | mixed``).

Every frame of one sample gets the same geometry (resize to the model size, random zoom-crop,
horizontal flip), and the intrinsics and poses follow it exactly: a crop moves the principal
point, a flip mirrors the x axis (``cx' = W−1−cx``, ``T' = F·T·F`` with ``F = diag(−1, 1, 1, 1)``),
so warping with the true depth stays exact after augmentation. Colour jitter changes only the
network's input; the loss compares the un-jittered frames (as Monodepth2).

Sample keys: ``image`` (3,H,W) network input; ``frames`` (1+S,3,H,W) target then sources, [0, 1],
zeros for an unusable source; ``source_valid`` (S,) bool; ``T_src_tgt`` (S,4,4) target -> source
camera; ``K`` (3,3) at the model size; ``focal``; ``name``. ``photometric`` samples hold no depth at
all; ``mixed`` samples add ``depth`` (1,H,W) metres, zeros where the frame has none.
"""

from __future__ import annotations

import numpy as np
import torch

from moadepth_core.data.transforms import RGBDDataset, TrainTransform, _check_size, resize_depth, resize_rgb
from moadepth_core.errors import DataError
from moadepth_core.geometry import scale_intrinsics

_FLIP = np.diag([-1.0, 1.0, 1.0, 1.0])


class SequenceTransform:
    """One :class:`~moadepth_core.data.rosbag.sequence.SequenceItem` -> one training sample."""

    def __init__(self, size_hw: tuple[int, int], scale_range: tuple[float, float] = (1.0, 1.0),
                 hflip_p: float = 0.0, color_jitter: float = 0.0, with_depth: bool = False) -> None:
        self.size_hw = _check_size(size_hw)
        self.jitter = TrainTransform(self.size_hw, scale_range=scale_range, hflip_p=hflip_p,
                                     brightness=color_jitter, contrast=color_jitter, saturation=color_jitter)
        self.with_depth = with_depth

    def __call__(self, item, rng: np.random.Generator) -> dict:
        h, w = self.size_hw
        H, W = item.target.hw
        lo, hi = self.jitter.scale_range
        zoom = rng.uniform(lo, hi)
        new_h, new_w = max(h, round(h * zoom)), max(w, round(w * zoom))
        top = int(rng.integers(0, new_h - h + 1))
        left = int(rng.integers(0, new_w - w + 1))
        flip = rng.random() < self.jitter.hflip_p
        K = scale_intrinsics(item.target.K, (H, W), (new_h, new_w))
        K[0, 2] -= left
        K[1, 2] -= top
        if flip:
            K[0, 2] = (w - 1) - K[0, 2]

        def geom(img: np.ndarray, resize) -> np.ndarray:
            out = resize(img, (new_h, new_w))[top:top + h, left:left + w]
            return out[:, ::-1] if flip else out

        frames = [geom(item.target.rgb, resize_rgb).astype(np.float32) / 255.0]
        valid, poses = [], []
        for src, T in zip(item.sources, item.T_src_tgt, strict=True):
            if src is None or T is None:
                frames.append(np.zeros((h, w, 3), np.float32))
                valid.append(False)
                poses.append(np.eye(4))
                continue
            if src.hw != (H, W):
                raise DataError(f"source frame {src.name} is {src.hw}, the target {H, W}: one camera expected")
            frames.append(geom(src.rgb, resize_rgb).astype(np.float32) / 255.0)
            valid.append(True)
            poses.append(_FLIP @ T @ _FLIP if flip else T)
        image = self.jitter._jitter(frames[0].copy(), rng)
        sample = {
            "image": torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1))),
            "frames": torch.from_numpy(np.ascontiguousarray(np.stack(frames).transpose(0, 3, 1, 2))),
            "source_valid": torch.tensor(valid, dtype=torch.bool),
            "T_src_tgt": torch.from_numpy(np.stack(poses).astype(np.float32)),
            "K": torch.from_numpy(K.astype(np.float32)),
            "focal": float(K[0, 0]),
            "name": item.target.name,
        }
        if self.with_depth:
            d = item.depth if item.depth is not None else np.zeros((H, W), np.float32)
            sample["depth"] = torch.from_numpy(np.ascontiguousarray(geom(d, resize_depth), dtype=np.float32))[None]
        return sample


class SequenceDataset(RGBDDataset):
    """A :class:`BagSequence` plus a :class:`SequenceTransform`, seeded per (seed, epoch, index) as
    :class:`~moadepth_core.data.transforms.RGBDDataset` (which it is, reading sequence items), so resume
    stays exact."""

    def _item(self, index: int):
        return self.source.item(index)
