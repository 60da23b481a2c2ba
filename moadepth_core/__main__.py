import sys

from moadepth_core.cli import main

sys.exit(main())
