"""moadepth core: MoA-DepthCLIP monocular depth in plain PyTorch (no ROS imports)."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("moadepth_ros")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+source"
