"""``bag_eval``'s costmap, map and temporal evaluation: whether it runs (the bag's /tf, the Nav2 layer,
the uncertainty filter), its pictures and its summary line. The work itself is
:mod:`moadepth_core.evaluation.nav_eval`.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

from moadepth_core.data.rosbag.source import BagSource
from moadepth_core.errors import DataError
from moadepth_core.evaluation import nav_eval, report


def node_default(name: str) -> float:
    """depth_node's default for parameter ``name``: read from its parameter table, never copied."""
    try:
        from moadepth_ros.node.parameters import BY_NAME
    except ImportError as exc:
        raise DataError(f"cannot read depth_node's default {name} without the ROS message packages ({exc}); "
                        f"pass --{name.replace('_', '-')}") from None
    return float(BY_NAME[name].default)


def sweep_values(text: str | None) -> list[float]:
    """The thresholds of ``--uncertainty-sweep`` (none without the flag, the default list without a value)."""
    if text is None:
        return []
    if text == "default":
        return list(nav_eval.DEFAULT_SWEEP)
    try:
        vals = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise DataError(f"--uncertainty-sweep {text!r} is not a comma-separated list of numbers") from None
    if not vals or any(not (math.isfinite(v) and v >= 0) for v in vals):
        raise DataError(f"--uncertainty-sweep {text!r} needs non-negative numbers (use "
                        f"{nav_eval.FILTER_OFF:g} for the filter off)")
    return vals


def plan_nav(args, source: BagSource, has_uncertainty: bool, uncertainty_source: str | None
             ) -> tuple[nav_eval.NavEvaluation | None, list | None]:
    """The costmap evaluation to run, or (None, None) after printing the one line that says why not.

    With ``--costmap`` (or ``--uncertainty-sweep``) every reason not to run is an error instead.
    """
    from moadepth_core.data.rosbag.tf_buffer import read_bag_tf
    from moadepth_core.errors import MoadepthError
    from moadepth_core.evaluation.nav2_params import find_costmap_config, load_costmap_params

    asked = args.costmap or args.uncertainty_sweep is not None
    n = len(source) if args.max_frames is None else min(len(source), max(int(args.max_frames), 0))
    try:
        tf = read_bag_tf(args.bag)
        poses = nav_eval.frame_poses(tf, args.fixed_frame,
                                     [(source.stamp_ns(i), source.frame_id(i)) for i in range(n)])
        why = nav_eval.check_poses(poses, tf, args.fixed_frame)
        if why is None:
            params = load_costmap_params(find_costmap_config(args.costmap_config))
    except MoadepthError as exc:
        if asked or args.costmap_config:
            raise
        why = str(exc)
    if why is not None:
        why = why.rstrip(".")
        if asked:
            raise DataError(f"cannot compute the costmap: {why}")
        print(f"costmap, map and temporal evaluation skipped: {why} (pass --costmap to make this an error)",
              file=sys.stderr)
        return None, None
    sweep = sweep_values(args.uncertainty_sweep)
    if args.max_uncertainty is not None:
        max_unc = args.max_uncertainty
    else:
        max_unc = node_default("max_uncertainty") if has_uncertainty else math.inf
    if (sweep or args.max_uncertainty is not None) and not has_uncertainty:
        raise DataError(f"{'--uncertainty-sweep' if sweep else '--max-uncertainty'} needs the prediction's "
                        f"uncertainty: record the node's depth/confidence next to {args.prediction_topic} "
                        "(or pass --confidence-topic)")
    nav = nav_eval.NavEvaluation(params, poses, args.fixed_frame, stride=args.costmap_stride,
                                 max_uncertainty=max_unc, sweep=sweep, uncertainty_source=uncertainty_source,
                                 reference=f"{source.depth_topic} (registered into the image camera)")
    print(f"costmap: {params.describe()}; fixed frame {args.fixed_frame}", file=sys.stderr)
    return nav, poses


def nav_results(nav: nav_eval.NavEvaluation, baseline: dict, out: Path) -> dict:
    """The nav_eval summary, and its pictures written into ``out``."""
    res = nav.summary(constant_depth_m=baseline.get("depth_m"))
    g = nav.grids()
    files = {"costmap": "costmap.png"}
    report.plot_costmap(g["reference"], g["node"], g["grid"].origin, g["grid"].resolution, out / "costmap.png",
                        trajectory=g["trajectory"],
                        title=f"accumulated costmap (marking and clearing) in {nav.fixed_frame}")
    if "unfiltered" in g:
        report.plot_costmap(g["reference"], g["unfiltered"], g["grid"].origin, g["grid"].resolution,
                            out / "costmap_unfiltered.png", trajectory=g["trajectory"],
                            labels=("reference", "node without the uncertainty filter"))
        files["costmap_unfiltered"] = "costmap_unfiltered.png"
    if "uncertainty_sweep" in res:
        report.plot_uncertainty_sweep(res["uncertainty_sweep"], out / "uncertainty_sweep.png",
                                      default=res["costmap"]["max_uncertainty"])
        files["uncertainty_sweep"] = "uncertainty_sweep.png"
    res["costmap"]["files"] = files
    return res


def costmap_line(c: dict) -> str:
    def f(v) -> str:
        return "undefined" if v is None else f"{v:.3f}"

    acc = c.get("accumulated", {})
    filt = "no filter" if c.get("max_uncertainty") is None else f"max_uncertainty {c['max_uncertainty']:g}"
    return (f"costmap per frame ({filt}): iou {f(c['iou'])}  precision {f(c['precision'])}  recall "
            f"{f(c['recall'])}  phantom {f(c['phantom_cells_per_frame'])}  missed {f(c['missed_cells_per_frame'])} "
            f"cells/frame; accumulated: iou {f(acc.get('iou'))}  precision {f(acc.get('precision'))}  recall "
            f"{f(acc.get('recall'))}")
