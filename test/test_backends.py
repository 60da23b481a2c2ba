"""The ONNX Runtime backend must give what torch gives (speed is measured in scripts/bench only)."""

from __future__ import annotations

import copy
import functools
import os
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from moadepth_core.errors import DeviceError
from moadepth_core.runtime.processing import prepare_input
from moadepth_core.runtime.torch.backends import OnnxRuntimeBackend, _graph_file, check_backend
from moadepth_core.runtime.torch.estimator import DepthEstimator
from model_cache import fresh_model

SIZE = (64, 96)  # a 4:3-ish non-square size: catches H/W mix-ups in the export


@functools.lru_cache(maxsize=1)
def _small_model():
    """A small random-weight network (ViT-S/32 tower): exports in a few seconds."""
    return fresh_model(backbone="ViT-S-32", image_size=list(SIZE)).eval()


@pytest.fixture(scope="module")
def onnx_cache(tmp_path_factory) -> Iterator[Path]:
    """One export per test module (it is the slow part), reused through the backend's cache."""
    path = tmp_path_factory.mktemp("onnx")
    old = os.environ.get("MOADEPTH_ONNX_CACHE")
    os.environ["MOADEPTH_ONNX_CACHE"] = str(path)  # DepthEstimator(backend="onnxruntime") finds it
    OnnxRuntimeBackend(_small_model(), SIZE, cache_dir=path)
    yield path
    if old is None:
        os.environ.pop("MOADEPTH_ONNX_CACHE", None)
    else:
        os.environ["MOADEPTH_ONNX_CACHE"] = old


@pytest.fixture(scope="module")
def estimators(onnx_cache) -> tuple[DepthEstimator, DepthEstimator]:
    model = _small_model()
    ref = DepthEstimator(None, model=model, device="cpu", precision="fp32")
    ort = DepthEstimator(None, model=model, device="cpu", precision="fp32", backend="onnxruntime")
    return ref, ort


def test_onnxruntime_matches_torch_predict(estimators):
    ref, ort = estimators
    rgb = np.random.default_rng(0).integers(0, 256, (120, 160, 3), dtype=np.uint8)
    a, b = ref.predict(rgb), ort.predict(rgb)
    assert b.depth.shape == (120, 160) and b.depth.dtype == np.float32
    np.testing.assert_allclose(b.depth, a.depth, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(b.uncertainty, a.uncertainty, rtol=1e-3, atol=1e-4)
    np.testing.assert_allclose(b.confidence, a.confidence, atol=1e-4)
    m1, m2 = ref.predict(rgb, output_size="model"), ort.predict(rgb, output_size="model")
    assert m2.depth.shape == SIZE
    np.testing.assert_allclose(m2.depth, m1.depth, rtol=1e-4, atol=1e-4)


def test_onnxruntime_predict_runs_no_torch_op_and_prepares_bit_for_bit(estimators):
    """The ONNX Runtime frame path stays in numpy (a torch op wakes OpenMP threads that then compete
    with ORT's pool): no aten op runs in predict or confidence, and the numpy input is bit for bit
    the torch preprocessing, so both routes give identical depth."""
    _, ort = estimators
    rgb = np.random.default_rng(2).integers(0, 256, (120, 160, 3), dtype=np.uint8)
    np.testing.assert_array_equal(prepare_input(rgb, ort.model_size), ort.preprocess(rgb).numpy())
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        res = ort.predict(rgb, output_size="model")
        conf = res.confidence
    assert [e.name for e in prof.events() if e.name.startswith("aten::")] == []
    via_torch = ort.forward(ort.preprocess(rgb))
    np.testing.assert_array_equal(res.depth, via_torch["depth"][0, 0].numpy())
    np.testing.assert_array_equal(conf, (1.0 - via_torch["uncertainty"][0, 0]).clamp(0, 1).numpy())


def _flip_averaged_through_torch(est, rgb):
    """Flip averaging as evaluate.predict_depth did it before it moved onto the estimator (torch ops)."""
    x = est.preprocess(rgb)
    if est.backend == "torch":
        d = est.forward(torch.cat([x, x.flip(-1)]))["depth"].float()
    else:
        d = torch.cat([est.forward(x)["depth"], est.forward(x.flip(-1))["depth"]]).float()
    depth = (0.5 * (d[0, 0] + d[1, 0].flip(-1))).cpu().numpy()
    return cv2.resize(depth, (rgb.shape[1], rgb.shape[0]), interpolation=cv2.INTER_LINEAR)


def test_flip_averaging_on_the_estimator_gives_the_torch_route_numbers_and_onnxruntime_runs_no_torch_op(estimators):
    rgb = np.random.default_rng(3).integers(0, 256, (120, 160, 3), dtype=np.uint8)
    for est in estimators:
        got = est.predict_flip_averaged(rgb)
        assert got.shape == (120, 160) and got.dtype == np.float32
        np.testing.assert_array_equal(got, _flip_averaged_through_torch(est, rgb))
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        estimators[1].predict_flip_averaged(rgb)
    assert [e.name for e in prof.events() if e.name.startswith("aten::")] == []


def test_onnxruntime_releases_the_torch_weights_it_loaded(onnx_cache, tmp_path):
    """ORT holds its own copy of the weights: an estimator that loaded the checkpoint itself drops the
    torch copy (hundreds of MB for ViT-B/32) and still gives torch's depth; a model passed in by the
    caller is never touched."""
    from moadepth_core.model.checkpoint import save_checkpoint

    ckpt = tmp_path / "small.pt"
    save_checkpoint(ckpt, _small_model(), train_focal_px=80.0, step=1)
    ort = DepthEstimator(ckpt, device="cpu", precision="fp32", backend="onnxruntime")
    assert all(t.device.type == "meta" for t in ort.model.parameters())
    assert ort.model.cfg.image_size == list(SIZE)  # the config stays readable
    ref = DepthEstimator(ckpt, device="cpu", precision="fp32")
    rgb = np.random.default_rng(4).integers(0, 256, (120, 160, 3), dtype=np.uint8)
    np.testing.assert_allclose(ort.predict(rgb).depth, ref.predict(rgb).depth, rtol=1e-4, atol=1e-4)
    assert all(t.device.type == "cpu" for t in _small_model().parameters())


def test_onnxruntime_threads_stop_spinning_once_a_run_ends(onnx_cache):
    """Between frames the node's other threads need the cores: ONNX Runtime's pool, left to its
    default, keeps spinning after a run (measured here: 33-44 ms of CPU in the next 0.3 s)."""
    import time

    import onnxruntime as ort

    from moadepth_core.runtime.torch.backends import export_graph

    ours = OnnxRuntimeBackend(_small_model(), SIZE, threads=2, cache_dir=onnx_cache)
    so = ort.SessionOptions()
    so.intra_op_num_threads = 2
    default = ort.InferenceSession(str(export_graph(_small_model(), SIZE, "fp32", onnx_cache)), so,
                                   providers=["CPUExecutionProvider"])
    x = np.random.default_rng(0).random((1, 3, *SIZE), dtype=np.float32)

    def cpu_after_run(session) -> float:
        session.run(None, {ours.input_name: x})
        start = time.process_time()
        time.sleep(0.3)
        return time.process_time() - start

    for session in (ours.session, default):
        cpu_after_run(session)  # warm-up: the first run allocates
    assert max(cpu_after_run(ours.session) for _ in range(3)) < 0.01
    assert max(cpu_after_run(default) for _ in range(3)) > 0.01  # so the check above can fail


def test_onnxruntime_forward_outputs_and_shape_check(estimators):
    _, ort = estimators
    out = ort.forward(torch.rand(1, 3, *SIZE))
    assert set(out) == {"depth", "uncertainty"}
    assert out["depth"].shape == (1, 1, *SIZE)
    assert ort.forward(torch.rand(3, 3, *SIZE))["uncertainty"].shape == (3, 1, *SIZE)  # the batch axis
    with pytest.raises(DeviceError, match=f"at {SIZE[0]}x{SIZE[1]}"):
        ort.forward(torch.rand(2, 3, SIZE[0] + 32, SIZE[1]))


def test_onnx_cache_is_reused(onnx_cache):
    model = _small_model()
    path = _graph_file(onnx_cache, model, SIZE)
    assert path.is_file()
    stamp = path.stat().st_ino
    backend = OnnxRuntimeBackend(model, SIZE, cache_dir=onnx_cache)  # loads, does not export again
    assert path.stat().st_ino == stamp
    assert backend.graph_file == path  # the session read the file itself: less memory than bytes
    x = torch.rand(1, 3, *SIZE)
    with torch.inference_mode():
        want = model(x)["depth"]
    np.testing.assert_allclose(backend(x)["depth"].numpy(), want.numpy(), rtol=1e-4, atol=1e-4)
    # without a cache the graph goes to the session as bytes, with the same result
    uncached = OnnxRuntimeBackend(model, SIZE, cache_dir=None)
    assert uncached.graph_file is None
    np.testing.assert_array_equal(uncached(x)["depth"].numpy(), backend(x)["depth"].numpy())


def test_streamed_onnx_file_is_the_one_piece_model(tmp_path):
    """The graph is written a weight at a time (no second copy of the weights in memory); read back,
    it must be the model one ``SerializeToString`` gives, and run to the same outputs."""
    import contextlib
    import io
    import warnings

    import onnx
    import onnxruntime as ort

    from moadepth_core.runtime.torch import onnx_writer
    from moadepth_core.runtime.torch.backends import DepthOutputs

    x = torch.rand(1, 3, *SIZE)
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()), torch.no_grad():
        warnings.simplefilter("ignore")
        program = torch.onnx.export(DepthOutputs(_small_model()), (x,), input_names=["image"], dynamo=True,
                                    verbose=False)
    whole = program.model_proto
    assert len(whole.graph.initializer) > 50  # the writer has many weights to stream
    path = tmp_path / "streamed.onnx"
    with path.open("wb") as f:
        onnx_writer.write_model(program.model, f)
    streamed = onnx.load(str(path))

    def canonical(m: onnx.ModelProto) -> onnx.ModelProto:
        m = copy.deepcopy(m)
        infos = sorted(m.graph.value_info, key=lambda v: v.name)  # their order carries no meaning
        del m.graph.value_info[:]
        m.graph.value_info.extend(infos)
        return m

    assert canonical(streamed) == canonical(whole)
    assert [t.name for t in streamed.graph.initializer] == [t.name for t in whole.graph.initializer]
    onnx.checker.check_model(str(path))
    outs = [ort.InferenceSession(src, providers=["CPUExecutionProvider"]).run(None, {"image": x.numpy()})
            for src in (str(path), whole.SerializeToString())]
    for a, b in zip(*outs, strict=True):
        np.testing.assert_array_equal(a, b)


def test_onnx_cache_key_changes_with_the_graph_version(onnx_cache, monkeypatch):
    """A cache written before the graph's structure changed (same weights) must not be reused."""
    from moadepth_core.runtime import graph_cache

    model = _small_model()
    old = _graph_file(onnx_cache, model, SIZE)
    monkeypatch.setattr(graph_cache, "GRAPH_VERSION", graph_cache.GRAPH_VERSION + 1)
    assert _graph_file(onnx_cache, model, SIZE) != old


def test_onnx_cache_key_of_the_batched_graph_is_not_the_batch_1_graphs(onnx_cache, tmp_path):
    """A graph (or a checkpoint alias) that code before the batch axis left in a cache must never be
    taken for the batched one: the fp32 key, the int8 key derived from it and the alias all change."""
    import hashlib

    from moadepth_core.model.checkpoint import save_checkpoint
    from moadepth_core.runtime import graph_cache
    from moadepth_core.runtime.int8 import int8_graph_file

    model = _small_model()
    h = hashlib.sha256(f"v3 {SIZE[0]}x{SIZE[1]} fp32".encode())  # the batch-1 graph's key, as it was written
    for name, t in model.state_dict().items():
        h.update(name.encode())
        h.update(t.detach().float().contiguous().numpy().tobytes())
    old = onnx_cache / f"moadepth-{h.hexdigest()[:16]}.onnx"
    new = _graph_file(onnx_cache, model, SIZE)
    assert new != old and new.is_file()
    assert _graph_file(onnx_cache, model, SIZE, "int8") not in (old, int8_graph_file(old))
    ckpt = tmp_path / "small.pt"
    save_checkpoint(ckpt, model, step=1)
    alias = graph_cache.checkpoint_alias(onnx_cache, ckpt, None, "fp32")
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(graph_cache, "GRAPH_VERSION", 3)
        assert graph_cache.checkpoint_alias(onnx_cache, ckpt, None, "fp32") != alias


def _batch_frames() -> list[np.ndarray]:
    rng = np.random.default_rng(5)
    return [rng.integers(0, 256, hw + (3,), dtype=np.uint8) for hw in ((120, 160), (64, 96), (90, 70), (120, 160))]


class _CountingSession:
    """An InferenceSession stand-in that counts ``run`` calls and the batch each one got."""

    def __init__(self, session) -> None:
        self._session, self.batches = session, []

    def run(self, outputs, feeds):
        self.batches.append(next(iter(feeds.values())).shape[0])
        return self._session.run(outputs, feeds)

    def __getattr__(self, name):
        return getattr(self._session, name)


#: ONNX Runtime fp32, frames in one run against each frame alone: measured bit for bit equal on the 2-core
#: AMD EPYC (AVX2; ORT 1.31.1), max |diff| 0 in depth and uncertainty at batch 2, 3, 4, for this ViT-S/32
#: at 64x96 and the default ViT-B/32 at 224x224 alike. The tolerance (~10 float32 ulps at the ~1.5 m these
#: random networks give) leaves room for a CPU whose GEMM kernels block a taller matrix differently.
BATCH_RTOL, BATCH_ATOL = 1e-6, 1e-6


def test_onnxruntime_batch_runs_once_and_gives_each_frames_own_depth(estimators, monkeypatch):
    """Several frames (sizes differ) in one ``session.run`` over the graph's batch axis: each result is
    the frame's own prediction within float rounding, prepared bit for bit as ``predict`` prepares it,
    at the frame's size; frame by frame (the other arrangement) it is identical."""
    _, ort = estimators
    session = ort._runtime
    assert session.takes_batch
    frames = _batch_frames()
    alone = [ort.predict(rgb) for rgb in frames]
    counting = _CountingSession(session.session)
    monkeypatch.setattr(session, "session", counting)
    batched = session.predict_batch(frames, one_run=True)
    assert counting.batches == [len(frames)]
    for a, b, rgb in zip(alone, batched, frames, strict=True):
        assert b.depth.shape == rgb.shape[:2] and b.depth.dtype == np.float32
        np.testing.assert_allclose(b.depth, a.depth, rtol=BATCH_RTOL, atol=BATCH_ATOL)
        np.testing.assert_allclose(b.uncertainty, a.uncertainty, rtol=BATCH_RTOL, atol=BATCH_ATOL)
        assert set(b.timings) == {"preprocess", "forward", "postprocess"}
    counting.batches.clear()
    for a, b in zip(alone, session.predict_batch(frames, one_run=False), strict=True):
        np.testing.assert_array_equal(b.depth, a.depth)
    assert counting.batches == [1] * len(frames)
    model_size = session.predict_batch(frames[:2], "model", one_run=True)
    assert [r.depth.shape for r in model_size] == [SIZE, SIZE]


@pytest.mark.parametrize("one_run", [True, False])
def test_the_measured_arrangement_decides_what_the_estimators_do(estimators, onnx_cache, monkeypatch, one_run):
    """``BATCH_IN_ONE_RUN`` (docs/PERFORMANCE.md) is the one switch: DepthEstimator and the torch-free
    CachedGraphEstimator both say ``batches`` by it (the node batches by that) and run by it."""
    from moadepth_core.runtime import onnx_session
    from moadepth_core.runtime.graph_cache import CachedGraph
    from moadepth_core.runtime.loader import CachedGraphEstimator

    monkeypatch.setattr(onnx_session, "BATCH_IN_ONE_RUN", one_run)
    _, ort = estimators
    cached = CachedGraphEstimator("unused.pt", CachedGraph(_graph_file(onnx_cache, _small_model(), SIZE), SIZE, None),
                                  "fp32")
    frames = _batch_frames()[:3]
    for est, session in ((ort, ort._runtime), (cached, cached._session)):
        assert est.batches is one_run
        counting = _CountingSession(session.session)
        monkeypatch.setattr(session, "session", counting)
        got = est.predict_batch(frames)
        assert counting.batches == ([3] if one_run else [1, 1, 1])
        for rgb, r in zip(frames, got, strict=True):
            np.testing.assert_allclose(r.depth, ort.predict(rgb).depth, rtol=BATCH_RTOL, atol=BATCH_ATOL)


def test_a_graph_fixed_at_batch_1_still_runs_frame_by_frame(tmp_path):
    """A batch-1 graph (as exported before the batch axis) is read as such: one run per frame, and a
    batch handed to ``run`` is refused in one sentence."""
    import contextlib
    import io
    import warnings

    from moadepth_core.runtime.onnx_session import OnnxDepthSession
    from moadepth_core.runtime.torch.backends import DepthOutputs

    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()), torch.no_grad():
        warnings.simplefilter("ignore")
        program = torch.onnx.export(DepthOutputs(_small_model()), (torch.rand(1, 3, *SIZE),), input_names=["image"],
                                    output_names=["depth", "uncertainty"], dynamo=True, verbose=False)
    path = tmp_path / "batch1.onnx"
    program.save(str(path))
    session = OnnxDepthSession(path, SIZE)
    assert not session.takes_batch and not session.batches
    counting = _CountingSession(session.session)
    session.session = counting
    frames = _batch_frames()[:2]
    assert len(session.predict_batch(frames, one_run=True)) == 2 and counting.batches == [1, 1]
    with pytest.raises(DeviceError, match="batch 1"):
        session.run(np.zeros((2, 3, *SIZE), np.float32))


def test_onnx_cache_keeps_the_most_recently_used_graphs(onnx_cache, tmp_path):
    """Every retrained checkpoint adds graphs of hundreds of MB: the cache keeps the newest few, and
    using a graph counts as new (a node restarted on an old checkpoint keeps its graph)."""
    from moadepth_core.runtime.graph_cache import CACHE_KEEP, prune_cache
    from moadepth_core.runtime.torch.backends import export_graph

    folder = tmp_path / "cache"
    folder.mkdir()
    files = [folder / f"moadepth-{i:016x}.onnx" for i in range(CACHE_KEEP + 3)]
    for age, f in enumerate(files):  # files[0] newest
        f.write_bytes(b"x")
        os.utime(f, ns=(10**18 - age * 10**9, 10**18 - age * 10**9))
    other = folder / "notes.txt"
    other.write_text("not ours")
    gone = prune_cache(folder)
    assert sorted(gone) == sorted(files[CACHE_KEEP:])
    assert all(f.exists() for f in files[:CACHE_KEEP]) and other.exists()
    # a cache hit refreshes the graph's time
    model = _small_model()
    path = _graph_file(onnx_cache, model, SIZE)
    os.utime(path, ns=(1, 1))
    export_graph(model, SIZE, "fp32", onnx_cache)
    assert path.stat().st_mtime_ns > 1


@pytest.mark.parametrize(("backend", "precision", "match"), [
    ("tensorrt", "fp32", "unknown backend"),
    ("onnxruntime", "bf16", "fp32 or int8"),
    ("torch", "int8", "onnxruntime only"),
    ("torch_compile", "int8", "onnxruntime only"),
])
def test_bad_backend_combinations_are_refused(backend, precision, match):
    with pytest.raises(DeviceError, match=match):
        check_backend(backend, torch.device("cpu"), precision)
    with pytest.raises(DeviceError, match=match):
        DepthEstimator(None, model=_small_model(), device="cpu", precision=precision, backend=backend)


def test_onnxruntime_int8_is_quantised_and_keeps_the_depth(estimators, onnx_cache):
    """precision int8: the linears really run in int8 (MatMulInteger), quantised from the cached fp32
    graph without a second export, and the depth keeps fp32's picture (the random network's depth
    varies by a few percent across the frame; int8 must follow that variation, not only its mean)."""
    import onnx

    ref, _ = estimators
    model = _small_model()
    fp32_file = _graph_file(onnx_cache, model, SIZE)
    stamp = fp32_file.stat().st_ino
    q = DepthEstimator(None, model=model, device="cpu", precision="int8", backend="onnxruntime")
    assert q.precision == "int8"
    assert fp32_file.stat().st_ino == stamp  # quantised from the cache, not exported again
    int8_file = _graph_file(onnx_cache, model, SIZE, "int8")
    ops = Counter(n.op_type for n in onnx.load(str(int8_file)).graph.node)
    assert ops["MatMulInteger"] >= 4 * 12 and ops["DynamicQuantizeLinear"] > 0, ops  # 4 linears per block
    rng = np.random.default_rng(1)
    for _ in range(3):
        rgb = rng.integers(0, 256, (120, 160, 3), dtype=np.uint8)
        a, b = ref.predict(rgb), q.predict(rgb)
        assert b.depth.shape == a.depth.shape and np.isfinite(b.depth).all()
        assert not np.array_equal(b.depth, a.depth)  # a different graph ran
        rel = np.abs(b.depth - a.depth) / a.depth
        assert np.median(rel) < 1e-3 and rel.max() < 3e-3, (np.median(rel), rel.max())  # measured 1e-4, 3e-4
        assert np.corrcoef(a.depth.ravel(), b.depth.ravel())[0, 1] > 0.99  # measured 0.9999
        np.testing.assert_allclose(b.confidence, a.confidence, atol=1e-2)
    # the quantised graph keeps the batch axis: one run of three frames, each near its own int8 depth
    # (activations are quantised per run, so the frames of a batch share one scale: measured relative
    # max 2e-4 to 4.5e-4 for ViT-B/32 at 224x224, int8's own distance from fp32)
    frames = _batch_frames()[:3]
    for rgb, r in zip(frames, q._runtime.predict_batch(frames, one_run=True), strict=True):
        one = q.predict(rgb).depth
        assert np.max(np.abs(r.depth - one) / one) < 2e-3


def test_torch_compile_matches_eager_torch_predict():
    """The compiled backend (Inductor, frozen weights) gives eager torch's depth at the node's default
    precision (auto: bf16 or fp32 by CPU; one compile is ~1 min on 2 cores, so one precision only), and
    a real frame (channels-last strides from HWC) reuses the graph compiled at build: no recompile."""
    model = _small_model()
    rgb = np.random.default_rng(1).integers(0, 256, (120, 160, 3), dtype=np.uint8)
    for precision, tol in (("auto", 2e-2),):
        ref = DepthEstimator(None, model=copy.deepcopy(model), device="cpu", precision=precision)
        comp = DepthEstimator(None, model=copy.deepcopy(model), device="cpu", precision=precision,
                              backend="torch_compile")
        with torch._dynamo.config.patch(error_on_recompile=True):
            b = comp.predict(rgb)
        a = ref.predict(rgb)
        assert b.depth.shape == (120, 160) and b.depth.dtype == np.float32
        np.testing.assert_allclose(b.depth, a.depth, rtol=tol, atol=tol)
        np.testing.assert_allclose(b.confidence, a.confidence, atol=10 * tol)
        with pytest.raises(DeviceError, match="batch 1"):
            comp.forward(torch.rand(2, 3, *SIZE))


def test_torch_compile_without_a_compiler_says_so(monkeypatch):
    import shutil

    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(DeviceError, match="C\\+\\+ compiler"):
        DepthEstimator(None, model=_small_model(), device="cpu", precision="fp32", backend="torch_compile")
