"""``bag_replay``: play a rosbag2's camera over real DDS against ``depth_node`` and measure what comes back.

Why not ``ros2 bag play``: it is not installable here, and this tool also scores the round
trip. It publishes the bag's image and CameraInfo topics at recorded speed (``--rate``
scales it) with ``/clock`` from bag time, for a node started with ``use_sim_time:=true``,
subscribes to the node's outputs and, once everything is sent and the outputs have drained,
prints (and with ``--json`` writes) frames in / out / dropped and end-to-end latency
(publish -> depth received, wall clock in this process) p50/p95.

Topic scheme: inputs keep their bag names (``/camera/color/image_raw``); start the node with
``-r image:=<image topic> -r camera_info:=<camera_info topic>``. Its relative outputs then live
under its namespace: ``--output-ns /`` (default) means ``/depth/image``, ``/depth/camera_info``,
``/points``, ``/depth/confidence``; a node started with ``-r __ns:=/moadepth`` needs
``--output-ns /moadepth``. Each name can also be set on its own (``--depth-out`` ...).

``--record OUT`` writes an MCAP bag with the played inputs, the bag's ground-truth depth (and
its CameraInfo, ``/tf_static`` and ``/tf``) and every node output (raw CDR as received), which
``bag_eval --prediction-topic /depth/image`` scores. The run is bounded in time and stops by itself.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from moadepth_core.data.rosbag.source import camera_topic_sibling, header_from_cdr
from moadepth_core.errors import DataError, MoadepthError, cli_entry
from moadepth_ros.node import transport

OUTPUTS = {  # key -> (relative name, type)
    "depth": ("depth/image", "sensor_msgs/msg/Image"),
    "camera_info": ("depth/camera_info", "sensor_msgs/msg/CameraInfo"),
    "points": ("points", "sensor_msgs/msg/PointCloud2"),
    "confidence": ("depth/confidence", "sensor_msgs/msg/Image"),
}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="bag_replay", description=__doc__.split("\n\n")[0])
    p.add_argument("--bag", required=True, help="rosbag2 directory (or .mcap/.db3 file)")
    p.add_argument("--image-topic", required=True, help="colour image topic to play")
    p.add_argument("--camera-info-topic", help="default: camera_info next to the image topic (if recorded)")
    p.add_argument("--depth-topic", help="ground-truth depth copied into --record (not published)")
    p.add_argument("--depth-camera-info-topic", help="default: camera_info next to the depth topic")
    p.add_argument("--rate", type=float, default=1.0, help="playback speed factor (1 = recorded speed)")
    p.add_argument("--output-ns", default="/", help="namespace of the node's outputs")
    for key, (rel, _) in OUTPUTS.items():
        p.add_argument(f"--{key.replace('_', '-')}-out", dest=f"{key}_out", help=f"default: <output-ns>/{rel}")
    p.add_argument("--record", metavar="OUT", help="write inputs, ground truth and outputs to this MCAP bag")
    p.add_argument("--json", metavar="PATH", help="also write the statistics here")
    p.add_argument("--wait-for-subscribers", action="store_true",
                   help="start only once the node subscribes to the image and publishes depth")
    p.add_argument("--wait-timeout", type=float, default=60.0, help="seconds to wait for the node")
    p.add_argument("--drain-timeout", type=float, default=10.0,
                   help="after the last frame, wait this long without new output before stopping")
    p.add_argument("--max-frames", type=int, help="play at most this many images")
    p.add_argument("--no-clock", action="store_true", help="do not publish /clock")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


def _join(ns: str, rel: str) -> str:
    ns = "/" + ns.strip("/") if ns.strip("/") else ""
    return f"{ns}/{rel}"


class _Recorder:
    """Thread-safe rosbags MCAP writer of raw CDR (rclpy's bytes are byte-compatible)."""

    def __init__(self, path: str) -> None:
        from rosbags.rosbag2 import StoragePlugin, Writer
        from rosbags.typesys import Stores, get_typestore

        self.path = Path(path)
        if self.path.exists():
            raise DataError(f"--record {self.path} exists already; choose a new path")
        self.typestore = get_typestore(Stores.ROS2_KILTED)
        self.writer = Writer(self.path, version=9, storage_plugin=StoragePlugin.MCAP)
        self.writer.open()
        self.conns: dict[str, object] = {}
        self.lock = threading.Lock()
        self.count = 0

    def add(self, topic: str, msgtype: str, qos=()) -> None:
        with self.lock:
            if topic not in self.conns:
                self.conns[topic] = self.writer.add_connection(topic, msgtype, typestore=self.typestore,
                                                               offered_qos_profiles=list(qos or ()))

    def write(self, topic: str, log_ns: int, raw: bytes) -> None:
        with self.lock:
            if self.writer is not None:
                self.writer.write(self.conns[topic], int(log_ns), bytes(raw))
                self.count += 1

    def close(self) -> None:
        with self.lock:
            if self.writer is not None:
                self.writer.close()
                self.writer = None


def _bag_plan(args) -> tuple[object, list, dict]:
    """Open the bag; return (reader, connections to read, topic -> role)."""
    from rosbags.highlevel import AnyReader
    from rosbags.typesys import Stores, get_typestore

    path = Path(args.bag)
    if not path.exists():
        raise DataError(f"bag {path} does not exist")
    try:
        reader = AnyReader([path], default_typestore=get_typestore(Stores.ROS2_KILTED))
        reader.open()
    except Exception as exc:
        raise DataError(f"cannot read bag {path}: it is truncated or corrupt ({' '.join(str(exc).split())[:200]})") \
            from exc
    topics = {c.topic: c.msgtype for c in reader.connections}
    listing = ", ".join(f"{t} ({m})" for t, m in sorted(topics.items()))

    def need(topic: str, what: str) -> str:
        if topic not in topics:
            raise DataError(f"bag {path} has no {what} topic {topic!r}; its topics are: {listing}")
        return topic

    roles = {need(args.image_topic, "image"): "image"}
    info = args.camera_info_topic or camera_topic_sibling(args.image_topic, msgtype=topics[args.image_topic])
    if args.camera_info_topic:
        need(info, "camera_info")
    if info in topics:
        roles[info] = "camera_info"
    if args.record:
        if args.depth_topic:
            roles[need(args.depth_topic, "depth")] = "record"
            dinfo = args.depth_camera_info_topic or camera_topic_sibling(args.depth_topic,
                                                                         msgtype=topics[args.depth_topic])
            if dinfo in topics:
                roles[dinfo] = "record"
        for tf_topic in ("/tf_static", "/tf"):  # bag_eval's costmap needs the robot's motion too
            if tf_topic in topics:
                roles[tf_topic] = "record"
    conns = [c for c in reader.connections if c.topic in roles]
    return reader, conns, roles


def replay(args) -> dict:
    """Run the replay described by parsed ``args``; returns the statistics."""
    import rclpy
    from builtin_interfaces.msg import Time
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
    from rosgraph_msgs.msg import Clock
    from sensor_msgs.msg import CameraInfo, CompressedImage, Image, PointCloud2

    if not args.rate > 0:
        raise DataError(f"--rate must be positive, got {args.rate}")
    reader, conns, roles = _bag_plan(args)
    out_topics = {k: getattr(args, f"{k}_out") or _join(args.output_ns, rel) for k, (rel, _) in OUTPUTS.items()}
    recorder = _Recorder(args.record) if args.record else None
    if recorder:
        for c in conns:
            recorder.add(c.topic, c.msgtype, getattr(c.ext, "offered_qos_profiles", ()))
        for k, t in out_topics.items():
            recorder.add(t, OUTPUTS[k][1])

    transport.use_large_data_profile()  # bag_replay is the camera here: its segment carries the images
    context = rclpy.Context()
    rclpy.init(args=["bag_replay"], context=context)
    node = rclpy.create_node("bag_replay", context=context)
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(node)
    lock = threading.Lock()
    sent: dict[int, float] = {}
    got: dict[int, float] = {}
    counts = {k: 0 for k in OUTPUTS}
    state = {"unexpected": 0, "duplicates": 0, "last_output": time.monotonic()}

    def on_output(key: str, topic: str):
        def cb(raw: bytes) -> None:
            now = time.monotonic()
            stamp, _ = header_from_cdr(raw)
            with lock:
                counts[key] += 1
                state["last_output"] = now
                if key == "depth":
                    if stamp not in sent:
                        state["unexpected"] += 1
                    elif stamp in got:
                        state["duplicates"] += 1
                    else:
                        got[stamp] = now - sent[stamp]
            if recorder:
                recorder.write(topic, stamp, raw)
        return cb

    types = {"sensor_msgs/msg/Image": Image, "sensor_msgs/msg/CameraInfo": CameraInfo,
             "sensor_msgs/msg/PointCloud2": PointCloud2, "sensor_msgs/msg/CompressedImage": CompressedImage}
    reliable = QoSProfile(depth=50, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.VOLATILE)
    for k, t in out_topics.items():
        node.create_subscription(types[OUTPUTS[k][1]], t, on_output(k, t), reliable, raw=True)
    pub_qos = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.VOLATILE)
    pubs = {c.topic: node.create_publisher(types[c.msgtype], c.topic, pub_qos)
            for c in conns if roles[c.topic] in ("image", "camera_info")}
    clock_pub = None if args.no_clock else node.create_publisher(Clock, "/clock", 10)
    spin = threading.Thread(target=executor.spin, name="bag_replay-spin", daemon=True)
    spin.start()

    def publish_clock(ns: int) -> None:
        if clock_pub is not None:
            sec, nsec = divmod(int(ns), 1_000_000_000)
            clock_pub.publish(Clock(clock=Time(sec=sec, nanosec=nsec)))

    image_pub = pubs[args.image_topic]
    try:
        if args.wait_for_subscribers:
            print(f"bag_replay: waiting up to {args.wait_timeout:.0f} s for a node on {args.image_topic} -> "
                  f"{out_topics['depth']}", file=sys.stderr)
            deadline = time.monotonic() + args.wait_timeout
            while not (image_pub.get_subscription_count() > 0
                       and node.count_publishers(out_topics["depth"]) > 0):
                if time.monotonic() > deadline:
                    raise MoadepthError(
                        f"no node answered within {args.wait_timeout:.0f} s: nothing subscribes to {args.image_topic} "
                        f"and publishes {out_topics['depth']} (start depth_node with -r image:={args.image_topic})")
                time.sleep(0.05)
            time.sleep(0.5)  # let the reliable endpoints finish matching both ways
        print(f"bag_replay: playing {args.image_topic} from {args.bag} at x{args.rate:g}", file=sys.stderr)
        frames_in = 0
        # Playback time starts at the first image: a /tf_static recorded long before the camera
        # started (or a bag cut by time) must not make the node wait.
        image_conns = [c for c in conns if roles[c.topic] == "image"]
        t0_bag = next((log_ns for _, log_ns, _ in reader.messages(connections=image_conns)), 0)
        t0_wall = time.monotonic()
        started = time.monotonic()
        bar = None
        if not args.quiet:
            from tqdm import tqdm

            bar = tqdm(unit="frame", desc="bag_replay", file=sys.stderr)
        try:
            for conn, log_ns, raw in reader.messages(connections=conns):
                role = roles[conn.topic]
                if role == "image" and args.max_frames is not None and frames_in >= args.max_frames:
                    break
                due = t0_wall + max(log_ns - t0_bag, 0) / 1e9 / args.rate
                while (wait := due - time.monotonic()) > 0:
                    # /clock advances smoothly between messages, as ros2 bag play's does
                    publish_clock(t0_bag + int((time.monotonic() - t0_wall) * args.rate * 1e9))
                    time.sleep(min(wait, 0.01))
                publish_clock(max(log_ns, t0_bag))
                raw = bytes(raw)
                if recorder:
                    recorder.write(conn.topic, log_ns, raw)
                if role == "image":
                    stamp, _ = header_from_cdr(raw)
                    with lock:
                        sent[stamp] = time.monotonic()
                    image_pub.publish(raw)
                    frames_in += 1
                    if bar is not None:
                        with lock:
                            bar.set_postfix(out=len(got), refresh=False)
                        bar.update(1)
                elif role == "camera_info":
                    pubs[conn.topic].publish(raw)
        except MoadepthError:
            raise
        except Exception as exc:
            raise DataError(f"cannot read bag {args.bag}: it is truncated or corrupt "
                            f"({' '.join(str(exc).split())[:200]})") from exc
        finally:
            if bar is not None:
                bar.close()
        played = time.monotonic() - started
        # drain: until every frame came back, or no output for drain_timeout seconds
        while True:
            with lock:
                done = len(got) >= frames_in
                idle = time.monotonic() - max(state["last_output"], started + played)
            if done or idle > args.drain_timeout:
                break
            time.sleep(0.05)
            if clock_pub is not None:
                publish_clock(t0_bag + int((time.monotonic() - t0_wall) * args.rate * 1e9))
        time.sleep(0.2)  # camera_info/points of the last frame follow its depth
    finally:
        executor.shutdown(timeout_sec=2.0)
        node.destroy_node()
        rclpy.try_shutdown(context=context)
        spin.join(timeout=5.0)
        reader.close()
        if recorder:
            recorder.close()
    lat = [v * 1000.0 for v in got.values()]
    stats = {
        "frames_in": frames_in,
        "frames_out": len(got),
        "dropped": frames_in - len(got),
        "unexpected_outputs": state["unexpected"],
        "duplicate_outputs": state["duplicates"],
        "outputs": {k: {"topic": out_topics[k], "messages": counts[k]} for k in OUTPUTS},
        # numpy's linear percentile, as the benchmark's; null in the JSON when nothing came back
        "latency_ms": {"p50": float(np.percentile(lat, 50)) if lat else None,
                       "p95": float(np.percentile(lat, 95)) if lat else None,
                       "mean": float(np.mean(lat)) if lat else None, "max": max(lat) if lat else None},
        "rate": args.rate,
        "play_seconds": round(played, 3),
        "input_fps": round(frames_in / played, 3) if played > 0 else None,
        "bag": str(args.bag),
        "image_topic": args.image_topic,
        "record": str(args.record) if args.record else None,
    }
    return stats


def _main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    stats = replay(args)
    text = json.dumps(stats, indent=2)
    print(text)
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(text + "\n")
    lat = stats["latency_ms"]
    p50 = "n/a" if lat["p50"] is None else f"{lat['p50']:.0f} ms"
    p95 = "n/a" if lat["p95"] is None else f"{lat['p95']:.0f} ms"
    print(f"bag_replay: {stats['frames_in']} in, {stats['frames_out']} out, {stats['dropped']} dropped; "
          f"latency p50 {p50}, p95 {p95}", file=sys.stderr)
    return 0


main = cli_entry(_main, prog="bag_replay")

if __name__ == "__main__":
    sys.exit(main())
