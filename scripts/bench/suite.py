"""moadepth benchmark suite (issue 6): prints a table, writes bench-results.json at the repo root.

Parses the arguments, runs the chosen stages (one failing stage keeps the others' figures), writes
the results and prints the table. ``--transport-echo`` runs the transport stage's receiving process.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
import warnings
from pathlib import Path

import torch

from moadepth_core.runtime.choice import choose_precision, cpu_has_native_bf16

from . import ROOT
from .batched import stage_batched
from .common import cpu_model
from .forward import stage_forward
from .multi_camera import stage_multi_camera
from .node import stage_node
from .node_resolutions import stage_node_resolutions
from .node_start import stage_node_start
from .pack import stage_pack
from .peer import stage_peer
from .report import print_table
from .soak import stage_soak
from .train import stage_train
from .transport import stage_transport, transport_echo

warnings.filterwarnings("ignore")


def input_size_arg(text: str) -> list[int]:
    """``HxW`` with both sides positive multiples of 32 (what the network accepts)."""
    try:
        h, w = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not HxW, e.g. 192x192") from None
    if h <= 0 or w <= 0 or h % 32 or w % 32:
        raise argparse.ArgumentTypeError(f"{text!r}: both sides must be positive multiples of 32")
    return [h, w]


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--transport-echo"]:  # the transport stage's receiving process
        transport_echo(argv[1], float(argv[2]))
        return 0
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--stages",
                    default="forward,pack,batched,train,peer,transport,node,node_resolutions,multi_camera,"
                            "node_compiled,node_onnxruntime_int8,node_start",
                    help="comma-separated subset of forward,pack,batched (forward per image at batch "
                         "1-4, ONNX Runtime and torch),train,peer,transport,node (backend auto, the "
                         "node's default),node_resolutions (the default node at 640x480, 1280x720, 1920x1080),multi_camera (3 cameras: one "
                         "process against three),"
                         "node_compiled,node_onnxruntime_int8,node_start, and on request node_latest "
                         "(frame_policy latest), node_torch, node_onnxruntime (fp32)")
    ap.add_argument("--node-input-size", default=None, metavar="HxW", type=input_size_arg,
                    help="network input size of the node runs (default: the checkpoint's, 224x224)")
    ap.add_argument("--node-precision", default="auto", choices=("auto", "fp32", "bf16"),
                    help="precision of the node runs and torch_compile forward (auto: the node's default)")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="torch/ORT threads (default: all)")
    ap.add_argument("--repeat", type=int, default=15, help="timed runs per figure (median reported)")
    ap.add_argument("--node-seconds", type=float, default=20.0, help="length of the 30 Hz node run")
    ap.add_argument("--node-rate", type=float, default=30.0, help="input rate for the node run (Hz)")
    ap.add_argument("--train-steps", type=int, default=4)
    ap.add_argument("--soak", action="store_true", help="also run the issue-7 soak (2,000 frames at max rate)")
    ap.add_argument("--soak-frames", type=int, default=2000)
    ap.add_argument("--out", type=Path, default=ROOT / "bench-results.json")
    args = ap.parse_args(argv)

    torch.set_num_threads(args.threads)
    stages = [s.strip() for s in args.stages.split(",") if s.strip()]
    res: dict = {"cpu": cpu_model(), "threads": torch.get_num_threads(), "cores": os.cpu_count(),
                 "date": time.strftime("%Y-%m-%d %H:%M %Z"), "torch": torch.__version__,
                 "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
                 "ros_domain_id": int(os.environ["ROS_DOMAIN_ID"]), "loadavg_start": os.getloadavg()[0],
                 "cpu_native_bf16": cpu_has_native_bf16(),
                 "node_precision": choose_precision(args.node_precision, torch.device("cpu")),
                 "node_input_size": args.node_input_size,
                 "details": {}}
    if res["loadavg_start"] > 0.5 * (os.cpu_count() or 1):
        print(f"WARNING: load average {res['loadavg_start']:.1f} on {os.cpu_count()} cores: other processes "
              f"compete for the CPU and every figure below is pessimistic", flush=True)
    t_start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="moadepth-bench-") as tmp:
        os.environ.setdefault("MOADEPTH_ONNX_CACHE", str(Path(tmp) / "onnx"))
        for stage in stages + (["soak"] if args.soak else []):
            t = time.perf_counter()
            print(f"[{stage}]", flush=True)
            try:
                if stage == "forward":
                    stage_forward(res, args.repeat)
                elif stage == "pack":
                    stage_pack(res, args.repeat)
                elif stage == "batched":
                    stage_batched(res, Path(tmp), args.repeat)
                elif stage == "train":
                    stage_train(res, args.train_steps)
                elif stage == "peer":
                    stage_peer(res, max(3, args.repeat // 3))
                elif stage == "transport":
                    stage_transport(res)
                elif stage == "node":
                    stage_node(res, Path(tmp), args.node_seconds, args.node_rate)
                elif stage == "node_resolutions":
                    stage_node_resolutions(res, Path(tmp), args.node_seconds, args.node_rate)
                elif stage == "multi_camera":
                    stage_multi_camera(res, Path(tmp), args.node_seconds, args.node_rate)
                elif stage == "node_latest":
                    stage_node(res, Path(tmp), args.node_seconds, args.node_rate, frame_policy="latest")
                elif stage == "node_torch":
                    stage_node(res, Path(tmp), args.node_seconds, args.node_rate, backend="torch")
                elif stage == "node_compiled":
                    stage_node(res, Path(tmp), args.node_seconds, args.node_rate, backend="torch_compile")
                elif stage == "node_onnxruntime":
                    stage_node(res, Path(tmp), args.node_seconds, args.node_rate, backend="onnxruntime")
                elif stage == "node_onnxruntime_int8":
                    stage_node(res, Path(tmp), args.node_seconds, args.node_rate, backend="onnxruntime",
                               precision="int8")
                elif stage == "node_start":
                    stage_node_start(res, Path(tmp))
                elif stage == "soak":
                    stage_soak(res, Path(tmp), args.soak_frames, warmup_frames=200)
                else:
                    print(f"  unknown stage {stage!r}")
            except Exception as exc:  # one broken stage must not lose the others' figures
                res.setdefault("errors", {})[stage] = f"{type(exc).__name__}: {exc}"
                print(f"  {stage} failed: {type(exc).__name__}: {exc}", flush=True)
            res["details"].setdefault("stage_s", {})[stage] = round(time.perf_counter() - t, 1)
    fwd = res.get("node_raw_forward_ms", res.get(f"raw_forward_ms_{res['node_precision']}"))
    if "transport_in_out_ms" in res and fwd:
        # DDS alone, between otherwise idle processes, as a share of the forward: what the overhead
        # target leaves for everything else (not a strict bound: wake-ups cost less on a busy CPU)
        res["transport_share_of_forward"] = round(res["transport_in_out_ms"] / fwd, 3)
    res["total_s"] = round(time.perf_counter() - t_start, 1)
    res["loadavg_end"] = os.getloadavg()[0]
    args.out.write_text(json.dumps(res, indent=2) + "\n")
    print_table(res)
    print(f"\nwrote {args.out} ({res['total_s']} s)")
    return 1 if res.get("errors") else 0
