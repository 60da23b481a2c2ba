"""A restart on a checkpoint whose ONNX Runtime graph is cached: found from the checkpoint's bytes,
run without torch, with the same depth as a full build; anything else falls back to the full build."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from moadepth_core.model.checkpoint import save_checkpoint
from moadepth_core.runtime import choice as runtime_choice
from moadepth_core.runtime import graph_cache
from moadepth_core.runtime.loader import (
    CachedGraphEstimator,
    find_cached_graph,
    load_estimator,
)
from moadepth_core.runtime.onnx_session import default_threads
from moadepth_core.runtime.torch.device import choose_device
from moadepth_core.runtime.torch.estimator import DepthEstimator
from model_cache import fresh_model

SIZE = [64, 96]
ROOT = Path(__file__).resolve().parents[1]
ORT = {"device": "cpu", "precision": "fp32", "backend": "onnxruntime"}  # what these tests test, never `auto`


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    torch.manual_seed(1)
    model = fresh_model(backbone="ViT-S-32", image_size=SIZE)
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:
                p.add_(0.01 * torch.randn_like(p))
    path = tmp_path_factory.mktemp("ckpt") / "small.pt"
    save_checkpoint(path, model, train_focal_px=77.5)
    return path


@pytest.fixture(scope="module")
def cache(tmp_path_factory, checkpoint) -> Path:
    """A cache of this module's own, where the checkpoint's first start (the export) already ran."""
    folder = tmp_path_factory.mktemp("onnx")
    old = os.environ.get("MOADEPTH_ONNX_CACHE")
    os.environ["MOADEPTH_ONNX_CACHE"] = str(folder)
    first = load_estimator(checkpoint, **ORT)  # a miss: builds, exports, records the alias
    assert isinstance(first, DepthEstimator) and first.backend == "onnxruntime"
    yield folder
    if old is None:
        os.environ.pop("MOADEPTH_ONNX_CACHE", None)
    else:
        os.environ["MOADEPTH_ONNX_CACHE"] = old


def _frame(seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 255, (48, 72, 3), dtype=np.uint8)


def test_cpu_features_read_without_torch_match_torch(monkeypatch):
    """The bf16 rule reads /proc/cpuinfo; torch's own CPUID probe is the reference."""
    monkeypatch.delenv(runtime_choice.CPU_BF16_ENV, raising=False)
    caps = torch.cpu.get_capabilities()
    assert runtime_choice.cpu_has_native_bf16() == bool(caps.get("avx512_bf16") or caps.get("amx_bf16"))
    if runtime_choice.cuda_certainly_absent():
        assert not torch.cuda.is_available()


@pytest.mark.parametrize("native", [True, False])
def test_auto_on_a_cpu_with_and_without_native_bf16(monkeypatch, native):
    """Both kinds of CPU, on any machine: the override drives the one function auto reads."""
    monkeypatch.setenv(runtime_choice.CPU_BF16_ENV, "1" if native else "0")
    assert runtime_choice.cpu_bf16_facts() == (native, f"MOADEPTH_CPU_BF16={int(native)}")
    # the defaults: ONNX Runtime fp32 on every CPU, so the node needs no torch (PERFORMANCE.md says why)
    chosen = runtime_choice.choose_runtime("cpu", "auto", "auto")
    assert chosen == ("cpu", "fp32", "onnxruntime")
    line = runtime_choice.explain_choice("cpu", "auto", "auto", chosen)
    assert line.startswith("runtime: cpu fp32 on onnxruntime (device cpu, precision auto, backend auto: ")
    assert f"this CPU {'has' if native else 'has no'} native bf16 (per MOADEPTH_CPU_BF16={int(native)})" in line
    assert ("precision bf16 selects it" in line) == native
    # backend torch chosen by the user: auto precision is bf16 only where the CPU runs it natively
    chosen = runtime_choice.choose_runtime("cpu", "auto", "torch")
    assert chosen == ("cpu", "bf16" if native else "fp32", "torch")
    assert f"auto precision with backend torch is {chosen[1]}" in runtime_choice.explain_choice(
        "cpu", "auto", "torch", chosen)
    # nothing auto: said as set, whatever the CPU
    assert runtime_choice.explain_choice("cpu", "fp32", "onnxruntime", ("cpu", "fp32", "onnxruntime")) == \
        "runtime: cpu fp32 on onnxruntime (device cpu, precision fp32, backend onnxruntime: as set)"


def test_a_cpu_bf16_override_that_is_not_yes_or_no_is_one_sentence(monkeypatch):
    from moadepth_core.errors import ConfigError

    monkeypatch.setenv(runtime_choice.CPU_BF16_ENV, "maybe")
    with pytest.raises(ConfigError, match=r"^MOADEPTH_CPU_BF16='maybe' is not a yes/no answer: use 1 .* or 0 "):
        runtime_choice.choose_runtime("cpu", "auto", "torch")


@pytest.mark.parametrize("device", ["cpu", "auto"])
@pytest.mark.parametrize("precision", ["auto", "fp32", "int8", "bf16"])
@pytest.mark.parametrize("backend", ["auto", "onnxruntime", "torch"])
def test_runtime_decided_without_torch_is_the_one_torch_decides(device, precision, backend):
    plan = runtime_choice.choose_cpu_runtime(device, precision, backend)
    dev = choose_device(device)  # torch's answer, as on a machine that may have a GPU
    prec = runtime_choice.choose_precision(precision, dev, backend)
    be = runtime_choice.choose_backend(backend, dev, prec)
    if plan is None:  # only where a GPU might be there
        assert device == "auto" and not runtime_choice.cuda_certainly_absent()
    else:
        assert dev.type == "cpu" and plan == (prec, be)
    assert runtime_choice.choose_runtime(device, precision, backend) == (str(dev), prec, be)
    assert runtime_choice.choose_cpu_runtime("cuda", precision, backend) is None


def test_default_threads_without_torch_are_torchs(tmp_path):
    """A torch-free process sizes ONNX Runtime's pool as torch would (physical cores, OMP_NUM_THREADS)."""
    code = "import sys; from moadepth_core.runtime.onnx_session import default_threads; " \
           "print(default_threads(), 'torch' in sys.modules)"
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")}
    got = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True).stdout
    want = subprocess.run([sys.executable, "-c", "import torch; print(torch.get_num_threads())"],
                          capture_output=True, text=True, env=env, check=True).stdout
    assert got.split() == [want.strip(), "False"]
    env["OMP_NUM_THREADS"] = "1"
    got = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True).stdout
    assert got.split()[0] == "1"
    assert default_threads() == torch.get_num_threads()  # torch loaded here: its own count


def test_second_start_reads_the_cached_graph_and_gives_the_same_depth(cache, checkpoint):
    first = DepthEstimator(checkpoint, device="cpu", backend="auto")  # the full build, for reference
    alias = graph_cache.checkpoint_alias(cache, checkpoint, None, "fp32")
    assert json.loads(alias.read_text())["graph"] == first._runtime.graph_file.name

    second = load_estimator(checkpoint, **ORT)
    assert isinstance(second, CachedGraphEstimator)
    assert second.graph_file == first._runtime.graph_file
    assert (second.model_size, second.train_focal_px, second.precision) == \
        (first.model_size, first.train_focal_px, first.precision) == ((64, 96), 77.5, "fp32")
    for seed in range(3):
        a, b = first.predict(_frame(seed)), second.predict(_frame(seed))
        np.testing.assert_array_equal(a.depth, b.depth)
        np.testing.assert_array_equal(a.confidence, b.confidence)
    small = second.predict(_frame(), output_size="model")
    assert small.depth.shape == (64, 96) and set(small.timings) == {"preprocess", "forward", "postprocess"}


def test_settings_or_bytes_that_differ_miss_the_alias(cache, checkpoint, tmp_path):
    # another size, precision or CLIP weights source is another graph: built in full
    full = load_estimator(checkpoint, input_size=(32, 64), **ORT)
    assert isinstance(full, DepthEstimator)
    smaller = load_estimator(checkpoint, input_size=(32, 64), **ORT)  # recorded by the build above
    assert isinstance(smaller, CachedGraphEstimator) and smaller.model_size == full.model_size == (32, 64)
    assert smaller.train_focal_px == full.train_focal_px == pytest.approx(77.5 * 64 / 96)  # follows the resize
    assert isinstance(load_estimator(checkpoint, pretrained="none", **ORT), DepthEstimator)
    # the same bytes under another name still hit; one byte changed does not
    moved = tmp_path / "moved.pt"
    shutil.copy(checkpoint, moved)
    assert isinstance(load_estimator(moved, **ORT), CachedGraphEstimator)
    data = bytearray(moved.read_bytes())
    data[-1] ^= 0xFF
    moved.write_bytes(bytes(data))
    assert graph_cache.read_alias(graph_cache.checkpoint_alias(cache, moved, None, "fp32")) is None
    # the backends that need torch never take the cached path
    assert isinstance(load_estimator(checkpoint, device="cpu", backend="torch", precision="fp32"), DepthEstimator)
    assert isinstance(load_estimator(checkpoint, device="cpu", backend="onnxruntime", precision="int8"), DepthEstimator)
    assert isinstance(load_estimator(checkpoint, device="cpu", backend="onnxruntime", precision="int8"), CachedGraphEstimator)


def test_an_alias_whose_graph_was_pruned_is_a_miss_and_goes_too(cache, checkpoint, tmp_path):
    graph = load_estimator(checkpoint, **ORT).graph_file
    aside = tmp_path / graph.name  # moved away and back: the same bytes without exporting again
    graph.rename(aside)
    assert find_cached_graph(checkpoint, **ORT) is None  # a miss, not a crash
    aside.rename(graph)
    assert find_cached_graph(checkpoint, **ORT) is not None
    naming = {a for a in cache.glob(f"{graph_cache.ALIAS_PREFIX}*.json")
              if json.loads(a.read_text())["graph"] == graph.name}
    others = set(cache.iterdir()) - naming - {graph}
    graph.rename(aside)
    assert graph_cache.checkpoint_alias(cache, checkpoint, None, "fp32") in naming
    assert set(graph_cache.prune_cache(cache)) == naming  # the aliases of other graphs stay
    assert set(cache.iterdir()) == others
    aside.rename(graph)
    assert find_cached_graph(checkpoint, **ORT) is None  # the alias went with it
    # the next start builds in full (the graph is found by its weights) and records the alias again
    assert isinstance(load_estimator(checkpoint, **ORT), DepthEstimator)
    assert isinstance(load_estimator(checkpoint, **ORT), CachedGraphEstimator)


def test_a_missing_checkpoint_still_fails_in_one_sentence(cache, tmp_path):
    from moadepth_core.errors import CheckpointError

    with pytest.raises(CheckpointError, match="does not exist"):
        load_estimator(tmp_path / "nope.pt", **ORT)


def test_warm_start_imports_no_torch(cache, checkpoint):
    """The point of it all: a process that starts from the cached graph never loads torch."""
    code = textwrap.dedent(f"""
        import sys, numpy as np
        from moadepth_core.runtime.loader import load_estimator
        est = load_estimator({str(checkpoint)!r}, device="auto", precision="fp32", backend="onnxruntime")
        res = est.predict(np.zeros((48, 72, 3), np.uint8))
        print(type(est).__name__, res.depth.shape, res.confidence.dtype,
              sorted(m for m in ("torch", "open_clip", "torchvision") if m in sys.modules))
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=ROOT, env=dict(os.environ)).stdout.strip()
    if not runtime_choice.cuda_certainly_absent():  # device auto with a CUDA driver: torch decides
        pytest.skip("a CUDA driver is installed here, so device auto needs torch")
    assert out == "CachedGraphEstimator (48, 72) float32 []"


def test_first_start_in_a_process_without_torch_exports_in_a_child(checkpoint, tmp_path):
    """Even the first start leaves the process without torch: a child builds and exports, the
    process loads the graph; the child's one-sentence errors arrive as the same error class. int8 is
    quantised from that fp32 graph in a second child without torch: the same graph DepthEstimator makes."""
    bad = tmp_path / "bad.pt"
    bad.write_bytes(checkpoint.read_bytes()[:1000])
    out_npy, out_int8 = tmp_path / "depth.npy", tmp_path / "depth-int8.npy"
    code = textwrap.dedent(f"""
        import sys, numpy as np
        from moadepth_core.errors import CheckpointError
        from moadepth_core.runtime.loader import load_estimator
        try:
            load_estimator({str(bad)!r}, device="cpu", precision="fp32", backend="onnxruntime")
        except CheckpointError as exc:
            print("refused:", exc)
        est = load_estimator({str(checkpoint)!r}, device="cpu", precision="fp32", backend="onnxruntime")
        np.save({str(out_npy)!r}, est.predict(np.full((48, 72, 3), 100, np.uint8)).depth)
        print(type(est).__name__, sorted(m for m in ("torch", "open_clip") if m in sys.modules))
        est = load_estimator({str(checkpoint)!r}, device="cpu", backend="onnxruntime", precision="int8")  # quantised in a child
        np.save({str(out_int8)!r}, est.predict(np.full((48, 72, 3), 100, np.uint8)).depth)
        print(type(est).__name__, est.precision, sorted(m for m in ("torch", "onnx") if m in sys.modules))
    """)
    env = {**os.environ, "MOADEPTH_ONNX_CACHE": str(tmp_path / "fresh-cache")}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=ROOT, env=env).stdout.strip().splitlines()
    assert out[0].startswith(f"refused: cannot read checkpoint {bad}") and "truncated or corrupt" in out[0]
    assert out[1] == "CachedGraphEstimator []"
    assert out[2] == "CachedGraphEstimator int8 []"  # quantised without torch or onnx in this process
    assert len(list((tmp_path / "fresh-cache").glob(f"{graph_cache.ALIAS_PREFIX}*.json"))) == 2  # fp32, int8
    frame = np.full((48, 72, 3), 100, np.uint8)
    want = DepthEstimator(checkpoint, device="cpu", backend="onnxruntime").predict(frame)
    np.testing.assert_array_equal(np.load(out_npy), want.depth)
    want = DepthEstimator(checkpoint, device="cpu", backend="onnxruntime", precision="int8").predict(frame)
    np.testing.assert_array_equal(np.load(out_int8), want.depth)
