"""Thin helpers over torch.distributed: the loop works the same with one process or many (DDP)."""

from __future__ import annotations

import os

import torch
import torch.distributed as dist


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized()


def rank() -> int:
    return dist.get_rank() if is_distributed() else 0


def world_size() -> int:
    return dist.get_world_size() if is_distributed() else 1


def is_main_process() -> bool:
    return rank() == 0


def device_type(requested: str = "auto") -> str:
    """The kind of device ``training.device`` names here (``auto``: CUDA when there is one), without checking
    that it exists: a start-up check can then give its own short error."""
    if requested == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(requested).type


def local_device(requested: str = "auto") -> torch.device:
    """``auto``: this rank's CUDA device when there is one, else CPU."""
    if requested == "auto":
        if device_type(requested) == "cuda":
            return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
        return torch.device("cpu")
    device = torch.device(requested)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("training.device is 'cuda' but no CUDA device is available")
    return device


def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    if is_distributed():
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def barrier() -> None:
    if is_distributed():
        dist.barrier()
