"""The depth node's inference thread: one pending frame, a job queue, and CameraInfo pairing.

The image callback hands each converted frame to :meth:`InferenceWorker.submit`, which keeps
only the newest one per camera (``Frame.source``) as that camera's pending frame (the frames it
replaces are counted as dropped in that camera's stats). One thread takes the pending frames when
it frees up: the oldest first, up to ``max_batch`` of them in one pass, so with several cameras no
camera starves and a silent one delays nobody. A lone frame may, with ``frame_policy: fresh``, be
set aside for the next one from the same camera (:mod:`moadepth_ros.node.pacing` says how long).
The frames of one pass go through the network as one batch where the estimator says it ``batches``
(``prepare``): eager torch, and the ONNX Runtime graph's batch axis where one run is measured faster
than one run per frame (``BATCH_IN_ONE_RUN`` in ``runtime/onnx_session.py``, docs/PERFORMANCE.md);
otherwise (the compiled graph, fixed at batch 1) they run one after the other. The executor thread
never runs the network, so parameters, services, diagnostics and shutdown stay responsive.

The same thread also runs jobs (:meth:`InferenceWorker.run`), before any frame: the node builds
its model there, so every torch call happens on one thread. PyTorch's CPU pool is OpenMP, which
keeps one thread team per calling thread; two teams on a small machine oversubscribe the cores
and slow every forward (docs/PERFORMANCE.md).
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

import numpy as np
from sensor_msgs.msg import CameraInfo
from std_msgs.msg import Header

from moadepth_core.errors import MoadepthError
from moadepth_core.geometry.camera import PinholeCamera
from moadepth_ros.node.diagnostics import FrameStats
from moadepth_ros.node.pacing import FramePacer

#: CameraInfos kept for pairing with images by stamp.
INFO_HISTORY = 30


def header_stamp_ns(header: Header) -> int:
    """A message header's stamp as integer nanoseconds."""
    return int(header.stamp.sec) * 1_000_000_000 + int(header.stamp.nanosec)


@dataclass
class Frame:
    """A validated image waiting for (or in) inference."""

    header: Header
    rgb: np.ndarray  # HxWx3 uint8
    image_stamp_ns: int
    received: float  # time.monotonic() at the callback
    source: str = ""  # the camera it came from (one pending frame per camera)
    camera: Any = None  # the node's per-camera state, handed back to ``process``
    stats: FrameStats | None = None  # that camera's counters (default: the worker's)
    pacer: FramePacer | None = None  # that camera's frame pacing (default: the worker's)
    prediction: Any = None  # set by the worker's ``prepare`` when the frame was inferred in a batch


@dataclass
class StampedCamera:
    """A CameraInfo parsed once: its camera, its stamp for pairing, and the message (for its D, R, P)."""

    info_stamp_ns: int
    camera: PinholeCamera
    msg: CameraInfo


class CameraInfoHistory:
    """The recent CameraInfos, thread-safe; an image takes the one with its stamp, else the latest."""

    def __init__(self, maxlen: int = INFO_HISTORY) -> None:
        self._entries: deque[StampedCamera] = deque(maxlen=maxlen)
        self._lock = threading.Lock()

    def add(self, entry: StampedCamera) -> None:
        with self._lock:
            self._entries.append(entry)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()

    def pick(self, image_stamp_ns: int, tolerance_s: float) -> StampedCamera | None:
        """The entry stamped within ``tolerance_s`` of the image (the closest), else the latest; None if empty."""
        with self._lock:
            if not self._entries:
                return None
            best = min(self._entries, key=lambda e: abs(e.info_stamp_ns - image_stamp_ns))
            return best if abs(best.info_stamp_ns - image_stamp_ns) <= tolerance_s * 1e9 else self._entries[-1]


class InferenceWorker:
    """One thread running jobs first, then the newest pending frame through ``process``.

    ``report(kind, text)`` gets one line for a frame that failed; ``frame_policy()`` reads the
    node's current policy each time. The thread survives anything one frame raises.
    """

    def __init__(self, process: Callable[[Frame], None], report: Callable[[str, str], None],
                 stats: FrameStats, pacer: FramePacer, frame_policy: Callable[[], str],
                 max_batch: Callable[[], int] = lambda: 1,
                 prepare: Callable[[list[Frame]], None] | None = None) -> None:
        self._process = process
        self._report = report
        self._stats = stats
        self._pacer = pacer
        self._frame_policy = frame_policy
        self._max_batch = max_batch
        self._prepare = prepare  # infers a pass's frames as one batch (sets Frame.prediction), or not
        self._cv = threading.Condition()
        self._pending: dict[str, Frame] = {}  # camera -> its newest waiting frame
        self._jobs: deque[tuple[Callable[[], object], Future]] = deque()
        self._busy = False
        self._stop = False
        self._thread: threading.Thread | None = threading.Thread(target=self._loop, name="moadepth-inference",
                                                                 daemon=True)
        self._thread.start()

    # ----------------------------------------------------------------- called from other threads
    def submit(self, frame: Frame) -> None:
        """Make ``frame`` its camera's pending one; a frame it replaces is counted as dropped."""
        with self._cv:
            if self._pending.pop(frame.source, None) is not None:
                (frame.stats or self._stats).count("dropped")
            self._pending[frame.source] = frame  # re-inserted: the dict stays in arrival order
            self._cv.notify_all()  # the worker may share the condition with wait_idle() callers

    def clear_pending(self, source: str | None = None) -> None:
        """Forget the pending frame of camera ``source`` (all cameras' when None)."""
        with self._cv:
            if source is None:
                self._pending.clear()
            else:
                self._pending.pop(source, None)

    def run(self, fn: Callable[[], object]) -> object:
        """Run ``fn`` on the inference thread and return its result (or raise its exception)."""
        fut: Future = Future()
        with self._cv:
            if self._stop or self._thread is None:
                raise RuntimeError("the inference thread has stopped")
            self._jobs.append((fn, fut))
            self._cv.notify_all()
        return fut.result()

    def wait_idle(self, timeout: float) -> bool:
        """True once no frame is pending or running and no job is queued."""
        end = time.monotonic() + timeout
        with self._cv:
            while self._pending or self._jobs or self._busy:
                left = end - time.monotonic()
                if left <= 0:
                    return False
                self._cv.wait(left)
        return True

    def stop(self, timeout: float = 30.0) -> None:
        """End the thread after its current frame or job; queued jobs fail instead of hanging their callers."""
        with self._cv:
            self._stop = True
            self._pending.clear()
            self._cv.notify_all()
        if self._thread is not None:
            self._thread.join(timeout=timeout)
            self._thread = None
        while self._jobs:
            _, fut = self._jobs.popleft()
            fut.set_exception(RuntimeError("the inference thread has stopped"))

    # ----------------------------------------------------------------- the thread
    def _loop(self) -> None:
        while True:
            with self._cv:
                while not self._pending and not self._jobs and not self._stop:
                    self._cv.wait()
                if self._stop:
                    return
                frames: list[Frame] = []
                if self._jobs:
                    fn, fut = self._jobs.popleft()
                else:
                    frames = self._take_oldest()
                self._busy = True
                if len(frames) == 1:
                    frames = [self._fresher_frame(frames[0])]
            try:
                if not frames:
                    self._run_job(fn, fut)
                if len(frames) > 1 and self._prepare is not None:
                    self._prepare_batch(frames)
                for frame in frames:  # oldest first; one camera's failure is that frame's only
                    self._run_frame(frame)
            finally:
                with self._cv:
                    self._busy = False
                    self._cv.notify_all()

    @staticmethod
    def _run_job(fn: Callable[[], object], fut: Future) -> None:
        try:
            fut.set_result(fn())
        except BaseException as exc:  # noqa: BLE001 - handed to the caller, who decides
            fut.set_exception(exc)

    def _prepare_batch(self, frames: list[Frame]) -> None:
        """One forward for the pass's frames; on failure each frame is inferred on its own after all."""
        try:
            self._prepare(frames)
        except Exception as exc:  # noqa: BLE001 - the frames still run one by one
            for f in frames:
                f.prediction = None
            self._report("batch", f"batched inference of {len(frames)} frames failed, running them one by one: "
                                  f"{type(exc).__name__}: {exc}")

    def _run_frame(self, frame: Frame) -> None:
        try:
            self._process(frame)
        except MoadepthError as exc:
            self._report("frame", f"frame at {frame.image_stamp_ns / 1e9:.3f} s not processed: {exc}")
        except Exception as exc:  # noqa: BLE001 - the worker must survive anything one frame does
            self._report("internal", f"inference failed on frame at {frame.image_stamp_ns / 1e9:.3f} s: "
                                     f"{type(exc).__name__}: {exc}")

    def _take_oldest(self) -> list[Frame]:
        """The pending frames received first, at most ``max_batch`` of them (called holding ``_cv``)."""
        n = max(1, int(self._max_batch()))
        frames = sorted(self._pending.values(), key=lambda f: f.received)[:n]
        for f in frames:
            del self._pending[f.source]
        return frames

    def _fresher_frame(self, frame: Frame) -> Frame:
        """``frame``, or its camera's next one if it comes within the pacer's budget (called holding
        ``_cv``); a frame from another camera ends the wait (it is not kept waiting)."""
        pacer = frame.pacer or self._pacer
        budget = pacer.wait_for_next(time.monotonic() - frame.received, self._frame_policy())
        if budget <= 0:
            return frame
        end = time.monotonic() + budget
        while not self._pending and not self._jobs and not self._stop:
            left = end - time.monotonic()
            if left <= 0:
                return frame
            self._cv.wait(left)
        newer = self._pending.pop(frame.source, None)
        if newer is None:
            return frame
        stats = frame.stats or self._stats
        stats.count("dropped")
        stats.count("waited")
        return newer
