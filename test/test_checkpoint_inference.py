"""Checkpoints round-trip exactly and fail clearly; DepthEstimator's contract."""

from __future__ import annotations

import json
import logging
import subprocess
import sys

import numpy as np
import pytest
import torch

from moadepth_core.errors import CheckpointError, DeviceError, UntrainedError
from moadepth_core.model.checkpoint import load_checkpoint, save_checkpoint
from moadepth_core.runtime import choice as runtime_choice
from moadepth_core.runtime.choice import choose_precision
from moadepth_core.runtime.torch.estimator import DepthEstimator
from model_cache import fresh_model

SIZE = [64, 96]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A network with non-default trainable tensors, saved to a checkpoint."""
    model = fresh_model(image_size=SIZE)
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:
                p.add_(0.01 * torch.randn_like(p))
    path = tmp_path_factory.mktemp("ckpt") / "model.pt"
    save_checkpoint(path, model, train_focal_px=123.4, step=7, metrics={"abs_rel": 0.5})
    return model.eval(), path


def test_round_trip_gives_identical_outputs(trained):
    model, path = trained
    loaded, data = load_checkpoint(path)
    x = torch.rand(1, 3, *SIZE)
    with torch.no_grad():
        a, b = model(x), loaded(x)
    assert torch.equal(a["depth"], b["depth"])
    assert data["train_focal_px"] == 123.4 and data["step"] == 7
    assert data["backbone"]["pretrained"] == "none"
    assert torch.equal(loaded.context, model.context)


def test_checkpoint_holds_no_frozen_weights(trained):
    _, path = trained
    data = torch.load(path, weights_only=True)
    assert not any(k.startswith("backbone.visual.transformer.resblocks.0.") for k in data["state"])
    assert any(k.startswith("backbone.visual.transformer.resblocks.11.") for k in data["state"])


def test_missing_truncated_and_foreign_files_give_one_sentence(trained, tmp_path):
    _, path = trained
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "nope.pt")
    cut = tmp_path / "cut.pt"
    cut.write_bytes(path.read_bytes()[:5000])
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        load_checkpoint(cut)
    foreign = tmp_path / "foreign.pt"
    torch.save({"state_dict": {}}, foreign)
    with pytest.raises(CheckpointError, match="not a moadepth checkpoint"):
        load_checkpoint(foreign)


def test_other_architecture_is_refused(trained, tmp_path):
    _, path = trained
    data = torch.load(path, weights_only=True)
    data["model_config"]["num_bins"] = 64
    other = tmp_path / "other.pt"
    torch.save(data, other)
    with pytest.raises(CheckpointError, match="does not fit"):
        load_checkpoint(other)
    data["model_config"]["no_such_field"] = 1
    torch.save(data, other)
    with pytest.raises(CheckpointError, match="another architecture"):
        load_checkpoint(other)


def test_other_frozen_weights_are_refused(trained, tmp_path):
    _, path = trained
    data = torch.load(path, weights_only=True)
    data["model_config"]["init_seed"] = 1  # a different random backbone
    other = tmp_path / "seed.pt"
    torch.save(data, other)
    with pytest.raises(CheckpointError, match="other frozen CLIP weights"):
        load_checkpoint(other)


def test_estimator_refuses_untrained_unless_allowed():
    with pytest.raises(UntrainedError, match="allow_untrained"):
        DepthEstimator(None)


def test_estimator_rgb_to_metric_depth_at_input_size(trained):
    _, path = trained
    est = DepthEstimator(path, device="cpu")
    assert est.model_size == tuple(SIZE) and est.train_focal_px == 123.4 and not est.untrained
    rgb = np.random.default_rng(0).integers(0, 255, (120, 160, 3), dtype=np.uint8)
    res = est.predict(rgb)
    assert res.depth.shape == (120, 160) and res.depth.dtype == np.float32
    assert np.isfinite(res.depth).all() and (res.depth >= 0.1).all() and (res.depth <= 10).all()
    assert ((res.confidence >= 0) & (res.confidence <= 1)).all()
    # uncertainty and confidence follow the depth's size, and agree with the network's own output
    assert res.uncertainty.shape == res.confidence.shape == (120, 160)
    np.testing.assert_allclose(res.confidence, np.clip(1 - res.uncertainty, 0, 1), atol=1e-6)
    small = est.predict(rgb, output_size="model")
    assert small.depth.shape == small.uncertainty.shape == small.confidence.shape == tuple(SIZE)
    np.testing.assert_array_equal(small.uncertainty, small.model_uncertainty)
    np.testing.assert_allclose(res.uncertainty.mean(), small.uncertainty.mean(), rtol=0.02)
    bf16 = DepthEstimator(path, device="cpu", precision="bf16").predict(rgb)
    assert np.abs(bf16.depth - res.depth).mean() / res.depth.mean() < 0.05


def test_estimator_device_and_precision_errors(trained):
    _, path = trained
    if not torch.cuda.is_available():
        with pytest.raises(DeviceError, match="no CUDA GPU"):
            DepthEstimator(path, device="cuda")
        with pytest.raises(DeviceError, match="fp16 needs a CUDA"):
            DepthEstimator(path, device="cpu", precision="fp16")


@pytest.mark.parametrize(("flags", "cpu_auto"), [({"avx512f", "avx512_bf16"}, "bf16"), ({"amx_bf16"}, "bf16"),
                                                 ({"avx512f", "avx512_vnni"}, "fp32")])
def test_auto_precision_is_bf16_only_on_cpus_that_run_it_natively(monkeypatch, flags, cpu_auto):
    # Emulated bf16 measured ~2x slower than fp32 on an AVX-512 Xeon without AVX512-BF16 (PERFORMANCE.md).
    monkeypatch.delenv(runtime_choice.CPU_BF16_ENV, raising=False)  # the flags below are the CPU's answer
    monkeypatch.setattr(runtime_choice, "_x86_linux_cpu_flags", lambda: flags)
    cpu = torch.device("cpu")
    assert choose_precision("auto", cpu) == "fp32"  # backend auto: ONNX Runtime fp32 on every CPU
    assert choose_precision("auto", cpu, backend="onnxruntime") == "fp32"  # ORT runs fp32 only
    assert choose_precision("auto", cpu, backend="torch") == cpu_auto
    assert choose_precision("auto", cpu, backend="torch_compile") == cpu_auto
    for explicit in ("fp32", "bf16", "fp16"):
        assert choose_precision(explicit, cpu) == explicit


@pytest.mark.parametrize("native", [True, False])
def test_estimator_auto_precision_runs_what_it_reports(trained, monkeypatch, caplog, native):
    model, path = trained
    monkeypatch.setenv(runtime_choice.CPU_BF16_ENV, "1" if native else "0")
    est = DepthEstimator(path, device="cpu", precision="auto", backend="torch")
    assert est.precision == ("bf16" if native else "fp32") and est.backend == "torch"
    assert {p.dtype for p in est.model.parameters()} == {est.dtype}
    # explicit bf16 where it would be emulated: allowed, with one warning that names the way out
    with caplog.at_level(logging.WARNING, logger="moadepth"):
        assert DepthEstimator(path, device="cpu", precision="bf16").precision == "bf16"
    warned = any("emulated" in r.getMessage() and "precision auto or fp32" in r.getMessage() for r in caplog.records)
    assert warned == (not native)
    with pytest.raises(DeviceError, match="unknown precision 'fp8'.*auto"):
        DepthEstimator(path, device="cpu", precision="fp8")


def test_summary_json_reports_paper_sized_adapters():
    out = subprocess.run([sys.executable, "-m", "moadepth_core", "summary", "--json"], capture_output=True,
                         text=True, timeout=300, check=True)
    info = json.loads(out.stdout)
    a = info["adapters"]
    assert a["modules"] == 4 and a["experts_per_module"] == 4 and a["blocks"] == [2, 5, 8, 11]
    per_expert = 768 * 64 + 64 + 64 * 768 + 768
    gate = 768 * 128 + 128 + 128 * 4 + 4
    assert a["parameters_per_module"] == 4 * per_expert + gate
    assert info["parameters"]["adapters"] == 4 * (4 * per_expert + gate)
    assert info["tuned_blocks"] == [8, 9, 10, 11]
    p = info["parameters"]
    assert p["total"] == p["backbone_frozen"] + p["backbone_tuned"] + p["adapters"] + p["decoder_heads"]


def test_untrained_is_refused_first_with_the_flag_named():
    """One refusal for every entry point, before any device or precision check."""
    with pytest.raises(UntrainedError, match=r"--allow-untrained"):
        DepthEstimator(None, device="cpu", precision="fp16")


def test_precision_to_dtype_for_inference_and_training():
    from moadepth_core.runtime.torch.precision import autocast_dtype, weights_dtype

    cpu = torch.device("cpu")
    assert weights_dtype("bf16", cpu) == torch.bfloat16 and weights_dtype("int8", cpu) == torch.float32
    assert autocast_dtype("auto", cpu) is None and autocast_dtype("fp32", cpu) is None
    assert autocast_dtype("bf16", cpu) == torch.bfloat16
    for fn in (weights_dtype, autocast_dtype):  # the same sentence for both
        with pytest.raises(DeviceError, match=r"^precision fp16 needs a CUDA device; on CPU use bf16 or fp32$"):
            fn("fp16", cpu)
    with pytest.raises(DeviceError, match="int8 is for inference"):
        autocast_dtype("int8", cpu)


def test_a_failed_checkpoint_save_leaves_the_previous_file_and_no_temp(tmp_path):
    from moadepth_core.files import write_atomic

    path = tmp_path / "run" / "last.pt"
    write_atomic(path, b"old")

    def broken(f):
        f.write(b"half")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        write_atomic(path, broken)
    assert path.read_bytes() == b"old" and [p.name for p in path.parent.iterdir()] == ["last.pt"]
    write_atomic(path, "new text")
    assert path.read_text() == "new text"
