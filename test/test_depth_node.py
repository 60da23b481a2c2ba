"""The depth node in process, over real DDS: headers, intrinsics, points, confidence, parameters,
untrained refusal, lifecycle, latest-frame dropping and 640x480 delivery."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
from rclpy.exceptions import ParameterException
from rclpy.parameter import Parameter

from depth_node_harness import (
    MODEL_HW,
    TRAIN_FOCAL_PX,
    Client,
    Serving,
    camera_K,
    checkpoint_file,
    connected,
    depth_node,
    image_msg,
    info_msg,
    input_matched,
    node_parameters,
    rgb_frame,
    stamp_of,
    wait_for,
)
from moadepth_core import geometry
from moadepth_core.errors import DataError, DeviceError, UntrainedError
from moadepth_core.runtime import choice as runtime_choice
from moadepth_core.runtime.torch.estimator import DepthEstimator
from moadepth_ros import messages
from moadepth_ros.node.depth_node import DepthNode, LifecycleDepthNode

pytest_plugins = ["depth_node_harness"]  # its fixtures: ros, running

pytestmark = [pytest.mark.slow, pytest.mark.ros]

H, W = 48, 72  # same aspect as the 64x96 model input


def _send(client, rgb, stamp, K=None, info_hw=None, frame_id="cam_optical"):
    h, w = rgb.shape[:2]
    if K is not None:
        ih, iw = info_hw or (h, w)
        client.info_pub.publish(info_msg(K, ih, iw, stamp, frame_id))
    client.image_pub.publish(image_msg(rgb, stamp, frame_id))


def test_depth_points_confidence_and_info_carry_the_input_header(running):
    node, client = running(point_stride=1, points_rgb=True)
    K = camera_K(H, W)
    rgb = rgb_frame(H, W)
    stamp = 1_700_000_000_123_456_789
    _send(client, rgb, stamp, K, frame_id="front_cam_optical")
    assert wait_for(lambda: all(client.got(k) for k in ("depth", "info", "points", "confidence")), 30.0)
    depth_msg, info, cloud, conf = (client.got(k)[-1] for k in ("depth", "info", "points", "confidence"))
    for m in (depth_msg, info, cloud, conf):
        assert stamp_of(m) == stamp and m.header.frame_id == "front_cam_optical"
    assert depth_msg.encoding == "32FC1" and (depth_msg.height, depth_msg.width) == (H, W)
    depth = messages.image_to_numpy(depth_msg)
    assert np.isfinite(depth).any()
    c = messages.image_to_numpy(conf)
    assert conf.encoding == "32FC1" and c.shape == (H, W) and ((c >= 0) & (c <= 1)).all()
    K_pub = np.asarray(info.k).reshape(3, 3)
    np.testing.assert_allclose(K_pub, K)
    # points agree with back-projecting the published depth through the published K
    assert (cloud.height, cloud.width) == (H, W)
    assert cloud.is_dense == bool(np.isfinite(depth).all())  # is_dense false whenever a point is NaN
    assert [f.name for f in cloud.fields] == ["x", "y", "z", "rgb"]
    pts = messages.msg_to_packed(cloud)
    from moadepth_core.geometry.pointcloud import unpack_points, unpack_rgb

    np.testing.assert_allclose(unpack_points(pts), geometry.backproject(depth, K_pub), rtol=1e-5, atol=1e-6,
                               equal_nan=True)
    np.testing.assert_array_equal(unpack_rgb(pts), rgb)
    # focal scaling: the network's depth times (fx at model size / training focal)
    est = node._estimator
    raw = est.predict(rgb).depth
    scale = K[0, 0] * MODEL_HW[1] / W / 80.0
    np.testing.assert_allclose(depth, raw * scale, rtol=1e-4)


def test_runtime_parameters_model_output_and_rejections(running):
    node, client = running(output_size="model", point_stride=2, points_rgb=False)
    K = camera_K(H, W)
    res = node.set_parameters([Parameter("max_depth", value=0.0001)])
    assert not res[0].successful  # below the declared range
    res = node.set_parameters_atomically([Parameter("min_depth", value=5.0), Parameter("max_depth", value=4.0)])
    assert not res.successful and "min_depth" in res.reason
    res = node.set_parameters([Parameter("device", value="cuda")])
    assert not res[0].successful and "restart" in res[0].reason
    res = node.set_parameters([Parameter("sensor_qos", value="sometimes")])
    assert not res[0].successful
    assert node.set_parameters([Parameter("point_stride", value=3)])[0].successful
    _send(client, rgb_frame(H, W), 10**9, K)
    assert wait_for(lambda: client.got("points") and client.got("info"), 30.0)
    info, cloud, depth = client.got("info")[-1], client.got("points")[-1], client.got("depth")[-1]
    assert (depth.height, depth.width) == MODEL_HW and (info.height, info.width) == MODEL_HW
    np.testing.assert_allclose(np.asarray(info.k).reshape(3, 3), geometry.scale_intrinsics(K, (H, W), MODEL_HW))
    assert (cloud.height, cloud.width) == (-(-MODEL_HW[0] // 3), -(-MODEL_HW[1] // 3))
    assert [f.name for f in cloud.fields] == ["x", "y", "z"]
    # max_depth below every prediction: depth all NaN; publish_points off: no more clouds
    assert node.set_parameters_atomically([Parameter("max_depth", value=0.011), Parameter("min_depth", value=0.01),
                                           Parameter("publish_points", value=False)]).successful
    n_points = len(client.got("points"))
    _send(client, rgb_frame(H, W), 2 * 10**9, K)
    assert wait_for(lambda: 2 * 10**9 in client.stamps("depth"), 30.0)
    assert np.isnan(messages.image_to_numpy(client.got("depth")[-1])).all()
    assert node.wait_idle(5.0) and len(client.got("points")) == n_points


def test_smaller_network_input_size_runs_and_reports_at_that_size(running):
    """input_height/width trade detail for speed: the network runs at 32x64 instead of the checkpoint's
    64x96; output_size model publishes depth and intrinsics at that size, points agree with them."""
    node, client = running(output_size="model", input_height=32, input_width=64)
    assert node._estimator.model_size == (32, 64)
    K = camera_K(H, W)
    _send(client, rgb_frame(H, W), 10**9, K)
    assert wait_for(lambda: client.got("points") and client.got("info") and client.got("depth"), 30.0)
    info, cloud, depth = client.got("info")[-1], client.got("points")[-1], client.got("depth")[-1]
    assert (depth.height, depth.width) == (info.height, info.width) == (cloud.height, cloud.width) == (32, 64)
    np.testing.assert_allclose(np.asarray(info.k).reshape(3, 3), geometry.scale_intrinsics(K, (H, W), (32, 64)))
    # the training focal follows the resize, so focal scaling gives the same factor as at 64x96
    assert node._estimator.train_focal_px == pytest.approx(TRAIN_FOCAL_PX * 64 / MODEL_HW[1])


def test_onnxruntime_int8_node_publishes_fp32s_depth_picture(running):
    """backend onnxruntime + precision int8 (the fast path on CPUs without bf16 hardware) over DDS:
    the published depth is torch fp32's up to int8 rounding and the same focal-scaling factor."""
    node, client = running(backend="onnxruntime", precision="int8")
    assert (node._estimator.backend, node._estimator.precision) == ("onnxruntime", "int8")
    rgb = rgb_frame(H, W, seed=3)
    _send(client, rgb, 10**9, camera_K(H, W))
    assert wait_for(lambda: client.got("depth"), 30.0)
    got = messages.depth_msg_to_metres(client.got("depth")[-1])
    want = DepthEstimator(checkpoint_file(), device="cpu", precision="fp32").predict(rgb).depth
    ratio = got / want  # focal scaling multiplies every pixel by one factor
    assert np.isfinite(ratio).all()
    assert np.std(ratio) / np.mean(ratio) < 1e-3, (np.std(ratio), np.mean(ratio))
    assert not np.allclose(ratio, ratio.flat[0], rtol=1e-7, atol=0)  # really int8, not the fp32 graph


@pytest.mark.parametrize(("h", "w", "error"), [(32, 0, DataError), (48, 64, ParameterException)])
def test_bad_input_size_is_refused_in_one_sentence(ros, h, w, error):
    # one set alone: our sentence; not a multiple of 32: the declared range (step 32) refuses it
    with pytest.raises(error, match="set both" if error is DataError else "input_height"):
        DepthNode(parameter_overrides=[Parameter("checkpoint", value=str(checkpoint_file())),
                                       Parameter("input_height", value=h), Parameter("input_width", value=w)])


def test_latest_frame_only_under_a_burst(running):
    node, client = running()
    K = camera_K(H, W)
    stamps = [10**9 * (i + 1) for i in range(15)]
    for s in stamps:
        _send(client, rgb_frame(H, W, seed=s % 7), s, K)
    assert wait_for(lambda: stamps[-1] in client.stamps("depth"), 60.0), client.stamps("depth")
    assert node.wait_idle(10.0)
    out = client.stamps("depth")
    assert len(out) <= len(stamps) and set(out) <= set(stamps)
    assert out == sorted(out)
    s = node.stats.summary()
    # the reader's keep-last history (5) may already overwrite frames inside DDS; what reaches the
    # callback is accounted for exactly
    assert 1 <= s["frames_in"] <= len(stamps)
    assert s["frames_out"] + s["dropped"] == s["frames_in"] and s["frames_out"] == len(out)


@pytest.mark.parametrize("policy", ["fresh", "latest"])
def test_frame_policy_fresh_waits_for_a_frame_due_soon_instead_of_an_old_one(running, policy):
    """A camera at 0.3 s; the worker stays busy until the newest frame is 0.21 s old (more than half
    a period) and the next is due in 0.09 s: fresh waits and answers the next, latest answers the old.

    The frames go straight into the node's image callback, at known times: in this one test process
    DDS sometimes holds a sample back for 0.1-1 s, which would scramble the camera's period (the
    transport itself is what the other tests here exercise). Depth still comes back over DDS."""
    node, client = running(frame_policy=policy)
    K, T = camera_K(H, W), 0.3
    stamps = [10**9 * (i + 1) for i in range(7)]
    gate = threading.Event()
    holder = threading.Thread(target=node._on_worker, args=(gate.wait,), daemon=True)
    holder.start()  # the worker runs this job until the gate opens: frames pile up meanwhile
    t0 = time.monotonic()

    def at(t: float) -> None:
        time.sleep(max(0.0, t0 + t - time.monotonic()))

    for i, s in enumerate(stamps[:6]):  # six frames teach the node the camera's period
        at(i * T)
        node._on_info(info_msg(K, H, W, s))
        node._on_image(image_msg(rgb_frame(H, W, seed=i), s))
    at(5.7 * T)
    gate.set()
    at(6 * T)
    node._on_info(info_msg(K, H, W, stamps[6]))
    node._on_image(image_msg(rgb_frame(H, W, seed=6), stamps[6]))
    assert wait_for(lambda: stamps[6] in client.stamps("depth"), 30.0), client.stamps("depth")
    assert node.wait_idle(10.0)
    holder.join(5.0)
    s = node.stats.summary()
    assert client.stamps("depth") == ([stamps[6]] if policy == "fresh" else stamps[5:])
    assert s["waited_for_fresher"] == (1 if policy == "fresh" else 0)
    assert s["frames_out"] + s["dropped"] == s["frames_in"] == len(stamps)


def test_skips_inference_without_subscribers_unless_forced(ros):
    node = DepthNode(parameter_overrides=[Parameter("checkpoint", value=str(checkpoint_file()))])
    from rclpy.node import Node
    from rclpy.qos import QoSProfile
    from sensor_msgs.msg import Image

    feeder = Node("feeder")
    pub = feeder.create_publisher(Image, "image", QoSProfile(depth=10))
    with Serving(node, feeder):
        assert wait_for(lambda: input_matched(node) and pub.get_subscription_count() >= 1, 10.0)
        pub.publish(image_msg(rgb_frame(H, W), 10**9))
        assert wait_for(lambda: node.stats.skipped >= 1, 10.0)
        assert node.stats.frames_out == 0
        assert node.set_parameters([Parameter("force_inference", value=True)])[0].successful
        pub.publish(image_msg(rgb_frame(H, W), 2 * 10**9))
        assert wait_for(lambda: node.stats.frames_out == 1, 30.0)


def test_untrained_refused_then_allowed_with_error_diagnostics(ros, monkeypatch):
    monkeypatch.setenv(runtime_choice.CPU_BF16_ENV, "1")  # a bf16 CPU, where auto once meant torch bf16
    with pytest.raises(UntrainedError):
        DepthNode()
    with pytest.raises(DeviceError, match="CUDA"):
        DepthNode(parameter_overrides=[Parameter("checkpoint", value=str(checkpoint_file())),
                                       Parameter("device", value="cuda")])
    with pytest.raises(DeviceError, match="int8 runs on backend onnxruntime only"):
        DepthNode(parameter_overrides=[Parameter("checkpoint", value=str(checkpoint_file())),
                                       Parameter("backend", value="torch"), Parameter("precision", value="int8")])
    from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
    from rclpy.node import Node

    node = DepthNode(parameter_overrides=[Parameter("allow_untrained", value=True),
                                          Parameter("diagnostics_period", value=0.1)])
    listener = Node("diag_listener")
    got = []
    listener.create_subscription(DiagnosticArray, "/diagnostics", got.append, 10)
    with Serving(node, listener):
        assert node._estimator.untrained
        assert wait_for(lambda: any(s.name.startswith("moadepth") for a in got for s in a.status), 10.0)
        st = next(s for a in got for s in a.status if s.name.startswith("moadepth"))
        assert st.level == DiagnosticStatus.ERROR and "UNTRAINED" in st.message
        keys = {kv.key for kv in st.values}
        assert {"input_rate_hz", "output_rate_hz", "latency_p50_ms", "latency_p95_ms", "dropped", "device",
                "precision", "backend", "checkpoint"} <= keys
        # the default precision and backend auto are reported as what runs, never "auto": fp32 on
        # onnxruntime on every CPU, a bf16 one included
        precision = next(kv.value for kv in st.values if kv.key == "precision")
        backend = next(kv.value for kv in st.values if kv.key == "backend")
        assert precision == "fp32" == node._estimator.precision
        assert backend == "onnxruntime" == node._estimator.backend


def test_lifecycle_configure_activate_deactivate_cleanup(ros):
    from lifecycle_msgs.msg import State

    node = LifecycleDepthNode(parameter_overrides=node_parameters(device=None, min_depth=None, max_depth=None))
    client = Client()
    with Serving(node, client):
        assert node._estimator is None
        node.trigger_configure()
        assert node._state_machine.current_state[0] == State.PRIMARY_STATE_INACTIVE
        assert node._estimator is not None
        assert wait_for(lambda: connected(node, client), 10.0)
        _send(client, rgb_frame(H, W), 10**9, camera_K(H, W))
        assert node.wait_idle(5.0)
        assert not client.got("depth")  # configured but inactive: nothing published
        node.trigger_activate()
        assert node._state_machine.current_state[0] == State.PRIMARY_STATE_ACTIVE
        _send(client, rgb_frame(H, W), 2 * 10**9, camera_K(H, W))
        assert wait_for(lambda: 2 * 10**9 in client.stamps("depth"), 30.0)
        node.trigger_deactivate()
        assert node._state_machine.current_state[0] == State.PRIMARY_STATE_INACTIVE
        n = len(client.got("depth"))
        _send(client, rgb_frame(H, W), 3 * 10**9, camera_K(H, W))
        assert node.wait_idle(5.0)
        assert len(client.got("depth")) == n
        node.trigger_cleanup()
        assert node._state_machine.current_state[0] == State.PRIMARY_STATE_UNCONFIGURED
        assert node._estimator is None
        # configure fails cleanly on a device that is not there, and can be retried
        node.set_parameters([Parameter("device", value="cuda")])
        node.trigger_configure()
        assert node._state_machine.current_state[0] == State.PRIMARY_STATE_UNCONFIGURED


def test_640x480_rgb8_from_a_reliable_camera_is_delivered_with_the_default_qos(running):
    from rclpy.qos import ReliabilityPolicy

    node, client = running(publish_points=False)
    assert node.get_parameter("sensor_qos").value == "auto"
    assert node.input_qos.reliability == ReliabilityPolicy.RELIABLE  # auto follows the reliable client
    K = camera_K(480, 640)
    stamps = [10**9 * (i + 1) for i in range(3)]
    for s in stamps:
        _send(client, rgb_frame(480, 640, seed=s % 5), s, K)
        assert wait_for(lambda s=s: node.stats.frames_in >= stamps.index(s) + 1, 10.0)
    assert wait_for(lambda: stamps[-1] in client.stamps("depth"), 60.0)
    d = client.got("depth")[-1]
    assert (d.height, d.width) == (480, 640)
    assert node.stats.frames_in == len(stamps) and node.stats.rejected == 0


def test_one_thread_builds_and_runs_the_network_and_stage_times_add_up(ros, monkeypatch):
    """Model build and every forward share one thread (two OpenMP teams halve CPU speed), and the
    per-stage times the node reports on /diagnostics account for its latency."""
    import threading

    from moadepth_ros.node import model as dn  # where the node builds its estimator
    from moadepth_ros.node.diagnostics import STAGES

    threads: dict[str, set[int]] = {"build": set(), "predict": set()}

    def recording(*a, load=dn.load_estimator, **kw):
        threads["build"].add(threading.get_ident())
        est = load(*a, **kw)

        def predict(*pa, predict=est.predict, **pkw):
            threads["predict"].add(threading.get_ident())
            return predict(*pa, **pkw)

        est.predict = predict
        return est

    monkeypatch.setattr(dn, "load_estimator", recording)
    node = depth_node(device=None, min_depth=None, max_depth=None)
    client = Client()
    with Serving(node, client):
        assert wait_for(lambda: connected(node, client), 10.0)
        _send(client, rgb_frame(H, W), 5 * 10**9, camera_K(H, W))
        assert wait_for(lambda: client.got("points"), 30.0)
        assert len(threads["build"]) == 1 and threads["build"] == threads["predict"]
        assert threading.get_ident() not in threads["build"]
        s = node.stats.summary()
        stages = {k: v for k, v in s.items() if k.startswith("stage_")}
        assert set(stages) == {f"stage_{k}_p50_ms" for k in STAGES}
        assert all(v >= 0 for v in stages.values()) and stages["stage_forward_p50_ms"] > 0
        total = sum(stages.values())  # one frame: its stages are the whole callback -> published span
        assert s["latency_p50_ms"] - 5.0 <= total <= s["latency_p50_ms"] + 1e-6


def test_timing_log_has_one_row_per_answered_frame_on_the_shared_clock(running, tmp_path):
    """The per-frame profile a user (or the benchmark) joins with their own publish times."""
    import time

    from moadepth_ros.node.diagnostics import STAGES, read_timing_log

    log = tmp_path / "timing.csv"
    node, client = running(timing_log=str(log))
    sent = {}
    for i in range(3):
        stamp = (20 + i) * 10**9
        sent[stamp] = time.monotonic()
        _send(client, rgb_frame(H, W, seed=i), stamp, camera_K(H, W))
        assert wait_for(lambda s=stamp: s in client.stamps("points"), 30.0)
    node.wait_idle(10.0)
    rows = read_timing_log(log)
    assert [r["stamp_ns"] for r in rows] == sorted(sent) == client.stamps("depth")
    for r in rows:
        # the node's receive time is after the client's publish, on the same clock, and depth follows
        assert sent[r["stamp_ns"]] <= r["received_s"] <= r["depth_published_s"] <= time.monotonic()
        assert all(r[f"{s}_ms"] >= 0 for s in STAGES) and r["forward_ms"] > 0
        inside = sum(r[f"{s}_ms"] for s in STAGES[:5]) / 1000.0  # callback -> depth published
        assert abs((r["depth_published_s"] - r["received_s"]) - inside) < 0.005


def test_timing_log_that_cannot_be_written_is_one_sentence(ros, tmp_path):
    from moadepth_core.errors import ConfigError

    bad = tmp_path / "no" / "such" / "folder" / "t.csv"
    with pytest.raises(ConfigError, match=r"cannot write the timing log .*t\.csv: No such file"):
        DepthNode(parameter_overrides=[Parameter("checkpoint", value=str(checkpoint_file())),
                                       Parameter("device", value="cpu"), Parameter("timing_log", value=str(bad))])


@pytest.mark.parametrize("flag", ["--help", "-h"])
def test_help_prints_usage_and_every_parameter_without_starting_ros(flag, monkeypatch, capsys):
    """Issue 23: ``depth_node --help`` answered "unknown arguments"; it prints the table in parameters.py."""
    import rclpy

    from moadepth_ros.node import depth_node as dn
    from moadepth_ros.node.parameters import PARAMS

    def no_init(*a, **kw):
        raise AssertionError("--help must not initialise rclpy")

    monkeypatch.setattr(rclpy, "init", no_init)
    assert dn.main([flag]) == 0
    text = capsys.readouterr().out
    assert "--ros-args" in text and "--params-file" in text and "image:=" in text and "camera_info:=" in text
    for p in PARAMS:
        assert f"  {p.name} (default " in text and p.description.split()[0] in text
    assert "output_size (default 'input'; input | model; static)" in text
    assert "point_stride (default 'auto'; auto | [1, 64]; dynamic)" in text
