"""The ``moadepth`` node: image (+ camera_info) in; metric depth, confidence, intrinsics and points out.

Message adaptation and threading only: conversions come from :mod:`moadepth_ros.messages`
(validated against references), every number from :mod:`moadepth_core.geometry.postprocess`.

Threading: the image callback validates and converts the frame (cheap, so every bad message
gets its log line), then stores it as *the* pending frame; one worker thread runs inference on
the newest pending frame and the ones it replaced are counted as dropped. When the worker frees
up and the newest frame is more than half a camera period old, ``frame_policy: fresh`` waits for
the next one instead (:mod:`moadepth_ros.node.pacing` says how long). The executor thread
never runs the network, so parameters, services, diagnostics and shutdown stay responsive.

The worker also *builds* the model: every torch call of the node happens on that one thread.
PyTorch's CPU thread pool is OpenMP (libgomp), which keeps one team per calling thread and,
once it manages more threads than there are cores, stops spinning between parallel regions.
Loading on the executor thread and inferring on the worker gave two teams: measured on a
2-core machine, the same bf16 forward took ~80 ms on the worker against ~42 ms when one thread
did all the torch work.

On the CPU's ONNX Runtime path the node does not import torch at all
(:mod:`moadepth_core.runtime.loader`): a restart finds the checkpoint's cached graph (about 2 s
to the first depth and about 555 MB, against 11 s and 1.3-1.5 GB with the network built), and a first
start exports it in a child process that exits once the graph is written.

``depth_node`` runs the plain node; ``depth_node --lifecycle`` runs the managed variant
(configure loads the model, activate publishes, deactivate stops, cleanup frees it).
"""

from __future__ import annotations

import gc
import re
import sys
import threading
import time
from collections import Counter, deque
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import rclpy
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from rcl_interfaces.msg import SetParametersResult
from rclpy.exceptions import ParameterException
from rclpy.executors import ExternalShutdownException
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CameraInfo, Image, PointCloud2
from std_msgs.msg import Header

from moadepth_core.errors import UNTRAINED_WARNING, DataError, MoadepthError
from moadepth_core.geometry import postprocess as post
from moadepth_core.geometry.pointcloud import depth_cloud_nbytes
from moadepth_core.runtime.choice import explain_choice
from moadepth_core.runtime.graph_cache import default_cache_dir
from moadepth_core.runtime.loader import CachedGraphEstimator, load_estimator, plan_runtime
from moadepth_ros import messages
from moadepth_ros.node import transport
from moadepth_ros.node.diagnostics import FrameStats, TimingLog
from moadepth_ros.node.pacing import FramePacer
from moadepth_ros.node.parameters import BY_NAME, PARAMS, check_value

if TYPE_CHECKING:  # the node imports torch only where it builds the network (estimator_loader)
    from moadepth_core.runtime.torch.estimator import DepthEstimator

NODE_NAME = "moadepth"
#: Largest image side accepted: far beyond any camera, small enough to refuse corrupt headers early.
MAX_IMAGE_SIDE = 16384
INFO_HISTORY = 30


def stamp_ns(header: Header) -> int:
    return int(header.stamp.sec) * 1_000_000_000 + int(header.stamp.nanosec)


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


@dataclass
class CameraModel:
    """A validated CameraInfo: its K and size, plus the message to scale for ``depth/camera_info``."""

    stamp_ns: int
    K: np.ndarray
    hw: tuple[int, int]
    msg: CameraInfo


def camera_from_info(msg: CameraInfo) -> CameraModel:
    """Validate a CameraInfo (finite positive focal lengths, finite K, non-empty size) or raise DataError."""
    K, hw = messages.camera_info_to_K(msg)
    if not np.isfinite(K).all():
        raise DataError(f"CameraInfo for frame {msg.header.frame_id!r} has a non-finite K {K.ravel().tolist()}")
    if hw[0] <= 0 or hw[1] <= 0:
        raise DataError(f"CameraInfo for frame {msg.header.frame_id!r} has an empty size {hw[1]}x{hw[0]}")
    return CameraModel(stamp_ns(msg.header), K, hw, msg)


@dataclass
class Frame:
    header: Header
    rgb: np.ndarray
    stamp_ns: int
    received: float  # time.monotonic() at the callback


class _DepthNodeMixin:
    """Everything the plain and the lifecycle node share; the subclass decides *when* to load and publish."""

    def _init_common(self) -> None:
        self._estimator: DepthEstimator | CachedGraphEstimator | None = None
        self._active = False
        self._cfg: dict = {p.name: p.default for p in PARAMS}
        self.stats = FrameStats()
        self.problems: Counter[str] = Counter()  # every problem seen, by kind (logged or not)
        self.log_lines: deque[tuple[str, str]] = deque(maxlen=200)  # the lines actually logged
        self._log_lock = threading.Lock()
        self._last_logged: dict[str, float] = {}
        self._suppressed: Counter[str] = Counter()
        self._cv = threading.Condition()
        self._pending: Frame | None = None
        self._pacer = FramePacer()
        self._out = messages.OutputBuffers()  # the worker's message buffers, written in place
        self._jobs: deque[tuple[Callable[[], object], Future]] = deque()  # run on the worker, before frames
        self._busy = False
        self._stop = False
        self._worker = threading.Thread(target=self._work, name="moadepth-inference", daemon=True)
        self._worker.start()
        self._infos: deque[CameraModel] = deque(maxlen=INFO_HISTORY)
        self._info_lock = threading.Lock()
        self._last_stamp: int | None = None
        self._io: list = []
        self._timing_log: TimingLog | None = None
        self.last_answered_stamp_ns: int | None = None
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
        """One readable warning per problem, repeated at most every ``log_period`` seconds.

        The rate limit keys on the sentence with its numbers masked, so a camera sending the same
        bad frame at 30 Hz logs once per period while a different problem still gets its own line.
        """
        key = kind + ":" + re.sub(r"[-+]?\d[\d.e+-]*", "#", text)
        now = time.monotonic()
        with self._log_lock:
            self.problems[kind] += 1
            last = self._last_logged.get(key)
            if last is not None and now - last < self._cfg["log_period"]:
                self._suppressed[key] += 1
                return
            if len(self._last_logged) > 1000:  # random garbage must not grow this forever
                self._last_logged.clear()
                self._suppressed.clear()
            self._last_logged[key] = now
            n = self._suppressed.pop(key, 0)
            line = text + (f" ({n} similar messages suppressed)" if n else "")
            self.log_lines.append((kind, line))
        self.get_logger().warning(line)

    # ----------------------------------------------------------------- model and I/O
    def _on_worker(self, fn: Callable[[], object]) -> object:
        """Run ``fn`` on the inference thread and return its result (or raise its exception)."""
        fut: Future = Future()
        with self._cv:
            if self._stop or self._worker is None:
                raise RuntimeError("the inference thread has stopped")
            self._jobs.append((fn, fut))
            self._cv.notify_all()
        return fut.result()

    def _load_model(self) -> None:
        """Build the estimator from the parameters; MoadepthError (untrained, device, checkpoint) propagates.

        Built on the inference thread, where every later forward runs (see the module docstring).
        """
        c = self._cfg
        chosen = plan_runtime(c["device"], c["precision"], c["backend"])
        self.get_logger().info(explain_choice(c["device"], c["precision"], c["backend"], chosen))
        _, precision, backend = chosen
        if backend == "torch_compile":
            self.get_logger().info("backend torch_compile: compiling the network before the first frame "
                                   "(~30-50 s on 2 cores; Inductor caches kernels on disk for later starts)")
        elif backend == "onnxruntime":
            cache = default_cache_dir()
            self.get_logger().info(
                f"backend onnxruntime {precision}: a checkpoint's first start exports it to ONNX"
                f"{' and quantises it' if precision == 'int8' else ''} (~15-40 s on 2 cores); later starts "
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
        both connect. History 3, not 1: measured on a loaded 2-core machine, a reliable reader lost 16 of
        64 1.2 MB depth images with history 1 (Fast DDS overwrote samples still being repaired), none
        with 3; a best-effort reader still only ever gets the newest.
        """
        if self._cfg["timing_log"]:
            self._timing_log = TimingLog(self._cfg["timing_log"])
            self.get_logger().info(f"timing log: one row per answered frame in {self._timing_log.path}")
        out_qos = QoSProfile(depth=3, reliability=ReliabilityPolicy.RELIABLE,
                             durability=DurabilityPolicy.VOLATILE, history=HistoryPolicy.KEEP_LAST)
        reliability = (ReliabilityPolicy.RELIABLE if self._cfg["sensor_qos"] == "reliable"
                       else ReliabilityPolicy.BEST_EFFORT)
        in_qos = QoSProfile(depth=5, reliability=reliability, durability=DurabilityPolicy.VOLATILE,
                            history=HistoryPolicy.KEEP_LAST)
        self.depth_pub = create_pub(Image, "depth/image", out_qos)
        self.info_pub = create_pub(CameraInfo, "depth/camera_info", out_qos)
        self.points_pub = create_pub(PointCloud2, "points", out_qos)
        self.conf_pub = create_pub(Image, "depth/confidence", out_qos)
        self._outputs = [self.depth_pub, self.info_pub, self.points_pub, self.conf_pub]
        self._subs = [self.create_subscription(Image, "image", self._on_image, in_qos),
                      self.create_subscription(CameraInfo, "camera_info", self._on_info, in_qos)]

    def _destroy_io(self) -> None:
        with self._cv:
            self._pending = None
        self.wait_idle(30.0)
        for sub in getattr(self, "_subs", []):
            self.destroy_subscription(sub)
        for pub in getattr(self, "_outputs", []):
            self.destroy_publisher(pub)
        self._subs, self._outputs = [], []
        with self._info_lock:
            self._infos.clear()
        self._last_stamp = None
        if self._timing_log is not None:
            self._timing_log.close()
            self._timing_log = None

    def _free_model(self) -> None:
        self._estimator = None
        gc.collect()

    def _stop_worker(self) -> None:
        with self._cv:
            self._stop = True
            self._pending = None
            self._cv.notify_all()
        if self._worker is not None:
            self._worker.join(timeout=30.0)
            self._worker = None
        while self._jobs:  # nobody will run them now: fail their callers instead of hanging them
            _, fut = self._jobs.popleft()
            fut.set_exception(RuntimeError("the inference thread has stopped"))

    # ----------------------------------------------------------------- callbacks
    def _on_info(self, msg: CameraInfo) -> None:
        try:
            cam = camera_from_info(msg)
        except DataError as exc:
            self.report("camera_info", f"CameraInfo ignored: {exc}")
            return
        with self._info_lock:
            self._infos.append(cam)

    def _on_image(self, msg: Image) -> None:
        now = time.monotonic()
        self.stats.input(now)
        self._pacer.arrived(now)
        stamp = stamp_ns(msg.header)
        if self._last_stamp is not None and stamp < self._last_stamp:
            back = (self._last_stamp - stamp) / 1e9
            self._last_stamp = stamp
            with self._info_lock:
                self._infos.clear()
            with self._cv:
                self._pending = None
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
        with self._cv:
            if self._pending is not None:
                self.stats.count("dropped")
            self._pending = Frame(msg.header, rgb, stamp, now)
            self._cv.notify_all()  # the worker may share the condition with wait_idle() callers

    def wait_idle(self, timeout: float) -> bool:
        """True once no frame is pending or running (tests and shutdown use it)."""
        end = time.monotonic() + timeout
        with self._cv:
            while self._pending is not None or self._jobs or self._busy:
                left = end - time.monotonic()
                if left <= 0:
                    return False
                self._cv.wait(left)
        return True

    # ----------------------------------------------------------------- worker
    def _work(self) -> None:
        while True:
            with self._cv:
                while self._pending is None and not self._jobs and not self._stop:
                    self._cv.wait()
                if self._stop:
                    return
                if self._jobs:
                    fn, fut = self._jobs.popleft()
                    frame = None
                else:
                    frame, self._pending = self._pending, None
                self._busy = True
                if frame is not None:
                    frame = self._fresher_frame(frame)
            if frame is None:
                try:
                    fut.set_result(fn())
                except BaseException as exc:  # noqa: BLE001 - handed to the caller, who decides
                    fut.set_exception(exc)
                finally:
                    with self._cv:
                        self._busy = False
                        self._cv.notify_all()
                continue
            try:
                if self._active and self._estimator is not None:
                    self._process(frame)
            except MoadepthError as exc:
                self.report("frame", f"frame at {frame.stamp_ns / 1e9:.3f} s not processed: {exc}")
            except Exception as exc:  # noqa: BLE001 - the worker must survive anything one frame does
                self.report("internal", f"inference failed on frame at {frame.stamp_ns / 1e9:.3f} s: "
                                        f"{type(exc).__name__}: {exc}")
            finally:
                with self._cv:
                    self._busy = False
                    self._cv.notify_all()

    def _fresher_frame(self, frame: Frame) -> Frame:
        """``frame``, or the next one if it comes within the pacer's budget (called holding ``_cv``)."""
        budget = self._pacer.wait_for_next(time.monotonic() - frame.received, self._cfg["frame_policy"])
        if budget <= 0:
            return frame
        end = time.monotonic() + budget
        while self._pending is None and not self._jobs and not self._stop:
            left = end - time.monotonic()
            if left <= 0:
                return frame
            self._cv.wait(left)
        if self._pending is None:
            return frame
        self.stats.count("dropped")
        self.stats.count("waited")
        newer, self._pending = self._pending, None
        return newer

    def _pick_info(self, stamp: int) -> CameraModel | None:
        """The CameraInfo with the same stamp (within camera_info_tolerance), else the latest one."""
        tol_ns = self._cfg["camera_info_tolerance"] * 1e9
        with self._info_lock:
            if not self._infos:
                return None
            best = min(self._infos, key=lambda c: abs(c.stamp_ns - stamp))
            return best if abs(best.stamp_ns - stamp) <= tol_ns else self._infos[-1]

    def _process(self, frame: Frame) -> None:
        c = dict(self._cfg)
        est = self._estimator
        t_start = time.monotonic()
        res = est.predict(frame.rgb, output_size=c["output_size"])
        t_inferred = time.monotonic()
        img_hw = frame.rgb.shape[:2]
        out_hw = res.depth.shape
        cam = self._pick_info(frame.stamp_ns)
        K_img = None
        if cam is None:
            self.report("no_camera_info", "no CameraInfo on camera_info yet: publishing depth without "
                                          "focal scaling, depth/camera_info or points")
        else:
            try:
                K_img = post.intrinsics_for_image(cam.K, cam.hw, img_hw)
            except DataError as exc:
                self.report("camera_info_size", str(exc))
        depth = res.depth
        if c["focal_scaling"] and K_img is not None and est.train_focal_px:
            depth = depth * np.float32(post.focal_scale(K_img, img_hw, est.model_size, est.train_focal_px))
        depth_buf, depth_view = self._out.image("depth", *out_hw, "32FC1")
        depth = post.clip_depth(depth, c["min_depth"], c["max_depth"], out=depth_view)
        header = frame.header
        if not self._active:
            return
        # depth first: it is what costmaps wait for; the rest follows on the same stamp
        self.depth_pub.publish(messages.image_from_buffer(depth_buf, *out_hw, "32FC1", header))
        t_depth = time.monotonic()
        info = None
        if K_img is not None:
            info = messages.scaled_camera_info(cam.msg, out_hw)
            info.header = header
            self.info_pub.publish(info)
        conf_buf, conf_view = self._out.image("confidence", *res.confidence.shape, "32FC1")
        np.copyto(conf_view, res.confidence)
        self.conf_pub.publish(messages.image_from_buffer(conf_buf, *res.confidence.shape, "32FC1", header))
        t_conf = time.monotonic()
        stages = {"wait": t_start - frame.received, **res.timings,
                  "depth_out": t_depth - t_inferred, "confidence_out": t_conf - t_depth}
        if info is not None and c["publish_points"]:
            K_out = np.asarray(info.k, dtype=np.float64).reshape(3, 3)
            stride = c["point_stride"]
            cloud = post.depth_cloud(depth, K_out, uncertainty=res.uncertainty,
                                     max_uncertainty=c["max_uncertainty"], stride=stride,
                                     rgb=frame.rgb if c["points_rgb"] else None,
                                     out=self._out.get("points", depth_cloud_nbytes(*out_hw, stride)))
            self.points_pub.publish(messages.cloud_to_msg(cloud, header))
            stages["points_out"] = time.monotonic() - t_conf
        self.last_answered_stamp_ns = frame.stamp_ns
        self.stats.output(time.monotonic() - frame.received, stages=stages)
        if self._timing_log is not None:
            self._timing_log.write(frame.stamp_ns, frame.received, t_depth, stages)

    # ----------------------------------------------------------------- diagnostics
    def _publish_diagnostics(self) -> None:
        est = self._estimator
        info = {
            "device": str(est.device) if est else self._cfg["device"],
            "precision": est.precision if est else self._cfg["precision"],
            "backend": est.backend if est else self._cfg["backend"],
            "checkpoint": (est.checkpoint_path or "(untrained)") if est else (self._cfg["checkpoint"] or "(none)"),
            "model_loaded": str(est is not None),
            "active": str(self._active),
            "problems": ", ".join(f"{k}={v}" for k, v in sorted(self.problems.items())) or "none",
        }
        if est is not None and est.untrained:
            level, message = DiagnosticStatus.ERROR, "UNTRAINED network: depth is meaningless, do not use it"
        elif est is None or not self._active:
            level, message = DiagnosticStatus.OK, "inactive"
        else:
            level, message = DiagnosticStatus.OK, "running"
        status = self.stats.status(f"{self.get_name()}: depth estimation", info["device"], info,
                                   level=level, message=message)
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
    """``depth_node [--lifecycle] --ros-args ...``: spin until Ctrl-C; user errors end in one line, exit 2."""
    argv = list(sys.argv if args is None else args)
    if args is not None and (not argv or argv[0].startswith("-")):
        argv = ["depth_node", *argv]
    extra = rclpy.utilities.remove_ros_args(argv)[1:]
    lifecycle = "--lifecycle" in extra
    unknown = [a for a in extra if a != "--lifecycle"]
    log = rclpy.logging.get_logger(NODE_NAME)
    if unknown:
        print(f"depth_node: error: unknown arguments {unknown}; usage: depth_node [--lifecycle] "
              f"--ros-args -p name:=value -r image:=/camera/image", file=sys.stderr)
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
