"""The depth node's input subscriptions and its QoS bookkeeping (``sensor_qos``).

:class:`InputSubscriptions` creates the image and camera_info subscriptions with the reliability
:mod:`moadepth_ros.node.input_qos` decides, watches the graph (``auto`` decides when the first
publisher appears and re-matches a best-effort one that joins later), warns once about a silent
best-effort input, and turns incompatible-QoS events (inputs and outputs) into one sentence each.

A re-subscription is make-before-break: the new subscriptions are created first and the old ones
stay until the new ones have matched the publishers the old ones had (or ``SWITCH_TIMEOUT_S``
passes), so the frames a camera sends while DDS matches the new reader are still received. A frame
that arrives through both (same stamp and frame_id) is handed on once.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable

from rclpy.callback_groups import CallbackGroup
from rclpy.event_handler import QoSRequestedIncompatibleQoSInfo, SubscriptionEventCallbacks
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile

from moadepth_ros import ros_compat
from moadepth_ros.node import input_qos, intake, transport
from moadepth_ros.node.worker import header_stamp_ns

#: Seconds the old subscriptions are kept at most while the new ones match their publishers.
SWITCH_TIMEOUT_S = 5.0
#: Seconds after an overlap during which a frame already handed on is still recognised as a duplicate.
DUPLICATE_WINDOW_S = 5.0
#: How many recent (stamp, frame_id) keys per input are remembered for that.
RECENT_KEYS = 64


class InputSubscriptions:
    """``image`` and ``camera_info`` for ``node``; ``inputs`` maps each resolved topic to (type, callback).

    ``report(kind, text)`` is the node's rate-limited warning; ``mode`` is ``sensor_qos``. The image
    subscription (the first input) keeps only the newest frame, in ``image_group`` (the node's
    :class:`~moadepth_ros.node.intake.IntakeGate`), and its callback gets the message info as well.
    """

    def __init__(self, node, inputs: dict[str, tuple[type, Callable]], report: Callable[[str, str], None],
                 mode: str, image_group: CallbackGroup | None = None) -> None:
        self._node = node
        self._image_group = image_group
        self._inputs = inputs
        self._report = report
        self.mode = mode
        self.subs: list = []  # the current subscriptions, in the order of ``inputs`` (image first)
        self._old: list = []  # the previous ones, kept until ``subs`` has matched (make-before-break)
        self._old_since = 0.0
        self._dedup_until = 0.0  # monotonic time until which duplicates are looked for
        self._recent: dict[str, deque[tuple[int, str]]] = {t: deque(maxlen=RECENT_KEYS) for t in inputs}
        self.decision: input_qos.Decision | None = None  # the subscriptions' reliability and why
        self.rematches = 0  # re-subscriptions to match a publisher that appeared later
        self.duplicates = 0  # frames that came twice during an overlap, handed on once
        self.images_taken = 0  # images the executor took from DDS (the intake skips those sent mid-forward)
        self.conflicts: dict[tuple[str, int], tuple[object, QoSProfile, bool]] = {}  # current WARNs
        self.last_image_at: float | None = None  # monotonic time and size of the newest image
        self.last_image_bytes = 0
        self._silent_since: float | None = None  # a best-effort publisher seen, no image since
        self._silence_warned = False
        self._subscribe(input_qos.choose(self._offered()) if mode == "auto" else input_qos.forced(mode))
        self._timer = node.create_timer(input_qos.WATCH_PERIOD_S, self.watch)

    @property
    def topics(self) -> list[str]:
        return list(self._inputs)

    # ----------------------------------------------------------------- subscribing
    def _offered(self) -> dict[str, list]:
        """Each input topic (remapped, namespaced) -> the reliability its publishers offer."""
        return {topic: [ep.qos_profile.reliability for ep in self._node.get_publishers_info_by_topic(topic)]
                for topic in self._inputs}

    def _subscribe(self, decision: input_qos.Decision, log: bool = True) -> None:
        """Create the input subscriptions with ``decision``'s reliability; the current ones (if any)
        become the old ones, dropped by :meth:`_retire_old` once the new ones match."""
        self._drop(self._old)
        self._old, self._old_since = self.subs, time.monotonic()
        if self._old:
            self._dedup_until = float("inf")
        self.conflicts = {k: v for k, v in self.conflicts.items() if k[0] not in self._inputs}
        self.subs = []
        for i, (topic, (msg_type, callback)) in enumerate(self._inputs.items()):
            qos = QoSProfile(depth=intake.IMAGE_HISTORY_DEPTH if i == 0 else 5, reliability=decision.reliability,
                             durability=DurabilityPolicy.VOLATILE, history=HistoryPolicy.KEEP_LAST)
            events = SubscriptionEventCallbacks(incompatible_qos=lambda event, t=topic, q=qos: self.on_incompatible(
                t, q, event, we_read=True))
            self.subs.append(self._node.create_subscription(
                msg_type, topic, self._receiver(topic, callback), qos, event_callbacks=events,
                callback_group=self._image_group if i == 0 else None))
        self.decision = decision
        self._silent_since, self._silence_warned = None, False
        if log:
            self._node.get_logger().info(
                f"sensor_qos {self.mode}: subscribing {input_qos.name_of(decision.reliability)} to "
                f"{' and '.join(self._inputs)}: {decision.reason}")
        self._retire_old()

    def _receiver(self, topic: str, callback: Callable) -> Callable:
        image = topic == next(iter(self._inputs))

        def receive(msg, info) -> None:  # two parameters: rclpy then passes the MessageInfo
            key = (header_stamp_ns(msg.header), msg.header.frame_id)
            recent = self._recent[topic]
            if time.monotonic() < self._dedup_until and key in recent:
                self.duplicates += 1  # the same frame through the old and the new subscription
                return
            recent.append(key)
            if image:
                self.images_taken += 1
                self.last_image_at, self.last_image_bytes = time.monotonic(), len(msg.data)
                callback(msg, info)
            else:
                callback(msg)

        return receive

    def _retire_old(self, now: float | None = None) -> None:
        """Drop the old subscriptions once every new one has matched every publisher of its topic
        (the decision made them all compatible), or after SWITCH_TIMEOUT_S."""
        if not self._old:
            return
        now = time.monotonic() if now is None else now
        matched = all(sub.get_publisher_count() >= len(self._node.get_publishers_info_by_topic(topic))
                      for sub, topic in zip(self.subs, self._inputs, strict=True))
        if matched or now - self._old_since >= SWITCH_TIMEOUT_S:
            self._drop(self._old)
            self._old = []
            self._dedup_until = now + DUPLICATE_WINDOW_S  # frames still in flight on the new reader

    def _drop(self, subs: list) -> None:
        for sub in subs:
            self._node.destroy_subscription(sub)

    def close(self) -> None:
        if self._timer is not None:
            self._node.destroy_timer(self._timer)
            self._timer = None
        self._drop(self._old + self.subs)
        self._old, self.subs = [], []
        self.conflicts.clear()
        self.decision = None

    # ----------------------------------------------------------------- watching the graph
    def watch(self) -> None:
        """Every WATCH_PERIOD_S: retire old subscriptions that are no longer needed; ``auto`` decides
        once the first publisher appears and re-matches when a best-effort one joins a reliable
        subscription; a silent best-effort input gets the profile hint."""
        d = self.decision
        if d is None:
            return
        self._retire_old()
        if self.mode == "auto" and not (d.decided and d.reliability == input_qos.BEST_EFFORT):
            new = input_qos.choose(self._offered())
            if not d.decided and new.decided:
                if new.reliability == d.reliability:  # already best effort: keep the subscriptions
                    self.decision = new
                    self._node.get_logger().info(f"sensor_qos auto: staying best effort: {new.reason}")
                else:
                    self._subscribe(new)
            elif d.decided and new.decided and new.reliability != d.reliability:
                self.rematches += 1
                self._report("qos_rematched", f"sensor_qos auto: re-subscribed best effort to "
                                              f"{' and '.join(self._inputs)}: {new.reason}")
                self._subscribe(new, log=False)  # the report above is the one line
        if self.decision.reliability == input_qos.BEST_EFFORT:
            self._watch_silence(time.monotonic())

    def _watch_silence(self, now: float) -> None:
        """One warning when a best-effort input has a publisher but no image for SILENT_S (frames over
        ~512 KiB need the camera on the shipped Fast DDS profile), unless the last frame was small."""
        if self.last_image_at is not None and now - self.last_image_at < input_qos.SILENT_S:
            self._silent_since, self._silence_warned = None, False
            return
        image_topic = next(iter(self._inputs))
        publishers = self._node.get_publishers_info_by_topic(image_topic)
        if not publishers:
            self._silent_since = None
            return
        if self._silent_since is None:
            self._silent_since = now
        large = self.last_image_at is None or self.last_image_bytes > input_qos.LARGE_FRAME_BYTES
        if now - self._silent_since >= input_qos.SILENT_S and large and not self._silence_warned:
            self._silence_warned = True
            self._report("qos_silent", (
                f"no image on {image_topic} for {input_qos.SILENT_S:.0f} s although {len(publishers)} publisher(s) "
                f"exist and the subscription is best effort: best-effort frames over ~512 KiB need the camera "
                f"process on the shipped Fast DDS profile (export {ros_compat.fastdds_profile_env()}="
                f"{transport.PROFILE_PATH}; docs/ROS.md), or a reliable camera"))

    # ----------------------------------------------------------------- incompatible QoS
    def on_incompatible(self, topic: str, ours: QoSProfile, event: QoSRequestedIncompatibleQoSInfo, *,
                        we_read: bool) -> None:
        """An incompatible-QoS event on an input or an output: one warning and a diagnostics WARN while
        the peer is there. Under ``auto`` a reliable input's event is the watcher's to re-match."""
        kind = event.last_policy_kind
        if (we_read and self.mode == "auto" and kind == input_qos.QoSPolicyKind.RELIABILITY
                and ours.reliability == input_qos.RELIABLE):
            return
        theirs = input_qos.conflicting(kind, ours, self._peers(topic, we_read), we_read=we_read)
        self.conflicts[(topic, int(kind))] = (kind, ours, we_read)
        self._report("qos_incompatible", input_qos.mismatch_text(topic, kind, ours, theirs, we_read=we_read,
                                                                 mode=self.mode))

    def _peers(self, topic: str, we_read: bool) -> list[QoSProfile]:
        infos = (self._node.get_publishers_info_by_topic(topic) if we_read
                 else self._node.get_subscriptions_info_by_topic(topic))
        return [ep.qos_profile for ep in infos]

    def warnings(self) -> list[str]:
        """The incompatibilities still in the graph, one sentence each (those gone are forgotten)."""
        lines = []
        for (topic, key), (kind, ours, we_read) in list(self.conflicts.items()):
            theirs = input_qos.conflicting(kind, ours, self._peers(topic, we_read), we_read=we_read)
            if not theirs:
                self.conflicts.pop((topic, key), None)
                continue
            lines.append(input_qos.mismatch_text(topic, kind, ours, theirs, we_read=we_read, mode=self.mode))
        return lines
