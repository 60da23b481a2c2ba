"""Training: it learns, DDP keeps ranks identical, resume is exact, kills and bad inputs end cleanly.

All on CPU at 64x96 with random CLIP weights (nothing can be downloaded here). The learning test
compares against the best *constant* depth, not the median: AbsRel rewards predicting low, and a
well-chosen constant is a much harder baseline than it looks.
"""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from moadepth_core.cli import train
from moadepth_core.config import load_yaml
from moadepth_core.data import open_source
from moadepth_core.data.synth import SynthConfig, generate
from moadepth_core.evaluation.evaluate import evaluate_source
from moadepth_core.model.checkpoint import read_checkpoint
from moadepth_core.model.network import build_model
from moadepth_core.runtime.torch.estimator import DepthEstimator
from moadepth_core.training.rng_state import seed_everything

REPO = Path(__file__).resolve().parents[1]
SYNTH_YAML = str(REPO / "config" / "train_synth.yaml")
SMALL = ["--set", "model.image_size=[64,96]", "--no-progress"]
# Fewer tuned blocks: same code paths, 4x smaller checkpoints and optimiser state for the plumbing tests.
LIGHT = [*SMALL, "--set", "model.tuned_blocks=[11]", "--set", "val_at_epoch_end=false", "--set", "val_every=0"]


def _synth(out: Path, seeds: list[int], frames: int, views_out: Path | None = None, views: int = 0) -> Path:
    """Frames of several rooms (one per seed) in one folder; 640x480 at fx 525 scaled to 96x64.

    With ``views_out``, each room's last ``views`` frames (further along the same path) go there instead.
    """
    for k, seed in enumerate(seeds):
        part = out.parent / f"{out.name}_seed{seed}"
        generate(SynthConfig(width=96, height=64, fx=78.75, fy=78.75, frames=frames + views, seed=seed), part,
                 progress=False)
        for sub in ("rgb", "depth"):
            for folder in (out, views_out) if views_out else (out,):
                (folder / sub).mkdir(parents=True, exist_ok=True)
            for p in sorted((part / sub).iterdir()):
                i = int(p.stem)
                folder = out if i < frames else views_out
                p.rename(folder / sub / f"{k * (frames + views) + i:06d}{p.suffix}")
        if k == 0:
            if views_out:
                (views_out / "intrinsics.json").write_text((part / "intrinsics.json").read_text())
            (part / "intrinsics.json").rename(out / "intrinsics.json")
    return out


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("synth")
    return {"train": _synth(root / "train", [1, 2, 3, 4], 8, views_out=root / "views", views=2),
            "views": root / "views", "heldout": _synth(root / "heldout", [11, 12], 6),
            "small": _synth(root / "small", [3], 16)}


def _run(argv: list[str], capsys=None) -> tuple[int, str]:
    rc = train.main(argv)
    err = capsys.readouterr().err if capsys is not None else ""
    return rc, err


def _state(path: Path) -> dict[str, torch.Tensor]:
    return read_checkpoint(path)["state"]


# ------------------------------------------------------------------------------------------------
def test_nyu_config_is_the_paper_recipe():
    cfg = load_yaml(REPO / "config" / "train_nyu.yaml")
    assert (cfg.optim.lr, cfg.optim.weight_decay, cfg.optim.schedule) == (1e-5, 1e-4, "constant")
    assert cfg.optim.adapter_lr is None and cfg.optim.head_lr is None
    assert (cfg.batch_size, cfg.epochs, cfg.model.num_bins, cfg.model.image_size) == (8, 30, 128, [224, 224])
    assert cfg.model.pretrained == "openai" and cfg.model.tuned_blocks == [8, 9, 10, 11]
    assert (cfg.loss.ce_weight, cfg.loss.l1_weight, cfg.loss.silog_weight) == (1.0, 1.0, 0.5)
    assert cfg.data.train.endswith(".mat") and cfg.data.val_split == "test"


def test_synth_config_loads():
    cfg = load_yaml(SYNTH_YAML)
    assert cfg.model.pretrained == "none" and cfg.batch_size == 4 and cfg.optim.lr > 1e-5


# ------------------------------------------------------------------------------------------------
def _constant_baselines(source) -> dict[str, float]:
    """The single depth minimising mean per-image AbsRel, and the one maximising δ1, by search."""
    gts = [f.depth[f.depth > 1e-3] for f in source]
    grid = np.exp(np.linspace(np.log(0.2), np.log(10.0), 300))
    absrel = np.array([np.mean([np.mean(np.abs(c - g) / g) for g in gts]) for c in grid])
    delta1 = np.array([np.mean([np.mean(np.maximum(c / g, g / c) < 1.25) for g in gts]) for c in grid])
    return {"abs_rel": float(absrel.min()), "abs_rel_at": float(grid[absrel.argmin()]),
            "delta1": float(delta1.max()), "delta1_at": float(grid[delta1.argmax()])}


def test_learns_on_synthetic_frames(data, tmp_path):
    run = tmp_path / "run"
    steps = 200
    t0 = time.perf_counter()
    rc, _ = _run(["--config", SYNTH_YAML, "--data", str(data["train"]), "--val-data", str(data["heldout"]),
                  "--out", str(run), "--max-steps", str(steps), "--set", "epochs=1000", "--set", "data.val_fraction=0",
                  "--set", "val_every=0", "--set", "val_at_epoch_end=false", "--set", "ckpt_every=0", *SMALL])
    seconds = time.perf_counter() - t0
    assert rc == 0

    train_src, views_src, held_src = (open_source(data[k]) for k in ("train", "views", "heldout"))
    trained = DepthEstimator(run / "last.pt", device="cpu")
    cfg = load_yaml(run / "config.yaml")
    seed_everything(cfg.seed)  # the same initial network the run started from
    untrained = DepthEstimator(None, model=build_model(cfg.model), device="cpu")

    def score(est, src):
        return evaluate_source(est, src, progress=False)[0]

    fig = {"train": score(trained, train_src), "train_untrained": score(untrained, train_src),
           "views": score(trained, views_src), "views_untrained": score(untrained, views_src),
           "held": score(trained, held_src), "held_untrained": score(untrained, held_src)}
    const_train, const_views, const_held = (_constant_baselines(x) for x in (train_src, views_src, held_src))
    print(f"\n{steps} steps in {seconds:.1f} s ({steps / seconds:.2f} steps/s), "
          f"train_focal_px {trained.train_focal_px:.2f}")
    for name, m in fig.items():
        print(f"{name:16s} abs_rel {m['abs_rel']:.3f}  delta1 {m['delta1']:.3f}  rmse {m['rmse']:.3f}")
    print(f"best constant (train frames): abs_rel {const_train['abs_rel']:.3f} at {const_train['abs_rel_at']:.2f} m,"
          f" delta1 {const_train['delta1']:.3f} at {const_train['delta1_at']:.2f} m")
    print(f"best constant (new views):    abs_rel {const_views['abs_rel']:.3f} at {const_views['abs_rel_at']:.2f} m, "
          f"delta1 {const_views['delta1']:.3f} at {const_views['delta1_at']:.2f} m")
    print(f"best constant (held-out):     abs_rel {const_held['abs_rel']:.3f} at {const_held['abs_rel_at']:.2f} m, "
          f"delta1 {const_held['delta1']:.3f} at {const_held['delta1_at']:.2f} m")

    # On the frames it trained on, it beats every constant depth by a clear margin.
    assert fig["train"]["abs_rel"] < const_train["abs_rel"] - 0.05
    assert fig["train"]["delta1"] > const_train["delta1"] + 0.10
    # On views it never saw, further along the paths through the training rooms, it beats both the
    # untrained network and every constant depth: it learned the rooms, not the frames.
    assert fig["views"]["abs_rel"] < min(fig["views_untrained"]["abs_rel"], const_views["abs_rel"]) - 0.05
    assert fig["views"]["delta1"] > max(fig["views_untrained"]["delta1"], const_views["delta1"]) + 0.10
    # Unseen rooms are printed, not asserted: with random CLIP weights, 32 frames and 200 steps the
    # outcome depends on the CPU's floating-point paths. AbsRel 0.239 (trained) vs 0.284 (untrained)
    # on an AMD EPYC with AVX512-BF16, 0.291 vs 0.284 on an Intel Xeon without it, same code and
    # seed. Transfer across scenes needs the pretrained backbone.
    # The recorded training camera focal at the model input: 78.75 px at 96 px wide, unzoomed.
    assert trained.train_focal_px == pytest.approx(78.75, rel=1e-6)
    with (run / "metrics.csv").open() as f:
        rows = list(csv.DictReader(f))
    # metrics.csv holds 6 significant digits
    assert rows[-1]["kind"] == "val" and float(rows[-1]["abs_rel"]) == pytest.approx(fig["held"]["abs_rel"], rel=1e-5)
    assert all(0 < float(rows[0][f"gate_entropy_{i}"]) <= np.log(4) + 1e-6 for i in range(4))


# ------------------------------------------------------------------------------------------------
def test_resume_is_exact(data, tmp_path):
    common = ["--config", SYNTH_YAML, "--data", str(data["small"]), "--set", "data.val_fraction=0",
              "--set", "ckpt_every=0", *LIGHT]
    # 16 frames, batch 4: 4 steps per epoch, so 7 steps cross an epoch and 3 stops mid-epoch.
    assert _run([*common, "--out", str(tmp_path / "a"), "--max-steps", "7"])[0] == 0
    assert _run([*common, "--out", str(tmp_path / "b"), "--max-steps", "3"])[0] == 0
    ts = read_checkpoint(tmp_path / "b" / "last.pt")["training_state"]
    assert (ts["step"], ts["epoch"], ts["batch_in_epoch"]) == (3, 0, 3)
    assert _run([*common, "--out", str(tmp_path / "b"), "--max-steps", "7", "--resume"])[0] == 0
    a, b = _state(tmp_path / "a" / "last.pt"), _state(tmp_path / "b" / "last.pt")
    assert a.keys() == b.keys()
    differ = [k for k in a if not torch.equal(a[k], b[k])]
    assert not differ, f"resumed run differs from the uninterrupted one in {differ[:5]}"
    assert read_checkpoint(tmp_path / "b" / "last.pt")["step"] == 7
    # metrics.csv: the resumed run continued the log, no step twice.
    with (tmp_path / "b" / "metrics.csv").open() as f:
        steps = [int(r["step"]) for r in csv.DictReader(f) if r["kind"] == "train"]
    assert steps == sorted(set(steps)) and steps[-1] == 7


def test_checkpoint_loads_with_weights_only_and_holds_rng(data, tmp_path):
    run = tmp_path / "run"
    assert _run(["--config", SYNTH_YAML, "--data", str(data["small"]), "--out", str(run), "--max-steps", "1",
                 *LIGHT])[0] == 0
    ckpt = torch.load(run / "last.pt", map_location="cpu", weights_only=True)
    ts = ckpt["training_state"]
    assert set(ts["rng"]) >= {"torch", "numpy", "python"} and ts["step"] == 1
    assert ckpt["train_config"]["model"]["tuned_blocks"] == [11]
    assert {p.name for p in run.iterdir()} >= {"last.pt", "best.pt", "config.yaml", "metrics.csv"}
    assert not [p for p in run.iterdir() if p.name.endswith(".tmp")]


# ------------------------------------------------------------------------------------------------
def test_ddp_two_processes_stay_identical(data, tmp_path):
    run, dump = tmp_path / "run", tmp_path / "dump"
    env = {**os.environ, "MOADEPTH_DEBUG_DUMP": str(dump), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           "-m", "moadepth_core.train", "--config", SYNTH_YAML, "--data", str(data["small"]), "--out", str(run),
           "--max-steps", "2", "--set", "data.val_fraction=0", "--set", "batch_size=2", *LIGHT]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    ranks = [json.loads((dump / f"rank{r}.json").read_text()) for r in (0, 1)]
    print("\n", ranks)
    assert ranks[0]["world_size"] == 2 and ranks[0]["step"] == ranks[1]["step"] == 2
    assert ranks[0]["params_sha256"] == ranks[1]["params_sha256"]
    assert ranks[0]["checkpoints_written"] == 1 and ranks[1]["checkpoints_written"] == 0
    assert sorted(p.name for p in run.glob("*.pt")) == ["last.pt"]
    ts = read_checkpoint(run / "last.pt")["training_state"]
    assert ts["world_size"] == 2 and ts["step"] == 2


# ------------------------------------------------------------------------------------------------
def test_sigkill_mid_run_then_resume(data, tmp_path):
    run = tmp_path / "run"
    cmd = [sys.executable, "-m", "moadepth_core.train", "--config", SYNTH_YAML, "--data", str(data["small"]),
           "--out", str(run), "--max-steps", "200", "--set", "ckpt_every=2", "--set", "log_every=1", *LIGHT]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while not (run / "last.pt").exists() and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.05)
        assert (run / "last.pt").exists(), "no checkpoint appeared"
        time.sleep(0.5)  # kill it somewhere in the next steps, possibly mid-save
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    step = read_checkpoint(run / "last.pt")["step"]
    with (run / "metrics.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert rows and all(r["kind"] in ("train", "val") for r in rows)
    assert _run(["--config", SYNTH_YAML, "--data", str(data["small"]), "--out", str(run), "--resume",
                 "--max-steps", str(step + 2), "--set", "ckpt_every=2", *LIGHT])[0] == 0
    assert read_checkpoint(run / "last.pt")["step"] == step + 2
    with (run / "metrics.csv").open() as f:
        steps = [int(r["step"]) for r in csv.DictReader(f) if r["kind"] == "train"]
    assert steps == sorted(set(steps)) and steps[-1] == step + 2


# ------------------------------------------------------------------------------------------------
def _one_sentence(err: str) -> str:
    lines = [ln for ln in err.strip().splitlines() if ln.strip() and not ln.startswith(("INFO", "WARNING"))]
    assert len(lines) == 1, err
    assert "Traceback" not in err and lines[0].startswith("moadepth train: error: ")
    return lines[0]


@pytest.mark.parametrize("yaml_text,needle", [
    ("optim:\n  lrr: 1.0e-4\n", "unknown key 'optim.lrr'"),
    ("batch_size: four\n", "'batch_size' must be int"),
])
def test_bad_config_is_one_sentence(tmp_path, capsys, yaml_text, needle):
    cfg = tmp_path / "bad.yaml"
    cfg.write_text(yaml_text)
    rc, err = _run(["--config", str(cfg), "--data", str(tmp_path)], capsys)
    assert rc == 2 and needle in _one_sentence(err)


def test_bad_set_value_and_missing_data_and_corrupt_checkpoint(data, tmp_path, capsys):
    rc, err = _run(["--config", SYNTH_YAML, "--set", "optim.lr=fast", "--data", str(tmp_path)], capsys)
    assert rc == 2 and "optim.lr" in _one_sentence(err)
    rc, err = _run(["--config", SYNTH_YAML, "--data", str(tmp_path / "nowhere"), "--out", str(tmp_path / "r")],
                   capsys)
    assert rc == 2 and "nowhere does not exist" in _one_sentence(err)
    bad = tmp_path / "corrupt.pt"
    bad.write_bytes(b"PK\x03\x04 definitely not a checkpoint")
    rc, err = _run(["--config", SYNTH_YAML, "--data", str(data["small"]), "--resume", str(bad)], capsys)
    assert rc == 2 and "corrupt" in _one_sentence(err)


def test_unreadable_frame_fails_or_is_skipped(data, tmp_path, capsys):
    broken = tmp_path / "broken"
    broken.mkdir()
    for sub in ("rgb", "depth"):
        (broken / sub).mkdir()
        for p in (data["small"] / sub).iterdir():
            (broken / sub / p.name).write_bytes(p.read_bytes())
    (broken / "intrinsics.json").write_text((data["small"] / "intrinsics.json").read_text())
    for i in range(0, 16, 3):
        (broken / "rgb" / f"{i:06d}.png").write_bytes(b"not a png")
    base = ["--config", SYNTH_YAML, "--data", str(broken), "--max-steps", "4", "--set", "data.val_fraction=0",
            *LIGHT]
    rc, err = _run([*base, "--out", str(tmp_path / "fail")], capsys)
    assert rc == 2 and "not a readable image" in _one_sentence(err)
    rc, _ = _run([*base, "--out", str(tmp_path / "skip"), "--set", "data.skip_bad_frames=true"], capsys)
    assert rc == 0
    with (tmp_path / "skip" / "metrics.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert int(rows[-1]["skipped_frames"]) > 0
