"""Stage ``peer``: the Depth Anything V2 Small architecture (transformers, random weights) at 518x518 and
518x686 (640x480-equivalent), fp32, same threads, timed interleaved with ours."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import torch

from .common import build_random_model, test_frame


def stage_peer(res: dict, repeat: int) -> None:
    try:
        from transformers import DepthAnythingConfig, DepthAnythingForDepthEstimation
    except ImportError:
        print("  peer: transformers is not installed (pip install -r requirements-bench.txt); skipped")
        return
    torch.manual_seed(0)
    peer = DepthAnythingForDepthEstimation(DepthAnythingConfig()).eval()  # DA2-Small architecture
    from moadepth_core.runtime.torch.estimator import DepthEstimator

    # Ours (fp32, 640x480 frame through DepthEstimator) is timed interleaved with the peer, so a
    # change in machine load hits both sides of the ratio alike.
    ours = {b: DepthEstimator(None, model=build_random_model((224, 224)), device="cpu", precision="fp32",
                              backend=b) for b in ("torch", "onnxruntime")}
    rgb = test_frame()
    samples: dict[str, list[float]] = {}

    def clock(key: str, fn: Callable[[], object]) -> None:
        t = time.perf_counter()
        fn()
        samples.setdefault(key, []).append((time.perf_counter() - t) * 1e3)

    inputs = {"518x518": torch.rand(1, 3, 518, 518), "518x686": torch.rand(1, 3, 518, 686)}
    with torch.inference_mode():
        for x in inputs.values():
            peer(pixel_values=x)
        for est in ours.values():
            est.predict(rgb)
        start = time.perf_counter()
        for i in range(repeat):
            for name, x in inputs.items():
                clock(name, lambda x=x: peer(pixel_values=x))
                for b, est in ours.items():
                    clock(b, lambda est=est: est.predict(rgb))
            if time.perf_counter() - start > 60 and i >= 2:
                break
    out = {k: statistics.median(v) for k, v in samples.items()}
    for name in inputs:
        print(f"  peer DA2-Small fp32 {name}: {out[name]:.1f} ms", flush=True)
    print(f"  ours fp32 640x480 (interleaved): torch {out['torch']:.1f} ms, onnxruntime {out['onnxruntime']:.1f} ms")
    res["details"]["peer_da2_small_ms"] = {k: round(out[k], 1) for k in inputs}
    res["details"]["ours_fp32_ms_interleaved"] = {k: round(out[k], 1) for k in ours}
    res["peer_da2_small_ms"] = round(out["518x518"], 1)
    res["speed_ratio_vs_da2_small"] = round(out["518x518"] / out["torch"], 2)
    res["speed_ratio_vs_da2_small_onnxruntime"] = round(out["518x518"] / out["onnxruntime"], 2)
    res["speed_ratio_vs_da2_small_640x480"] = round(out["518x686"] / out["torch"], 2)

