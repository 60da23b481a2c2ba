"""Stage ``batched``: what one forward of several cameras' frames costs per image (issue 21).

``batched_forward_ms_per_image``: the torch fp32 forward of the checkpoint at batch 1, 2, 3 and 4
divided by the batch (the figure at batch 3 is the issue's, beside batch 1's). The node's CPU path, the
cached ONNX Runtime graph, is exported at a fixed batch 1, so the node runs several cameras' frames one
after the other in one worker pass (``moadepth_ros/node/worker.py``); this stage says what a batch
dimension would gain on this machine before anyone exports one.
"""

from __future__ import annotations

from pathlib import Path

from .common import make_checkpoint, test_frame, timed


def stage_batched(res: dict, tmp: Path, repeat: int) -> None:
    from moadepth_core.runtime.torch.estimator import DepthEstimator

    ckpt = make_checkpoint(tmp)
    est = DepthEstimator(ckpt, device="cpu", precision="fp32", backend="torch",
                         input_size=res.get("node_input_size"))
    x = est.preprocess(test_frame())
    per_image = {}
    for b in (1, 2, 3, 4):
        xb = x.repeat(b, 1, 1, 1)
        per_image[b] = round(timed(lambda xb=xb: est.forward(xb), max(3, repeat // 2), warmup=2) / b, 2)
    res["batched_forward_ms_per_image"] = per_image[3]
    res["batched_forward_ms_per_image_batch1"] = per_image[1]
    res["batched_forward_gain_batch3"] = round(per_image[1] / per_image[3], 2)
    res["details"]["batched_forward_ms_per_image"] = {f"batch{b}": v for b, v in per_image.items()}
    print("  torch fp32 forward per image: " + ", ".join(f"batch {b} {v} ms" for b, v in per_image.items()) +
          f" (batch 3 gains x{res['batched_forward_gain_batch3']} over batch 1)", flush=True)
