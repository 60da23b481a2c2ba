"""``depth_node [--lifecycle] --ros-args ...``: the executable around :mod:`moadepth_ros.node.depth_node`
(the entry point stays ``moadepth_ros.node.depth_node:main``, which re-exports :func:`main`)."""

from __future__ import annotations

import sys

import rclpy
from rclpy.exceptions import ParameterException
from rclpy.executors import ExternalShutdownException

from moadepth_core.errors import MoadepthError
from moadepth_ros.node import transport
from moadepth_ros.node.parameters import help_text

NODE_NAME = "moadepth"


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
        from moadepth_ros.node.depth_node import DepthNode, LifecycleDepthNode  # the node imports this module

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
