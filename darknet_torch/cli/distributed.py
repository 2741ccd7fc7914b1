"""Commands that scale out under ``torchrun`` (``detect``, ``map``): every process runs the command on its share."""
from __future__ import annotations

import argparse
import logging
from typing import Callable

from darknet_torch.distributed import DistContext, init_distributed, max_over_ranks, shutdown


def run_on_every_rank(command: Callable[[argparse.Namespace, DistContext], int], args: argparse.Namespace) -> int:
    """Join torchrun's process group on ``--device`` (one process without torchrun), run ``command`` and return the
    highest exit status of all processes, so that a failure on any of them fails every one.

    Only rank 0 logs information; the other ranks log warnings and errors."""
    ctx = init_distributed(args.device)
    if not ctx.is_main:
        root = logging.getLogger()
        root.setLevel(max(root.level, logging.WARNING))
    try:
        return max_over_ranks(command(args, ctx), ctx)
    finally:
        shutdown(ctx)
