"""The obstacle or voxel layer of a user's Nav2 params YAML, as a typed :class:`CostmapParams`.

Why: the costmap evaluation must judge depth with the rules the user's robot runs, so it reads
the same file Nav2 loads (``config/nav2_depth_costmap.yaml`` by default) rather than a config of
its own. Where the file is silent, Nav2's own defaults apply (nav2_costmap_2d ``ObstacleLayer``,
``VoxelLayer`` and ``ObservationBuffer``, as they declare their parameters), with one exception:
``resolution`` defaults to 0.05 m (Costmap2DROS declares 0.1) because issue 20 asks for it and
0.05 is what Nav2's shipped params files set.

Search: every mapping with a ``plugins`` list, at any depth (``local_costmap: local_costmap:
ros__parameters: plugins: [...]`` or ``global_costmap``), is a costmap; the first plugin whose
``plugin`` type is ``nav2_costmap_2d::ObstacleLayer`` or ``::VoxelLayer`` is the layer (or the one
named ``layer``), and the first of its ``observation_sources`` with ``marking: true`` is the source
(or the one named ``source``). ``obstacle_range``/``raytrace_range`` (pre-Galactic names) are read
as ``obstacle_max_range``/``raytrace_max_range`` when the new names are absent.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from moadepth_core.errors import ConfigError

DEFAULT_COSTMAP_CONFIG = Path("config/nav2_depth_costmap.yaml")
DEFAULT_RESOLUTION = 0.05
VOXEL_BITS = 16  # nav2_voxel_grid stores a column in 16 bits: z_voxels <= 16
_LAYER_TYPES = {"ObstacleLayer", "VoxelLayer"}


@dataclass(frozen=True)
class CostmapParams:
    """What the evaluation needs of one Nav2 obstacle/voxel layer and its observation source."""

    path: str  # the params file, for messages
    plugin: str  # "ObstacleLayer" or "VoxelLayer"
    layer: str  # the layer's name in the file, e.g. "voxel_layer"
    source: str  # the observation source's name, e.g. "moadepth"
    resolution: float = DEFAULT_RESOLUTION  # metres per cell
    # ObservationBuffer: points outside [min, max] height (fixed frame z) are dropped for marking and clearing
    min_obstacle_height: float = 0.0
    max_obstacle_height: float = 0.0  # Nav2's source default: a file that sets none keeps only z <= 0
    # the layer's own band, applied again when marking (ObstacleLayer::updateBounds)
    layer_min_obstacle_height: float = 0.0
    layer_max_obstacle_height: float = 2.0
    obstacle_min_range: float = 0.0  # metres from the sensor origin, 3-D; marks when min <= d < max
    obstacle_max_range: float = 2.5
    raytrace_min_range: float = 0.0
    raytrace_max_range: float = 3.0
    marking: bool = True
    clearing: bool = False
    # VoxelLayer only (ignored for ObstacleLayer)
    origin_z: float = 0.0
    z_resolution: float = 0.2
    z_voxels: int = 10
    mark_threshold: int = 0  # a column is an obstacle when MORE than this many voxels are marked
    notes: tuple[str, ...] = field(default=())  # choices made while reading, one sentence each

    @property
    def is_voxel(self) -> bool:
        return self.plugin == "VoxelLayer"

    @property
    def height_band(self) -> tuple[float, float]:
        """Heights that can mark: the source's band within the layer's band."""
        lo = max(self.min_obstacle_height, self.layer_min_obstacle_height)
        hi = min(self.max_obstacle_height, self.layer_max_obstacle_height)
        if self.is_voxel:
            hi = min(hi, self.origin_z + self.z_voxels * self.z_resolution)
        return lo, hi

    def describe(self) -> str:
        lo, hi = self.height_band
        s = (f"{self.plugin} {self.layer!r} source {self.source!r} of {self.path}: {self.resolution} m cells, "
             f"heights {lo:g}..{hi:g} m, obstacle range {self.obstacle_min_range:g}..{self.obstacle_max_range:g} m, "
             f"raytrace {self.raytrace_min_range:g}..{self.raytrace_max_range:g} m")
        if self.is_voxel:
            s += (f", {self.z_voxels} voxels of {self.z_resolution:g} m from z={self.origin_z:g}, "
                  f"mark_threshold {self.mark_threshold}")
        return s


def find_costmap_config(path: str | os.PathLike | None = None, package: str = "moadepth_ros") -> Path:
    """The Nav2 params file to read: ``path`` as given when it exists, else (relative paths only) the
    same name in this source tree, in ``<prefix>/share/<package>/`` of this Python's install, and
    in every ``AMENT_PREFIX_PATH`` entry's ``share/<package>/`` (where ``config/`` is installed,
    as ``FindPackageShare`` finds it for the launch files). ``None`` is the shipped default.
    """
    import sys

    given = Path(DEFAULT_COSTMAP_CONFIG if path is None else path)
    if given.is_file() or given.is_absolute():
        if not given.is_file():
            raise ConfigError(f"Nav2 params file {given} does not exist")
        return given
    roots = [Path(__file__).resolve().parents[2], Path(sys.prefix) / "share" / package]
    roots += [Path(p) / "share" / package for p in os.environ.get("AMENT_PREFIX_PATH", "").split(os.pathsep) if p]
    for root in roots:
        if (root / given).is_file():
            return root / given
    raise ConfigError(f"Nav2 params file {given} does not exist here, in the source tree or in the installed "
                      f"share/{package} (looked in {', '.join(str(r) for r in roots)})")


def _layer_type(plugin: Any) -> str | None:
    name = str(plugin).replace("/", "::").rsplit("::", 1)[-1]
    return name if name in _LAYER_TYPES else None


def _costmaps(node: Any, trail: tuple[str, ...] = ()):
    """(trail of keys, mapping) of every mapping holding a ``plugins`` list, depth first in file order."""
    if isinstance(node, dict):
        if isinstance(node.get("plugins"), list):
            yield trail, node
        for k, v in node.items():
            yield from _costmaps(v, (*trail, str(k)))


def _number(path, where: str, value: Any, kind=float) -> Any:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (kind is int and not isinstance(value, int)):
        raise ConfigError(f"{path}: {where} is {value!r}, not a {'whole ' if kind is int else ''}number")
    return kind(value)


def load_costmap_params(path: str | os.PathLike = DEFAULT_COSTMAP_CONFIG, layer: str | None = None,
                        source: str | None = None) -> CostmapParams:
    """Read the obstacle/voxel layer (and its observation source) of the Nav2 params file ``path``."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"Nav2 params file {path} does not exist")
    try:
        doc = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        where = getattr(exc, "problem_mark", None)
        at = f" at line {where.line + 1}" if where is not None else ""
        raise ConfigError(f"Nav2 params file {path} is not valid YAML{at}") from exc
    notes: list[str] = []
    found: list[tuple[tuple[str, ...], dict, str, dict, str]] = []
    for trail, costmap in _costmaps(doc):
        for name in costmap["plugins"]:
            cfg = costmap.get(str(name))
            kind = _layer_type(cfg.get("plugin")) if isinstance(cfg, dict) else None
            if kind and (layer is None or str(name) == layer):
                found.append((trail, costmap, str(name), cfg, kind))
    if not found:
        what = f"a layer named {layer!r} of type ObstacleLayer or VoxelLayer" if layer else \
            "ObstacleLayer or VoxelLayer plugin (nav2_costmap_2d::ObstacleLayer or ::VoxelLayer) in any plugins list"
        raise ConfigError(f"Nav2 params file {path} has no {what}")
    trail, costmap, name, cfg, kind = found[0]
    if len(found) > 1:
        others = ", ".join(f"{'.'.join(t[:1]) or 'root'}/{n}" for t, _, n, _, _ in found[1:])
        notes.append(f"used layer {name!r} under {'.'.join(trail) or 'the root'}; also found {others}")
    raw_sources = cfg.get("observation_sources", "")
    names = raw_sources.split() if isinstance(raw_sources, str) else [str(s) for s in raw_sources or []]
    if not names:
        raise ConfigError(f"Nav2 params file {path}: layer {name!r} names no observation_sources")
    missing = [s for s in names if not isinstance(cfg.get(s), dict)]
    usable = [s for s in names if s not in missing and cfg[s].get("marking", True) is not False]
    if source is not None:
        if source not in names or source in missing:
            raise ConfigError(f"Nav2 params file {path}: layer {name!r} has no observation source {source!r} "
                              f"(its sources: {', '.join(names)})")
        src_name = source
    elif usable:
        src_name = usable[0]
        if len(usable) > 1:
            notes.append(f"used observation source {src_name!r} of {', '.join(usable)}")
    else:
        raise ConfigError(f"Nav2 params file {path}: layer {name!r} has no marking observation source with "
                          f"parameters (it names {', '.join(names)})")
    src = cfg[src_name]
    kw: dict[str, Any] = {}

    def num(table: dict, key: str, where: str, kind=float, alias: str | None = None):
        for k in (key, alias):
            if k and k in table:
                kw[where] = _number(path, f"{name}.{'' if table is cfg else src_name + '.'}{k}", table[k], kind)
                return

    num(costmap, "resolution", "resolution")
    if "resolution" in kw and kw["resolution"] <= 0:
        raise ConfigError(f"{path}: resolution {kw['resolution']} must be positive")
    num(src, "min_obstacle_height", "min_obstacle_height")
    num(src, "max_obstacle_height", "max_obstacle_height")
    if "max_obstacle_height" not in kw:
        notes.append(f"observation source {src_name!r} sets no max_obstacle_height: Nav2's default 0.0 keeps "
                     "only points at or below 0 m")
    num(cfg, "min_obstacle_height", "layer_min_obstacle_height")
    num(cfg, "max_obstacle_height", "layer_max_obstacle_height")
    num(src, "obstacle_min_range", "obstacle_min_range")
    num(src, "obstacle_max_range", "obstacle_max_range", alias="obstacle_range")
    num(src, "raytrace_min_range", "raytrace_min_range")
    num(src, "raytrace_max_range", "raytrace_max_range", alias="raytrace_range")
    for flag in ("marking", "clearing"):
        if flag in src:
            if not isinstance(src[flag], bool):
                raise ConfigError(f"{path}: {name}.{src_name}.{flag} is {src[flag]!r}, not true or false")
            kw[flag] = src[flag]
    if kind == "VoxelLayer":
        num(cfg, "origin_z", "origin_z")
        num(cfg, "z_resolution", "z_resolution")
        num(cfg, "z_voxels", "z_voxels", kind=int)
        num(cfg, "mark_threshold", "mark_threshold", kind=int)
        if not 1 <= kw.get("z_voxels", 10) <= VOXEL_BITS:
            raise ConfigError(f"{path}: {name}.z_voxels {kw['z_voxels']} must be 1..{VOXEL_BITS} (Nav2's voxel grid)")
        if kw.get("z_resolution", 0.2) <= 0:
            raise ConfigError(f"{path}: {name}.z_resolution {kw['z_resolution']} must be positive")
        if kw.get("mark_threshold", 0) < 0:
            raise ConfigError(f"{path}: {name}.mark_threshold {kw['mark_threshold']} must not be negative")
    for lo, hi in (("obstacle_min_range", "obstacle_max_range"), ("raytrace_min_range", "raytrace_max_range")):
        a, b = kw.get(lo, CostmapParams.__dataclass_fields__[lo].default), \
            kw.get(hi, CostmapParams.__dataclass_fields__[hi].default)
        if a < 0 or b < a:
            raise ConfigError(f"{path}: {name}.{src_name}.{lo} {a} and {hi} {b} must satisfy 0 <= min <= max")
    return CostmapParams(path=str(path), plugin=kind, layer=name, source=src_name, notes=tuple(notes), **kw)
