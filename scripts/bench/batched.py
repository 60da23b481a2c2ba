"""Stage ``batched``: what one forward of several cameras' frames costs per image (issue 21).

Per backend (``onnxruntime_fp32``, the CPU default; ``torch_fp32``; ``onnxruntime_int8``), the forward of
the checkpoint at batch 1, 2, 3 and 4 divided by the batch, at the node's input size (224x224 unless
``--node-input-size``) and the runtimes' default threads. ONNX Runtime runs the graph's dynamic batch
axis in one ``session.run``. Keys:

- ``batched_forward_ms_per_image`` / ``_batch1``: the default backend (``auto``: ONNX Runtime fp32 on a
  CPU) at batch 3 and batch 1, the issue's pair; ``batched_forward_gain_batch3`` their ratio;
- ``batched_forward_ms_per_image_<backend>_batch<N>`` for every backend and batch;
- ``batched_ort_in_one_run``: what the node does with ONNX Runtime (``BATCH_IN_ONE_RUN``), to read
  beside the figures: one run pays where batch 3's figure is below batch 1's.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .common import make_checkpoint, test_frame, timed

BATCHES = (1, 2, 3, 4)


def _per_image(run, x: np.ndarray, repeat: int) -> dict[int, float]:
    out = {}
    for b in BATCHES:
        xb = np.ascontiguousarray(np.repeat(x, b, axis=0))
        out[b] = round(timed(lambda xb=xb: run(xb), max(3, repeat // 2), warmup=2) / b, 2)
    return out


def stage_batched(res: dict, tmp: Path, repeat: int, with_int8: bool = True) -> None:
    import torch

    from moadepth_core.runtime.onnx_session import BATCH_IN_ONE_RUN
    from moadepth_core.runtime.processing import prepare_input
    from moadepth_core.runtime.torch.estimator import DepthEstimator

    ckpt = make_checkpoint(tmp)
    size = res.get("node_input_size")
    table: dict[str, dict[int, float]] = {}
    x = None
    for name, precision, backend in (("onnxruntime_fp32", "auto", "auto"), ("torch_fp32", "fp32", "torch"),
                                     ("onnxruntime_int8", "int8", "onnxruntime")):
        if name == "onnxruntime_int8" and not with_int8:
            continue
        est = DepthEstimator(ckpt, device="cpu", precision=precision, backend=backend, input_size=size)
        if name == "onnxruntime_fp32":
            assert (est.backend, est.precision) == ("onnxruntime", "fp32"), (est.backend, est.precision)
        x = prepare_input(test_frame(), est.model_size)
        if est.backend == "onnxruntime":
            table[name] = _per_image(est._runtime.run, x, repeat)
        else:
            table[name] = _per_image(lambda xb, est=est: est.forward(torch.from_numpy(xb)), x, repeat)
        del est
    default = table["onnxruntime_fp32"]
    res["batched_forward_ms_per_image"] = default[3]
    res["batched_forward_ms_per_image_batch1"] = default[1]
    res["batched_forward_gain_batch3"] = round(default[1] / default[3], 2)
    res["batched_ort_in_one_run"] = BATCH_IN_ONE_RUN
    for name, per_image in table.items():
        for b, v in per_image.items():
            res[f"batched_forward_ms_per_image_{name}_batch{b}"] = v
    res["details"]["batched_forward_ms_per_image"] = {name: {f"batch{b}": v for b, v in per_image.items()}
                                                      for name, per_image in table.items()}
    for name, per_image in table.items():
        print(f"  {name} forward per image: " + ", ".join(f"batch {b} {v} ms" for b, v in per_image.items()) +
              f" (batch 3 gains x{per_image[1] / per_image[3]:.2f} over batch 1)", flush=True)
    print(f"  the node runs ONNX Runtime batches {'in one run' if BATCH_IN_ONE_RUN else 'frame by frame'} "
          f"(BATCH_IN_ONE_RUN, docs/PERFORMANCE.md)", flush=True)
