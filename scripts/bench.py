#!/usr/bin/env python3
"""moadepth benchmark suite (issue 6): prints a table, writes bench-results.json at the repo root.

Why a script and not tests: speed depends on the machine, so targets live here as
measured figures beside the CPU model and thread count, never as timed assertions.
Every figure is the median of repeated runs. Weights are random (nothing can be
downloaded here, and speed does not depend on the values).

Stages (each bounded; the whole default suite stays well under 10 minutes):
  forward  network forward, batch 1: torch fp32 / bf16 and ONNX Runtime fp32 / int8 at 224x224 and a
           4:3 size, raw (model-size tensor) and through DepthEstimator from a 640x480 frame;
           torch_compile at the node's precision (224x224); CUDA fp16/bf16 when a GPU is present
  pack     image/depth conversions and depth -> points -> filled rclpy PointCloud2, ours vs the
           ``pointcloud2`` PyPI package
  train    training throughput (images/s), batch 8 at 224x224, CPU (and CUDA when present)
  peer     Depth Anything V2 Small architecture (transformers, random weights) at 518x518 and
           518x686 (640x480-equivalent), fp32, same threads
  transport  DDS transport alone: publish -> callback between two rclpy processes for the node's
           input (640x480 rgb8) and output (640x480 32FC1) and a tiny message, nothing else running
  node     depth_node over DDS on loopback: 640x480 rgb8 at 30 Hz, points on, at --node-precision
           (default auto, the node's default: fp32 on a CPU);
           stages node (backend auto, the node's default: onnxruntime fp32 on a CPU, torch on CUDA),
           node_compiled (torch_compile), node_onnxruntime_int8, and on request node_latest (the
           default with frame_policy latest), node_torch and node_onnxruntime (fp32); output rate,
           latency p50/p95 (publish -> depth received), overhead vs raw forward, peak RSS, and each
           frame's latency split (transport in, node stages, transport out) by joining the node's
           ``timing_log`` rows with this process's publish/receive times (both CLOCK_MONOTONIC)
  node_start  depth_node's start on a new checkpoint (exports the ONNX Runtime graph) and its next
           start on the same one (reads the cached graph without torch): seconds to the first depth,
           peak and settled RSS of each
  soak     (--soak only) issue 7: 2,000 frames at max rate through the node; RSS growth after
           warm-up, last frame answered, counts
"""

from __future__ import annotations

import argparse
import copy
import itertools
import json
import os
import platform
import random
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

# Network rule (docs/INSTALL.md): DDS discovery stays on this machine, one domain per run.
# Set before rclpy is imported anywhere, inherited by the node subprocess.
os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
os.environ.setdefault("ROS_DOMAIN_ID", str(random.SystemRandom().randint(1, 100)))
# The camera side of the node run is this process: same large-message transport as depth_node.
from moadepth_ros.node import transport  # noqa: E402

transport.use_large_data_profile()

import numpy as np  # noqa: E402
import torch  # noqa: E402

from moadepth_core.runtime.torch.estimator import choose_precision, cpu_has_native_bf16  # noqa: E402

warnings.filterwarnings("ignore")

FRAME_HW = (480, 640)
SIZES = {"224x224": (224, 224), "192x256": (192, 256)}  # square, and 4:3 like the camera


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def timed(fn: Callable[[], object], repeat: int, warmup: int = 2, sync: Callable[[], None] | None = None,
          budget_s: float | None = None) -> float:
    """Median milliseconds of ``fn`` over ``repeat`` runs after ``warmup`` (stops early past budget_s)."""
    for _ in range(warmup):
        fn()
    if sync:
        sync()
    times = []
    start = time.perf_counter()
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        if sync:
            sync()
        times.append((time.perf_counter() - t) * 1e3)
        if budget_s is not None and time.perf_counter() - start > budget_s and len(times) >= 3:
            break
    return statistics.median(times)


def build_random_model(size: tuple[int, int]):
    from moadepth_core.config import ModelConfig
    from moadepth_core.model.network import build_model

    torch.manual_seed(0)
    return build_model(ModelConfig(pretrained="none", image_size=list(size))).eval()


def test_frame() -> np.ndarray:
    """A 640x480 RGB frame with structure (gradients + noise), not a constant."""
    h, w = FRAME_HW
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:h, 0:w]
    base = np.stack([xx * 255 // w, yy * 255 // h, (xx + yy) * 255 // (w + h)], axis=-1)
    return np.clip(base + rng.integers(-20, 20, (h, w, 3)), 0, 255).astype(np.uint8)


# ---------------------------------------------------------------------------------------------
def stage_forward(res: dict, repeat: int) -> None:
    from moadepth_core.runtime.torch.estimator import DepthEstimator

    rgb = test_frame()
    detail = res["details"].setdefault("forward_ms", {})
    for name, size in SIZES.items():
        base = build_random_model(size)
        runs = [("torch", "fp32"), ("torch", "bf16"), ("onnxruntime", "fp32"), ("onnxruntime", "int8")]
        if name == "224x224":  # one compile costs ~30-60 s here: the node's size and precision only
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


# ---------------------------------------------------------------------------------------------
def stage_pack(res: dict, repeat: int) -> None:
    import pointcloud2
    from sensor_msgs.msg import PointCloud2, PointField
    from std_msgs.msg import Header

    from moadepth_core import geometry
    from moadepth_core.geometry import pointcloud
    from moadepth_core.geometry import postprocess as depth_postprocess
    from moadepth_ros import messages

    h, w = FRAME_HW
    rgb = test_frame()
    rng = np.random.default_rng(1)
    depth = rng.uniform(0.5, 8.0, (h, w)).astype(np.float32)
    depth[rng.random((h, w)) < 0.05] = np.nan  # some invalid pixels, as the node publishes
    K = geometry.intrinsics_matrix(525.0, 525.0, 319.5, 239.5)
    header = Header(frame_id="camera_optical_frame")
    img_msg = messages.numpy_to_image(rgb, "rgb8", header)

    def ours() -> PointCloud2:  # the node's own path
        return messages.cloud_to_msg(depth_postprocess.depth_cloud(depth, K, rgb=rgb), header)

    lib_fields = [PointField(name="x", offset=0, datatype=PointField.FLOAT32, count=1),
                  PointField(name="y", offset=4, datatype=PointField.FLOAT32, count=1),
                  PointField(name="z", offset=8, datatype=PointField.FLOAT32, count=1),
                  PointField(name="rgb", offset=12, datatype=PointField.FLOAT32, count=1)]

    def library() -> PointCloud2:
        pts = geometry.backproject(depth, K)
        colour = pointcloud.pack_rgb(rgb).view(np.float32)
        arr = np.concatenate([pts, colour[..., None]], axis=-1)  # (H, W, 4) float32, unstructured
        cloud = pointcloud2.create_cloud(header, lib_fields, arr)
        msg = PointCloud2(header=header, height=cloud.height, width=cloud.width, fields=list(cloud.fields),
                          is_bigendian=cloud.is_bigendian, point_step=cloud.point_step,
                          row_step=cloud.row_step, is_dense=cloud.is_dense)
        msg.data = messages._byte_array(cloud.data)
        return msg

    a, b = ours(), library()  # same bytes, or the comparison is meaningless
    assert bytes(a.data) == bytes(b.data) and a.point_step == b.point_step, "pack outputs differ"
    ours_ms = timed(ours, repeat * 3)
    lib_ms = timed(library, repeat * 3)
    conv_in = timed(lambda: messages.image_to_rgb8(img_msg), repeat * 3)
    conv_out = timed(lambda: messages.numpy_to_image(depth, "32FC1", header), repeat * 3)
    res["details"]["pack_ms"] = {"ours_points_to_msg": round(ours_ms, 2), "pointcloud2_lib": round(lib_ms, 2),
                                 "image_msg_to_rgb8": round(conv_in, 3), "depth_to_32FC1_msg": round(conv_out, 3)}
    res["pack_ms"] = round(ours_ms, 2)
    res["pack_ms_pointcloud2"] = round(lib_ms, 2)
    res["pack_speedup_vs_pointcloud2"] = round(lib_ms / ours_ms, 2)
    print(f"  pack ours {ours_ms:.2f} ms, pointcloud2 {lib_ms:.2f} ms; image->rgb8 {conv_in:.3f} ms, "
          f"depth->32FC1 {conv_out:.3f} ms", flush=True)


# ---------------------------------------------------------------------------------------------
def stage_train(res: dict, steps: int) -> None:
    from moadepth_core.config import LossConfig
    from moadepth_core.training.losses import depth_loss

    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    for dev in devices:
        model = build_random_model((224, 224)).to(dev).train()
        opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
        x = torch.rand(8, 3, 224, 224, device=dev)
        y = torch.rand(8, 1, 224, 224, device=dev) * 9 + 0.5
        cfg = LossConfig()

        def step(model=model, opt=opt, x=x, y=y, cfg=cfg) -> None:
            opt.zero_grad(set_to_none=True)
            out = model(x)
            depth_loss(out, y, cfg, model.head.edges)["loss"].backward()
            opt.step()

        sync = torch.cuda.synchronize if dev == "cuda" else None
        ms = timed(step, steps, warmup=1, sync=sync)
        ips = 8 / (ms / 1e3)
        key = "train_images_per_s" if dev == "cpu" else "train_images_per_s_cuda"
        res[key] = round(ips, 2)
        print(f"  train {dev}: batch 8 at 224x224, {ms:.0f} ms/step = {ips:.1f} images/s", flush=True)
        del model, opt


# ---------------------------------------------------------------------------------------------
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


# ---------------------------------------------------------------------------------------------
TRANSPORT_KINDS = {  # what depth_node receives and sends per frame, plus a tiny message for the fixed cost
    "tiny": ((4, 4), "rgb8"),
    "image": (FRAME_HW, "rgb8"),
    "depth": (FRAME_HW, "32FC1"),
}


def transport_echo(ns: str, seconds: float) -> None:
    """Child process of the transport stage: a plain rclpy node spun like depth_node's, recording
    publish -> callback per message (stamps carry the sender's CLOCK_MONOTONIC, shared by all
    processes), then printing one JSON line of medians."""
    import rclpy
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import Image

    rclpy.init()
    node = rclpy.create_node(f"moadepth_bench_echo_{os.getpid()}")
    qos = QoSProfile(depth=5, reliability=ReliabilityPolicy.RELIABLE)
    lat: dict[str, list[float]] = {k: [] for k in TRANSPORT_KINDS}

    def on_msg(kind: str, msg: Image) -> None:
        now = time.monotonic_ns()
        lat[kind].append((now - (msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec)) / 1e6)

    for kind in TRANSPORT_KINDS:
        node.create_subscription(Image, f"{ns}/floor/{kind}", lambda m, k=kind: on_msg(k, m), qos)
    end = time.monotonic() + seconds
    while time.monotonic() < end and rclpy.ok():
        rclpy.spin_once(node, timeout_sec=0.05)
    print(json.dumps({k: {"n": len(v), "p50": pct(v[10:], 50), "p90": pct(v[10:], 90)} for k, v in lat.items()}),
          flush=True)
    node.destroy_node()
    rclpy.try_shutdown()


def stage_transport(res: dict, count: int = 80, rate_hz: float = 25.0) -> None:
    """DDS transport under the node's overhead: publish -> callback between two rclpy processes for
    the node's own input (640x480 rgb8) and output (640x480 32FC1), same transport profile,
    nothing else running. Image hop + depth hop is what the overhead target must also pay for DDS;
    it moves with load (idle cores wake slower), so read it as a scale, not a strict bound."""
    import rclpy
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import Image

    from moadepth_ros import messages

    ns = f"/bench{os.getpid()}"
    seconds = 6.0 + len(TRANSPORT_KINDS) * count / rate_hz
    child = subprocess.Popen([sys.executable, __file__, "--transport-echo", ns, str(seconds)],
                             stdout=subprocess.PIPE, text=True, env=os.environ.copy())
    if not rclpy.ok():
        rclpy.init()
    node = rclpy.create_node(f"moadepth_bench_src_{os.getpid()}")
    qos = QoSProfile(depth=5, reliability=ReliabilityPolicy.RELIABLE)
    rng = np.random.default_rng(0)
    try:
        pubs, msgs = {}, {}
        for kind, (hw, enc) in TRANSPORT_KINDS.items():
            pubs[kind] = node.create_publisher(Image, f"{ns}/floor/{kind}", qos)
            arr = (rng.integers(0, 255, (*hw, 3), dtype=np.uint8) if enc == "rgb8"
                   else rng.uniform(0.5, 20, hw).astype(np.float32))
            msgs[kind] = messages.numpy_to_image(arr, enc)
        # The echo child imports this script, torch included: on a loaded 2-core machine that alone
        # took over 5 s, and publishing before it subscribed lost the first kind's messages.
        deadline = time.monotonic() + 60.0
        while any(p.get_subscription_count() == 0 for p in pubs.values()):
            if child.poll() is not None:
                raise RuntimeError(f"transport: the echo process exited (code {child.returncode}) before subscribing")
            if time.monotonic() > deadline:
                raise RuntimeError("transport: the echo process did not subscribe within 60 s")
            time.sleep(0.05)
        time.sleep(0.5)
        for kind, pub in pubs.items():
            msg = msgs[kind]
            for _ in range(count):
                msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(time.monotonic_ns(), 1_000_000_000)
                pub.publish(msg)
                time.sleep(1.0 / rate_hz)
        out, _ = child.communicate(timeout=seconds + 30)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait(5)
        node.destroy_node()
    got = json.loads(out.strip().splitlines()[-1])
    res["details"]["transport_ms"] = got
    for kind, v in got.items():
        if v["n"] < count // 2:
            raise RuntimeError(f"transport: only {v['n']} of {count} {kind} messages arrived")
        res[f"transport_{kind}_ms"] = round(v["p50"], 2)
    res["transport_in_out_ms"] = round(got["image"]["p50"] + got["depth"]["p50"], 2)
    print(f"  publish -> callback p50: tiny {got['tiny']['p50']:.2f} ms, 640x480 rgb8 {got['image']['p50']:.2f} ms, "
          f"640x480 32FC1 {got['depth']['p50']:.2f} ms; image in + depth out {res['transport_in_out_ms']} ms",
          flush=True)


# ---------------------------------------------------------------------------------------------
def _vm_hwm(pid: int) -> int:
    """A process's resident high-water mark in bytes (Linux), 0 when unreadable."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


class NodeRun:
    """depth_node as a subprocess plus an in-process rclpy publisher/subscriber pair on loopback."""

    def __init__(self, checkpoint: Path, precision: str, extra_params: dict[str, str] | None = None) -> None:
        import psutil
        import rclpy
        from rclpy.executors import SingleThreadedExecutor
        from rclpy.qos import QoSProfile, ReliabilityPolicy
        from sensor_msgs.msg import CameraInfo, Image, PointCloud2

        from moadepth_core import geometry
        from moadepth_ros import messages

        self.ns = f"/bench{os.getpid()}"
        exe = ROOT / ".venv" / "bin" / "depth_node"
        if not exe.exists():
            exe = Path(sys.executable).parent / "depth_node"
        fd, timing_log = tempfile.mkstemp(prefix="moadepth-bench-timing-", suffix=".csv")
        os.close(fd)
        self.timing_log = Path(timing_log)
        params = {"checkpoint": str(checkpoint), "precision": precision, "device": "cpu",
                  "publish_points": "true", "points_rgb": "true", "timing_log": str(self.timing_log),
                  **(extra_params or {})}
        cmd = [str(exe), "--ros-args", "-r", f"__ns:={self.ns}"]
        for k, v in params.items():
            cmd += ["-p", f"{k}:={v}"]
        self.log = tempfile.NamedTemporaryFile("w+", prefix="depth_node-", suffix=".log", delete=False)
        self.t_spawn = time.monotonic()
        self.first_depth_s: float | None = None  # spawn -> first depth received (wait_ready)
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT, env=os.environ.copy())
        self.ps = psutil.Process(self.proc.pid)
        self.rss_samples: list[tuple[float, int]] = []
        self.child_peak_rss = 0  # the largest child's high-water mark seen while sampling
        if not rclpy.ok():
            rclpy.init()
        self.rclpy = rclpy
        self.node = rclpy.create_node(f"moadepth_bench_{os.getpid()}")
        qos = QoSProfile(depth=5, reliability=ReliabilityPolicy.RELIABLE)
        self.img_pub = self.node.create_publisher(Image, f"{self.ns}/image", qos)
        self.info_pub = self.node.create_publisher(CameraInfo, f"{self.ns}/camera_info", qos)
        self.lock = threading.Lock()
        self.sent: dict[int, float] = {}  # stamp ns -> publish time (time.monotonic, as the node's timing log)
        self.depth_rx: list[tuple[int, float]] = []  # (stamp ns, receive time)
        self.points_rx = 0
        self.node.create_subscription(Image, f"{self.ns}/depth/image", self._on_depth, qos)
        self.node.create_subscription(PointCloud2, f"{self.ns}/points", self._on_points, qos)
        self.executor = SingleThreadedExecutor()
        self.executor.add_node(self.node)
        self.spin = threading.Thread(target=self.executor.spin, daemon=True)
        self.spin.start()
        rgb = test_frame()
        self.img = messages.numpy_to_image(rgb, "rgb8")
        self.img.header.frame_id = "bench_camera_optical_frame"
        K = geometry.intrinsics_matrix(525.0, 525.0, 319.5, 239.5)
        self.info = messages.make_camera_info(self.img.header, K, *FRAME_HW)
        self.seq = 0

    def _on_depth(self, msg) -> None:
        t = time.monotonic()
        stamp = msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec
        with self.lock:
            self.depth_rx.append((stamp, t))

    def frame_split(self, skip_s: float = 0.0) -> dict[str, list[float]]:
        """Per answered frame of the current drive (after ``skip_s``), milliseconds from publish to
        depth received, split by the node's timing log: transport in, the node's stages up to the
        depth message, transport out. Both processes stamp CLOCK_MONOTONIC, so the parts add up."""
        from moadepth_ros.node.diagnostics import STAGES, read_timing_log

        to_depth = STAGES[: STAGES.index("depth_out") + 1]  # the stages inside the depth latency

        try:
            rows = {r["stamp_ns"]: r for r in read_timing_log(self.timing_log)}
        except (OSError, KeyError, ValueError):
            return {}
        with self.lock:
            t0 = min(self.sent.values(), default=0.0)
            pairs = [(s, t) for s, t in self.depth_rx if s in self.sent and s in rows and self.sent[s] - t0 >= skip_s]
            sent = dict(self.sent)
        split: dict[str, list[float]] = {k: [] for k in ("latency", "transport_in", *to_depth, "transport_out")}
        for stamp, rx in pairs:
            row = rows[stamp]
            split["latency"].append((rx - sent[stamp]) * 1e3)
            split["transport_in"].append((row["received_s"] - sent[stamp]) * 1e3)
            for k in to_depth:
                split[k].append(row[f"{k}_ms"])
            split["transport_out"].append((rx - row["depth_published_s"]) * 1e3)
        return split

    def worker_cycle(self, skip_s: float = 0.0) -> dict[str, float]:
        """p50 of every stage of the node's worker (the outputs after depth included) and of the
        interval between depth publications, over the current drive: what bounds the output rate."""
        from moadepth_ros.node.diagnostics import STAGES, read_timing_log

        try:
            rows = read_timing_log(self.timing_log)
        except (OSError, KeyError, ValueError):
            return {}
        with self.lock:
            t0 = min(self.sent.values(), default=0.0)
            rows = [r for r in rows if r["stamp_ns"] in self.sent and self.sent[r["stamp_ns"]] - t0 >= skip_s]
        if len(rows) < 3:
            return {}
        out = {s: round(pct([r[f"{s}_ms"] for r in rows if r.get(f"{s}_ms") is not None], 50), 2)
               for s in STAGES if any(r.get(f"{s}_ms") is not None for r in rows)}
        published = sorted(r["depth_published_s"] for r in rows)
        out["cycle"] = round(pct([(b - a) * 1e3 for a, b in itertools.pairwise(published)], 50), 2)
        return out

    def _on_points(self, msg) -> None:
        with self.lock:
            self.points_rx += 1

    def sample_rss(self) -> int:
        import psutil

        try:
            children = self.ps.children(recursive=True)
            rss = sum(p.memory_info().rss for p in [self.ps, *children])
        except psutil.Error:
            return 0
        for child in children:  # e.g. the graph export's child interpreter on a first start
            self.child_peak_rss = max(self.child_peak_rss, _vm_hwm(child.pid))
        self.rss_samples.append((time.perf_counter(), rss))
        return rss

    def peak_rss(self) -> int:
        """Kernel high-water mark (VmHWM) when readable: catches peaks between samples."""
        return _vm_hwm(self.proc.pid) or max((r for _, r in self.rss_samples), default=0)

    def publish(self) -> int:
        """Publish one frame (+ CameraInfo) stamped with a unique ns value; returns the stamp."""
        self.seq += 1
        now = time.time_ns() // 1000 * 1000 + self.seq % 1000  # unique even within one microsecond
        self.img.header.stamp.sec, self.img.header.stamp.nanosec = divmod(now, 1_000_000_000)
        self.info.header.stamp = self.img.header.stamp
        with self.lock:
            self.sent[now] = time.monotonic()
        self.info_pub.publish(self.info)
        self.img_pub.publish(self.img)
        return now

    def wait_ready(self, timeout: float) -> bool:
        """Publish at 2 Hz until the first depth image comes back (model load + DDS discovery)."""
        end = time.perf_counter() + timeout
        while time.perf_counter() < end:
            if self.proc.poll() is not None:
                return False
            self.publish()
            self.sample_rss()
            time.sleep(0.5)
            with self.lock:
                if self.depth_rx:
                    self.first_depth_s = self.depth_rx[0][1] - self.t_spawn
                    return True
        return False

    def drive(self, rate_hz: float, duration_s: float | None = None, frames: int | None = None) -> tuple[int, int]:
        """Publish at ``rate_hz`` for a time or a frame count.

        ``rate_hz`` 0: back to back (a flood, most frames dropped by the node's latest-frame slot);
        negative: closed loop at the node's own maximum rate (the next frame goes out once all
        but one are answered), so every frame is processed.
        """
        with self.lock:
            self.depth_rx.clear()
            self.sent.clear()
            self.points_rx = 0
        period = 1.0 / rate_hz if rate_hz > 0 else 0.0
        start = time.perf_counter()
        next_t = start
        n = 0
        prev = None  # stamp of the previous frame (closed loop)
        last_rss = 0.0
        while True:
            if duration_s is not None and time.perf_counter() - start >= duration_s:
                break
            if frames is not None and n >= frames:
                break
            stamp = self.publish()
            n += 1
            now = time.perf_counter()
            if now - last_rss > 0.5:
                self.sample_rss()
                last_rss = now
            if rate_hz < 0:  # closed loop: keep the node busy (one frame running, one pending)
                wait_until = time.perf_counter() + 0.25  # a slow DDS repair must not stall the run
                while time.perf_counter() < wait_until:
                    with self.lock:
                        # the previous frame answered, or superseded by a newer answer (the node's
                        # latest-frame slot may drop it): counting answers would stall after a drop
                        if prev is None or (self.depth_rx and self.depth_rx[-1][0] >= prev):
                            break
                    time.sleep(0.001)
                prev = stamp
            elif period:
                next_t += period
                delay = next_t - time.perf_counter()
                if delay > 0:
                    time.sleep(delay)
                else:
                    next_t = time.perf_counter()
            elif rate_hz == 0:
                time.sleep(0.002)  # leave the GIL to the spinning executor
        return n, int((time.perf_counter() - start) * 1e9)

    def latencies(self, skip_s: float = 0.0) -> tuple[list[float], list[float]]:
        """(latencies ms of answered frames, receive times) for frames published after ``skip_s``."""
        with self.lock:
            t0 = min(self.sent.values(), default=0.0)
            lat, rx = [], []
            for stamp, t in self.depth_rx:
                if stamp in self.sent and self.sent[stamp] - t0 >= skip_s:
                    lat.append((t - self.sent[stamp]) * 1e3)
                    rx.append(t)
        return lat, rx

    def close(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
        self.executor.shutdown()
        self.node.destroy_node()
        self.log.close()
        self.timing_log.unlink(missing_ok=True)

    def log_tail(self, n: int = 15) -> str:
        try:
            return "\n".join(Path(self.log.name).read_text().splitlines()[-n:])
        except OSError:
            return ""


    def started_from_cache(self) -> bool:
        """Whether the node says it started from a cached graph without torch (its log)."""
        try:
            return "started from the graph cached" in Path(self.log.name).read_text()
        except OSError:
            return False


def make_checkpoint(tmp: Path, size: tuple[int, int] = (224, 224)) -> Path:
    from moadepth_core.model.checkpoint import save_checkpoint

    path = tmp / "bench-random.pt"
    save_checkpoint(path, build_random_model(size))
    return path


def make_weights_file_checkpoint(tmp: Path) -> Path:
    """A checkpoint over a CLIP weights file, the product's own path (hub weights load the same way
    from the hub cache): random weights written to ``tmp`` (605 MB), since none can be downloaded here."""
    import open_clip

    from moadepth_core.config import ModelConfig
    from moadepth_core.model.checkpoint import save_checkpoint
    from moadepth_core.model.network import build_model

    weights, path = tmp / "clip-vit-b-32.pt", tmp / "bench-weights-file.pt"
    torch.manual_seed(0)
    clip = open_clip.create_model("ViT-B-32", pretrained=None, force_quick_gelu=True)
    torch.save(clip.state_dict(), weights)
    del clip
    save_checkpoint(path, build_model(ModelConfig(pretrained=str(weights))))
    return path


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q)) if values else float("nan")


def stage_node(res: dict, tmp: Path, duration_s: float, rate_hz: float, backend: str = "auto",
               precision: str | None = None, frame_policy: str = "fresh") -> None:
    """depth_node end to end at ``precision`` (default ``res["node_precision"]``, fp32 for onnxruntime);
    backend auto (the node's default) writes the plain keys and ``node_backend``, others get a
    ``_<backend>`` suffix, plus ``_int8`` for int8 and ``_latest`` for frame_policy latest."""
    from moadepth_core.runtime.torch.estimator import DepthEstimator

    suffix = ("" if backend == "auto" else f"_{backend}") + ("_int8" if precision == "int8" else "") + \
        ("_latest" if frame_policy == "latest" else "")
    ckpt = make_checkpoint(tmp)
    # The overhead ratio's denominator: the raw forward of the same checkpoint, same threads, precision,
    # same backend, timed just before the node starts and again just after it stops, averaged
    # (this shared machine drifts by ±15 % within minutes). The estimator stays idle meanwhile.
    precision = precision or ("fp32" if backend == "onnxruntime" else res["node_precision"])
    size = res.get("node_input_size")
    est = DepthEstimator(ckpt, device="cpu", precision=precision, backend=backend, input_size=size)
    if backend == "auto":
        res["node_backend"] = est.backend  # what the node resolves too: same rule, same machine
    x = est.preprocess(test_frame())
    fwd_before = timed(lambda est=est, x=x: est.forward(x), 15, warmup=3)
    fwd = fwd_before
    r: dict = {}
    details: dict = {}
    run = NodeRun(ckpt, precision, {"backend": backend, "frame_policy": frame_policy, **({"input_height": str(size[0]), "input_width": str(size[1])}
                                                          if size else {})})
    try:
        if not run.wait_ready(180):
            print("  node: no depth came back within 180 s; node log:\n" + run.log_tail())
            res["node_error" + suffix] = "no output"
            return
        time.sleep(1.0)
        # 1) the load: 30 Hz for a bounded time
        sent, dur_ns = run.drive(rate_hz, duration_s=duration_s)
        time.sleep(1.0)  # let the last answers arrive
        lat, rx = run.latencies(skip_s=2.0)
        with run.lock:
            answered, points = len(run.depth_rx), run.points_rx
        hz = (len(rx) - 1) / (rx[-1] - rx[0]) if len(rx) > 2 else 0.0
        split = run.frame_split(skip_s=2.0)
        details["node_worker_cycle_p50_ms"] = run.worker_cycle(skip_s=2.0)
        r["node_output_hz"] = round(hz, 2)
        r["node_latency_p50_ms"] = round(pct(lat, 50), 1)
        r["node_latency_p95_ms"] = round(pct(lat, 95), 1)
        details["node_frames"] = {"sent": sent, "depth_received": answered, "points_received": points,
                                  "input_hz": rate_hz, "duration_s": duration_s}
        # 2) paced below the node's rate: latency without queueing = processing + transport
        paced_hz = max(1.0, min(rate_hz, 0.6 * hz)) if hz else 5.0
        run.drive(paced_hz, duration_s=min(10.0, duration_s))
        time.sleep(1.0)
        lat_p, _ = run.latencies(skip_s=1.0)
        split_p = run.frame_split(skip_s=1.0)
        for key, sp in (("", split), ("_paced", split_p)):
            if sp.get("latency"):
                # the "everything but the network forward" per frame, against that frame's forward
                share = [(lat - fw) / fw for lat, fw in zip(sp["latency"], sp["forward"], strict=True) if fw > 0]
                r["node_nonforward_share" + key] = round(pct(share, 50), 3)
                r["node_forward_ms" + key] = round(pct(sp["forward"], 50), 1)
                details["node_frame_split_p50_ms" + key] = {k: round(pct(v, 50), 2) for k, v in sp.items()}
                details["node_frame_split_frames" + key] = len(sp["latency"])
        r["node_latency_p50_ms_paced"] = round(pct(lat_p, 50), 1)
        r["node_paced_input_hz"] = round(paced_hz, 1)
        run.sample_rss()
        r["node_peak_rss_mb"] = round(run.peak_rss() / 2**20, 1)
        print(f"  node ({backend}): {sent} sent at {rate_hz:g} Hz, {answered} depth / {points} clouds back; "
              f"{hz:.1f} Hz out, latency p50 {r['node_latency_p50_ms']} ms p95 {r['node_latency_p95_ms']} ms; "
              f"paced {paced_hz:.1f} Hz p50 {r['node_latency_p50_ms_paced']} ms; "
              f"peak RSS {r['node_peak_rss_mb']} MB", flush=True)
        for key in ("node_frame_split_p50_ms", "node_frame_split_p50_ms_paced", "node_worker_cycle_p50_ms"):
            if details.get(key):
                print(f"  {key}: " + ", ".join(f"{k} {v} ms" for k, v in details[key].items()), flush=True)
    finally:
        run.close()
        fwd_after = timed(lambda est=est, x=x: est.forward(x), 15, warmup=3)
        fwd = (fwd_before + fwd_after) / 2
        r["node_raw_forward_ms"] = round(fwd, 2)
        details["node_raw_forward_ms_before_after"] = [round(fwd_before, 2), round(fwd_after, 2)]
        # overhead vs the raw network forward measured in this run (same threads, precision, backend)
        if "node_latency_p50_ms" in r:
            r["node_overhead_ratio"] = round(r["node_latency_p50_ms"] / fwd, 2)
            r["node_overhead_ratio_paced"] = round(r["node_latency_p50_ms_paced"] / fwd, 2)
        res.update({k + suffix: v for k, v in r.items()})
        res["details"].update({k + suffix: v for k, v in details.items()})


def stage_node_start(res: dict, tmp: Path) -> None:
    """depth_node's first start on a new checkpoint over a CLIP weights file (it exports the graph) and
    its next start on the same checkpoint (a robot's every other start): seconds from spawn to the first depth (frames go
    out at 2 Hz meanwhile, so ±0.5 s), the node's peak RSS, the peak of a child it started (the first
    start exports the graph in one: its high-water mark, last read up to 0.5 s before it exits), and RSS after 5 s at 10 Hz."""
    import shutil

    cache = tmp / "onnx-start"
    shutil.rmtree(cache, ignore_errors=True)
    old = os.environ.get("MOADEPTH_ONNX_CACHE")
    os.environ["MOADEPTH_ONNX_CACHE"] = str(cache)
    ckpt = make_weights_file_checkpoint(tmp)
    try:
        for key in ("first", "next"):
            run = NodeRun(ckpt, res["node_precision"], {"backend": "auto"})
            try:
                if not run.wait_ready(300):
                    print(f"  node ({key} start): no depth within 300 s; node log:\n" + run.log_tail())
                    res[f"node_{key}_start_error"] = "no output"
                    return
                run.drive(10.0, duration_s=5.0)
                settled = run.sample_rss()
                res[f"node_{key}_start_s"] = round(run.first_depth_s, 1)
                res[f"node_{key}_start_peak_rss_mb"] = round(run.peak_rss() / 2**20, 1)
                res[f"node_{key}_start_settled_rss_mb"] = round(settled / 2**20, 1)
                res[f"node_{key}_start_child_peak_rss_mb"] = round(run.child_peak_rss / 2**20, 1)
                res["details"][f"node_{key}_start_without_torch"] = run.started_from_cache()
                print(f"  node, {key} start: first depth after {res[f'node_{key}_start_s']} s, peak RSS "
                      f"{res[f'node_{key}_start_peak_rss_mb']} MB (its export child's: "
                      f"{res[f'node_{key}_start_child_peak_rss_mb']} MB), settled "
                      f"{res[f'node_{key}_start_settled_rss_mb']} MB, "
                      f"from the cached graph without torch: {run.started_from_cache()}", flush=True)
            finally:
                run.close()
    finally:
        if old is None:
            os.environ.pop("MOADEPTH_ONNX_CACHE", None)
        else:
            os.environ["MOADEPTH_ONNX_CACHE"] = old


def stage_soak(res: dict, tmp: Path, frames: int, warmup_frames: int) -> None:
    """Issue 7: frames at the node's max rate (closed loop); RSS growth after warm-up < 5 %,
    last frame answered, counts add up (sent = answered + dropped, no duplicate or unknown stamps)."""
    ckpt = make_checkpoint(tmp)
    run = NodeRun(ckpt, res["node_precision"])
    try:
        if not run.wait_ready(120):
            print("  soak: node gave no output; log:\n" + run.log_tail())
            res["soak_error"] = "no output"
            return
        run.drive(-1, frames=warmup_frames)
        time.sleep(1.0)
        rss_warm = run.sample_rss()
        run.rss_samples.clear()
        t0 = time.perf_counter()
        sent, _ = run.drive(-1, frames=frames)
        last_stamp = max(run.sent)
        deadline = time.perf_counter() + 15
        while time.perf_counter() < deadline:
            with run.lock:
                if any(s == last_stamp for s, _ in run.depth_rx[-5:]):
                    break
            time.sleep(0.05)
        elapsed = time.perf_counter() - t0
        rss_end = run.sample_rss()
        with run.lock:
            stamps = [s for s, _ in run.depth_rx]
            points = run.points_rx
        answered = len(stamps)
        unknown = len(set(stamps) - set(run.sent))
        dup = answered - len(set(stamps))
        peak = max((r for _, r in run.rss_samples), default=rss_end)
        soak = {
            "frames_sent": sent, "depth_received": answered, "points_received": points,
            "dropped": sent - answered, "duplicates": dup, "unknown_stamps": unknown,
            "counts_add_up": answered + (sent - answered) == sent and dup == 0 and unknown == 0,
            "last_frame_answered": last_stamp in set(stamps),
            "rss_after_warmup_mb": round(rss_warm / 2**20, 1), "rss_end_mb": round(rss_end / 2**20, 1),
            "rss_peak_mb": round(peak / 2**20, 1),
            "rss_growth_pct": round(100 * (rss_end - rss_warm) / rss_warm, 2) if rss_warm else None,
            "rss_peak_growth_pct": round(100 * (peak - rss_warm) / rss_warm, 2) if rss_warm else None,
            "elapsed_s": round(elapsed, 1), "output_hz": round(answered / elapsed, 2),
        }
        res["soak"] = soak
        print("  soak: " + ", ".join(f"{k} {v}" for k, v in soak.items()), flush=True)
    finally:
        run.close()


# ---------------------------------------------------------------------------------------------
TARGETS = [  # {prec}: the node runs' precision
    ("node_output_hz", ">=", 10.0, "depth_node 640x480, points, {prec} (Hz)"),
    ("node_output_hz_torch_compile", ">=", 10.0, "same, backend torch_compile (Hz)"),
    ("node_output_hz_onnxruntime", ">=", 10.0, "same, backend onnxruntime fp32 (Hz)"),
    ("node_output_hz_onnxruntime_int8", ">=", 10.0, "same, backend onnxruntime int8 (Hz)"),
    ("node_overhead_ratio", "<=", 1.15, "node latency / raw forward"),
    ("node_overhead_ratio_torch_compile", "<=", 1.15, "same, backend torch_compile"),
    ("node_overhead_ratio_onnxruntime", "<=", 1.15, "same, backend onnxruntime"),
    ("node_overhead_ratio_onnxruntime_int8", "<=", 1.15, "same, backend onnxruntime int8"),
    ("node_nonforward_share", "<=", 0.15, "per frame: (latency - forward) / forward"),
    ("node_nonforward_share_torch_compile", "<=", 0.15, "same, backend torch_compile"),
    ("node_nonforward_share_onnxruntime", "<=", 0.15, "same, backend onnxruntime"),
    ("node_nonforward_share_onnxruntime_int8", "<=", 0.15, "same, backend onnxruntime int8"),
    ("speed_ratio_vs_da2_small", ">=", 5.0, "DA2-Small 518² ms / ours fp32 ms"),
    ("pack_speedup_vs_pointcloud2", ">=", 1.0, "pointcloud2 lib ms / ours ms"),
]


NODE_ORT_ROWS = [
    ("node_raw_forward_ms", "onnxruntime: raw forward before / after its node run", "ms"),
    ("node_output_hz", "onnxruntime: depth_node output rate (30 Hz in)", "Hz"),
    ("node_latency_p50_ms", "onnxruntime: node latency p50", "ms"),
    ("node_latency_p95_ms", "onnxruntime: node latency p95", "ms"),
    ("node_overhead_ratio", "onnxruntime: node latency p50 / raw forward", "x"),
    ("node_nonforward_share", "onnxruntime: per frame (latency - forward) / forward", "x"),
    ("node_nonforward_share_paced", "onnxruntime: same at a paced input", "x"),
]


def print_table(res: dict) -> None:
    rows = [
        ("forward_ms_fp32", "forward fp32, 640x480 via DepthEstimator (torch, 224² model)", "ms"),
        ("forward_ms_fp32_onnxruntime", "forward fp32, 640x480 via DepthEstimator (onnxruntime)", "ms"),
        ("forward_ms_int8_onnxruntime", "forward int8, 640x480 via DepthEstimator (onnxruntime)", "ms"),
        ("raw_forward_ms_int8_onnxruntime", "raw network forward int8 at 224² (onnxruntime)", "ms"),
        ("forward_ms_bf16", "forward bf16, 640x480 via DepthEstimator (torch)", "ms"),
        ("raw_forward_ms_bf16", "raw network forward bf16 at 224²", "ms"),
        ("node_raw_forward_ms", "raw forward {prec} 224², mean of just before / after the node run", "ms"),
        ("node_output_hz", "depth_node output rate (30 Hz in, points, {prec})", "Hz"),
        ("node_latency_p50_ms", "node latency p50 (publish -> depth received)", "ms"),
        ("node_latency_p95_ms", "node latency p95", "ms"),
        ("node_overhead_ratio", "node latency p50 / raw forward", "x"),
        ("node_latency_p50_ms_paced", "node latency p50 at a paced input (no queueing)", "ms"),
        ("node_forward_ms", "the node's own forward per frame, p50 (timing log)", "ms"),
        ("node_nonforward_share", "per frame: (latency - its forward) / its forward, p50", "x"),
        ("node_nonforward_share_paced", "same at a paced input", "x"),
        ("node_overhead_ratio_paced", "paced node latency p50 / raw forward", "x"),
        ("node_peak_rss_mb", "depth_node peak RSS (graph cached by the bench's own estimator)", "MB"),
        ("node_first_start_s", "depth_node, new checkpoint (exports): seconds to the first depth", "s"),
        ("node_first_start_peak_rss_mb", "same: peak RSS", "MB"),
        ("node_first_start_settled_rss_mb", "same: RSS after 5 s at 10 Hz", "MB"),
        ("node_first_start_child_peak_rss_mb", "same: peak RSS of the export's child process (its VmHWM)", "MB"),
        ("node_next_start_s", "depth_node, next start (cached graph): seconds to the first depth", "s"),
        ("node_next_start_peak_rss_mb", "same: peak RSS", "MB"),
        ("node_next_start_settled_rss_mb", "same: RSS after 5 s at 10 Hz", "MB"),
        ("transport_tiny_ms", "DDS alone (idle processes): tiny message, publish -> callback p50", "ms"),
        ("transport_image_ms", "DDS alone (idle processes): 640x480 rgb8, publish -> callback p50", "ms"),
        ("transport_depth_ms", "DDS alone (idle processes): 640x480 32FC1, publish -> callback p50", "ms"),
        ("transport_in_out_ms", "DDS alone (idle processes): image in + depth out", "ms"),
        ("transport_share_of_forward", "DDS transport in + out / the node's raw forward", "x"),
        ("forward_ms_bf16_torch_compile", "forward bf16, 640x480 via DepthEstimator (torch_compile)", "ms"),
        ("forward_ms_fp32_torch_compile", "forward fp32, 640x480 via DepthEstimator (torch_compile)", "ms"),
        ("node_raw_forward_ms_torch_compile", "torch_compile: raw forward before / after its node run", "ms"),
        ("node_output_hz_torch_compile", "torch_compile: depth_node output rate (30 Hz in)", "Hz"),
        ("node_latency_p50_ms_torch_compile", "torch_compile: node latency p50", "ms"),
        ("node_latency_p95_ms_torch_compile", "torch_compile: node latency p95", "ms"),
        ("node_overhead_ratio_torch_compile", "torch_compile: node latency p50 / raw forward", "x"),
        ("node_latency_p50_ms_paced_torch_compile", "torch_compile: node latency p50, paced", "ms"),
        ("node_overhead_ratio_paced_torch_compile", "torch_compile: paced latency / raw forward", "x"),
        ("node_nonforward_share_torch_compile", "torch_compile: per frame (latency - forward) / forward", "x"),
        ("node_nonforward_share_paced_torch_compile", "torch_compile: same at a paced input", "x"),
        *[(k + "_onnxruntime", label, unit) for k, label, unit in NODE_ORT_ROWS],
        *[(k + "_onnxruntime_int8", "onnxruntime int8: " + label.split(": ", 1)[1], unit)
          for k, label, unit in NODE_ORT_ROWS],
        *[(k + "_torch", "torch: " + label.split(": ", 1)[1], unit) for k, label, unit in NODE_ORT_ROWS],
        *[(k + "_latest", "frame_policy latest: " + label.split(": ", 1)[1], unit) for k, label, unit in NODE_ORT_ROWS],
        ("pack_ms", "depth -> points -> PointCloud2 (ours)", "ms"),
        ("pack_ms_pointcloud2", "same with the pointcloud2 library", "ms"),
        ("pack_speedup_vs_pointcloud2", "pack speed-up vs pointcloud2", "x"),
        ("peer_da2_small_ms", "DA2-Small fp32 518x518 forward", "ms"),
        ("speed_ratio_vs_da2_small", "DA2-Small ms / ours fp32 ms (torch)", "x"),
        ("speed_ratio_vs_da2_small_onnxruntime", "DA2-Small ms / ours fp32 ms (onnxruntime)", "x"),
        ("train_images_per_s", "training throughput, batch 8 at 224², CPU", "img/s"),
    ]
    prec = res["node_precision"] + (f" {res['node_backend']}" if "node_backend" in res else "")
    print(f"\nmoadepth benchmark — {res['cpu']} ({'native' if res['cpu_native_bf16'] else 'no native'} bf16), "
          f"{res['threads']} threads, {res['date']}, load average {res['loadavg_start']:.1f} at start")
    print(f"{'figure':64s} {'value':>10s}")
    print("-" * 76)
    for key, label, unit in rows:
        if key in res:
            print(f"{label.format(prec=prec):64s} {res[key]:>10} {unit}")
    print("\ntargets:")
    for key, op, target, label in TARGETS:
        label = label.format(prec=prec)
        if key not in res:
            print(f"  {label:44s} not measured")
            continue
        ok = res[key] >= target if op == ">=" else res[key] <= target
        print(f"  {label:44s} {res[key]:>8} {op} {target:<6} {'MET' if ok else 'MISSED'}")


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
                    default="forward,pack,train,peer,transport,node,node_compiled,node_onnxruntime_int8,node_start",
                    help="comma-separated subset of forward,pack,train,peer,transport,node (backend auto, the "
                         "node's default),node_compiled,node_onnxruntime_int8,node_start, and on request node_latest "
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
                elif stage == "train":
                    stage_train(res, args.train_steps)
                elif stage == "peer":
                    stage_peer(res, max(3, args.repeat // 3))
                elif stage == "transport":
                    stage_transport(res)
                elif stage == "node":
                    stage_node(res, Path(tmp), args.node_seconds, args.node_rate)
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


if __name__ == "__main__":
    sys.exit(main())
