"""scripts/compare_supervision.py, the table of docs/TRAINING.md, scores rows through bag_eval's own
evaluation with its costmap: it runs on a synth bag and every row carries the costmap IoU."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.slow


def test_every_row_is_scored_with_the_costmap(tmp_path):
    from moadepth_core.data.synth.config import SynthConfig
    from moadepth_core.data.synth.writers import generate

    generate(SynthConfig(frames=6, seed=3), tmp_path / "site", bag=True, progress=False)
    bag = tmp_path / "site" / "bag"
    out = tmp_path / "table.json"
    done = subprocess.run([sys.executable, str(REPO / "scripts" / "compare_supervision.py"), "--bag", str(bag),
                           "--untrained-config", str(REPO / "config" / "train_synth.yaml"),
                           "--set", "model.image_size=[64,96]", "--json", str(out)],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    rows = json.loads(out.read_text())
    assert set(rows) == {"untrained", "best constant"}
    for row in rows.values():
        assert 0.0 < row["abs_rel"] < 1.0 and 0.0 <= row["delta1"] <= 1.0
        assert 0.0 <= row["costmap_iou"] <= 1.0
    assert "costmap IoU" in done.stdout
