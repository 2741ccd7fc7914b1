"""Several processes on one job, as ``torchrun`` launches them: join the group, share out work, gather, agree.

``torchrun`` sets ``RANK``/``WORLD_SIZE``/``LOCAL_RANK``/``MASTER_ADDR``/``MASTER_PORT`` for every process; without
them (or with ``WORLD_SIZE=1``) there is one process, no process group, and every helper here is the identity.  CUDA
processes use NCCL and GPU ``LOCAL_RANK``, CPU processes gloo.  Training's DDP (:mod:`darknet_torch.train.
distributed`) and the sharded ``detect``/``map`` (:mod:`darknet_torch.detect.sharding`,
:mod:`darknet_torch.evaluate.sharding`) build on this module; it needs nothing but torch.
"""
from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TypeVar

import torch
import torch.distributed as dist

from darknet_torch.errors import DarknetError
from darknet_torch.openmp import available_cores
from darknet_torch.runtime import select_device

T = TypeVar("T")


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

    Under torchrun with CUDA, each process takes GPU ``LOCAL_RANK`` (``device_name`` may only say ``cuda``/``auto``);
    CPU processes get :func:`cpu_threads_per_process` threads unless ``OMP_NUM_THREADS`` is set.
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
    elif "OMP_NUM_THREADS" not in os.environ:
        torch.set_num_threads(cpu_threads_per_process(int(os.environ.get("LOCAL_WORLD_SIZE", world))))
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo", rank=rank, world_size=world)
    return DistContext(rank, world, local_rank, device)


def cpu_threads_per_process(local_world_size: int) -> int:
    """This machine's cores (those this process may run on) shared evenly by the processes on it, at least one."""
    return max(1, available_cores() // max(1, local_world_size))


def shutdown(ctx: DistContext) -> None:
    if ctx.enabled and dist.is_initialized():
        dist.destroy_process_group()


def barrier(ctx: DistContext) -> None:
    if ctx.enabled:
        dist.barrier()


def broadcast_value(value: float, ctx: DistContext) -> float:
    """Rank 0's ``value`` on every rank (e.g. the mAP only rank 0 computed)."""
    if not ctx.enabled:
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return float(box[0])


def max_over_ranks(value: int, ctx: DistContext) -> int:
    """The largest ``value`` of all ranks, on every rank (e.g. an exit status: any rank's failure fails the job)."""
    if not ctx.enabled:
        return value
    box = torch.tensor([value], dtype=torch.int64, device=ctx.device)
    dist.all_reduce(box, op=dist.ReduceOp.MAX)
    return int(box.item())


def batch_shard(count: int, batch_size: int, ctx: DistContext) -> list[int]:
    """The input indices (of ``0..count-1``) this rank processes: batch k of ``batch_size`` consecutive inputs goes
    to rank ``k % world_size``.

    Whole batches, not single images, so that every image is in the very batch (same neighbours, same position,
    same size) it has in a one-process run: the network's float results can depend on the batch, and sharding must
    not change a single digit.  Batches alternate between ranks, which evens out folders of large and small images.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    return [i for i in range(count) if (i // batch_size) % ctx.world_size == ctx.rank]


#: Marks an input no rank has reported (None is a legitimate value).
_MISSING = object()


def gather_in_input_order(indexed: Sequence[tuple[int, T]], count: int, ctx: DistContext) -> list[T] | None:
    """Every rank's ``(input index, value)`` pairs as one list of values in input order, on rank 0; None elsewhere.

    Together the ranks must cover ``0..count-1`` exactly once (:func:`batch_shard` does).  Not distributed: the
    values of ``indexed`` in index order.
    """
    pairs = gather_lists(indexed, ctx)
    if pairs is None:
        return None
    ordered: list = [_MISSING] * count
    for index, value in pairs:
        if ordered[index] is not _MISSING:
            raise RuntimeError(f"input {index} was processed by two ranks")
        ordered[index] = value
    missing = [index for index, value in enumerate(ordered) if value is _MISSING]
    if missing:
        raise RuntimeError(f"input {missing[0]} was processed by no rank")
    return ordered


def gather_lists(items: Sequence[T], ctx: DistContext) -> list[T] | None:
    """Every rank's ``items`` concatenated in rank order, on rank 0; None elsewhere (``list(items)`` alone)."""
    if not ctx.enabled:
        return list(items)
    parts: list[list[T]] | None = [[] for _ in range(ctx.world_size)] if ctx.is_main else None
    dist.gather_object(list(items), parts, dst=0)
    return None if parts is None else [item for part in parts for item in part]

