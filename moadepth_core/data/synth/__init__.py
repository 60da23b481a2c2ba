"""Procedural indoor RGB-D scenes with exact depth: the embedded default dataset.

Why: no real RGB-D data can be downloaded here, yet training, evaluation, the
ROS node and the bag tools all need images with *known* depth and intrinsics.
Each scene is a closed room (floor, walls, ceiling) with axis-aligned boxes
(tables, shelves, cabinets, crates) and vertical cylinders (pillars, bins),
ray cast with numpy so depth is exact, not estimated.

Conventions: world frame z up (metres); camera optical frame x right, y down,
z forward; depth is the Z coordinate along the optical axis (REP 118), never the
ray length.

Everything is a pure function of the seed and the config: the same seed gives
byte-identical files. Modules: :mod:`.scene` (room and furniture), :mod:`.renderer`
(ray casting and shading), :mod:`.trajectory` (camera poses, mount transforms, stamps),
:mod:`.writers` (folder and rosbag2 output); the command is :mod:`moadepth_core.cli.synth`.
"""

from moadepth_core.data.synth.config import SynthConfig
from moadepth_core.data.synth.renderer import render
from moadepth_core.data.synth.scene import Box, Cylinder, Material, Scene, make_scene
from moadepth_core.data.synth.trajectory import camera_pose, frame_stamp_ns, mount_transforms, trajectory
from moadepth_core.data.synth.writers import generate

__all__ = ["Box", "Cylinder", "Material", "Scene", "SynthConfig", "camera_pose", "frame_stamp_ns", "generate",
           "make_scene", "mount_transforms", "render", "trajectory"]
