"""DDP plumbing under ``torchrun``: the process group and each rank's device.

Imports: ``ptlearn.device``.
"""

from __future__ import annotations

import atexit
import os

import torch
import torch.distributed as dist

from ..device import get_device


def setup_distributed(device: str) -> tuple[int, int, int]:
    """(rank, world_size, local_rank) from torchrun's environment; starts the process group once."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return 0, 1, 0
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if not dist.is_initialized():
        use_cuda = device != "cpu" and torch.cuda.is_available()
        if use_cuda:
            torch.cuda.set_device(local_rank)
        dist.init_process_group("nccl" if use_cuda else "gloo")
        atexit.register(_destroy_process_group)
    return dist.get_rank(), dist.get_world_size(), local_rank


def _destroy_process_group() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def resolve_device(name: str, local_rank: int, world: int) -> torch.device:
    """ptlearn.device.get_device's choice; under torchrun each CUDA rank takes its own GPU."""
    device = get_device(name)
    if device.type == "cuda" and world > 1 and device.index is None:
        device = torch.device(f"cuda:{local_rank}")
    return device
