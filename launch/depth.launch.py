"""Start the moadepth depth node with config/depth_node.yaml.

ros2 launch moadepth_ros depth.launch.py checkpoint:=/path/model.pt namespace:=front \
    image:=/front/color/image_raw camera_info:=/front/color/camera_info

Three cameras in one process (one model): cameras:="[front, left, right]" and each camera's topics under
its name (front/image, front/camera_info -> front/depth/image, front/points, ...); see docs/ROS.md.
"""

from launch.actions import DeclareLaunchArgument
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.substitutions import FindPackageShare

from launch import LaunchDescription


def generate_launch_description() -> LaunchDescription:
    default_params = PathJoinSubstitution([FindPackageShare("moadepth_ros"), "config", "depth_node.yaml"])
    args = [
        DeclareLaunchArgument("checkpoint", default_value="", description="trained checkpoint (.pt)"),
        DeclareLaunchArgument("namespace", default_value="", description="namespace of the node and outputs"),
        DeclareLaunchArgument("image", default_value="image", description="input image topic"),
        DeclareLaunchArgument("camera_info", default_value="camera_info", description="input CameraInfo topic"),
        DeclareLaunchArgument("cameras", default_value="[]", description="several cameras, one model: "
                              "[front, left, right] reads front/image... and writes front/depth/image... "
                              "(remap each, e.g. front/image:=/front/color/image_raw); [] = one camera"),
        DeclareLaunchArgument("use_sim_time", default_value="false", description="use /clock"),
        DeclareLaunchArgument("params_file", default_value=default_params, description="parameters YAML"),
    ]
    node = Node(
        package="moadepth_ros",
        executable="depth_node",
        name="moadepth",
        namespace=LaunchConfiguration("namespace"),
        output="screen",
        parameters=[
            LaunchConfiguration("params_file"),
            {"checkpoint": LaunchConfiguration("checkpoint"), "use_sim_time": LaunchConfiguration("use_sim_time"),
             "cameras": LaunchConfiguration("cameras")},
        ],
        remappings=[("image", LaunchConfiguration("image")), ("camera_info", LaunchConfiguration("camera_info"))],
    )
    return LaunchDescription([*args, node])
