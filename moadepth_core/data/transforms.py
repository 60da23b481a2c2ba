"""Frames -> training/evaluation samples (docs/ARCHITECTURE.md "Training samples").

Geometry is applied to image and depth together; depth is only ever resampled with
nearest-neighbour so no pixel mixes a foreground and a background distance (bilinear depth
invents points floating between objects) and invalid (0) pixels stay 0. The focal length
follows every resize because metric depth from one image is only defined relative to it.
"""

from __future__ import annotations

from collections.abc import Callable

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from moadepth_core.data.frames import RGBDFrame, RGBDSource
from moadepth_core.errors import DataError
from moadepth_core.runtime.processing import resize_image as resize_rgb

Sample = dict


def resize_depth(depth: np.ndarray, size_hw: tuple[int, int]) -> np.ndarray:
    """Nearest-neighbour resize: every output value is an input value (0 stays invalid)."""
    h, w = size_hw
    if (h, w) == depth.shape[:2]:
        return depth
    return cv2.resize(depth, (w, h), interpolation=cv2.INTER_NEAREST_EXACT)


def _to_image_tensor(rgb_float: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(rgb_float.transpose(2, 0, 1), dtype=np.float32))


def _to_depth_tensor(depth: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(depth, dtype=np.float32))[None]


def _check_size(size_hw) -> tuple[int, int]:
    try:
        h, w = (int(v) for v in size_hw)
    except (TypeError, ValueError):
        raise DataError(f"size_hw must be (height, width), not {size_hw!r}") from None
    if h <= 0 or w <= 0:
        raise DataError(f"size_hw must be positive, not {size_hw!r}")
    return h, w


class TrainTransform:
    """Random scale-crop, horizontal flip and mild colour jitter at a fixed output size.

    The frame is first resized to ``size_hw`` exactly as inference does (``DepthEstimator``
    resizes any camera image to the model size, aspect included, so training must see the same
    geometry), then by a random zoom factor from ``scale_range``, then randomly cropped: zooming
    in (a closer-looking scene) comes with the proportionally larger focal length it implies.
    Randomness comes from the per-call ``rng`` (what :class:`RGBDDataset` passes for
    reproducible epochs) or else from the generator given at construction.
    """

    def __init__(
        self,
        size_hw: tuple[int, int],
        scale_range: tuple[float, float] = (1.0, 1.25),
        hflip_p: float = 0.5,
        brightness: float = 0.1,
        contrast: float = 0.1,
        saturation: float = 0.1,
        rng: np.random.Generator | None = None,
    ) -> None:
        self.size_hw = _check_size(size_hw)
        lo, hi = (float(v) for v in scale_range)
        if not 0 < lo <= hi:
            raise DataError(f"scale_range must satisfy 0 < low <= high, not {scale_range!r}")
        self.scale_range = (lo, hi)
        self.hflip_p = float(hflip_p)
        self.brightness, self.contrast, self.saturation = float(brightness), float(contrast), float(saturation)
        self.rng = rng if rng is not None else np.random.default_rng()

    def __call__(self, frame: RGBDFrame, rng: np.random.Generator | None = None) -> Sample:
        rng = rng if rng is not None else self.rng
        H, W = frame.hw
        h, w = self.size_hw
        zoom = rng.uniform(*self.scale_range)
        new_h, new_w = max(h, round(h * zoom)), max(w, round(w * zoom))
        rgb = resize_rgb(frame.rgb, (new_h, new_w))
        depth = resize_depth(frame.depth, (new_h, new_w))
        focal = float(frame.K[0, 0]) * new_w / W
        top = int(rng.integers(0, new_h - h + 1))
        left = int(rng.integers(0, new_w - w + 1))
        rgb = rgb[top:top + h, left:left + w]
        depth = depth[top:top + h, left:left + w]
        if rng.random() < self.hflip_p:
            rgb, depth = rgb[:, ::-1], depth[:, ::-1]
        image = self._jitter(rgb.astype(np.float32) / 255.0, rng)
        return {"image": _to_image_tensor(image), "depth": _to_depth_tensor(depth), "focal": focal,
                "name": frame.name}

    def _jitter(self, img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Brightness, contrast and saturation in a random order (photometric only)."""
        grey_w = np.array([0.299, 0.587, 0.114], dtype=np.float32)
        for op in rng.permutation(3):
            if op == 0 and self.brightness > 0:
                img = img * np.float32(rng.uniform(1 - self.brightness, 1 + self.brightness))
            elif op == 1 and self.contrast > 0:
                f = np.float32(rng.uniform(1 - self.contrast, 1 + self.contrast))
                mean = np.float32((img @ grey_w).mean())
                img = mean + (img - mean) * f
            elif op == 2 and self.saturation > 0:
                f = np.float32(rng.uniform(1 - self.saturation, 1 + self.saturation))
                grey = (img @ grey_w)[..., None]
                img = grey + (img - grey) * f
            img = np.clip(img, 0.0, 1.0)
        return img.astype(np.float32, copy=False)


class EvalTransform:
    """Network input at the model size, ground truth at the original size.

    Metrics are computed against the untouched ground truth (the prediction is resized up to
    it), as the NYU protocol expects; ``depth`` at model size is there for validation losses.
    Extra keys: ``depth_full`` (1,H0,W0) metres, ``image_rgb`` (H0,W0,3) uint8 for
    visualisation, ``K`` the original 3x3 intrinsics.
    """

    def __init__(self, size_hw: tuple[int, int]) -> None:
        self.size_hw = _check_size(size_hw)

    def __call__(self, frame: RGBDFrame, rng: np.random.Generator | None = None) -> Sample:
        H, W = frame.hw
        image = resize_rgb(frame.rgb, self.size_hw).astype(np.float32) / 255.0
        return {
            "image": _to_image_tensor(image),
            "depth": _to_depth_tensor(resize_depth(frame.depth, self.size_hw)),
            "focal": float(frame.K[0, 0]) * self.size_hw[1] / W,
            "name": frame.name,
            "depth_full": _to_depth_tensor(frame.depth),
            "image_rgb": frame.rgb,
            "K": frame.K.copy(),
        }


class RGBDDataset(Dataset):
    """A source plus a transform as a torch Dataset.

    With ``seed`` set, sample ``i`` of epoch ``e`` always gets the same augmentation
    (``rng = default_rng([seed, e, i])``) whatever the number of workers or their order, so a
    run can be reproduced; call :meth:`set_epoch` before each epoch for fresh augmentations.
    """

    def __init__(
        self,
        source: RGBDSource,
        transform: Callable[..., Sample],
        seed: int | None = None,
    ) -> None:
        self.source = source
        self.transform = transform
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.source)

    def __getitem__(self, index: int) -> Sample:
        if self.seed is not None:
            rng = np.random.default_rng([int(self.seed), self.epoch, int(index)])
        else:
            rng = np.random.default_rng()
        return self.transform(self._item(index), rng=rng)

    def _item(self, index: int):
        """What the transform is given for ``index``: the source's frame (a subclass may read otherwise)."""
        return self.source[index]
