"""The ``moadepth`` node: image (+ camera_info) in; metric depth, confidence, intrinsics and points out.

Parameters, pub/sub and a per-frame callback that calls the core once
(:func:`moadepth_core.geometry.postprocess.publishable`) and wraps what it returns into messages
(:mod:`moadepth_ros.messages`). Frames wait for the inference thread in
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
import sys
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np
import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from rcl_interfaces.msg import SetParametersResult
from rclpy.event_handler import (
    PublisherEventCallbacks,
    QoSRequestedIncompatibleQoSInfo,
    SubscriptionEventCallbacks,
)
from rclpy.exceptions import ParameterException
from rclpy.executors import ExternalShutdownException
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CameraInfo, Image, PointCloud2

from moadepth_core.errors import UNTRAINED_WARNING, DataError, MoadepthError
from moadepth_core.geometry.postprocess import OutputSettings, publishable
from moadepth_core.runtime.choice import explain_choice
from moadepth_core.runtime.graph_cache import default_cache_dir
from moadepth_core.runtime.loader import CachedGraphEstimator, load_estimator, plan_runtime
from moadepth_ros import messages, ros_compat
from moadepth_ros.messages import camera_from_info
from moadepth_ros.node import input_qos, transport
from moadepth_ros.node.diagnostics import FrameStats, ProblemLog, TimingLog, node_status
from moadepth_ros.node.pacing import FramePacer
from moadepth_ros.node.parameters import BY_NAME, PARAMS, check_value, help_text
from moadepth_ros.node.worker import CameraInfoHistory, Frame, InferenceWorker, StampedCamera, header_stamp_ns

if TYPE_CHECKING:  # the node imports torch only where it builds the network (estimator_loader)
    from moadepth_core.runtime.torch.estimator import DepthEstimator

__all__ = ["DepthNode", "LifecycleDepthNode", "camera_from_info", "frame_from_image", "main"]

NODE_NAME = "moadepth"
#: Largest image side accepted: far beyond any camera, small enough to refuse corrupt headers early.
MAX_IMAGE_SIDE = 16384


def frame_from_image(msg: Image) -> np.ndarray:
    """Validate an Image and return it as HxWx3 uint8 RGB; any problem raises :class:`DataError`.

    This is the node's whole validation/conversion layer for images (property-tested with random
    messages): unsupported encodings, short data, step < row, empty or absurd sizes and 16-bit or
    float images on the colour topic all end here with one sentence.
    """
    if msg.height > MAX_IMAGE_SIDE or msg.width > MAX_IMAGE_SIDE:
        raise DataError(f"{msg.encoding} image size {msg.width}x{msg.height} exceeds {MAX_IMAGE_SIDE} "
                        f"pixels per side")
    return messages.image_to_rgb8(msg)


class _DepthNodeMixin:
    """Everything the plain and the lifecycle node share; the subclass decides *when* to load and publish."""

    def _init_common(self) -> None:
        self._estimator: DepthEstimator | CachedGraphEstimator | None = None
        self._active = False
        self._cfg: dict = {p.name: p.default for p in PARAMS}
        self.stats = FrameStats()
        self._problem_log = ProblemLog()
        self.problems = self._problem_log.problems  # every problem seen, by kind (logged or not)
        self.log_lines = self._problem_log.lines  # (kind, line) of the lines actually logged
        self._pacer = FramePacer()
        self._out = messages.OutputBuffers()  # the worker's message buffers, written in place
        self._worker = InferenceWorker(self._process, self.report, self.stats, self._pacer,
                                       lambda: self._cfg["frame_policy"])
        self._cameras = CameraInfoHistory()
        self._last_stamp: int | None = None  # the newest image stamp (ns), to notice time going back
        self._timing_log: TimingLog | None = None
        self.last_answered_stamp_ns: int | None = None
        self._subs: list = []
        self._outputs: list = []
        self._qos_timer = None
        self.input_qos: input_qos.Decision | None = None  # the subscriptions' reliability and why
        self.qos_rematches = 0  # re-subscriptions to match a publisher that appeared later
        self._qos_conflicts: dict[tuple[str, int], tuple[object, QoSProfile, bool]] = {}  # current WARNs
        self._last_image_at: float | None = None  # monotonic time and size of the newest image
        self._last_image_bytes = 0
        self._silent_since: float | None = None  # a best-effort publisher seen, no image since
        self._silence_warned = False
        self.add_on_set_parameters_callback(self._on_set_parameters)
        for p in PARAMS:
            self.declare_parameter(p.name, p.default, p.descriptor())
        self._cfg = {p.name: self.get_parameter(p.name).value for p in PARAMS}
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
                self._cfg[p.name] = p.value

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
        """Build the estimator from the parameters; MoadepthError (untrained, device, checkpoint) propagates.

        Built on the inference thread, where every later forward runs (:mod:`moadepth_ros.node.worker`).
        """
        c = self._cfg
        chosen = plan_runtime(c["device"], c["precision"], c["backend"])
        self.get_logger().info(explain_choice(c["device"], c["precision"], c["backend"], chosen))
        _, precision, backend = chosen
        if backend == "torch_compile":
            self.get_logger().info("backend torch_compile: compiling the network before the first frame "
                                   "(tens of seconds; Inductor caches kernels on disk for later starts)")
        elif backend == "onnxruntime":
            cache = default_cache_dir()
            self.get_logger().info(
                f"backend onnxruntime {precision}: a checkpoint's first start exports it to ONNX"
                f"{' and quantises it' if precision == 'int8' else ''} (tens of seconds); later starts "
                f"read it from {cache if cache else 'nowhere: MOADEPTH_ONNX_CACHE is empty, no cache'}")
        if bool(c["input_height"]) != bool(c["input_width"]):
            raise DataError(f"input_height {c['input_height']} and input_width {c['input_width']}: set both "
                            f"(multiples of 32) or leave both 0 for the checkpoint's training size")
        input_size = (c["input_height"], c["input_width"]) if c["input_height"] else None
        self._estimator = self._on_worker(lambda: load_estimator(
            c["checkpoint"] or None, allow_untrained=c["allow_untrained"], device=c["device"],
            precision=c["precision"], backend=c["backend"], input_size=input_size))
        est = self._estimator
        if isinstance(est, CachedGraphEstimator):
            self.get_logger().info(f"started from the graph cached for this checkpoint ({est.graph_file}), "
                                   f"without building the network or importing torch")
        if est.untrained:
            self.get_logger().error(UNTRAINED_WARNING)
        if c["focal_scaling"] and est.train_focal_px is None:
            self.get_logger().warning("the checkpoint stores no training focal length: focal_scaling is off")
        self.get_logger().info(
            f"model {c['checkpoint'] or '(untrained)'} on {est.device} {est.precision} ({est.backend}), input "
            f"{est.model_size[1]}x{est.model_size[0]}, training focal {est.train_focal_px} px")

    def _create_io(self, create_pub) -> None:
        """Publishers and subscriptions.

        Publishers are RELIABLE so reliable (depth_image_proc, recorders) and best-effort (Nav2) readers
        both connect. History 3, not 1: with 1, Fast DDS overwrote samples a loaded reliable reader was
        still repairing and it lost depth images (docs/ROS.md); a best-effort reader still only
        ever gets the newest.
        """
        if self._cfg["timing_log"]:
            self._timing_log = TimingLog(self._cfg["timing_log"])
            self.get_logger().info(f"timing log: one row per answered frame in {self._timing_log.path}")
        out_qos = QoSProfile(depth=3, reliability=ReliabilityPolicy.RELIABLE,
                             durability=DurabilityPolicy.VOLATILE, history=HistoryPolicy.KEEP_LAST)

        def out(msg_type, topic: str):
            events = PublisherEventCallbacks(incompatible_qos=lambda event: self._on_incompatible(
                pub.topic_name, out_qos, event, we_read=False))
            pub = create_pub(msg_type, topic, out_qos, event_callbacks=events)
            return pub

        self.depth_pub = out(Image, "depth/image")
        self.info_pub = out(CameraInfo, "depth/camera_info")
        self.points_pub = out(PointCloud2, "points")
        self.conf_pub = out(Image, "depth/confidence")
        self._outputs = [self.depth_pub, self.info_pub, self.points_pub, self.conf_pub]
        self._inputs = {self.resolve_topic_name("image"): (Image, self._on_image),
                        self.resolve_topic_name("camera_info"): (CameraInfo, self._on_info)}
        mode = self._cfg["sensor_qos"]
        self._subscribe(input_qos.choose(self._offered()) if mode == "auto" else input_qos.forced(mode))
        self._qos_timer = self.create_timer(input_qos.WATCH_PERIOD_S, self._watch_inputs)

    # ----------------------------------------------------------------- input QoS (sensor_qos)
    def _offered(self) -> dict[str, list[ReliabilityPolicy]]:
        """Each input topic (remapped, namespaced) -> the reliability its publishers offer."""
        return {topic: [ep.qos_profile.reliability for ep in self.get_publishers_info_by_topic(topic)]
                for topic in self._inputs}

    def _subscribe(self, decision: input_qos.Decision, log: bool = True) -> None:
        """(Re-)create the input subscriptions with ``decision``'s reliability and log why, once.

        The callbacks stay the same bound methods, so frame pairing, the worker and everything after
        them never see a re-subscription. The old subscriptions go first: both at once would deliver
        a reliable camera's frames twice.
        """
        for sub in self._subs:
            self.destroy_subscription(sub)
        self._subs = []
        self._qos_conflicts = {k: v for k, v in self._qos_conflicts.items() if k[0] not in self._inputs}
        in_qos = QoSProfile(depth=5, reliability=decision.reliability, durability=DurabilityPolicy.VOLATILE,
                            history=HistoryPolicy.KEEP_LAST)
        for topic, (msg_type, callback) in self._inputs.items():
            events = SubscriptionEventCallbacks(incompatible_qos=lambda event, t=topic: self._on_incompatible(
                t, in_qos, event, we_read=True))
            self._subs.append(self.create_subscription(msg_type, topic, callback, in_qos, event_callbacks=events))
        self.input_qos = decision
        self._silent_since, self._silence_warned = None, False
        if log:
            self.get_logger().info(f"sensor_qos {self._cfg['sensor_qos']}: subscribing "
                                   f"{input_qos.name_of(decision.reliability)} to {' and '.join(self._inputs)}: "
                                   f"{decision.reason}")

    def _watch_inputs(self) -> None:
        """Every WATCH_PERIOD_S: ``auto`` decides once the first publisher appears and re-matches when a
        best-effort one joins a reliable subscription; a silent best-effort input gets the profile hint."""
        d = self.input_qos
        if d is None:
            return
        if self._cfg["sensor_qos"] == "auto" and not (d.decided and d.reliability == input_qos.BEST_EFFORT):
            new = input_qos.choose(self._offered())
            if not d.decided and new.decided:
                if new.reliability == d.reliability:  # already best effort: keep the subscriptions
                    self.input_qos = new
                    self.get_logger().info(f"sensor_qos auto: staying best effort: {new.reason}")
                else:
                    self._subscribe(new)
            elif d.decided and new.decided and new.reliability != d.reliability:
                self.qos_rematches += 1
                self.report("qos_rematched", f"sensor_qos auto: re-subscribed best effort to "
                                             f"{' and '.join(self._inputs)}: {new.reason}")
                self._subscribe(new, log=False)  # the report above is the one line
        if self.input_qos.reliability == input_qos.BEST_EFFORT:
            self._watch_silence(time.monotonic())

    def _watch_silence(self, now: float) -> None:
        """One warning when a best-effort input has a publisher but no image for SILENT_S (frames over
        ~512 KiB need the camera on the shipped Fast DDS profile), unless the last frame was small."""
        if self._last_image_at is not None and now - self._last_image_at < input_qos.SILENT_S:
            self._silent_since, self._silence_warned = None, False
            return
        image_topic = next(iter(self._inputs))
        publishers = self.get_publishers_info_by_topic(image_topic)
        if not publishers:
            self._silent_since = None
            return
        if self._silent_since is None:
            self._silent_since = now
        large = self._last_image_at is None or self._last_image_bytes > input_qos.LARGE_FRAME_BYTES
        if now - self._silent_since >= input_qos.SILENT_S and large and not self._silence_warned:
            self._silence_warned = True
            self.report("qos_silent", (
                f"no image on {image_topic} for {input_qos.SILENT_S:.0f} s although {len(publishers)} publisher(s) "
                f"exist and the subscription is best effort: best-effort frames over ~512 KiB need the camera "
                f"process on the shipped Fast DDS profile (export {ros_compat.fastdds_profile_env()}="
                f"{transport.PROFILE_PATH}; docs/ROS.md), or a reliable camera"))

    def _on_incompatible(self, topic: str, ours: QoSProfile, event: QoSRequestedIncompatibleQoSInfo, *,
                         we_read: bool) -> None:
        """An incompatible-QoS event on an input or an output: one warning (ProblemLog) and a diagnostics
        WARN while the peer is there. Under ``auto`` a reliable input's event is the watcher's to re-match."""
        kind = event.last_policy_kind
        if (we_read and self._cfg["sensor_qos"] == "auto" and kind == input_qos.QoSPolicyKind.RELIABILITY
                and ours.reliability == input_qos.RELIABLE):
            return
        theirs = input_qos.conflicting(kind, ours, self._peers(topic, we_read), we_read=we_read)
        self._qos_conflicts[(topic, int(kind))] = (kind, ours, we_read)
        self.report("qos_incompatible", input_qos.mismatch_text(topic, kind, ours, theirs, we_read=we_read,
                                                                mode=self._cfg["sensor_qos"]))

    def _peers(self, topic: str, we_read: bool) -> list[QoSProfile]:
        infos = (self.get_publishers_info_by_topic(topic) if we_read
                 else self.get_subscriptions_info_by_topic(topic))
        return [ep.qos_profile for ep in infos]

    def _qos_warnings(self) -> list[str]:
        """The incompatibilities still in the graph, one sentence each (those gone are forgotten)."""
        lines = []
        for (topic, key), (kind, ours, we_read) in list(self._qos_conflicts.items()):
            theirs = input_qos.conflicting(kind, ours, self._peers(topic, we_read), we_read=we_read)
            if not theirs:
                self._qos_conflicts.pop((topic, key), None)
                continue
            lines.append(input_qos.mismatch_text(topic, kind, ours, theirs, we_read=we_read,
                                                 mode=self._cfg["sensor_qos"]))
        return lines

    def _destroy_io(self) -> None:
        self._worker.clear_pending()
        self.wait_idle(30.0)
        if self._qos_timer is not None:
            self.destroy_timer(self._qos_timer)
            self._qos_timer = None
        self._qos_conflicts.clear()
        self.input_qos = None
        for sub in getattr(self, "_subs", []):
            self.destroy_subscription(sub)
        for pub in getattr(self, "_outputs", []):
            self.destroy_publisher(pub)
        self._subs, self._outputs = [], []
        self._cameras.clear()
        self._last_stamp = None
        if self._timing_log is not None:
            self._timing_log.close()
            self._timing_log = None

    def _free_model(self) -> None:
        self._estimator = None
        gc.collect()

    def _stop_worker(self) -> None:
        self._worker.stop(timeout=30.0)

    # ----------------------------------------------------------------- callbacks
    def _on_info(self, msg: CameraInfo) -> None:
        try:
            camera = camera_from_info(msg)
        except DataError as exc:
            self.report("camera_info", f"CameraInfo ignored: {exc}")
            return
        self._cameras.add(StampedCamera(header_stamp_ns(msg.header), camera, msg))

    def _on_image(self, msg: Image) -> None:
        now = time.monotonic()
        self._last_image_at, self._last_image_bytes = now, len(msg.data)
        self.stats.input(now)
        self._pacer.arrived(now)
        stamp = header_stamp_ns(msg.header)
        if self._last_stamp is not None and stamp < self._last_stamp:
            back = (self._last_stamp - stamp) / 1e9
            self._last_stamp = stamp
            self._cameras.clear()
            self._worker.clear_pending()
            self._pacer.reset()  # a bag loop may pause between its last and first frame
            self.stats.reset_window()
            self.stats.count("rejected")
            self.report("stamp", f"image stamps went back by {back:.3f} s (bag loop or clock reset?): "
                                 f"state reset, this frame skipped")
            return
        self._last_stamp = stamp
        try:
            rgb = frame_from_image(msg)
        except DataError as exc:
            self.stats.count("rejected")
            self.report("image", f"image rejected: {exc}")
            return
        if not self._active:
            return
        if not (self._cfg["force_inference"] or any(p.get_subscription_count() > 0 for p in self._outputs)):
            self.stats.count("skipped")
            return
        self._worker.submit(Frame(msg.header, rgb, stamp, now))

    def wait_idle(self, timeout: float) -> bool:
        """True once no frame is pending or running (tests and shutdown use it)."""
        return self._worker.wait_idle(timeout)

    # ----------------------------------------------------------------- per frame (on the worker)
    def _process(self, frame: Frame) -> None:
        est = self._estimator
        if not self._active or est is None:
            return
        c = dict(self._cfg)
        t_start = time.monotonic()
        prediction = est.predict(frame.rgb, output_size=c["output_size"])
        t_inferred = time.monotonic()
        paired = self._cameras.pick(frame.image_stamp_ns, c["camera_info_tolerance"])
        if paired is None:
            self.report("no_camera_info", "no CameraInfo on camera_info yet: publishing depth without "
                                          "focal scaling, depth/camera_info or points")
        settings = OutputSettings(
            min_depth=c["min_depth"], max_depth=c["max_depth"], focal_scaling=c["focal_scaling"],
            train_focal_px=est.train_focal_px, model_hw=est.model_size, publish_points=c["publish_points"],
            point_stride=c["point_stride"], points_rgb=c["points_rgb"], max_uncertainty=c["max_uncertainty"])
        out = publishable(prediction, frame.rgb, paired.camera if paired else None, settings, self._out)
        if out.camera_problem:
            self.report("camera_info_size", out.camera_problem)
        header = frame.header
        if not self._active:
            return
        # depth first: it is what costmaps wait for; confidence and the cloud are computed after it
        self.depth_pub.publish(messages.float_image_to_msg(out.depth, header))
        t_depth = time.monotonic()
        if out.camera is not None:
            self.info_pub.publish(messages.camera_info_msg(paired.msg, out.camera, header))
        self.conf_pub.publish(messages.float_image_to_msg(out.confidence, header))
        t_conf = time.monotonic()
        stages = {"wait": t_start - frame.received, **prediction.timings,
                  "depth_out": t_depth - t_inferred, "confidence_out": t_conf - t_depth}
        if out.cloud is not None:
            self.points_pub.publish(messages.cloud_to_msg(out.cloud, header))
            stages["points_out"] = time.monotonic() - t_conf
        self.last_answered_stamp_ns = frame.image_stamp_ns
        self.stats.output(time.monotonic() - frame.received, stages=stages)
        if self._timing_log is not None:
            self._timing_log.write(frame.image_stamp_ns, frame.received, t_depth, stages)

    # ----------------------------------------------------------------- diagnostics
    def _publish_diagnostics(self) -> None:
        d = self.input_qos
        extra = {"sensor_qos": self._cfg["sensor_qos"], "qos_rematches": str(self.qos_rematches)}
        if d is not None:
            extra["input_reliability"] = f"{input_qos.name_of(d.reliability)}: {d.reason}"
        status = node_status(f"{self.get_name()}: depth estimation", self.stats, self._estimator, self._cfg,
                             self._active, self.problems, self._qos_warnings(), extra)
        arr = DiagnosticArray(status=[status])
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


def main(args: list[str] | None = None) -> int:
    """``depth_node [--lifecycle] --ros-args ...``: spin until Ctrl-C; user errors end in one line, exit 2.

    ``-h``/``--help`` prints the usage and the parameter table and returns 0 without starting ROS.
    """
    argv = list(sys.argv if args is None else args)
    if args is not None and (not argv or argv[0].startswith("-")):
        argv = ["depth_node", *argv]
    extra = rclpy.utilities.remove_ros_args(argv)[1:]
    if "-h" in extra or "--help" in extra:
        sys.stdout.write(help_text())
        return 0
    lifecycle = "--lifecycle" in extra
    unknown = [a for a in extra if a != "--lifecycle"]
    log = rclpy.logging.get_logger(NODE_NAME)
    if unknown:
        print(f"depth_node: error: unknown arguments {unknown}; usage: depth_node [--lifecycle] "
              f"--ros-args -p name:=value -r image:=/camera/image (depth_node --help lists the parameters)",
              file=sys.stderr)
        return 2
    profile = transport.use_large_data_profile()
    rclpy.init(args=argv)
    node = None
    try:
        node = LifecycleDepthNode() if lifecycle else DepthNode()
        node.get_logger().info(f"Fast DDS large-data profile {profile}" if profile else
                               f"Fast DDS profile left as configured "
                               f"({transport.large_data_profile_reason() or 'not applied'})")
        rclpy.spin(node)
    except (MoadepthError, ParameterException) as exc:
        log.fatal(f"cannot start: {exc}")
        return 2
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        if node is not None:
            node.destroy_node()
        rclpy.try_shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
