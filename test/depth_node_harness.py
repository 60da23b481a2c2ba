"""Shared helpers for the depth node tests: a real checkpoint file, test frames, the DDS client, the
rclpy fixture, the test node and the running-node fixture.

The client (``Client``, ``Spinner``, ``wait_for``, message builders) is
``moadepth_ros.dds_client``, shared with the benchmark; its names are re-exported here.
Everything runs over real DDS (conftest.py keeps discovery on localhost with a random domain).
A test module takes the fixtures by importing them (``from depth_node_harness import ros, running``).
"""

from __future__ import annotations

import atexit
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pytest
import rclpy
from rclpy.node import Node
from rclpy.parameter import Parameter

from moadepth_core import geometry
from moadepth_ros.dds_client import Client, Spinner, image_msg, info_msg, stamp_of, wait_for

__all__ = ["MODEL_HW", "NODE_DEFAULTS", "TRAIN_FOCAL_PX", "Client", "Serving", "Spinner", "camera_K",
           "checkpoint_file", "connected", "depth_node", "image_msg", "info_msg", "input_matched", "node_parameters",
           "rgb_frame", "ros", "running", "stamp_of", "wait_for"]

MODEL_HW = (64, 96)
TRAIN_FOCAL_PX = 80.0
_CKPT: list[Path] = []


def checkpoint_file() -> Path:
    """A real checkpoint of a random 64x96 network, written once per test process."""
    if not _CKPT:
        import model_cache
        from moadepth_core.model.checkpoint import save_checkpoint

        folder = Path(tempfile.mkdtemp(prefix="moadepth-node-test-"))
        atexit.register(shutil.rmtree, folder, True)
        path = folder / "random.pt"
        save_checkpoint(path, model_cache.shared_model(MODEL_HW), train_focal_px=TRAIN_FOCAL_PX)
        _CKPT.append(path)
    return _CKPT[0]


def camera_K(h: int, w: int) -> np.ndarray:
    return geometry.intrinsics_matrix(0.9 * w, 0.9 * w, (w - 1) / 2.0 + 1.5, (h - 1) / 2.0 - 2.0)


def rgb_frame(h: int, w: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 255, (h, w, 3), dtype=np.uint8)


@pytest.fixture(scope="module")
def ros():
    """rclpy initialised for the module's tests, shut down after them."""
    rclpy.init()
    yield
    rclpy.try_shutdown()


#: What the node tests run with unless they say otherwise: the CPU, depth and uncertainty limits wide open
#: (a random network's depth and uncertainty are arbitrary).
NODE_DEFAULTS = {"device": "cpu", "min_depth": 0.0, "max_depth": 1000.0, "max_uncertainty": 1000.0}


def node_parameters(**params) -> list[Parameter]:
    """Parameter overrides for a node on the test checkpoint: :data:`NODE_DEFAULTS` updated with ``params``;
    a value of None leaves that parameter at the node's own default."""
    values = {"checkpoint": str(checkpoint_file()), **NODE_DEFAULTS, **params}
    return [Parameter(k, value=v) for k, v in values.items() if v is not None]


def depth_node(**params):
    """A plain DepthNode with :func:`node_parameters` (``params``)."""
    from moadepth_ros.node.depth_node import DepthNode

    return DepthNode(parameter_overrides=node_parameters(**params))


#: Client output key -> the node's publisher of it (a CameraIO attribute).
_OUTPUT_PUBS = {"depth": "depth_pub", "info": "info_pub", "points": "points_pub", "confidence": "conf_pub",
                "colored": "colored_pub"}


def input_matched(node, publishers: int = 1, camera: str = "") -> bool:
    """The camera's input QoS is decided (sensor_qos auto re-subscribes once after the first publisher) and
    the image subscription it kept sees ``publishers`` publishers."""
    io = node.camera(camera).io
    return io is not None and io.decision.decided and io.subs[0].get_publisher_count() >= publishers


def connected(node, client: Client, camera: str = "") -> bool:
    """:func:`input_matched`, the client's image and camera_info publishers each see a subscriber, and the
    node's publisher of every output the client reads sees one."""
    cam = node.camera(camera)
    return (input_matched(node, camera=camera) and client.image_pub.get_subscription_count() >= 1
            and client.info_pub.get_subscription_count() >= 1
            and all(getattr(cam, _OUTPUT_PUBS[k]).get_subscription_count() >= 1 for k in client.outputs))


class Serving:
    """Nodes spun by one :class:`Spinner` until :meth:`close` (or the ``with`` block ends), then destroyed
    in the order they were given or added."""

    def __init__(self, *nodes: Node) -> None:
        self.nodes = list(nodes)
        self.spinner = Spinner(*nodes)

    def add(self, node: Node) -> Node:
        self.nodes.append(node)
        self.spinner.add(node)
        return node

    def close(self) -> None:
        self.spinner.close()
        for n in self.nodes:
            n.destroy_node()

    def __enter__(self) -> Serving:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


@pytest.fixture
def running(ros):
    """``running(**params) -> (node, client)``: a :func:`depth_node` and a :class:`Client`, spinning and
    :func:`connected`; torn down after the test."""
    made: list[Serving] = []

    def make(**params):
        node = depth_node(**params)
        client = Client()
        made.append(Serving(node, client))
        assert wait_for(lambda: connected(node, client), 10.0)
        return node, client

    yield make
    for serving in made:
        serving.close()
