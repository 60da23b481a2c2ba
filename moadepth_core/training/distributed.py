"""DistributedDataParallel helpers: the whole of moadepth's DDP logic, so the trainer stays readable.

``torchrun`` sets RANK / WORLD_SIZE / LOCAL_RANK; without them everything here is a no-op and
the same trainer runs as one process. CPU uses gloo, CUDA uses nccl with one GPU per local rank.
"""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass

import torch
import torch.distributed as torch_dist

from moadepth_core.errors import DeviceError
from moadepth_core.runtime.torch.device import choose_device


@dataclass
class DistContext:
    """Where this process sits in the job and which device it drives."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        """Rank 0 alone logs, validates and writes files."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def _env_int(name: str, default: int) -> int:
    try:
        return int(os.environ.get(name, default))
    except ValueError:
        raise DeviceError(f"environment variable {name}={os.environ[name]!r} is not an integer") from None


def init_distributed(device: str = "auto") -> DistContext:
    """Join the process group when launched by torchrun; pick this rank's device."""
    world = _env_int("WORLD_SIZE", 1)
    rank, local_rank = _env_int("RANK", 0), _env_int("LOCAL_RANK", 0)
    dev = choose_device(device)
    if world <= 1:
        return DistContext(0, 1, 0, dev)
    if dev.type == "cuda":
        if local_rank >= torch.cuda.device_count():
            raise DeviceError(f"LOCAL_RANK {local_rank} has no GPU: torch sees {torch.cuda.device_count()}; "
                              f"use --nproc_per_node <= the number of GPUs")
        dev = torch.device("cuda", local_rank)
        torch.cuda.set_device(dev)
    backend = "nccl" if dev.type == "cuda" else "gloo"
    if not torch_dist.is_initialized():
        torch_dist.init_process_group(backend=backend, rank=rank, world_size=world,
                                      timeout=datetime.timedelta(minutes=60))
    return DistContext(rank, world, local_rank, dev)


def barrier(dist: DistContext) -> None:
    if dist.distributed and torch_dist.is_initialized():
        if dist.device.type == "cuda":
            torch_dist.barrier(device_ids=[dist.device.index])
        else:
            torch_dist.barrier()


def all_reduce_mean(value: float, dist: DistContext) -> float:
    """Mean of a scalar over ranks (loss logging); identity for one process."""
    if not dist.distributed:
        return float(value)
    t = torch.tensor([float(value)], dtype=torch.float64, device=dist.device)
    torch_dist.all_reduce(t)
    return float(t.item()) / dist.world_size


def broadcast_flag(flag: bool, dist: DistContext) -> bool:
    """Rank 0's decision (e.g. "the loss is NaN, stop") for every rank, so no rank hangs in a collective."""
    if not dist.distributed:
        return flag
    t = torch.tensor([1 if flag else 0], dtype=torch.int32, device=dist.device)
    torch_dist.all_reduce(t, op=torch_dist.ReduceOp.MAX)
    return bool(t.item())


def wrap_model(model: torch.nn.Module, dist: DistContext, find_unused_parameters: bool = False) -> torch.nn.Module:
    """DDP-wrap for a multi-process job (parameters are broadcast from rank 0 here)."""
    if not dist.distributed:
        return model
    from torch.nn.parallel import DistributedDataParallel

    ids = [dist.device.index] if dist.device.type == "cuda" else None
    return DistributedDataParallel(model, device_ids=ids, output_device=ids[0] if ids else None,
                                   find_unused_parameters=find_unused_parameters)


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    return getattr(model, "module", model)


def cleanup(dist: DistContext) -> None:
    if dist.distributed and torch_dist.is_initialized():
        torch_dist.destroy_process_group()
