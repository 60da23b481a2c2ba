"""`moadepth synth`: render a procedural RGB-D dataset (folder form, optionally a rosbag2)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from moadepth_core.data import synth
from moadepth_core.data.synth import SynthConfig, generate
from moadepth_core.errors import DataError, MoadepthError, cli_entry


def _build_parser() -> argparse.ArgumentParser:
    d = SynthConfig()
    p = argparse.ArgumentParser(prog="moadepth synth", description=synth.__doc__.split("\n\n")[0])
    p.add_argument("--out", required=True, help="output folder (must be new or empty)")
    p.add_argument("--frames", type=int, default=d.frames)
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--bag", action="store_true", help="also write a rosbag2 at OUT/bag")
    p.add_argument("--compressed", action="store_true",
                   help="record the bag's images as image_transport's compressed (JPEG, .../image_raw/compressed) "
                        "and depth as compressedDepth (16UC1 PNG, .../image_raw/compressedDepth); needs --bag")
    p.add_argument("--bag-storage", choices=["mcap", "sqlite3"], default="mcap")
    p.add_argument("--width", type=int, default=d.width)
    p.add_argument("--height", type=int, default=d.height)
    p.add_argument("--fx", type=float, default=d.fx)
    p.add_argument("--fy", type=float, default=d.fy)
    p.add_argument("--cx", type=float, default=None, help="default: image centre")
    p.add_argument("--cy", type=float, default=None, help="default: image centre")
    p.add_argument("--camera-height", type=float, default=d.camera_height, help="metres (robot mount)")
    p.add_argument("--camera-pitch", type=float, default=d.camera_pitch_deg,
                   help="degrees, negative looks down (robot mount)")
    p.add_argument("--free-poses", action="store_true", help="free 6-DoF poses instead of a robot mount")
    p.add_argument("--fps", type=float, default=d.fps, help="stamp rate in Hz")
    p.add_argument("--speed", type=float, default=d.speed, help="camera speed along the path, m/s")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


def _main(argv: Sequence[str] | None = None) -> int:
    args = _build_parser().parse_args(argv)
    cfg = SynthConfig(width=args.width, height=args.height, fx=args.fx, fy=args.fy, cx=args.cx, cy=args.cy,
                      camera_height=args.camera_height, camera_pitch_deg=args.camera_pitch,
                      free_poses=args.free_poses, frames=args.frames, seed=args.seed, fps=args.fps,
                      speed=args.speed)
    try:
        report = generate(cfg, args.out, bag=args.bag, progress=not args.quiet, bag_storage=args.bag_storage,
                          compressed=args.compressed)
    except MoadepthError:
        raise
    except OSError as exc:
        raise DataError(f"Could not write the dataset to {args.out}: {exc}.") from exc
    print(f"wrote {report['frames']} frames to {report['out_dir']} in {report['seconds']:.2f} s "
          f"({report['frames_per_second']:.1f} frames/s at {cfg.width}x{cfg.height})")
    return 0


main = cli_entry(_main, prog="moadepth synth")

if __name__ == "__main__":
    sys.exit(main())
