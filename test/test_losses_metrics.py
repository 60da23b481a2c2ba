"""Loss and metrics: pure functions checked against hand-computed values."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from moadepth_core.config import LossConfig
from moadepth_core.evaluation.metrics import aggregate, compute_metrics, eigen_crop_mask
from moadepth_core.model.head import bin_edges
from moadepth_core.training.losses import bin_cross_entropy, depth_loss, silog, valid_mask


def _depth(seed=0, shape=(2, 1, 8, 8)):
    g = torch.Generator().manual_seed(seed)
    return 0.5 + 5 * torch.rand(shape, generator=g)


@pytest.mark.parametrize("form", ["usual", "paper"])
def test_silog_zero_for_perfect_prediction(form):
    d = _depth()
    assert silog(d, d, valid_mask(d), form=form).item() == pytest.approx(0.0, abs=1e-4)


def test_usual_silog_scale_invariant_part_ignores_global_scale():
    d, p = _depth(0), _depth(1)
    v = valid_mask(d)
    # with lambda = 1 the usual form is exactly scale invariant
    a = silog(p, d, v, lam=1.0)
    b = silog(p * 3.7, d, v, lam=1.0)
    assert a.item() == pytest.approx(b.item(), rel=1e-4)
    # the paper's variance term alone (lambda = 0) is scale invariant too
    a = silog(p, d, v, form="paper", lam=0.0)
    b = silog(p * 3.7, d, v, form="paper", lam=0.0)
    assert a.item() == pytest.approx(b.item(), rel=1e-4)


def test_silog_forms_match_their_formulas():
    d, p = _depth(0), _depth(1)
    g = (p.log() - d.log()).flatten().double()
    usual = 10 * math.sqrt((g**2).mean() - 0.85 * g.mean() ** 2)
    paper = 10 * ((g**2).mean() - 0.15 * g.mean() ** 2)  # = alpha (Var + 0.85 mean^2)
    assert silog(p, d, valid_mask(d)).item() == pytest.approx(usual, rel=1e-4)
    assert silog(p, d, valid_mask(d), form="paper").item() == pytest.approx(float(paper), rel=1e-4)


def test_invalid_pixels_do_not_count():
    d, p = _depth(0), _depth(1)
    d2 = d.clone()
    d2[..., :4] = 0
    p2 = p.clone()
    p2[..., :4] = 123.0
    cfg = LossConfig()
    edges = bin_edges(16, 0.1, 10.0)
    out = {"depth": p2, "bin_logits": torch.zeros(2, 16, 8, 8)}
    ref = {"depth": p[..., 4:], "bin_logits": torch.zeros(2, 16, 8, 4)}
    a, b = depth_loss(out, d2, cfg, edges), depth_loss(ref, d[..., 4:], cfg, edges)
    for k in ("l1", "silog", "ce", "loss"):
        assert a[k].item() == pytest.approx(b[k].item(), rel=1e-5), k


def test_bin_ce_is_low_when_logits_point_at_the_right_bin():
    edges = bin_edges(8, 0.1, 10.0)
    d = torch.full((1, 1, 4, 4), 1.0)
    idx = int(torch.bucketize(torch.tensor(1.0), edges[1:-1].float()))
    right = torch.zeros(1, 8, 4, 4)
    right[:, idx] = 20
    wrong = torch.zeros(1, 8, 4, 4)
    wrong[:, (idx + 3) % 8] = 20
    assert bin_cross_entropy(right, d, edges) < 1e-6 < 10 < bin_cross_entropy(wrong, d, edges)


def test_loss_weights_come_from_config():
    d, p = _depth(0), _depth(1)
    edges = bin_edges(16, 0.1, 10.0)
    out = {"depth": p, "bin_logits": torch.randn(2, 16, 4, 4)}
    t = depth_loss(out, d, LossConfig(ce_weight=0.3, l1_weight=2.0, silog_weight=0.0), edges)
    assert t["loss"].item() == pytest.approx(0.3 * t["ce"].item() + 2.0 * t["l1"].item(), rel=1e-6)


def test_metrics_against_hand_computed_values():
    gt = np.array([[1.0, 2.0], [4.0, 0.0]])  # one invalid pixel
    pred = np.array([[1.1, 1.0], [5.0, 7.0]])
    m = compute_metrics(pred, gt)
    p, g = np.array([1.1, 1.0, 5.0]), np.array([1.0, 2.0, 4.0])
    assert m["valid_pixels"] == 3
    assert m["abs_rel"] == pytest.approx(np.mean([0.1, 0.5, 0.25]))
    assert m["sq_rel"] == pytest.approx(np.mean([0.01 / 1, 1.0 / 2, 1.0 / 4]))
    assert m["rmse"] == pytest.approx(math.sqrt(np.mean([0.01, 1.0, 1.0])))
    assert m["rmse_log"] == pytest.approx(math.sqrt(np.mean((np.log(p) - np.log(g)) ** 2)))
    assert m["log10"] == pytest.approx(np.mean(np.abs(np.log10(p) - np.log10(g))))
    # ratios 1.1, 2.0, 1.25 -> delta1 counts only 1.1 (1.25 is not < 1.25)
    assert m["delta1"] == pytest.approx(1 / 3)
    assert m["delta2"] == pytest.approx(2 / 3)
    assert m["delta3"] == pytest.approx(2 / 3)  # 2.0 > 1.25^3 = 1.953


def test_predictions_clamped_and_validity_range():
    gt = np.array([[0.0005, 11.0, 2.0]])
    pred = np.array([[1.0, 1.0, 50.0]])
    m = compute_metrics(pred, gt)
    assert m["valid_pixels"] == 1
    assert m["abs_rel"] == pytest.approx(abs(10.0 - 2.0) / 2.0)  # clamped to 10 m


def test_median_scaling_is_optional_and_removes_scale():
    gt = np.linspace(1, 5, 100).reshape(10, 10)
    assert compute_metrics(gt * 2, gt)["abs_rel"] == pytest.approx(1.0)
    assert compute_metrics(gt * 2, gt, median_scaling=True)["abs_rel"] == pytest.approx(0.0, abs=1e-9)


def test_eigen_crop_on_480x640():
    m = eigen_crop_mask(480, 640)
    assert m.sum() == (471 - 45) * (601 - 41)
    assert m[45, 41] and not m[44, 41] and not m[45, 601]


def test_aggregate_is_per_image_mean():
    a = {"abs_rel": 0.1, "sq_rel": 0, "rmse": 1, "rmse_log": 0, "log10": 0, "delta1": 1, "delta2": 1,
         "delta3": 1, "valid_pixels": 10}
    b = {**a, "abs_rel": 0.3, "valid_pixels": 1000}
    agg = aggregate([a, b])
    assert agg["abs_rel"] == pytest.approx(0.2) and agg["images"] == 2 and agg["valid_pixels"] == 1010
