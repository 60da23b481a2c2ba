"""`moadepth`: one command, a subcommand per job; each subcommand is a module with ``main(argv)``."""

from __future__ import annotations

import importlib
import logging
import sys
from collections.abc import Sequence

COMMANDS = {
    "summary": ("moadepth_core.cli.summary", "parameter counts per part of the network"),
    "synth": ("moadepth_core.cli.synth", "procedural RGB-D scenes with exact depth (folder and rosbag2)"),
    "train": ("moadepth_core.cli.train", "train or fine-tune (CPU, one GPU, or torchrun DDP)"),
    "evaluate": ("moadepth_core.cli.evaluate", "NYU-protocol metrics on a dataset"),
    "predict": ("moadepth_core.cli.predict", "depth .npy + colourised PNG per image"),
    "export": ("moadepth_core.cli.export", "ONNX export, checked against torch"),
}


def usage() -> str:
    lines = ["usage: moadepth COMMAND [options]   (moadepth COMMAND --help for details)", "", "commands:"]
    lines += [f"  {name:10s} {doc}" for name, (_, doc) in COMMANDS.items()]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    # Our own messages at INFO; third-party libraries (open_clip logs at INFO on the root logger) quieter.
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("moadepth").setLevel(logging.INFO)
    if not argv or argv[0] in ("-h", "--help"):
        print(usage())
        return 0 if argv else 2
    if argv[0] == "--version":
        from moadepth_core import __version__
        print(f"moadepth {__version__}")
        return 0
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"moadepth: error: unknown command '{name}'\n\n{usage()}", file=sys.stderr)
        return 2
    module = importlib.import_module(COMMANDS[name][0])
    return int(module.main(rest) or 0)


if __name__ == "__main__":
    sys.exit(main())
