"""Launch and config files name only what exists: executables setup.py installs, parameters the node
declares, files in the repository. ``ros2 launch`` cannot run here, so they are parsed (ast / XML / YAML)."""

from __future__ import annotations

import ast
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import yaml

from moadepth_ros.node.parameters import BY_NAME

pytestmark = pytest.mark.ros

ROOT = Path(__file__).resolve().parents[1]
ROS_PARAMS = {"use_sim_time"}  # declared by every rclpy node
LAUNCH_ARGS = {"checkpoint", "namespace", "image", "camera_info", "cameras", "use_sim_time", "params_file"}


def _console_scripts() -> set[str]:
    tree = ast.parse((ROOT / "setup.py").read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Dict):
            for k, v in zip(node.keys, node.values, strict=True):
                if isinstance(k, ast.Constant) and k.value == "console_scripts":
                    return {ast.literal_eval(e).split("=")[0].strip() for e in v.elts}
    raise AssertionError("setup.py declares no console_scripts")


def _package_name() -> str:
    return ET.parse(ROOT / "package.xml").getroot().findtext("name")


def test_node_declares_every_yaml_parameter_and_yaml_covers_the_node():
    data = yaml.safe_load((ROOT / "config" / "depth_node.yaml").read_text())
    params = data["/**"]["ros__parameters"]
    assert set(params) <= set(BY_NAME) | ROS_PARAMS
    assert set(BY_NAME) <= set(params)  # every parameter documented in the YAML
    for name, value in params.items():
        assert value == BY_NAME[name].default, name  # one default, written twice, kept equal
        assert type(value) is type(BY_NAME[name].default), name


def test_declared_parameters_match_a_real_node():
    """The table is what the node declares (parse the live node's declarations, not the table)."""
    import rclpy
    from rclpy.parameter import Parameter

    from moadepth_ros.node.depth_node import LifecycleDepthNode

    rclpy.init()
    try:
        node = LifecycleDepthNode(parameter_overrides=[Parameter("checkpoint", value="x.pt")])
        declared = set(node._parameters)
        node.destroy_node()
    finally:
        rclpy.try_shutdown()
    assert set(BY_NAME) | ROS_PARAMS <= declared


def test_python_launch_file():
    src = (ROOT / "launch" / "depth.launch.py").read_text()
    tree = ast.parse(src)  # `launch` is not installed here: parse, never import
    assert any(isinstance(n, ast.FunctionDef) and n.name == "generate_launch_description" for n in tree.body)
    calls = [n for n in ast.walk(tree) if isinstance(n, ast.Call)]
    kw = {k.arg: k.value for c in calls if getattr(c.func, "id", None) == "Node" for k in c.keywords}
    assert ast.literal_eval(kw["package"]) == _package_name()
    assert ast.literal_eval(kw["executable"]) in _console_scripts()
    assert ast.literal_eval(kw["name"]) == "moadepth"
    args = {ast.literal_eval(c.args[0]) for c in calls if getattr(c.func, "id", None) == "DeclareLaunchArgument"}
    assert args == LAUNCH_ARGS
    # parameter dict keys the launch file sets must be declared by the node
    for d in (n for n in ast.walk(kw["parameters"]) if isinstance(n, ast.Dict)):
        assert {ast.literal_eval(k) for k in d.keys} <= set(BY_NAME) | ROS_PARAMS
    # files it points at exist
    joins = [c for c in calls if getattr(c.func, "id", None) == "PathJoinSubstitution"]
    for j in joins:
        parts = [ast.literal_eval(e) for e in j.args[0].elts if isinstance(e, ast.Constant)]
        assert (ROOT.joinpath(*parts)).is_file(), parts
    remaps = {ast.literal_eval(t.elts[0]) for t in kw["remappings"].elts}
    assert remaps == {"image", "camera_info"}


def test_xml_launch_file():
    root = ET.parse(ROOT / "launch" / "depth.launch.xml").getroot()
    assert {a.get("name") for a in root.findall("arg")} == LAUNCH_ARGS
    (node,) = root.findall("node")
    assert node.get("pkg") == _package_name() and node.get("exec") in _console_scripts()
    assert node.get("name") == "moadepth"
    names = {p.get("name") for p in node.findall("param") if p.get("name")}
    assert names <= set(BY_NAME) | ROS_PARAMS
    for p in root.iter():
        for value in p.attrib.values():
            for m in re.finditer(r"\$\(find-pkg-share (\w+)\)/([\w/.]+)", value):
                assert m.group(1) == _package_name() and (ROOT / m.group(2)).is_file()
    assert {r.get("from") for r in node.findall("remap")} == {"image", "camera_info"}


def test_nav2_and_rviz_configs_point_at_the_node_outputs():
    nav = yaml.safe_load((ROOT / "config" / "nav2_depth_costmap.yaml").read_text())
    layer = nav["local_costmap"]["local_costmap"]["ros__parameters"]["voxel_layer"]
    src = layer[layer["observation_sources"]]
    assert src["topic"] == "points" and src["data_type"] == "PointCloud2"
    assert 0 < src["min_obstacle_height"] < src["max_obstacle_height"]
    assert src["obstacle_max_range"] < src["raytrace_max_range"]
    rviz = yaml.safe_load((ROOT / "config" / "moadepth.rviz").read_text())
    topics = {d["Topic"]["Value"] for d in rviz["Visualization Manager"]["Displays"] if "Topic" in d}
    assert topics == {"points", "depth/image", "depth/confidence"}
