"""Several cameras in one depth node over real DDS (``cameras``, issue 21): each camera's frames land on its own
outputs with its own header, a silent camera delays nobody, invalid names fail at start."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
from rclpy.parameter import Parameter

from depth_node_harness import (
    Client,
    Serving,
    camera_K,
    checkpoint_file,
    connected,
    depth_node,
    image_msg,
    info_msg,
    rgb_frame,
    stamp_of,
    wait_for,
)
from moadepth_core.errors import ConfigError
from moadepth_ros.node.depth_node import DepthNode

pytest_plugins = ["depth_node_harness"]  # its fixture: ros

pytestmark = [pytest.mark.slow, pytest.mark.ros]


@pytest.fixture
def multi(ros):
    made = []

    def make(names: list[str], talking: list[str], **params):
        node = depth_node(max_uncertainty=None, cameras=names, **params)
        clients = {n: Client(prefix=n, name="camera_" + n.replace("/", "_"), outputs=("depth", "info")) for n in talking}
        made.append(Serving(node, *clients.values()))
        assert wait_for(lambda: all(connected(node, clients[n], n) for n in talking), 15.0)
        return node, clients

    yield make
    for serving in made:
        serving.close()


def test_three_cameras_with_distinct_headers_land_on_their_own_outputs(multi):
    sizes = {"front": (48, 72), "left": (32, 48), "rear/low": (40, 60)}
    node, clients = multi(list(sizes), list(sizes))
    assert [c.name for c in node.cameras] == ["front", "left", "rear/low"]
    assert {c.outputs[0].topic_name for c in node.cameras} == {"/front/depth/image", "/left/depth/image",
                                                               "/rear/low/depth/image"}
    stamps = {}
    for i, (name, (h, w)) in enumerate(sizes.items()):
        stamps[name] = 1_700_000_003_000_000_000 + i * 7_000_000
        clients[name].publish(image_msg(rgb_frame(h, w, seed=i), stamps[name], frame_id=f"{name}_optical"),
                              info_msg(camera_K(h, w), h, w, stamps[name], frame_id=f"{name}_optical"),
                              stamps[name])
    for name, (h, w) in sizes.items():
        client = clients[name]
        assert wait_for(lambda c=client, s=stamps[name]: s in c.stamps("depth") and s in c.stamps("info"), 30.0)
        depths, infos = client.got("depth"), client.got("info")
        assert [(stamp_of(m), m.header.frame_id, m.height, m.width) for m in depths] == [
            (stamps[name], f"{name}_optical", h, w)]  # only its own frame, at its own size
        assert [(stamp_of(m), m.header.frame_id) for m in infos] == [(stamps[name], f"{name}_optical")]
        cam = node.camera(name)  # counted once the frame's last output is out
        assert wait_for(lambda c=cam: c.stats.frames_out == 1, 10.0)
        assert cam.last_answered_stamp_ns == stamps[name] and cam.stats.dropped == 0


def test_a_silent_camera_never_delays_the_others(multi):
    node, clients = multi(["a", "b", "silent"], ["a", "b"], max_batch=3, frame_policy="latest")
    h, w = 48, 72
    period, n = 0.2, 15
    t0 = 1_700_000_004_000_000_000
    for i in range(n):
        for j, name in enumerate(("a", "b")):
            stamp = t0 + i * 200_000_000 + j
            clients[name].publish(image_msg(rgb_frame(h, w, seed=i), stamp, frame_id=name),
                                  info_msg(camera_K(h, w), h, w, stamp, frame_id=name), stamp)
        time.sleep(period)  # the cameras' frame rate
    last = {name: t0 + (n - 1) * 200_000_000 + j for j, name in enumerate(("a", "b"))}
    assert wait_for(lambda: all(last[k] in clients[k].stamps("depth") for k in last), 30.0)
    answered = {k: len(clients[k].stamps("depth")) for k in last}
    dropped = {k: node.camera(k).stats.dropped for k in last}
    for k in last:
        assert answered[k] + dropped[k] == n  # every frame answered or counted as dropped, per camera
        assert answered[k] >= n // 3, (answered, dropped)  # each camera keeps a rate
        assert {m.header.frame_id for m in clients[k].got("depth")} == {k}
    assert max(answered.values()) <= 2 * min(answered.values())  # neither starves the other
    assert node.camera("silent").stats.frames_in == 0 and node.camera("silent").stats.frames_out == 0
    names = [s.name for s in _statuses(node)]
    assert names == [f"{node.get_name()}: {k} depth estimation" for k in ("a", "b", "silent")]


def _statuses(node):
    """The DiagnosticStatus list the node publishes, captured from one call."""
    got = []
    pub = node._diag_pub
    original = pub.publish
    pub.publish = lambda arr: got.extend(arr.status)
    try:
        node._publish_diagnostics()
    finally:
        pub.publish = original
    return got


def test_predict_batch_is_predict_of_each_frame():
    from moadepth_core.runtime.torch.estimator import DepthEstimator

    est = DepthEstimator(checkpoint_file(), device="cpu", precision="fp32", backend="torch")
    assert est.batches
    frames = [rgb_frame(48, 72, seed=1), rgb_frame(32, 48, seed=2), rgb_frame(64, 96, seed=3)]
    batched = est.predict_batch(frames)
    for rgb, got in zip(frames, batched, strict=True):
        one = est.predict(rgb)
        assert got.depth.shape == rgb.shape[:2]
        np.testing.assert_allclose(got.depth, one.depth, rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(got.uncertainty, one.uncertainty, rtol=1e-4, atol=1e-5)


def test_frames_waiting_from_three_cameras_run_as_one_torch_batch(multi):
    sizes = {"front": (48, 72), "left": (32, 48), "right": (48, 72)}
    node, clients = multi(list(sizes), list(sizes), backend="torch", precision="fp32", max_batch=3)
    gate = threading.Event()
    holder = threading.Thread(target=node._on_worker, args=(gate.wait,), daemon=True)
    holder.start()  # the worker is busy: the three frames wait together
    stamps = {}
    for i, (name, (h, w)) in enumerate(sizes.items()):
        stamps[name] = 1_700_000_005_000_000_000 + i * 3_000_000
        clients[name].publish(image_msg(rgb_frame(h, w, seed=i), stamps[name], frame_id=name),
                              info_msg(camera_K(h, w), h, w, stamps[name], frame_id=name), stamps[name])
    assert wait_for(lambda: sum(node.camera(n).stats.frames_in for n in sizes) == 3, 10.0)
    gate.set()
    holder.join(10.0)
    for name, (h, w) in sizes.items():
        assert wait_for(lambda c=clients[name], s=stamps[name]: s in c.stamps("depth"), 30.0)
        (msg,) = clients[name].got("depth")
        assert (msg.header.frame_id, msg.height, msg.width) == (name, h, w)
    assert node.batch_sizes == {3: 1}


def test_invalid_camera_names_are_refused_at_start_naming_them(ros):
    with pytest.raises(ConfigError, match=r"'9front', 'a b' and|'9front', 'a b' are not valid") as err:
        DepthNode(parameter_overrides=[Parameter("allow_untrained", value=True), Parameter("device", value="cpu"),
                                       Parameter("cameras", value=["ok", "9front", "a b"])])
    assert "'ok'" not in str(err.value)
    with pytest.raises(ConfigError, match="'left' listed more than once"):
        DepthNode(parameter_overrides=[Parameter("allow_untrained", value=True), Parameter("device", value="cpu"),
                                       Parameter("cameras", value=["left", "left"])])
