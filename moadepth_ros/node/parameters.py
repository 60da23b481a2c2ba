"""The depth node's parameters: one table with defaults, descriptors, ranges and checks.

Every default is written here once; config/depth_node.yaml repeats them for users,
test_launch_files.py checks that the YAML and the launch files name only parameters listed here,
and ``depth_node --help`` prints this table (:func:`help_text`).
"""

from __future__ import annotations

import textwrap
from dataclasses import dataclass
from typing import Any

from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor

from moadepth_ros.node.pacing import POLICIES as FRAME_POLICIES


@dataclass(frozen=True)
class Param:
    """One parameter: ``dynamic`` ones may change while the model is loaded, the others may not."""

    name: str
    default: Any
    description: str
    dynamic: bool = False
    choices: tuple[str, ...] = ()
    low: float | None = None
    high: float | None = None
    step: float = 0.0
    #: a word among ``choices`` or an integer in [low, high] (``point_stride``: "auto" or 1..64); the
    #: descriptor allows any type, so ``-p point_stride:=2`` and YAML's ``2`` (integers) are accepted
    #: as well as "auto", and :func:`check_value` does the checking
    word_or_int: bool = False
    #: a list of strings (``cameras``): dynamically typed, as rclpy types an empty default as a byte array
    #: (and a YAML ``[]`` arrives unset: None, read as the empty list)
    string_list: bool = False

    def descriptor(self) -> ParameterDescriptor:
        d = ParameterDescriptor(name=self.name, description=self.description,
                                dynamic_typing=self.word_or_int or self.string_list)
        if self.word_or_int:
            d.additional_constraints = f"{' or '.join(self.choices)} or an integer in [{self.low:g}, {self.high:g}]"
        elif self.choices:
            d.additional_constraints = "one of: " + ", ".join(self.choices)
        elif self.string_list:
            d.additional_constraints = "a list of strings"
        if not self.dynamic:
            d.additional_constraints = (d.additional_constraints + "; " if d.additional_constraints else "") + \
                "read at start-up / lifecycle configure"
        if self.low is not None and isinstance(self.default, float):
            d.floating_point_range = [FloatingPointRange(from_value=float(self.low), to_value=float(self.high),
                                                         step=float(self.step))]
        elif self.low is not None and isinstance(self.default, int) and not isinstance(self.default, bool) \
                and not self.word_or_int:
            d.integer_range = [IntegerRange(from_value=int(self.low), to_value=int(self.high),
                                            step=int(self.step) or 1)]
        return d


PARAMS: tuple[Param, ...] = (
    Param("checkpoint", "", "path of a moadepth checkpoint (.pt); empty means untrained"),
    Param("allow_untrained", False, "run without a checkpoint (random weights: meaningless depth, testing only)"),
    Param("device", "auto", "inference device: auto picks cuda when available", choices=("auto", "cpu", "cuda")),
    Param("precision", "auto", "weight precision; auto: fp32 on the CPU (ONNX Runtime, no torch), bf16/fp16 on "
          "cuda; with backend torch, bf16 where the CPU runs it natively (fp16 needs cuda; int8 needs backend "
          "onnxruntime)", choices=("auto", "fp32", "bf16", "fp16", "int8")),
    Param("backend", "auto", "inference runtime; auto: onnxruntime for fp32/int8 on the CPU (torch's fp32 "
          "numbers, faster), torch for bf16/fp16 and CUDA; torch_compile (fast, needs a C++ compiler, compiles "
          "~30-50 s at start); see docs/PERFORMANCE.md",
          choices=("auto", "torch", "torch_compile", "onnxruntime")),
    Param("input_height", 0, "network input height in pixels, a multiple of 32; 0 (with input_width 0): the "
          "checkpoint's training size. Smaller runs faster and sees less detail (docs/PERFORMANCE.md)",
          low=0, high=2048, step=32),
    Param("input_width", 0, "network input width in pixels, a multiple of 32; 0: the checkpoint's training size",
          low=0, high=2048, step=32),
    Param("min_depth", 0.1, "depths below this (m) become NaN", dynamic=True, low=0.0, high=1000.0),
    Param("max_depth", 10.0, "depths above this (m) become NaN", dynamic=True, low=0.01, high=1000.0),
    Param("publish_points", True, "publish the organised point cloud on 'points'", dynamic=True),
    Param("point_stride", "auto", "keep every n-th pixel in both directions for 'points'; auto: the stride "
          "that makes the cloud's long side about twice the network input's (1 at 640x480, 3 at 1280x720, 4 at "
          "1920x1080 with a 224x224 input; docs/ROS.md); a number forces it", dynamic=True,
          choices=("auto",), low=1, high=64, word_or_int=True),
    Param("points_rgb", True, "add the packed rgb field to 'points'", dynamic=True),
    Param("output_size", "input", "depth at the camera's resolution ('input') or the network's ('model')",
          choices=("input", "model")),
    Param("focal_scaling", True, "rescale metric depth by this camera's focal length against the training "
          "camera's (stored in the checkpoint)"),
    Param("sensor_qos", "auto", "reliability of the image/camera_info subscriptions; auto: follow the "
          "camera's publishers (best effort if any is, reliable if all are; re-matched when a best-effort one "
          "appears later); reliable or best_effort force it. Best effort loses frames over ~512 KiB unless the "
          "camera also uses the shipped Fast DDS profile (see docs/ROS.md)",
          choices=("auto", "reliable", "best_effort")),
    Param("image_transport", "raw", "image_transport's transport of the input: raw subscribes to 'image' "
          "(sensor_msgs/Image); compressed to '<image>/compressed' (sensor_msgs/CompressedImage: JPEG or PNG as "
          "image_transport_plugins' compressed plugin publishes them, decoded with OpenCV)",
          choices=("raw", "compressed")),
    Param("cameras", [], "several cameras served by one model: [] is one camera at the node's own names "
          "(image -> depth/image ...); [front, left] subscribes to front/image, front/camera_info (and "
          "front/image/compressed) and publishes front/depth/image, front/depth/camera_info, front/points, "
          "front/depth/confidence, front/depth/colored, and the same under left/; names must be valid relative "
          "ROS names", string_list=True),
    Param("max_batch", 4, "most frames one worker pass takes when several cameras have one waiting, the "
          "oldest first, as one batched forward (ONNX Runtime and eager torch; torch_compile one after the other)",
          low=1, high=64),
    Param("max_uncertainty", 0.3, "points whose relative uncertainty (std/depth) exceeds this become NaN",
          dynamic=True, low=0.0, high=1000.0),
    Param("frame_policy", "fresh", "when the busy worker frees up: 'fresh' waits for the next frame if it is "
          "due sooner than the newest one is old (lower latency, a few % fewer outputs); 'latest' takes the "
          "newest frame at once (most outputs, each up to a camera period old)", dynamic=True,
          choices=FRAME_POLICIES),
    Param("force_inference", False, "run inference even when nobody subscribes to an output", dynamic=True),
    Param("camera_info_tolerance", 0.01, "max stamp difference (s) to pair an image with a CameraInfo; "
          "otherwise the latest CameraInfo is used", dynamic=True, low=0.0, high=10.0),
    Param("timing_log", "", "path of a CSV file that gets one row per answered frame: stamp, receive and "
          "publish times (CLOCK_MONOTONIC) and every stage in ms; empty: off (see docs/PERFORMANCE.md)"),
    Param("diagnostics_period", 1.0, "seconds between /diagnostics messages", low=0.05, high=60.0),
    Param("log_period", 5.0, "seconds between repeats of the same warning about bad input", dynamic=True,
          low=0.0, high=3600.0),
)
BY_NAME: dict[str, Param] = {p.name: p for p in PARAMS}


def check_value(name: str, value: Any, current: dict[str, Any]) -> str | None:
    """Why ``value`` is not acceptable for ``name`` (None if it is); ranges are checked by rclpy.

    ``current`` holds the other parameters' values, for cross checks (min_depth < max_depth).
    """
    p = BY_NAME.get(name)
    if p is None:
        return None
    if p.word_or_int:
        if value in p.choices or (isinstance(value, int) and not isinstance(value, bool)
                                  and p.low <= value <= p.high):
            return None
        return (f"{name} must be {' or '.join(p.choices)} or an integer in [{p.low:g}, {p.high:g}], "
                f"got {value!r}")
    if p.string_list:
        if value is None or (isinstance(value, (list, tuple)) and all(isinstance(x, str) for x in value)):
            return None
        return f"{name} must be a list of strings, got {value!r}"
    if p.choices and value not in p.choices:
        return f"{name} must be one of {', '.join(p.choices)}, got {value!r}"
    if p.low is not None and not (p.low <= value <= p.high):
        return f"{name} must be within [{p.low}, {p.high}], got {value!r}"
    if name == "min_depth" and value >= current.get("max_depth", BY_NAME["max_depth"].default):
        return f"min_depth {value} must be smaller than max_depth {current.get('max_depth')}"
    if name == "max_depth" and value <= current.get("min_depth", BY_NAME["min_depth"].default):
        return f"max_depth {value} must be larger than min_depth {current.get('min_depth')}"
    return None


USAGE = """\
usage: depth_node [--lifecycle] [--ros-args [-p NAME:=VALUE]... [--params-file FILE] [-r FROM:=TO]...]
       depth_node -h | --help

Monocular metric depth for ROS 2 (node name 'moadepth'). Subscribes to 'image' (sensor_msgs/Image;
'image/compressed' with image_transport:=compressed) and 'camera_info' (optional; needed for focal scaling, depth/camera_info and points); publishes
'depth/image', 'depth/camera_info', 'depth/confidence' and 'points'.

options:
  -h, --help            print this help and the parameters, then exit
  --lifecycle           run the managed (lifecycle) node: configure loads the model, activate publishes

ROS arguments (after --ros-args):
  -p NAME:=VALUE        set one parameter, e.g. -p checkpoint:=/models/moadepth.pt
  --params-file FILE    parameters from a YAML file, e.g. config/depth_node.yaml
  -r image:=/cam/image_raw -r camera_info:=/cam/camera_info
                        remap the inputs (outputs likewise: -r points:=/cam/points)
  -r __ns:=/cam         run in a namespace (all topics relative to it)

example:
  depth_node --ros-args --params-file config/depth_node.yaml -r image:=/cam/image -r camera_info:=/cam/camera_info
"""


def _as_typed(value: Any) -> str:
    """A default as one types it after ``-p name:=``: quoted strings, lower-case booleans."""
    if isinstance(value, str):
        return repr(value)
    return str(value).lower() if isinstance(value, bool) else str(value)


def _limits(p: Param) -> str:
    if p.word_or_int:
        return " | ".join(p.choices) + f" | [{p.low:g}, {p.high:g}]"
    if p.choices:
        return " | ".join(p.choices)
    if p.low is not None:
        step = f" step {p.step:g}" if p.step else ""
        return f"[{p.low:g}, {p.high:g}]{step}"
    return ""


def help_text(width: int = 100) -> str:
    """``depth_node --help``: usage, then every parameter with its default, range or choices, whether it
    may change at run time (dynamic), and its description."""
    lines = [USAGE, "parameters (dynamic: may change while running; static: read when the model loads):"]
    for p in PARAMS:
        parts = [f"default {_as_typed(p.default)}", _limits(p), "dynamic" if p.dynamic else "static"]
        lines.append(f"  {p.name} ({'; '.join(x for x in parts if x)})")
        lines += textwrap.wrap(p.description, width=width, initial_indent="      ", subsequent_indent="      ")
    return "\n".join(lines) + "\n"
