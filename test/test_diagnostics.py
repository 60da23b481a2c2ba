"""FrameStats: the rates, latencies and per-stage times depth_node reports on /diagnostics."""

from __future__ import annotations

import math

import pytest

from moadepth_ros.node.diagnostics import FrameStats

pytestmark = pytest.mark.ros


def test_rates_latency_and_stage_medians_over_the_window():
    st = FrameStats(window_s=5.0)
    for i in range(11):  # 10 Hz in and out for one second
        t = 100.0 + i * 0.1
        st.input(now=t)
        st.output(0.050 + 0.001 * i, now=t + 0.05,
                  stages={"wait": 0.001 * i, "inference": 0.040, "depth_out": 0.002})
    s = st.summary(now=101.1)
    assert s["input_rate_hz"] == pytest.approx(10.0) and s["output_rate_hz"] == pytest.approx(10.0)
    assert s["latency_p50_ms"] == pytest.approx(55.0)
    assert s["stage_wait_p50_ms"] == pytest.approx(5.0)
    assert s["stage_inference_p50_ms"] == pytest.approx(40.0)
    assert list(k for k in s if k.startswith("stage_")) == ["stage_wait_p50_ms", "stage_inference_p50_ms",
                                                            "stage_depth_out_p50_ms"]  # pipeline order
    assert s["frames_in"] == 11 and s["frames_out"] == 11


def test_old_samples_leave_the_window_and_a_reset_keeps_totals():
    st = FrameStats(window_s=1.0)
    st.output(0.5, now=10.0, stages={"inference": 0.4})
    st.output(0.1, now=20.0, stages={"inference": 0.08, "points_out": 0.01})
    s = st.summary(now=20.5)
    assert s["latency_p50_ms"] == pytest.approx(100.0) and s["stage_inference_p50_ms"] == pytest.approx(80.0)
    st.count("dropped")
    st.reset_window()
    s = st.summary(now=20.5)
    assert math.isnan(s["latency_p50_ms"]) and not any(k.startswith("stage_") for k in s)
    assert s["frames_out"] == 2 and s["dropped"] == 1


def test_a_stage_missing_from_some_frames_is_the_median_of_those_that_had_it():
    st = FrameStats(window_s=10.0)
    st.output(0.05, now=1.0, stages={"inference": 0.04})
    st.output(0.06, now=1.1, stages={"inference": 0.05, "points_out": 0.006})
    s = st.summary(now=1.2)
    assert s["stage_points_out_p50_ms"] == pytest.approx(6.0)
    assert s["stage_inference_p50_ms"] == pytest.approx(45.0)


def test_timing_log_appends_rows_under_one_header(tmp_path):
    from moadepth_ros.node.diagnostics import STAGES, TimingLog, read_timing_log

    path = tmp_path / "t.csv"
    for run in range(2):  # a restarted node appends to the same file
        log = TimingLog(path)
        log.write(10 + run, 1.5, 1.6, {"wait": 0.001, "forward": 0.030, "depth_out": 0.002})
        log.close()
    assert path.read_text().count("stamp_ns") == 1
    rows = read_timing_log(path)
    assert [r["stamp_ns"] for r in rows] == [10, 11]
    assert rows[0]["forward_ms"] == 30.0 and rows[0]["wait_ms"] == 1.0 and rows[0]["depth_published_s"] == 1.6
    assert "points_out_ms" not in rows[0]  # a stage that did not run stays empty
    assert TimingLog.COLUMNS[3:] == tuple(f"{s}_ms" for s in STAGES)
