"""Running code in several CPU processes joined by gloo, for the scale-out tests: whole commands under torchrun,
or a function in forked processes (torch stays imported, so a case takes about a second instead of torchrun's ten)."""
from __future__ import annotations

import multiprocessing
import os
import subprocess
import sys
import traceback
from datetime import timedelta
from pathlib import Path
from typing import Callable, TypeVar

import torch
import torch.distributed as dist

from darknet_torch.distributed import DistContext

REPO_ROOT = Path(__file__).resolve().parents[1]
T = TypeVar("T")


def torchrun(args: list[str], processes: int = 2, timeout: float = 600, cwd: Path | None = None
             ) -> subprocess.CompletedProcess[str]:
    """``python -m torch.distributed.run --standalone --nproc_per_node=PROCESSES -m darknet_torch ARGS`` with this
    checkout first on the path, one thread per process, and a free port (``--standalone``)."""
    path = os.pathsep.join(p for p in (str(REPO_ROOT), os.environ.get("PYTHONPATH")) if p)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": path}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}",
               "-m", "darknet_torch", *args]
    return subprocess.run(command, env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout)


def in_forked_ranks(work: Callable[[DistContext], T], store: Path, processes: int = 2,
                    timeout: float = 120) -> list[T]:
    """``work(ctx)`` in ``processes`` forked CPU processes joined in a gloo group (rendezvous: a file at ``store``,
    which must not exist); the return values in rank order.  A rank's exception fails the call with its traceback."""
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    ranks = [context.Process(target=_rank_main, args=(work, rank, processes, store, queue))
             for rank in range(processes)]
    for process in ranks:
        process.start()
    try:
        values: dict[int, T] = {}
        for _ in ranks:
            rank, error, value = queue.get(timeout=timeout)
            if error is not None:
                raise AssertionError(f"rank {rank} failed:\n{error}")
            values[rank] = value
        return [values[rank] for rank in range(processes)]
    finally:
        for process in ranks:
            process.join(timeout=10)
            if process.is_alive():
                process.kill()


def _rank_main(work: Callable[[DistContext], T], rank: int, processes: int, store: Path,
               queue: multiprocessing.Queue) -> None:
    torch.set_num_threads(1)  # the parent's OpenMP thread pool does not survive the fork
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=processes,
                            timeout=timedelta(seconds=60))
    try:
        queue.put((rank, None, work(DistContext(rank, processes))))
    except BaseException:  # noqa: B902 - reported to the parent, which fails the test
        queue.put((rank, traceback.format_exc(), None))
    finally:
        dist.destroy_process_group()
