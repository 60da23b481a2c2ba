"""The depth node's cameras: publishers and subscriptions for each one (``cameras``), and the first
camera's state under the attribute names the single-camera node always had.

:class:`CameraSetupMixin` is one half of the node class (:mod:`moadepth_ros.node.depth_node` holds the
other: parameters, model, per-frame callbacks, lifecycle). It uses the node's ``_cfg``, ``report``,
``_on_frame``, ``_on_info``, ``_worker`` and ``_timing_log``.
"""

from __future__ import annotations

from rclpy.event_handler import PublisherEventCallbacks
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CameraInfo, CompressedImage, Image, PointCloud2

from moadepth_ros.node import input_qos
from moadepth_ros.node.cameras import CameraIO, check_camera_names
from moadepth_ros.node.decode import frame_from_compressed, frame_from_image
from moadepth_ros.node.diagnostics import FrameStats, TimingLog
from moadepth_ros.node.subscriptions import InputSubscriptions


class CameraSetupMixin:
    """Per-camera topics of the depth node (see the module docstring)."""

    cameras: list[CameraIO]

    # ----------------------------------------------------------------- cameras (cameras.py)
    def camera(self, name: str = "") -> CameraIO:
        """The camera called ``name`` ("" for the single one)."""
        return next(c for c in self.cameras if c.name == name)

    # the first (with ``cameras`` empty: the only) camera's state, under the names the node always had
    @property
    def stats(self) -> FrameStats:
        return self.cameras[0].stats

    @property
    def _io(self) -> InputSubscriptions | None:
        return self.cameras[0].io

    @property
    def _last_stamp(self) -> int | None:
        return self.cameras[0].last_stamp

    @property
    def depth_pub(self):
        return self.cameras[0].depth_pub

    @property
    def info_pub(self):
        return self.cameras[0].info_pub

    @property
    def points_pub(self):
        return self.cameras[0].points_pub

    @property
    def conf_pub(self):
        return self.cameras[0].conf_pub

    @property
    def colored_pub(self):
        return self.cameras[0].colored_pub

    @property
    def _outputs(self) -> list:
        return [pub for c in self.cameras for pub in c.outputs]

    # ----------------------------------------------------------------- inputs (subscriptions.py)
    @property
    def input_qos(self) -> input_qos.Decision | None:
        """The (first camera's) input subscriptions' reliability and why (None while there are none)."""
        return self._io.decision if self._io is not None else None

    @property
    def qos_rematches(self) -> int:
        """Re-subscriptions to match a publisher that appeared later (all cameras)."""
        return self._qos_rematches + sum(c.io.rematches for c in self.cameras if c.io is not None)

    @property
    def _subs(self) -> list:
        """The (first camera's) current input subscriptions, image first."""
        return self._io.subs if self._io is not None else []

    # ----------------------------------------------------------------- publishers and subscriptions
    def _create_io(self, create_pub) -> None:
        """Every camera's publishers and subscriptions (``create_pub``: the plain or the lifecycle one)."""
        names = check_camera_names(self._cfg["cameras"])
        if [c.name for c in self.cameras] != (names or [""]):
            self.cameras = [CameraIO(n) for n in names or [""]]
        for cam in self.cameras:
            self._create_camera_io(cam, create_pub)
        if len(self.cameras) > 1:
            self.get_logger().info(f"{len(self.cameras)} cameras: {', '.join(c.name for c in self.cameras)}; one "
                                   f"model, up to max_batch={self._cfg['max_batch']} frames per worker pass")

    def _create_camera_io(self, cam: CameraIO, create_pub) -> None:
        """Publishers and subscriptions.

        Publishers are RELIABLE so reliable (depth_image_proc, recorders) and best-effort (Nav2) readers
        both connect. History 3, not 1: with 1, Fast DDS overwrote samples a loaded reliable reader was
        still repairing and it lost depth images (docs/ROS.md); a best-effort reader still only
        ever gets the newest.
        """
        if self._cfg["timing_log"] and self._timing_log is None:
            self._timing_log = TimingLog(self._cfg["timing_log"])
            self.get_logger().info(f"timing log: one row per answered frame in {self._timing_log.path}")
        out_qos = QoSProfile(depth=3, reliability=ReliabilityPolicy.RELIABLE,
                             durability=DurabilityPolicy.VOLATILE, history=HistoryPolicy.KEEP_LAST)

        def out(msg_type, topic: str):
            def on_incompatible(event) -> None:
                if cam.io is not None:
                    cam.io.on_incompatible(pub.topic_name, out_qos, event, we_read=False)

            pub = create_pub(msg_type, cam.topic(topic), out_qos,
                             event_callbacks=PublisherEventCallbacks(incompatible_qos=on_incompatible))
            return pub

        cam.depth_pub = out(Image, "depth/image")
        cam.info_pub = out(CameraInfo, "depth/camera_info")
        cam.points_pub = out(PointCloud2, "points")
        cam.conf_pub = out(Image, "depth/confidence")
        cam.colored_pub = out(Image, "depth/colored")
        cam.outputs = [cam.depth_pub, cam.info_pub, cam.points_pub, cam.conf_pub, cam.colored_pub]
        image = self.resolve_topic_name(cam.topic("image"))
        if self._cfg["image_transport"] == "compressed":  # image_transport's naming: <image>/compressed
            image_input = (image + "/compressed", CompressedImage,
                           lambda msg, info: self._on_frame(msg, frame_from_compressed, cam, info))
        else:
            image_input = (image, Image, lambda msg, info: self._on_frame(msg, frame_from_image, cam, info))
        inputs = {image_input[0]: image_input[1:],
                  self.resolve_topic_name(cam.topic("camera_info")): (CameraInfo, lambda msg: self._on_info(msg, cam))}
        cam.io = InputSubscriptions(self, inputs, self.report, self._cfg["sensor_qos"], image_group=self._intake)

    def _destroy_io(self) -> None:
        self._worker.clear_pending()
        self.wait_idle(30.0)
        for cam in getattr(self, "cameras", []):
            if cam.io is not None:
                self._qos_rematches += cam.io.rematches
                cam.io.close()
                cam.io = None
            for pub in cam.outputs:
                self.destroy_publisher(pub)
            cam.outputs = []
            cam.infos.clear()
            cam.last_stamp = None
        if self._timing_log is not None:
            self._timing_log.close()
            self._timing_log = None
