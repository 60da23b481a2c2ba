"""The ``moadepth`` node: image (+ camera_info) in; metric depth, confidence, intrinsics and points out.

Parameters, callbacks and a per-frame step that calls the core once
(:func:`moadepth_core.geometry.postprocess.publishable`) and wraps what it returns into messages
(:mod:`moadepth_ros.messages`); each camera's publishers and subscriptions are set up in
:mod:`moadepth_ros.node.camera_setup`, input messages decoded in :mod:`moadepth_ros.node.decode`. Frames wait for the inference thread in
:mod:`moadepth_ros.node.worker`, which also builds the model (one thread for every torch call).

On the CPU's ONNX Runtime path the node does not import torch at all
(:mod:`moadepth_core.runtime.loader`): a restart reads the checkpoint's cached graph, and a first
start exports it in a child process that exits once the graph is written (start-up times and
memory in docs/PERFORMANCE.md).

``depth_node`` runs the plain node; ``depth_node --lifecycle`` runs the managed variant
(configure loads the model, activate publishes, deactivate stops, cleanup frees it);
``depth_node --help`` lists the parameters.
"""

from __future__ import annotations

import gc
import time
from collections import Counter
from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np
from diagnostic_msgs.msg import DiagnosticArray
from rcl_interfaces.msg import SetParametersResult
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn
from rclpy.node import Node
from rclpy.parameter import Parameter
from sensor_msgs.msg import CameraInfo, CompressedImage, Image

from moadepth_core.errors import DataError, MoadepthError
from moadepth_core.geometry.postprocess import OutputSettings, publishable
from moadepth_core.runtime.loader import CachedGraphEstimator
from moadepth_ros import messages
from moadepth_ros.messages import camera_from_info
from moadepth_ros.node import input_qos, intake
from moadepth_ros.node.camera_setup import CameraSetupMixin
from moadepth_ros.node.cameras import CameraIO, check_camera_names
from moadepth_ros.node.cli import NODE_NAME, main
from moadepth_ros.node.decode import MAX_IMAGE_SIDE, frame_from_compressed, frame_from_image
from moadepth_ros.node.diagnostics import FrameStats, ProblemLog, TimingLog, node_status
from moadepth_ros.node.intake import IntakeGate
from moadepth_ros.node.model import load_model
from moadepth_ros.node.pacing import FramePacer
from moadepth_ros.node.parameters import BY_NAME, PARAMS, check_value
from moadepth_ros.node.worker import Frame, InferenceWorker, StampedCamera, header_stamp_ns

if TYPE_CHECKING:  # the node imports torch only where it builds the network (estimator_loader)
    from moadepth_core.runtime.torch.estimator import DepthEstimator

__all__ = ["MAX_IMAGE_SIDE", "DepthNode", "LifecycleDepthNode", "camera_from_info", "frame_from_compressed",
           "frame_from_image", "main"]


class _DepthNodeMixin(CameraSetupMixin):
    """Everything the plain and the lifecycle node share; the subclass decides *when* to load and publish."""

    def _init_common(self) -> None:
        self._estimator: DepthEstimator | CachedGraphEstimator | None = None
        self._active = False
        self._cfg: dict = {p.name: p.default for p in PARAMS}
        self._problem_log = ProblemLog()
        self.problems = self._problem_log.problems  # every problem seen, by kind (logged or not)
        self.log_lines = self._problem_log.lines  # (kind, line) of the lines actually logged
        #: one per camera (``cameras``; the single camera "" by default): topics, pairing, pacing, counters
        self.cameras: list[CameraIO] = [CameraIO("")]
        #: the image subscriptions' callback group: closed while the network runs (moadepth_ros.node.intake)
        self._intake = IntakeGate(self._wake_executor)
        self._worker = InferenceWorker(self._process, self.report, FrameStats(), FramePacer(),
                                       lambda: self._cfg["frame_policy"], lambda: self._cfg["max_batch"],
                                       self._predict_batch)
        self.batch_sizes: Counter[int] = Counter()  # frames per batched forward -> how many such forwards
        self._timing_log: TimingLog | None = None
        self.last_answered_stamp_ns: int | None = None
        self._qos_rematches = 0  # kept across lifecycle cleanup/configure
        self.add_on_set_parameters_callback(self._on_set_parameters)
        for p in PARAMS:
            self.declare_parameter(p.name, p.default, p.descriptor())
        self._cfg = {p.name: self.get_parameter(p.name).value for p in PARAMS}
        self._cfg["cameras"] = list(self._cfg["cameras"] or [])  # YAML's [] arrives unset (None)
        self.add_post_set_parameters_callback(self._after_set_parameters)
        self._diag_pub = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self._diag_timer = self.create_timer(self._cfg["diagnostics_period"], self._publish_diagnostics)

    # ----------------------------------------------------------------- parameters
    def _on_set_parameters(self, params: list[Parameter]) -> SetParametersResult:
        merged = dict(self._cfg)
        merged.update({p.name: p.value for p in params})
        for p in params:
            spec = BY_NAME.get(p.name)
            if spec is None:
                continue
            if not spec.dynamic and self._estimator is not None and p.value != self._cfg.get(p.name):
                return SetParametersResult(successful=False, reason=(
                    f"{p.name} is read when the model loads: restart the node (or cleanup and configure "
                    f"the lifecycle node) to change it"))
            reason = check_value(p.name, p.value, merged)
            if reason:
                return SetParametersResult(successful=False, reason=reason)
        return SetParametersResult(successful=True)

    def _after_set_parameters(self, params: list[Parameter]) -> None:
        for p in params:
            if p.name in BY_NAME:
                self._cfg[p.name] = list(p.value or []) if p.name == "cameras" else p.value

    # ----------------------------------------------------------------- logging
    def report(self, kind: str, text: str) -> None:
        """One readable warning per problem, repeated at most every ``log_period`` seconds (ProblemLog)."""
        line = self._problem_log.note(kind, text, self._cfg["log_period"])
        if line is not None:
            self.get_logger().warning(line)

    # ----------------------------------------------------------------- model and I/O
    def _on_worker(self, fn: Callable[[], object]) -> object:
        """Run ``fn`` on the inference thread and return its result (or raise its exception)."""
        return self._worker.run(fn)

    def _load_model(self) -> None:
        """Build the estimator from the parameters on the inference thread, where every later forward
        runs; MoadepthError (untrained, device, checkpoint) propagates."""
        check_camera_names(self._cfg["cameras"])  # before the model: a wrong name fails at once
        self._estimator = load_model(self._cfg, self.get_logger(), self._on_worker)

    def _free_model(self) -> None:
        self._estimator = None
        gc.collect()

    def _stop_worker(self) -> None:
        self._worker.stop(timeout=30.0)

    # ----------------------------------------------------------------- callbacks
    def _on_info(self, msg: CameraInfo, cam: CameraIO | None = None) -> None:
        cam = cam or self.cameras[0]
        try:
            camera = camera_from_info(msg)
        except DataError as exc:
            self.report("camera_info", cam.says(f"CameraInfo ignored: {exc}"))
            return
        cam.infos.add(StampedCamera(header_stamp_ns(msg.header), camera, msg))

    def _on_image(self, msg: Image, info: dict | None = None) -> None:
        self._on_frame(msg, frame_from_image, self.cameras[0], info)

    def _wake_executor(self) -> None:
        """Let the executor take the image that waited while the intake was closed (it rebuilds its wait set)."""
        executor = self.executor
        if executor is not None:
            executor.wake()

    def _on_frame(self, msg: Image | CompressedImage, decode: Callable[[object], np.ndarray],
                  cam: CameraIO, info: dict | None = None) -> None:
        """One input frame of ``cam`` (raw or compressed; ``info``: its rmw message info): stamp checks,
        decoding (a bad frame is counted, warned about at most every log_period and skipped), then the
        worker. The frames the camera sent while the intake was closed are counted as in and dropped."""
        now = intake.arrival_time(info, time.monotonic())
        frames, cam.last_seq = intake.frames_since(cam.last_seq, info)
        for _ in range(frames - 1):  # sent while the network ran: never taken, so never used
            cam.stats.input(now)
            cam.stats.count("dropped")
        cam.stats.input(now)
        cam.pacer.arrived(now, frames)
        stamp = header_stamp_ns(msg.header)
        if cam.last_stamp is not None and stamp < cam.last_stamp:
            back = (cam.last_stamp - stamp) / 1e9
            cam.reset()  # a bag loop may pause between its last and first frame
            cam.last_stamp = stamp
            self._worker.clear_pending(cam.name)
            cam.stats.count("rejected")
            self.report("stamp", cam.says(f"image stamps went back by {back:.3f} s (bag loop or clock reset?): "
                                          f"state reset, this frame skipped"))
            return
        cam.last_stamp = stamp
        try:
            rgb = decode(msg)
        except DataError as exc:
            cam.stats.count("rejected")
            self.report("image", cam.says(f"image rejected: {exc}"))
            return
        if not self._active:
            return
        if not (self._cfg["force_inference"] or any(p.get_subscription_count() > 0 for p in cam.outputs)):
            cam.stats.count("skipped")
            return
        self._worker.submit(Frame(msg.header, rgb, stamp, now, source=cam.name, camera=cam, stats=cam.stats,
                                  pacer=cam.pacer))

    def wait_idle(self, timeout: float) -> bool:
        """True once no frame is pending or running (tests and shutdown use it)."""
        return self._worker.wait_idle(timeout)

    # ----------------------------------------------------------------- per frame (on the worker)
    def _predict_batch(self, frames: list[Frame]) -> None:
        """Several cameras' waiting frames as one forward, where the estimator batches (ONNX Runtime, eager torch);
        otherwise nothing here and :meth:`_process` infers each frame."""
        est = self._estimator
        if est is None or not getattr(est, "batches", False) or not self._active:
            return
        with self._intake.closed():
            predictions = est.predict_batch([f.rgb for f in frames], self._cfg["output_size"])
        for frame, prediction in zip(frames, predictions, strict=True):
            frame.prediction = prediction
        self.batch_sizes[len(frames)] += 1

    def _process(self, frame: Frame) -> None:
        est = self._estimator
        cam: CameraIO = frame.camera or self.cameras[0]
        if not self._active or est is None:
            return
        c = dict(self._cfg)
        t_start = time.monotonic()
        if frame.prediction is not None:
            prediction = frame.prediction
        else:
            with self._intake.closed():  # no image taken while the network runs (moadepth_ros.node.intake)
                prediction = est.predict(frame.rgb, output_size=c["output_size"])
        t_inferred = time.monotonic()
        paired = cam.infos.pick(frame.image_stamp_ns, c["camera_info_tolerance"])
        if paired is None:
            self.report("no_camera_info", cam.says(f"no CameraInfo on {cam.topic('camera_info')} yet: publishing "
                                                   f"depth without focal scaling, depth/camera_info or points"))
        settings = OutputSettings(
            min_depth=c["min_depth"], max_depth=c["max_depth"], focal_scaling=c["focal_scaling"],
            train_focal_px=est.train_focal_px, model_hw=est.model_size, publish_points=c["publish_points"],
            point_stride=c["point_stride"], points_rgb=c["points_rgb"], max_uncertainty=c["max_uncertainty"])
        out = publishable(prediction, frame.rgb, paired.camera if paired else None, settings, cam.buffers)
        if out.camera_problem:
            self.report("camera_info_size", cam.says(out.camera_problem))
        header = frame.header
        if not self._active:
            return
        # depth first: it is what costmaps wait for; confidence and the cloud are computed after it
        cam.depth_pub.publish(messages.float_image_to_msg(out.depth, header))
        t_depth = time.monotonic()
        if out.camera is not None:
            cam.info_pub.publish(messages.camera_info_msg(paired.msg, out.camera, header))
        if cam.conf_pub.get_subscription_count() > 0:  # computed (resize + 1 - x) only when read
            cam.conf_pub.publish(messages.float_image_to_msg(out.confidence, header))
        t_conf = time.monotonic()
        stages = {"wait": t_start - frame.received, **prediction.timings,
                  "depth_out": t_depth - t_inferred, "confidence_out": t_conf - t_depth}
        if cam.colored_pub.get_subscription_count() > 0:  # for people: coloured only while someone looks
            data, view = out.colored
            cam.colored_pub.publish(messages.image_from_buffer(data, *view.shape[:2], "rgb8", header))
            stages["colored_out"] = time.monotonic() - t_conf
            t_conf = time.monotonic()
        if out.cloud is not None:
            cam.points_pub.publish(messages.cloud_to_msg(out.cloud, header))
            stages["points_out"] = time.monotonic() - t_conf
        self.last_answered_stamp_ns = cam.last_answered_stamp_ns = frame.image_stamp_ns
        cam.stats.output(time.monotonic() - frame.received, stages=stages)
        if self._timing_log is not None:
            self._timing_log.write(frame.image_stamp_ns, frame.received, t_depth, stages)

    # ----------------------------------------------------------------- diagnostics
    def _publish_diagnostics(self) -> None:
        """One status per camera (its rates, drops, latency and input QoS; the node's problem counts)."""
        statuses = []
        for cam in self.cameras:
            d = cam.io.decision if cam.io is not None else None
            warnings = cam.io.warnings() if cam.io is not None else []
            rematches = cam.io.rematches if cam.io is not None else 0
            extra = {"sensor_qos": self._cfg["sensor_qos"],
                     "qos_rematches": str(self.qos_rematches if len(self.cameras) == 1 else rematches)}
            if d is not None:
                extra["input_reliability"] = f"{input_qos.name_of(d.reliability)}: {d.reason}"
            if cam.name:
                extra["camera"] = cam.name
            label = f"{self.get_name()}: {cam.name + ' ' if cam.name else ''}depth estimation"
            statuses.append(node_status(label, cam.stats, self._estimator, self._cfg, self._active, self.problems,
                                        warnings, extra))
        arr = DiagnosticArray(status=statuses)
        arr.header.stamp = self.get_clock().now().to_msg()
        self._diag_pub.publish(arr)


class DepthNode(_DepthNodeMixin, Node):
    """The plain node: loads the model in ``__init__`` (raising MoadepthError on a refusal) and runs."""

    def __init__(self, **kwargs) -> None:
        super().__init__(NODE_NAME, **kwargs)
        self._init_common()
        try:
            self._load_model()
            self._create_io(self.create_publisher)
        except BaseException:
            self.destroy_node()
            raise
        self._active = True

    def destroy_node(self) -> None:
        self._active = False
        self._destroy_io()
        self._stop_worker()
        super().destroy_node()


class LifecycleDepthNode(_DepthNodeMixin, LifecycleNode):
    """The managed node: configure loads the model, activate publishes, deactivate stops, cleanup frees."""

    def __init__(self, **kwargs) -> None:
        super().__init__(NODE_NAME, **kwargs)
        self._init_common()

    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        try:
            self._load_model()
            self._create_io(self.create_lifecycle_publisher)
        except MoadepthError as exc:
            self.get_logger().error(f"configure failed: {exc}")
            self._destroy_io()
            self._free_model()
            return TransitionCallbackReturn.FAILURE
        return TransitionCallbackReturn.SUCCESS

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        ret = super().on_activate(state)
        self._active = True
        return ret

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._active = False
        self.wait_idle(30.0)
        return super().on_deactivate(state)

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._active = False
        self._destroy_io()
        self._free_model()
        return TransitionCallbackReturn.SUCCESS

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        return self.on_cleanup(state)

    def destroy_node(self) -> None:
        self._active = False
        self._destroy_io()
        self._stop_worker()
        super().destroy_node()
