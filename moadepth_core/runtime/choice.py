"""Which precision and backend ``auto`` means on this machine, decided without importing torch
where the answer does not need it.

Why torch-free: importing torch and open_clip costs hundreds of MB and seconds (docs/PERFORMANCE.md).
A CPU-only robot that finds its ONNX Runtime graph cached never runs a torch op, so it should not pay
for the import just to learn that there is no GPU and no bf16 hardware. Where the answer might need
torch (a CUDA driver is installed, a device name to check, or CPU features that cannot be read),
torch is imported here, lazily: the one place in ``runtime/`` outside ``runtime/torch/`` that does.
"""

from __future__ import annotations

import ctypes
import os
import platform
import sys
from pathlib import Path

from moadepth_core.errors import ConfigError
from moadepth_core.runtime.onnx_session import ORT_PRECISIONS

CPU_INFO = Path("/proc/cpuinfo")
CPU_BF16_ENV = "MOADEPTH_CPU_BF16"  # "1" / "0": override what the CPU is read to say about native bf16


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


def cpu_bf16_facts() -> tuple[bool, str]:
    """(whether the CPU multiplies bf16 in hardware, where that answer came from): the one place
    every ``auto`` decision learns it.

    ``MOADEPTH_CPU_BF16=1`` or ``0`` overrides the hardware (a VM that hides the CPU flag, or to
    reproduce another machine's choice; the tests drive both answers through it). Otherwise it is
    read from /proc/cpuinfo on x86 Linux (AVX512-BF16 or AMX-BF16: the same CPUID bits torch
    reports, checked against ``torch.cpu.get_capabilities()`` in the tests); elsewhere torch is asked.
    """
    forced = os.environ.get(CPU_BF16_ENV, "").strip().lower()
    if forced:
        if forced not in ("0", "1", "true", "false", "yes", "no"):
            raise ConfigError(f"{CPU_BF16_ENV}={forced!r} is not a yes/no answer: use 1 (the CPU runs bf16 "
                              f"natively) or 0 (it does not), or unset it to read the CPU")
        return forced in ("1", "true", "yes"), f"{CPU_BF16_ENV}={forced}"
    flags = _x86_linux_cpu_flags()
    if flags is not None:
        return "avx512_bf16" in flags or "amx_bf16" in flags, "/proc/cpuinfo"
    import torch

    try:
        caps = torch.cpu.get_capabilities()
    except (AttributeError, RuntimeError):  # older torch, or a CPU it cannot query
        return False, "torch (CPU not queryable)"
    return bool(caps.get("avx512_bf16") or caps.get("amx_bf16")), "torch.cpu.get_capabilities()"


def cpu_has_native_bf16() -> bool:
    """True where the CPU multiplies bf16 in hardware (AVX512-BF16 or AMX-BF16); see cpu_bf16_facts."""
    return cpu_bf16_facts()[0]


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


def choose_precision(precision: str, device, backend: str = "auto") -> str:
    """The concrete precision for ``auto`` (others pass through).

    CUDA: bf16 where the GPU supports it, else fp16. CPU with backend auto or onnxruntime: fp32 on
    every CPU, even one with native bf16, where torch bf16 is no faster than ONNX Runtime fp32 at
    several times the memory and start time (docs/PERFORMANCE.md, "auto on a bf16 CPU").
    CPU with backend torch or torch_compile: bf16 where the CPU runs it natively, else fp32.
    int8 is never chosen for you, since it changes the depth a little.
    ``device``: a torch.device or its name.
    """
    if precision != "auto":
        return precision
    if _device_type(device) == "cuda":
        import torch

        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    if backend in ("auto", "onnxruntime"):
        return "fp32"
    return "bf16" if cpu_has_native_bf16() else "fp32"


def choose_backend(backend: str, device, precision: str) -> str:
    """The concrete backend for ``auto`` (others pass through), given the concrete precision.

    ONNX Runtime for fp32 and int8 on the CPU: at fp32 it computes torch's numbers (parity 1e-4,
    tested) as fast as or faster than torch on both build CPUs, without importing torch
    (docs/PERFORMANCE.md). torch for bf16/fp16 and CUDA. ``torch_compile`` is never automatic: it
    needs a C++ compiler and compiles for tens of seconds.
    """
    if backend != "auto":
        return backend
    return "onnxruntime" if _device_type(device) == "cpu" and precision in ORT_PRECISIONS else "torch"


def choose_cpu_runtime(device: str, precision: str, backend: str) -> tuple[str, str] | None:
    """(precision, backend) with every ``auto`` decided, when ``device`` is certainly the CPU;
    None when only torch can tell (``device`` cuda, or auto with a CUDA driver installed)."""
    if device not in ("cpu", "auto") or (device == "auto" and not cuda_certainly_absent()):
        return None
    prec = choose_precision(precision, "cpu", backend)
    return prec, choose_backend(backend, "cpu", prec)


def choose_runtime(device: str, precision: str, backend: str) -> tuple[str, str, str]:
    """(device, precision, backend) with every ``auto`` decided: what DepthEstimator runs. Precision
    first, then the backend from it: auto everywhere is fp32 + onnxruntime on every CPU and bf16 (or
    fp16) + torch on CUDA. torch is imported only where a GPU might be there, since only torch can
    tell (and check a device name such as cuda:1)."""
    cpu = choose_cpu_runtime(device, precision, backend)
    if cpu is not None:
        return ("cpu", *cpu)
    from moadepth_core.runtime.torch.device import choose_device

    dev = choose_device(device)
    prec = choose_precision(precision, dev, backend)
    return str(dev), prec, choose_backend(backend, dev, prec)


def explain_choice(device: str, precision: str, backend: str, chosen: tuple[str, str, str]) -> str:
    """One log line saying what runs and why, naming the CPU facts ``auto`` read and the way to change it."""
    dev, prec, be = chosen
    asked = f"device {device}, precision {precision}, backend {backend}"
    if "auto" not in (device, precision, backend):
        return f"runtime: {dev} {prec} on {be} ({asked}: as set)"
    if dev.startswith("cuda"):
        why = "a CUDA GPU is there: torch at its native half precision"
    else:
        native, source = cpu_bf16_facts()
        cpu = f"this CPU {'has' if native else 'has no'} native bf16 (per {source})"
        if be == "onnxruntime" and precision == "auto":
            why = (f"ONNX Runtime fp32 on every CPU, without torch; {cpu}"
                   + ("; torch bf16 is no faster there at ~3x the memory: precision bf16 selects it" if native else ""))
        elif precision == "auto":
            why = f"{cpu}, so auto precision with backend {be} is {prec}"
        else:
            why = f"{cpu}; backend {be} for {prec} on the CPU"
    return f"runtime: {dev} {prec} on {be} ({asked}: {why}; {CPU_BF16_ENV}=1 or 0 overrides the CPU's bf16 answer)"
