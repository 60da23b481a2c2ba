"""Reading the obstacle/voxel layer of a Nav2 params YAML: nesting, Nav2's defaults, one-sentence errors."""

from __future__ import annotations

import textwrap

import pytest

from moadepth_core.errors import ConfigError
from moadepth_core.evaluation.nav2_params import load_costmap_params


def _write(tmp_path, text: str, name: str = "nav2.yaml"):
    p = tmp_path / name
    p.write_text(textwrap.dedent(text))
    return p


def test_shipped_config_is_read_as_a_voxel_layer():
    p = load_costmap_params("config/nav2_depth_costmap.yaml")
    assert (p.plugin, p.layer, p.source, p.resolution) == ("VoxelLayer", "voxel_layer", "moadepth", 0.05)
    assert (p.min_obstacle_height, p.max_obstacle_height) == (0.10, 1.80)
    assert (p.obstacle_min_range, p.obstacle_max_range, p.raytrace_min_range, p.raytrace_max_range) == \
        (0.20, 4.0, 0.20, 5.0)
    assert (p.origin_z, p.z_resolution, p.z_voxels, p.mark_threshold) == (0.0, 0.12, 16, 1)
    assert p.clearing and p.marking and p.notes == ()
    # 16 voxels of 12 cm reach 1.92 m, above max_obstacle_height: the whole band 0.10-1.80 m marks
    assert p.height_band == pytest.approx((0.10, 1.80))


def test_global_costmap_obstacle_layer_with_nav2_defaults(tmp_path):
    path = _write(tmp_path, """
        global_costmap:
          global_costmap:
            ros__parameters:
              resolution: 0.1
              plugins: ["static_layer", "obstacle_layer", "inflation_layer"]
              static_layer: {plugin: "nav2_costmap_2d::StaticLayer"}
              obstacle_layer:
                plugin: "nav2_costmap_2d::ObstacleLayer"
                observation_sources: scan cam
                scan: {topic: /scan, marking: false, clearing: true}
                cam: {topic: /points, max_obstacle_height: 1.5, data_type: PointCloud2}
              inflation_layer: {plugin: "nav2_costmap_2d::InflationLayer"}
        """)
    p = load_costmap_params(path)
    assert (p.plugin, p.layer, p.source, p.resolution) == ("ObstacleLayer", "obstacle_layer", "cam", 0.1)
    # Nav2's declared defaults where the file is silent
    assert (p.min_obstacle_height, p.layer_min_obstacle_height, p.layer_max_obstacle_height) == (0.0, 0.0, 2.0)
    assert (p.obstacle_min_range, p.obstacle_max_range, p.raytrace_min_range, p.raytrace_max_range) == \
        (0.0, 2.5, 0.0, 3.0)
    assert p.marking and not p.clearing
    assert p.height_band == (0.0, 1.5)


def test_resolution_default_legacy_range_names_and_a_silent_max_height_note(tmp_path):
    path = _write(tmp_path, """
        local_costmap:
          ros__parameters:
            plugins: [obstacles]
            obstacles:
              plugin: nav2_costmap_2d::ObstacleLayer
              observation_sources: [cam]
              cam: {obstacle_range: 3.5, raytrace_range: 4.0}
        """)
    p = load_costmap_params(path)
    assert p.resolution == 0.05 and p.obstacle_max_range == 3.5 and p.raytrace_max_range == 4.0
    assert p.max_obstacle_height == 0.0 and "sets no max_obstacle_height" in p.notes[0]


@pytest.mark.parametrize("body, words", [
    ("""
     local_costmap:
       ros__parameters:
         plugins: [inflation_layer]
         inflation_layer: {plugin: nav2_costmap_2d::InflationLayer}
     """, "has no ObstacleLayer or VoxelLayer plugin"),
    ("""
     c:
       plugins: [v]
       v: {plugin: nav2_costmap_2d::VoxelLayer}
     """, "layer 'v' names no observation_sources"),
    ("""
     c:
       plugins: [v]
       v: {plugin: nav2_costmap_2d::VoxelLayer, observation_sources: cam}
     """, "no marking observation source with parameters (it names cam)"),
    ("""
     c:
       plugins: [v]
       v: {plugin: nav2_costmap_2d::VoxelLayer, observation_sources: cam, z_voxels: 20, cam: {}}
     """, "z_voxels 20 must be 1..16"),
    ("""
     c:
       plugins: [v]
       v: {plugin: nav2_costmap_2d::ObstacleLayer, observation_sources: cam, cam: {obstacle_max_range: far}}
     """, "v.cam.obstacle_max_range is 'far', not a number"),
    ("c: [unclosed", "is not valid YAML at line"),
])
def test_bad_files_are_one_sentence_naming_the_file_and_what_is_missing(tmp_path, body, words):
    path = _write(tmp_path, body)
    with pytest.raises(ConfigError) as err:
        load_costmap_params(path)
    msg = str(err.value)
    assert str(path) in msg and words in msg and "\n" not in msg, msg


def test_missing_file_and_a_named_source(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_costmap_params(tmp_path / "none.yaml")
    with pytest.raises(ConfigError, match=r"has no observation source 'lidar' \(its sources: moadepth\)"):
        load_costmap_params("config/nav2_depth_costmap.yaml", source="lidar")
