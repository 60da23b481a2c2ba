"""The depth node's QoS decisions: follow the camera's reliability (``sensor_qos: auto``) and turn an
incompatible-QoS event into one sentence that names the topic, both sides' policies and the fix.

Pure functions over rclpy's QoS types, so the choice is testable without DDS; the node feeds them
what ``get_publishers_info_by_topic`` reports (docs/ROS.md, QoS).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import Enum
from typing import Any

from rclpy.qos import DurabilityPolicy, QoSPolicyKind, QoSProfile, ReliabilityPolicy

RELIABLE = ReliabilityPolicy.RELIABLE
BEST_EFFORT = ReliabilityPolicy.BEST_EFFORT
#: Seconds between looks at the graph while ``auto`` may still re-subscribe.
WATCH_PERIOD_S = 0.5
#: Seconds without an image from a present best-effort publisher before the large-frame warning.
SILENT_S = 5.0
#: Frames above this may not cross Fast DDS's default 512 KiB shared-memory segment best effort.
LARGE_FRAME_BYTES = 512 * 1024


@dataclass(frozen=True)
class Decision:
    """The input reliability and why; ``decided`` False: no publisher yet, best effort meanwhile."""

    reliability: ReliabilityPolicy
    decided: bool
    reason: str


def name_of(value: Any) -> str:
    """``best_effort``, ``transient_local``... for enums; ``str`` for durations and numbers."""
    return value.name.lower() if isinstance(value, Enum) else str(value)


def choose(offered: Mapping[str, Iterable[ReliabilityPolicy]]) -> Decision:
    """``sensor_qos: auto``: ``offered`` maps each input topic to its publishers' reliabilities.

    Best effort when any publisher is not reliable (a reliable subscription would not match it);
    reliable when every one is (a reliable subscription keeps every large frame); best effort,
    undecided, while there is no publisher (it matches any that comes).
    """
    offered = {t: list(ps) for t, ps in offered.items()}
    n = sum(len(ps) for ps in offered.values())
    topics = " and ".join(offered)
    not_reliable = [f"{t} ({', '.join(sorted({name_of(p) for p in ps if p != RELIABLE}))})"
                    for t, ps in offered.items() if any(p != RELIABLE for p in ps)]
    if not_reliable:
        return Decision(BEST_EFFORT, True, f"a publisher of {', '.join(not_reliable)} is not reliable, and "
                                           f"only a best-effort subscription matches it")
    if n:
        return Decision(RELIABLE, True, f"all {n} publisher{'s' if n > 1 else ''} of {topics} offer reliable")
    return Decision(BEST_EFFORT, False, f"no publisher on {topics} yet: best effort (matches every "
                                        f"publisher) until the first appears")


def forced(mode: str) -> Decision:
    """``sensor_qos: reliable`` or ``best_effort``: the user's choice, never changed."""
    return Decision(RELIABLE if mode == "reliable" else BEST_EFFORT, True, f"sensor_qos is {mode}")


_ATTRIBUTE = {QoSPolicyKind.RELIABILITY: "reliability", QoSPolicyKind.DURABILITY: "durability",
              QoSPolicyKind.DEADLINE: "deadline", QoSPolicyKind.LIVELINESS: "liveliness",
              QoSPolicyKind.LIFESPAN: "lifespan", QoSPolicyKind.HISTORY: "history",
              QoSPolicyKind.DEPTH: "depth",
              QoSPolicyKind.LIVELINESS_LEASE_DURATION: "liveliness_lease_duration"}


def _incompatible(kind: QoSPolicyKind, requested: Any, offered: Any) -> bool:
    """Whether a reader requesting ``requested`` misses a writer offering ``offered`` (DDS rules for
    the two policies ROS users meet; any other policy counts as in conflict while such a peer exists)."""
    if kind == QoSPolicyKind.RELIABILITY:
        return requested == RELIABLE and offered != RELIABLE
    if kind == QoSPolicyKind.DURABILITY:
        return requested == DurabilityPolicy.TRANSIENT_LOCAL and offered == DurabilityPolicy.VOLATILE
    return True


def conflicting(kind: QoSPolicyKind, ours: QoSProfile, peers: Iterable[QoSProfile], *, we_read: bool) -> list[str]:
    """The peers' values of policy ``kind`` that do not connect with ``ours`` (sorted, distinct)."""
    attr = _ATTRIBUTE.get(QoSPolicyKind(kind))
    if attr is None:
        return []
    mine = getattr(ours, attr)
    bad = set()
    for peer in peers:
        theirs = getattr(peer, attr)
        if _incompatible(kind, mine, theirs) if we_read else _incompatible(kind, theirs, mine):
            bad.add(name_of(theirs))
    return sorted(bad)


def mismatch_text(topic: str, kind: QoSPolicyKind, ours: QoSProfile, theirs: list[str], *, we_read: bool,
                  mode: str = "") -> str:
    """One warning: the topic, both sides' policy and what fixes it."""
    kind = QoSPolicyKind(kind)
    attr = _ATTRIBUTE.get(kind)
    mine = name_of(getattr(ours, attr)) if attr else "?"
    others = "/".join(theirs) if theirs else "an incompatible one"
    if we_read:
        fix = ("set sensor_qos:=auto (follows the camera) or sensor_qos:=best_effort"
               if kind == QoSPolicyKind.RELIABILITY else
               "change the publisher's QoS (sensor_qos sets only the subscriptions' reliability)")
        return (f"incompatible QoS on {topic}: this node subscribes with {kind.name} {mine} (sensor_qos "
                f"{mode}), a publisher offers {others}; no message arrives from it. Fix: {fix}")
    return (f"incompatible QoS on {topic}: this node publishes {kind.name} {mine}, a subscriber requests "
            f"{others}; it gets nothing. Fix it on the subscriber (ask for volatile, or best effort): no "
            f"node parameter changes the outputs' QoS (reliable, volatile, history 3), and sensor_qos only "
            f"sets the inputs")
