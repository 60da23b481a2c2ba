"""The frame pacer: when a worker slower than its camera frees up, wait for the next frame or not."""

from __future__ import annotations

import numpy as np
import pytest

from moadepth_ros.node.pacing import JITTER_SHARE, FramePacer


def _pacer(period: float, n: int = 8, jitter: float = 0.0, seed: int = 0) -> FramePacer:
    rng = np.random.default_rng(seed)
    p = FramePacer()
    for i in range(n):
        p.arrived(i * period + (rng.uniform(-jitter, jitter) if i else 0.0))
    return p


def test_period_is_learned_from_arrivals_and_survives_one_late_frame():
    p = _pacer(0.033, n=10)
    assert p.period() == pytest.approx(0.033)
    p.arrived(10 * 0.033 + 0.200)  # one frame very late: the median ignores it
    assert p.period() == pytest.approx(0.033)
    assert FramePacer().period() is None
    assert _pacer(0.033, n=4).period() is None  # too few intervals to trust


def test_waits_only_when_the_next_frame_is_due_sooner_than_the_waiting_one_is_old():
    T = 0.040
    p = _pacer(T)
    assert p.wait_for_next(0.0) == 0.0
    assert p.wait_for_next(0.5 * T) == 0.0
    # 30 ms old, next due in 10 ms: wait for it, plus a quarter period for jitter
    assert p.wait_for_next(0.030) == pytest.approx(0.010 + JITTER_SHARE * T)
    assert p.wait_for_next(1.2 * T) == 0.0  # the next one is already late: the camera slowed or stopped
    assert p.wait_for_next(0.030, "latest") == 0.0
    assert FramePacer().wait_for_next(0.030) == 0.0  # no period known yet
    with pytest.raises(ValueError, match="one of fresh, latest"):
        p.wait_for_next(0.030, "newest")


def test_a_clock_that_goes_back_or_a_reset_forgets_the_period():
    p = _pacer(0.033, n=10)
    p.arrived(0.0)
    assert p.period() is None
    p = _pacer(0.033, n=10)
    p.reset()
    assert p.period() is None and p.wait_for_next(0.030) == 0.0


def _simulate(policy: str, period: float = 1 / 30, frames: int = 900, seed: int = 1) -> tuple[float, float, int]:
    """A camera at ``period`` with arrival jitter and a worker whose cycle (60-80 ms) is longer:
    (mean age of the processed frames, their median age, how many were processed), as the node runs it."""
    rng = np.random.default_rng(seed)
    arrivals = np.arange(frames) * period + rng.uniform(0, 0.002, frames)
    pacer = FramePacer()
    t, fed, ages = 0.0, 0, []
    while True:
        while fed < frames and arrivals[fed] <= t:
            pacer.arrived(arrivals[fed])
            fed += 1
        if fed == frames:
            break
        if fed == 0:
            t = arrivals[0]
            continue
        newest = fed - 1
        budget = pacer.wait_for_next(t - arrivals[newest], policy)
        if budget > 0 and arrivals[fed] <= t + budget:
            t = arrivals[fed]  # the next frame came in time: take it at once
            continue
        ages.append(t - arrivals[newest])
        t += rng.uniform(0.060, 0.080)  # the worker's cycle: forward plus outputs
    return float(np.mean(ages)), float(np.median(ages)), len(ages)


def test_fresh_cuts_the_frames_age_for_a_small_loss_of_output_rate():
    fresh_mean, fresh_median, fresh_n = _simulate("fresh")
    latest_mean, latest_median, latest_n = _simulate("latest")
    period = 1 / 30
    assert latest_mean == pytest.approx(period / 2, rel=0.25)  # latest waits half a period on average
    assert fresh_mean < 0.4 * latest_mean and fresh_median < 0.3 * latest_median
    assert fresh_n >= 0.85 * latest_n
