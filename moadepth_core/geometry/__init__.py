"""Camera geometry in numpy: the pinhole camera, rigid transforms, depth registration, image buffers,
point clouds, and what the node publishes from a prediction. Pure numpy/OpenCV: no torch, no ROS."""

from moadepth_core.geometry.camera import (
    PinholeCamera,
    backproject,
    check_intrinsics,
    focal_at_size,
    intrinsics_matrix,
    pixel_ray_planes,
    pixel_rays,
    project_points,
    scale_depth_for_focal,
    scale_intrinsics,
)
from moadepth_core.geometry.registration import register_depth, resize_nearest
from moadepth_core.geometry.transforms import (
    compose_transforms,
    interpolate_transform,
    invert_transform,
    quaternion_to_matrix,
    transform_matrix,
    transform_points,
)

__all__ = [
    "PinholeCamera",
    "backproject",
    "check_intrinsics",
    "compose_transforms",
    "focal_at_size",
    "interpolate_transform",
    "intrinsics_matrix",
    "invert_transform",
    "pixel_ray_planes",
    "pixel_rays",
    "project_points",
    "quaternion_to_matrix",
    "register_depth",
    "resize_nearest",
    "scale_depth_for_focal",
    "scale_intrinsics",
    "transform_matrix",
    "transform_points",
]
