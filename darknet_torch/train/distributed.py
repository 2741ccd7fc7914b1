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
``LOCAL_RANK``; CPU processes use gloo (process group and collectives: :mod:`darknet_torch.distributed`).
"""
from __future__ import annotations

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from darknet_torch.distributed import DistContext


def wrap_model(module: nn.Module, ctx: DistContext) -> nn.Module:
    """DDP around ``module`` when distributed (it broadcasts rank 0's parameters and buffers), else ``module``."""
    if not ctx.enabled:
        return module
    device_ids = [ctx.device.index] if ctx.device.type == "cuda" else None
    return DistributedDataParallel(module, device_ids=device_ids)


def mean_over_ranks(value: torch.Tensor, ctx: DistContext) -> torch.Tensor:
    """Average of a tensor across processes (for displaying the loss); the tensor itself when not distributed."""
    if not ctx.enabled:
        return value
    value = value.clone()
    dist.all_reduce(value)
    return value / ctx.world_size
