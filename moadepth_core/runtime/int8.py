"""int8 graphs from fp32 ones, with ONNX Runtime's dynamic quantiser. No torch here: the node's
first start quantises in a child that never imports it (``runtime.loader``).

What: every MatMul/Gemm gets int8 weights (per output channel, signed) and activations quantised at
run time (``DynamicQuantizeLinear`` + ``MatMulInteger``). Why dynamic: no calibration set is needed,
so any checkpoint converts as it loads. Convolutions (the decoder) stay fp32: ORT cannot quantise
ones whose weights are computed in the graph, and they are a small share of the time. Per channel:
CLIP's linears have outlier output channels, where one scale per tensor loses the small ones.
Why 7-bit weights (``reduce_range``): on x86 CPUs without VNNI (AVX2 only), ONNX Runtime's u8 x s8
kernel sums pairs of products into int16 and saturates; on a 2-core AMD EPYC without AVX-512 the
int8 depth then drifted 1.6e-3 (median relative) from fp32 against 1e-4 to 4e-4 with 7-bit weights,
which ONNX Runtime's documentation recommends for such CPUs. One graph for every CPU keeps the
cache and the numbers the same across machines.
"""

from __future__ import annotations

import hashlib
import tempfile
from pathlib import Path

from moadepth_core.errors import quiet_root_logger


def quantize_file(src: Path, dst: Path) -> None:
    """Write to ``dst`` the fp32 graph in ``src`` quantised to int8 (the quantiser reads and writes paths)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    with quiet_root_logger():
        quantize_dynamic(Path(src), Path(dst), op_types_to_quantize=["MatMul", "Gemm"], per_channel=True,
                         reduce_range=True, weight_type=QuantType.QInt8)


def quantize_bytes(onnx_bytes: bytes) -> bytes:
    """:func:`quantize_file` for a graph held in memory (through a temporary folder)."""
    with tempfile.TemporaryDirectory(prefix="moadepth-int8-") as tmp:
        src, dst = Path(tmp) / "fp32.onnx", Path(tmp) / "int8.onnx"
        src.write_bytes(onnx_bytes)
        quantize_file(src, dst)
        return dst.read_bytes()


def int8_graph_file(fp32_graph: Path) -> Path:
    """The cache file for the int8 graph quantised from the cached fp32 graph ``fp32_graph``: keyed by
    that graph's own key, so a process without the network (or torch) can find or make it."""
    key = hashlib.sha256(f"{fp32_graph.name} int8 reduce_range".encode()).hexdigest()[:16]
    return fp32_graph.parent / f"moadepth-{key}.onnx"
