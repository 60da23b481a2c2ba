"""Entry point: ``python scripts/bench [options]`` (``make bench``), or ``python -m bench`` from scripts/."""

import sys
from pathlib import Path

if not __package__:  # run as a folder: sys.path[0] is this folder, so import the package from its parent
    sys.path[0] = str(Path(__file__).resolve().parent.parent)

from bench.suite import main  # noqa: E402

sys.exit(main())
