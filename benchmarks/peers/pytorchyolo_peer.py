"""The ``pytorchyolo`` peer as a long-lived subprocess in its venv, so its runs interleave with ours.

pytorchyolo parses cfgs with ``line.split("=")`` (no inline comments), so it gets the official Darknet cfgs from
``../shared/darknet/cfg`` rewritten by :func:`peer_cfg` (``[net]`` batch/subdivisions, and yolov3-tiny's second head
``mask = 1,2,3``, the mask the official weights were trained with).
"""
from __future__ import annotations

import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from peers.pytorchyolo_env import ensure_venv
from peers.worker_process import WorkerProcess

WORKER = Path(__file__).with_name("pytorchyolo_worker.py")


class PytorchyoloProcess(WorkerProcess):
    """``call(cmd, **arguments) -> dict`` runs one request in the worker (see pytorchyolo_worker.py)."""

    def __init__(self, threads: int, keep_freed_memory: bool = False) -> None:
        env = dict(os.environ)
        if keep_freed_memory:  # what darknet_torch.runtime.keep_freed_memory does in-process, via glibc's tunables
            env["GLIBC_TUNABLES"] = f"glibc.malloc.mmap_max=0:glibc.malloc.trim_threshold={1 << 30}"
        super().__init__([str(ensure_venv()), str(WORKER), str(threads)], env, "pytorchyolo")


class PeerSettings:
    """One pytorchyolo worker process per setting (its ``n_cpu`` loader processes, optionally glibc keeping freed
    memory), each offered to ``interleaved`` as a named run of one request; the benchmarks compare against the
    fastest."""

    def __init__(self, threads: int, n_cpus: list[int], keep_freed_memory: bool = False) -> None:
        variants = [False, True] if keep_freed_memory else [False]
        self.processes = {f"pytorchyolo n_cpu={n}" + (", glibc keeps freed memory" if keep else ""):
                          (PytorchyoloProcess(threads, keep), n) for keep in variants for n in n_cpus}

    def call_all(self, cmd: str, **arguments: Any) -> None:
        """The same request (e.g. ``load``) in every process."""
        for process, _ in self.processes.values():
            process.call(cmd, **arguments)

    def runs(self, cmd: str, on_answer: Callable[[str, dict], None],
             **arguments: Any) -> dict[str, Callable[[], float]]:
        """name -> a run sending ``cmd`` with ``arguments`` and that process's ``n_cpu``; returns the seconds the
        worker measured, after handing the answer to ``on_answer(name, answer)``."""
        def run(name: str) -> Callable[[], float]:
            def once() -> float:
                process, n_cpu = self.processes[name]
                answer = process.call(cmd, n_cpu=n_cpu, **arguments)
                on_answer(name, answer)
                return answer["seconds"]
            return once
        return {name: run(name) for name in self.processes}

    def close(self) -> None:
        for process, _ in self.processes.values():
            process.close()


def peer_cfg(official: Path, out: Path, batch: int = 1, subdivisions: int = 1, tiny_mask123: bool = True) -> Path:
    """Write the official cfg ``official`` for pytorchyolo at ``out``: given [net] batch/subdivisions, and for
    yolov3-tiny the second head's ``mask = 1,2,3``."""
    text = official.read_text()
    text = re.sub(r"(?m)^batch\s*=.*$", f"batch={batch}", text, count=1)
    text = re.sub(r"(?m)^subdivisions\s*=.*$", f"subdivisions={subdivisions}", text, count=1)
    if tiny_mask123 and "tiny" in official.name:
        text = re.sub(r"(?m)^mask\s*=\s*0,1,2\s*$", "mask = 1,2,3", text)
    out.write_text(text)
    return out
