"""Multi-GPU and multi-node training through ``torch.distributed`` (DDP), launched by ``torchrun``.

Darknet's ``-gpus 0,1,...`` gives *every* GPU the cfg's whole ``batch`` per iteration (so one iteration trains
``batch * ngpus`` images), multiplies the learning rate by the number of GPUs and averages the GPUs' weights.  We keep
that meaning: each process trains ``batch`` images per iteration on its own share of the data, DDP averages the
gradients and the optimizer uses ``lr = rate * world_size / batch`` (see :mod:`darknet_torch.train.optim`), which is
Darknet's step on the sum of all processes' gradients.  ``seen`` in saved weights stays ``iteration * batch`` as
Darknet's first GPU writes it.  Only rank 0 evaluates, draws and saves; every rank reads the same state on resume
(multi-node runs need ``backup`` on a shared file system).

Launch: ``torchrun --nproc_per_node=4 train.py --data obj.data --cfg x.cfg`` (one node), or add
``--nnodes=N --node_rank=R --master_addr=HOST --master_port=PORT`` on each node.  CUDA processes use NCCL and the GPU
``LOCAL_RANK``; CPU processes use gloo.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from darknet_torch.errors import DarknetError
from darknet_torch.runtime import select_device


@dataclass(frozen=True)
class DistContext:
    """This process's place in the job; ``world_size == 1`` means no process group."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def launched_by_torchrun() -> bool:
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def init_distributed(device_name: str | None = None) -> DistContext:
    """Join the process group torchrun set up (``RANK``/``WORLD_SIZE``/``LOCAL_RANK``), or a single-process context.

    Under torchrun with CUDA, each process takes GPU ``LOCAL_RANK`` (``device_name`` may only say ``cuda``/``auto``).
    """
    if not launched_by_torchrun():
        return DistContext(device=select_device(device_name))
    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = select_device(device_name)
    if device.type == "cuda":
        if device_name not in (None, "", "auto", "cuda"):
            raise DarknetError(f"--device {device_name}: under torchrun each process uses GPU LOCAL_RANK; "
                               f"pass --device cuda (or nothing) and choose GPUs with CUDA_VISIBLE_DEVICES")
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo", rank=rank, world_size=world)
    return DistContext(rank, world, local_rank, device)


def shutdown(ctx: DistContext) -> None:
    if ctx.enabled and dist.is_initialized():
        dist.destroy_process_group()


def wrap_model(module: nn.Module, ctx: DistContext) -> nn.Module:
    """DDP around ``module`` when distributed (it broadcasts rank 0's parameters and buffers), else ``module``."""
    if not ctx.enabled:
        return module
    device_ids = [ctx.device.index] if ctx.device.type == "cuda" else None
    return DistributedDataParallel(module, device_ids=device_ids)


def barrier(ctx: DistContext) -> None:
    if ctx.enabled:
        dist.barrier()


def mean_over_ranks(value: torch.Tensor, ctx: DistContext) -> torch.Tensor:
    """Average of a tensor across processes (for displaying the loss); the tensor itself when not distributed."""
    if not ctx.enabled:
        return value
    value = value.clone()
    dist.all_reduce(value)
    return value / ctx.world_size


def broadcast_value(value: float, ctx: DistContext) -> float:
    """Rank 0's ``value`` on every rank (e.g. the mAP only rank 0 computed)."""
    if not ctx.enabled:
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return float(box[0])
