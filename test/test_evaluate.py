"""`moadepth evaluate`, `predict` and `export` driven through their ``main(argv)``."""

from __future__ import annotations

import csv
import json

import cv2
import numpy as np
import pytest

from depth_node_harness import checkpoint_file
from moadepth_core.cli import evaluate, export, predict
from moadepth_core.data.synth import SynthConfig, generate
from moadepth_core.evaluation.metrics import METRIC_KEYS
from moadepth_core.model.checkpoint import save_checkpoint
from model_cache import fresh_model


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    path = tmp_path_factory.mktemp("ckpt") / "model.pt"
    save_checkpoint(path, fresh_model(image_size=[64, 96], tuned_blocks=[11]), train_focal_px=78.75, step=1)
    return path


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    out = tmp_path_factory.mktemp("synth") / "data"
    generate(SynthConfig(width=96, height=64, fx=78.75, fy=78.75, frames=6, seed=5), out, progress=False)
    return out


def _sentence(err: str, prog: str) -> str:
    lines = [ln for ln in err.strip().splitlines() if ln.strip() and not ln.startswith(("INFO", "WARNING"))]
    assert len(lines) == 1 and "Traceback" not in err and lines[0].startswith(f"moadepth {prog}: error: "), err
    return lines[0]


def test_evaluate_writes_summary_csv_and_grid(ckpt, synth, tmp_path, capsys):
    out, js = tmp_path / "eval", tmp_path / "summary.json"
    rc = evaluate.main(["--checkpoint", str(ckpt), "--data", str(synth), "--json", str(js), "--out", str(out),
                        "--max-images", "4", "--flip-tta", "--quiet", "--device", "cpu"])
    assert rc == 0
    summary = json.loads(js.read_text())
    assert set(METRIC_KEYS) | {"images", "valid_pixels"} <= set(summary)
    assert summary["images"] == 4 and summary["valid_pixels"] == 4 * 64 * 96
    assert summary["eigen_crop"] is False and summary["flip_tta"] is True  # not NYU: no Eigen crop
    with (out / "per_image.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 4 and set(METRIC_KEYS) <= set(rows[0])
    grid = cv2.imread(str(out / "samples.png"))
    assert grid is not None and grid.shape[1] > 4 * 96
    assert "abs_rel" in capsys.readouterr().out


def test_evaluate_scores_the_int8_runtime_next_to_fp32(synth, tmp_path, capsys):
    """What a user runs before deploying precision int8: the same frames through ONNX Runtime int8
    (flip TTA included: the graph is fixed at batch 1) score like torch fp32, and the summary says
    what ran. The node tests' checkpoint: its int8 graph is exported once per session."""
    ckpt = checkpoint_file()
    summaries = {}
    for backend, precision in (("torch", "fp32"), ("onnxruntime", "int8")):
        js = tmp_path / f"{precision}.json"
        assert evaluate.main(["--checkpoint", str(ckpt), "--data", str(synth), "--json", str(js), "--max-images",
                              "3", "--flip-tta", "--quiet", "--device", "cpu", "--backend", backend,
                              "--precision", precision]) == 0
        summaries[precision] = json.loads(js.read_text())
    assert summaries["int8"]["backend"] == "onnxruntime" and summaries["int8"]["precision"] == "int8"
    assert summaries["fp32"]["precision"] == "fp32"
    for key in ("abs_rel", "rmse", "delta1"):
        assert summaries["int8"][key] == pytest.approx(summaries["fp32"][key], rel=1e-2, abs=1e-3), key
    assert evaluate.main(["--checkpoint", str(ckpt), "--data", str(synth), "--precision", "int8"]) == 2
    assert "backend onnxruntime" in _sentence(capsys.readouterr().err, "evaluate")


def test_evaluate_refuses_untrained_and_bad_checkpoint(synth, tmp_path, capsys):
    assert evaluate.main(["--data", str(synth)]) == 2
    assert "--allow-untrained" in _sentence(capsys.readouterr().err, "evaluate")
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"\x00" * 100)
    assert evaluate.main(["--checkpoint", str(bad), "--data", str(synth)]) == 2
    assert "corrupt" in _sentence(capsys.readouterr().err, "evaluate")
    assert evaluate.main(["--checkpoint", str(bad), "--data", str(tmp_path / "missing")]) == 2
    assert "does not exist" in _sentence(capsys.readouterr().err, "evaluate")


def test_predict_writes_npy_at_input_size_and_png(ckpt, tmp_path):
    rng = np.random.default_rng(0)
    paths = []
    for name, (h, w) in (("a", (50, 70)), ("b", (64, 96))):
        p = tmp_path / f"{name}.png"
        cv2.imwrite(str(p), rng.integers(0, 255, (h, w, 3), dtype=np.uint8))
        paths.append((p, (h, w)))
    out = tmp_path / "out"
    assert predict.main(["--checkpoint", str(ckpt), *[str(p) for p, _ in paths], "--out", str(out),
                         "--device", "cpu"]) == 0
    for p, hw in paths:
        depth = np.load(out / f"{p.stem}.npy")
        assert depth.dtype == np.float32 and depth.shape == hw and np.isfinite(depth).all() and depth.min() > 0
        assert cv2.imread(str(out / f"{p.stem}.png")).shape[:2] == hw


def test_predict_untrained_needs_flag(tmp_path, capsys):
    img = tmp_path / "x.png"
    cv2.imwrite(str(img), np.zeros((32, 32, 3), np.uint8))
    assert predict.main([str(img), "--out", str(tmp_path / "o")]) == 2
    assert "--allow-untrained" in _sentence(capsys.readouterr().err, "predict")
    assert predict.main([str(tmp_path / "nope.png"), "--out", str(tmp_path / "o")]) == 2
    assert "nope.png" in _sentence(capsys.readouterr().err, "predict")


def test_export_onnx_matches_torch(ckpt, tmp_path, capsys):
    onnx_path = tmp_path / "model.onnx"
    assert export.main(["--checkpoint", str(ckpt), "--onnx", str(onnx_path), "--size", "64", "96"]) == 0
    text = capsys.readouterr().out
    print(text)
    assert "max abs difference" in text and onnx_path.stat().st_size > 10e6
    assert not list(tmp_path.glob("*.data")) and not list(tmp_path.glob(".*tmp"))
    diff = float(text.split("depth ")[1].split(" m")[0])
    assert diff < 1e-3
