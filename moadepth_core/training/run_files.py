"""The files of a run folder, written by rank 0 only and each atomically (temp file + rename).

``RUN/config.yaml`` (the resolved config), ``RUN/metrics.csv`` (train and validation rows),
TensorBoard scalars under ``RUN/tb`` when ``torch.utils.tensorboard`` imports, and the checkpoint
names: ``last.pt`` (with the training state to resume from) and ``best.pt`` (by ``best_metric``).
"""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path
from typing import Any

from moadepth_core.config import TrainConfig, save_yaml
from moadepth_core.evaluation.metrics import METRIC_KEYS
from moadepth_core.files import write_atomic

LAST_CHECKPOINT = "last.pt"
BEST_CHECKPOINT = "best.pt"


def metrics_fields(n_gates: int, supervision: str = "depth") -> list[str]:
    """metrics.csv columns: train rows fill the loss terms, validation rows the metrics."""
    photo = ["photometric", "smoothness", "automask_fraction"] if supervision != "depth" else []
    return ["kind", "step", "epoch", "loss", *photo, "ce", "l1", "silog", "lr", "images_per_s",
            *[f"gate_entropy_{i}" for i in range(n_gates)], *METRIC_KEYS, "images", "valid_pixels",
            "skipped_frames"]


class RunFiles:
    """config.yaml, metrics.csv and TensorBoard scalars of one run.

    ``keep_until_step``: on resume, the metrics rows up to the checkpoint's step (-1: a new run).
    """

    def __init__(self, out: Path, cfg: TrainConfig, fields: list[str], keep_until_step: int) -> None:
        self.out = out
        self.out.mkdir(parents=True, exist_ok=True)
        save_yaml(cfg, self.out / "config.yaml")
        self.metrics_log = MetricsLog(self.out / "metrics.csv", fields, keep_until_step=keep_until_step)
        self.tb = _tensorboard(self.out)

    def log_row(self, row: dict, step: int) -> None:
        """One metrics.csv row; its finite float values also as TensorBoard scalars ``kind/name``."""
        self.metrics_log.append({k: _fmt(v) for k, v in row.items()})
        if self.tb is not None:
            for k, v in row.items():
                if isinstance(v, float) and math.isfinite(v):
                    self.tb.add_scalar(f"{row['kind']}/{k}", v, step)

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()


class MetricsLog:
    """``metrics.csv``, rewritten whole via temp + rename on every append, so a kill never tears it."""

    def __init__(self, path: Path, fields: list[str], keep_until_step: int | None = None) -> None:
        self.path = path
        self.fields = fields
        self.rows: list[dict] = []
        if keep_until_step is not None and path.exists():
            # A killed run may have logged past its last checkpoint: those rows are redone on resume.
            with path.open(newline="") as f:
                self.rows = [r for r in csv.DictReader(f) if r.get("step", "").isdigit()
                             and int(r["step"]) <= keep_until_step]

    def append(self, row: dict) -> None:
        self.rows.append({k: row.get(k, "") for k in self.fields})
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=self.fields, extrasaction="ignore")
        w.writeheader()
        w.writerows(self.rows)
        write_atomic(self.path, buf.getvalue())


def _fmt(v: Any) -> Any:
    return f"{v:.6g}" if isinstance(v, float) else v


def _tensorboard(out: Path):
    """A SummaryWriter when tensorboard is installed; silently nothing otherwise."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except Exception:  # ImportError, or a broken install: CSV logging is enough
        return None
    return SummaryWriter(log_dir=str(out / "tb"))

