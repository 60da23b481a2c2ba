"""moadepth benchmark suite (issue 6): prints a table, writes bench-results.json at the repo root.

Why a script and not tests: speed depends on the machine, so targets live here as
measured figures beside the CPU model and thread count, never as timed assertions.
Every figure is the median of repeated runs. Weights are random (nothing can be
downloaded here, and speed does not depend on the values). Results and their history:
docs/PERFORMANCE.md.

Run it as ``python scripts/bench`` (``make bench``). One module per stage, each bounded (the whole
default suite stays well under 10 minutes):
  forward     network forward, torch / ONNX Runtime / torch_compile (and CUDA when present)
  pack        image/depth conversions and depth -> filled PointCloud2, ours vs ``pointcloud2``
  train       training throughput (images/s)
  peer        Depth Anything V2 Small architecture, same threads
  transport   DDS transport alone between two rclpy processes
  node        depth_node over DDS on loopback (stages node, node_compiled, node_onnxruntime_int8, and on
              request node_latest, node_torch, node_onnxruntime); node_run.py drives it
  node_start  depth_node's first start on a new checkpoint and its next start on the same one
  soak        (--soak only) issue 7: 2,000 frames at max rate through the node
suite.py parses the arguments and runs the stages, report.py prints the table.
"""

import os
import random
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

# Network rule (docs/INSTALL.md): DDS discovery stays on this machine, one domain per run.
# Set on import, before rclpy is imported anywhere; inherited by every process the bench starts.
os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
os.environ.setdefault("ROS_DOMAIN_ID", str(random.SystemRandom().randint(1, 100)))
# The camera side of the node run is this process: same large-message transport as depth_node.
from moadepth_ros.node import transport  # noqa: E402

transport.use_large_data_profile()
