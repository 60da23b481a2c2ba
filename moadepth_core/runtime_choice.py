"""Which precision and backend ``auto`` means on this machine, decided without importing torch
where the answer does not need it.

Why torch-free: importing torch (and open_clip) costs a process about 750 MB of resident memory and
3-4 s on the 2-core build machine (docs/PERFORMANCE.md, round eight). A CPU-only robot that finds
its ONNX Runtime graph cached never runs a torch op, so it should not pay for the import just to
learn that there is no GPU and no bf16 hardware. Where the answer might need torch (a CUDA driver
is installed, or the CPU's features cannot be read), torch decides, as before.
"""

from __future__ import annotations

import ctypes
import platform
import sys
from pathlib import Path

CPU_INFO = Path("/proc/cpuinfo")


def _x86_linux_cpu_flags(cpuinfo: Path = CPU_INFO) -> set[str] | None:
    """The kernel's CPU feature flags on x86 Linux; None elsewhere or when unreadable."""
    if sys.platform != "linux" or platform.machine().lower() not in ("x86_64", "amd64", "i686", "i386"):
        return None
    try:
        with cpuinfo.open() as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        return None
    return None


def cpu_has_native_bf16() -> bool:
    """True where the CPU multiplies bf16 in hardware (AVX512-BF16 or AMX-BF16).

    Read from /proc/cpuinfo on x86 Linux (the same CPUID bits torch reports, checked against
    ``torch.cpu.get_capabilities()`` in the tests); elsewhere torch is asked.
    """
    flags = _x86_linux_cpu_flags()
    if flags is not None:
        return "avx512_bf16" in flags or "amx_bf16" in flags
    import torch

    try:
        caps = torch.cpu.get_capabilities()
    except (AttributeError, RuntimeError):  # older torch, or a CPU it cannot query
        return False
    return bool(caps.get("avx512_bf16") or caps.get("amx_bf16"))


def cuda_certainly_absent() -> bool:
    """True when no CUDA driver can be loaded (Linux), so torch could not see a GPU either.

    False means "maybe": a driver is installed, or this is not Linux; torch must then decide.
    """
    if sys.platform != "linux":
        return False
    try:
        ctypes.CDLL("libcuda.so.1")
    except OSError:
        return True
    return False


def _device_type(device) -> str:
    """"cpu" / "cuda" from a torch.device or a string such as "cuda:1"."""
    return getattr(device, "type", None) or str(device).split(":", 1)[0]


def choose_precision(precision: str, device, backend: str = "torch") -> str:
    """The concrete precision for ``auto`` (others pass through): the fastest this hardware runs natively.

    CUDA: bf16 where the GPU supports it, else fp16. CPU: bf16 with AVX512-BF16/AMX, else fp32.
    Backend onnxruntime: fp32; its int8 is never chosen for you, since it changes the depth a little.
    ``device``: a torch.device or its name.
    """
    if precision != "auto":
        return precision
    if backend == "onnxruntime":
        return "fp32"
    if _device_type(device) == "cuda":
        import torch

        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return "bf16" if cpu_has_native_bf16() else "fp32"


def choose_backend(backend: str, device, precision: str) -> str:
    """The concrete backend for ``auto`` (others pass through), given the concrete precision.

    ONNX Runtime for fp32 and int8 on the CPU: at fp32 it computes torch's numbers (parity 1e-4,
    tested) 1.3-2x faster on both build CPUs (docs/PERFORMANCE.md). torch for bf16/fp16 and CUDA.
    ``torch_compile`` is never automatic: it needs a C++ compiler and compiles for tens of seconds.
    """
    if backend != "auto":
        return backend
    return "onnxruntime" if _device_type(device) == "cpu" and precision in ("fp32", "int8") else "torch"


def cpu_runtime_without_torch(device: str, precision: str, backend: str) -> tuple[str, str] | None:
    """(precision, backend) with every ``auto`` decided, when ``device`` is certainly the CPU;
    None when only torch can tell (``device`` cuda, or auto with a CUDA driver installed).

    The same rules as ``inference.resolve_runtime``, which calls the same two functions.
    """
    if device not in ("cpu", "auto") or (device == "auto" and not cuda_certainly_absent()):
        return None
    prec = choose_precision(precision, "cpu", "torch" if backend == "auto" else backend)
    return prec, choose_backend(backend, "cpu", prec)
