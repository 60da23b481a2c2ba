"""``.venv/bin/depth_node`` as its own process, the test as a separate DDS client."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from depth_node_harness import (
    Client,
    Spinner,
    camera_K,
    checkpoint_file,
    image_msg,
    info_msg,
    rgb_frame,
    wait_for,
)

pytest_plugins = ["depth_node_harness"]  # its fixture: ros

pytestmark = [pytest.mark.slow, pytest.mark.ros]

EXE = Path(sys.executable).with_name("depth_node")
H, W = 48, 72


ORT_FP32 = ("-p", "backend:=onnxruntime", "-p", "precision:=fp32")  # the torch-free path, asked for by name


def _start(*ros_args: str, env: dict[str, str] | None = None) -> subprocess.Popen:
    return subprocess.Popen([str(EXE), "--ros-args", *ros_args], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, env={**os.environ, **(env or {})})


def _stop(proc: subprocess.Popen) -> str:
    proc.send_signal(signal.SIGINT)
    try:
        return proc.communicate(timeout=20)[0]
    except subprocess.TimeoutExpired:
        proc.kill()
        return proc.communicate()[0]


def _maps_torch(pid: int) -> bool:
    """Whether the process has torch's library mapped: the kernel's view, not the process's word."""
    return "libtorch" in Path(f"/proc/{pid}/maps").read_text()


def test_node_process_answers_a_separate_client(ros):
    assert EXE.exists(), "depth_node is not installed in the venv (pip install -e .)"
    ck = str(checkpoint_file())
    # this checkpoint's graph is cached (exported here if no earlier test did): the node restarts
    # from it without torch, as on a robot's every start but the first
    from moadepth_core.runtime.loader import load_estimator

    load_estimator(ck, device="cpu", precision="fp32", backend="onnxruntime")
    # the refusals start in parallel with the real node: each costs one interpreter start-up
    refusals = {"untrained": _start(), "cuda": _start("-p", f"checkpoint:={ck}", "-p", "device:=cuda")}
    proc = _start("-p", f"checkpoint:={ck}", *ORT_FP32, "-p", "max_uncertainty:=1000.0", "-p", "min_depth:=0.0",
                  "-p", "max_depth:=1000.0", "-r", "image:=/cam/image", "-r", "camera_info:=/cam/camera_info",
                  "-r", "depth/image:=/cam/depth/image", "-r", "depth/camera_info:=/cam/depth/camera_info",
                  "-r", "points:=/cam/points", "-r", "depth/confidence:=/cam/depth/confidence")
    client = Client(prefix="/cam")
    spin = Spinner(client)
    try:
        assert wait_for(lambda: client.image_pub.get_subscription_count() >= 1 or proc.poll() is not None, 90.0)
        assert proc.poll() is None, proc.communicate()[0]
        stamp = 1_234 * 10**9 + 5
        K = camera_K(H, W)
        ok = False
        for i in range(40):  # the node's publishers may match a little after its subscription
            s = stamp + i
            client.info_pub.publish(info_msg(K, H, W, s, "proc_cam"))
            client.image_pub.publish(image_msg(rgb_frame(H, W), s, "proc_cam"))
            if wait_for(lambda: client.got("points") and client.got("depth"), 1.5):
                ok = True
                break
        assert ok, "no answer from the node process"
        d = client.got("depth")[-1]
        assert d.header.frame_id == "proc_cam" and stamp <= d.header.stamp.sec * 10**9 + d.header.stamp.nanosec
        assert (d.height, d.width) == (H, W) and d.encoding == "32FC1"
        if sys.platform == "linux":
            assert not _maps_torch(proc.pid)
            assert _maps_torch(os.getpid())  # the probe finds torch where it is loaded
    finally:
        spin.close()
        client.destroy_node()
        out = _stop(proc)
    assert proc.returncode == 0, out
    assert "Traceback" not in out
    assert "started from the graph cached for this checkpoint" in out
    for name, p in refusals.items():
        try:
            out = p.communicate(timeout=90)[0]
        except subprocess.TimeoutExpired:
            p.kill()
            pytest.fail(f"{name} refusal did not exit")
        assert p.returncode == 2, (name, out)
        assert "Traceback" not in out
        lines = [ln for ln in out.splitlines() if "cannot start" in ln]
        assert len(lines) == 1, out
        assert ("untrained" in lines[0]) if name == "untrained" else ("CUDA" in lines[0])


@pytest.mark.parametrize("native", [True, False], ids=["cpu-with-native-bf16", "cpu-without"])
def test_default_node_on_either_cpu_starts_torch_free_and_says_why(ros, native):
    """The defaults (device, precision and backend auto) on a CPU with native bf16 and on one without,
    driven by MOADEPTH_CPU_BF16: both start from the cached ONNX Runtime fp32 graph, never map torch,
    and log the one line that says what ran and why."""
    ck = str(checkpoint_file())
    from moadepth_core.runtime.loader import load_estimator

    load_estimator(ck, device="cpu", precision="fp32", backend="onnxruntime")  # the graph auto will find
    proc = _start("-p", f"checkpoint:={ck}", env={"MOADEPTH_CPU_BF16": "1" if native else "0"})
    client = Client()
    spin = Spinner(client)
    try:
        assert wait_for(lambda: client.image_pub.get_subscription_count() >= 1 or proc.poll() is not None, 90.0)
        assert proc.poll() is None, proc.communicate()[0]
        if sys.platform == "linux":
            assert not _maps_torch(proc.pid)
    finally:
        spin.close()
        client.destroy_node()
        out = _stop(proc)
    assert proc.returncode == 0 and "Traceback" not in out, out
    assert "started from the graph cached for this checkpoint" in out
    why = [ln for ln in out.splitlines() if "runtime: cpu fp32 on onnxruntime (device auto, precision auto" in ln]
    assert len(why) == 1, out
    assert f"this CPU {'has' if native else 'has no'} native bf16 (per MOADEPTH_CPU_BF16={int(native)})" in why[0]
    assert ("precision bf16 selects it" in why[0]) == native


def test_help_exits_0_with_the_parameter_table():
    done = subprocess.run([str(EXE), "--help"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("usage: depth_node") and "max_uncertainty (default 0.3" in done.stdout
    assert "unknown arguments" not in done.stdout + done.stderr
