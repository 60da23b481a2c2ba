"""The one image resize that training and every inference backend share (runtime.processing)."""

import cv2
import numpy as np

from moadepth_core.data.transforms import resize_rgb
from moadepth_core.runtime.processing import prepare_input, resize_image


def _scene(h: int, w: int, seed: int = 0) -> np.ndarray:
    """A camera-like frame: smooth structure plus sensor noise."""
    rng = np.random.default_rng(seed)
    base = cv2.resize(rng.integers(0, 256, (27, 48, 3), dtype=np.uint8), (w, h), interpolation=cv2.INTER_CUBIC)
    return np.clip(base.astype(np.int16) + rng.integers(-12, 13, base.shape), 0, 255).astype(np.uint8)


def test_training_and_inference_resize_with_one_function():
    assert resize_rgb is resize_image


def test_a_vga_frame_is_area_averaged_exactly_as_opencv_does():
    rgb = _scene(480, 640)
    np.testing.assert_array_equal(resize_image(rgb, (224, 224)), cv2.resize(rgb, (224, 224), interpolation=cv2.INTER_AREA))
    np.testing.assert_array_equal(resize_image(rgb, (128, 160)), cv2.resize(rgb, (160, 128), interpolation=cv2.INTER_AREA))


def test_an_hd_frame_is_halved_first_and_stays_within_a_grey_level_of_the_direct_area_resize():
    rgb = _scene(1080, 1920)
    out = resize_image(rgb, (224, 224))
    half = cv2.resize(rgb, (960, 540), interpolation=cv2.INTER_AREA)  # 2x2 means
    np.testing.assert_array_equal(out, cv2.resize(half, (224, 224), interpolation=cv2.INTER_AREA))
    direct = cv2.resize(rgb, (224, 224), interpolation=cv2.INTER_AREA)
    diff = np.abs(out.astype(np.int16) - direct)
    assert diff.mean() < 1.0 and diff.max() <= 12, (diff.mean(), diff.max())
    # 1280x720 is under 4x 224 on its short side: no halving
    rgb720 = _scene(720, 1280)
    np.testing.assert_array_equal(resize_image(rgb720, (224, 224)),
                                  cv2.resize(rgb720, (224, 224), interpolation=cv2.INTER_AREA))


def test_enlarging_is_bilinear_and_the_network_input_is_the_resized_frame_in_0_1():
    rgb = _scene(120, 160)
    np.testing.assert_array_equal(resize_image(rgb, (224, 224)), cv2.resize(rgb, (224, 224), interpolation=cv2.INTER_LINEAR))
    x = prepare_input(_scene(1080, 1920), (224, 224))
    assert x.shape == (1, 3, 224, 224) and x.dtype == np.float32
    np.testing.assert_array_equal(x[0].transpose(1, 2, 0) * 255.0, resize_image(_scene(1080, 1920), (224, 224)))
