"""``torchrun --nproc_per_node=K -m moadepth_core.train ...``: the DDP entry point users type.

The command itself lives in ``moadepth_core.cli.train``; this name stays because launch scripts and
docs call it (INTERFACES).
"""

import sys

from moadepth_core.cli.train import main

if __name__ == "__main__":
    sys.exit(main())
