"""Stage ``forward``: network forward, batch 1, torch fp32 / bf16 and ONNX Runtime fp32 / int8 at 224x224
and a 4:3 size, raw (model-size tensor) and through DepthEstimator from a 640x480 frame; torch_compile
at the node's precision (224x224); CUDA fp16/bf16 when a GPU is present."""

from __future__ import annotations

import copy

import torch

from .common import SIZES, build_random_model, test_frame, timed


def stage_forward(res: dict, repeat: int) -> None:
    from moadepth_core.runtime.torch.estimator import DepthEstimator

    rgb = test_frame()
    detail = res["details"].setdefault("forward_ms", {})
    for name, size in SIZES.items():
        base = build_random_model(size)
        runs = [("torch", "fp32"), ("torch", "bf16"), ("onnxruntime", "fp32"), ("onnxruntime", "int8")]
        if name == "224x224":  # a compile takes tens of seconds: the node's size and precision only
            runs.append(("torch_compile", res["node_precision"]))
        for backend, prec in runs:
            est = DepthEstimator(None, model=copy.deepcopy(base), device="cpu", precision=prec, backend=backend)
            x = est.preprocess(rgb)
            raw = timed(lambda est=est, x=x: est.forward(x), repeat)
            full = timed(lambda est=est: est.predict(rgb), repeat)
            key = f"cpu_{backend}_{prec}_{name}"
            detail[key] = {"raw": round(raw, 2), "predict_640x480": round(full, 2)}
            print(f"  forward {key:34s} raw {raw:7.1f} ms   640x480 predict {full:7.1f} ms", flush=True)
            del est
        if torch.cuda.is_available():
            for prec in ("fp16", "bf16"):
                est = DepthEstimator(None, model=copy.deepcopy(base), device="cuda", precision=prec)
                x = est.preprocess(rgb)
                raw = timed(lambda est=est, x=x: est.forward(x), repeat * 3, 5, torch.cuda.synchronize)
                full = timed(lambda est=est: est.predict(rgb), repeat * 3, 5, torch.cuda.synchronize)
                key = f"cuda_torch_{prec}_{name}"
                detail[key] = {"raw": round(raw, 2), "predict_640x480": round(full, 2)}
                print(f"  forward {key:34s} raw {raw:7.1f} ms   640x480 predict {full:7.1f} ms", flush=True)
                del est
        del base
    d = detail
    res["forward_ms_fp32"] = d["cpu_torch_fp32_224x224"]["predict_640x480"]
    res["forward_ms_bf16"] = d["cpu_torch_bf16_224x224"]["predict_640x480"]
    res["forward_ms_fp32_onnxruntime"] = d["cpu_onnxruntime_fp32_224x224"]["predict_640x480"]
    res["forward_ms_int8_onnxruntime"] = d["cpu_onnxruntime_int8_224x224"]["predict_640x480"]
    res["raw_forward_ms_int8_onnxruntime"] = d["cpu_onnxruntime_int8_224x224"]["raw"]
    res["raw_forward_ms_bf16"] = d["cpu_torch_bf16_224x224"]["raw"]
    res[f"forward_ms_{res['node_precision']}_torch_compile"] = \
        d[f"cpu_torch_compile_{res['node_precision']}_224x224"]["predict_640x480"]
    res["raw_forward_ms_fp32"] = d["cpu_torch_fp32_224x224"]["raw"]

