"""Shared benchmark plumbing: interleaved timing, medians and ratios, machine description, result files."""
from __future__ import annotations

import contextlib
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
RESULTS = Path(__file__).resolve().parent / "results"

Run = Callable[[], float]
"""One timed run of an engine: does the work once and returns its seconds (measured where the work happens)."""


def timed(work: Callable[[], object]) -> Run:
    """A :data:`Run` timing ``work()`` here with ``perf_counter``."""
    def run() -> float:
        started = time.perf_counter()
        work()
        return time.perf_counter() - started
    return run


def interleaved(runs: dict[str, Run], repeats: int, warmup: int = 2, gap: float = 0.05,
                progress: bool = True) -> dict[str, list[float]]:
    """Seconds of ``repeats`` runs of every engine, interleaved A B C A B C ... after ``warmup`` untimed rounds.

    ``gap`` seconds of sleep between runs let the previous engine's spinning worker threads go idle, so one engine's
    threads do not steal the next one's cores; machine drift then hits every engine equally.
    """
    times: dict[str, list[float]] = {name: [] for name in runs}
    for round_index in range(warmup + repeats):
        for name, run in runs.items():
            time.sleep(gap)
            seconds = run()
            if round_index >= warmup:
                times[name].append(seconds)
        if progress:
            print(f"  round {round_index + 1}/{warmup + repeats}", end="\r", file=sys.stderr, flush=True)
    if progress:
        print(file=sys.stderr)
    return times


def median(values: list[float]) -> float:
    return statistics.median(values)


def load_average() -> tuple[float, float, float]:
    return os.getloadavg()


def machine() -> dict:
    """CPU model, cores, load, library versions: the header of every result."""
    cpu = platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    flags = set()
    try:
        flags = set(next(l for l in Path("/proc/cpuinfo").read_text().splitlines() if l.startswith("flags")).split())
    except (OSError, StopIteration):
        pass
    return {"date": datetime.datetime.now().isoformat(timespec="seconds"), "cpu": cpu, "cores": os.cpu_count(),
            "avx512_bf16": "avx512_bf16" in flags, "avx512_vnni": "avx512_vnni" in flags,
            "capability": torch.backends.cpu.get_cpu_capability(),
            "load_average": [round(x, 2) for x in load_average()], "python": platform.python_version(),
            "torch": torch.__version__, "torch_threads": torch.get_num_threads(), "command": " ".join(sys.argv)}


def runnable(engines: list[str]) -> list[str]:
    """``engines`` without the bfloat16 ones (any name with "bf16") on a CPU without native bfloat16 convolutions,
    where darknet_torch refuses ``--fast bf16`` and ``--amp`` trains in float32; says which were left out."""
    from darknet_torch.runtime import native_bfloat16

    if native_bfloat16(torch.device("cpu")):
        return list(engines)
    left = [name for name in engines if "bf16" in name]
    if left:
        print(f"# left out (no native bfloat16 on this {torch.backends.cpu.get_cpu_capability()} CPU): "
              f"{', '.join(left)}")
    return [name for name in engines if "bf16" not in name]


def print_header(info: dict) -> None:
    print(f"# {info['date']}  {info['cpu']}, {info['cores']} cores ({info['capability']}, avx512_bf16="
          f"{info['avx512_bf16']}, vnni={info['avx512_vnni']}); load average {info['load_average']}; "
          f"torch {info['torch']}")
    print(f"# {info['command']}")


def table(rows: list[list[str]], header: list[str]) -> str:
    """A Markdown table (also readable as plain text)."""
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    line = lambda cells: "| " + " | ".join(str(c).ljust(w) for c, w in zip(cells, widths)) + " |"  # noqa: E731
    return "\n".join([line(header), "|" + "|".join("-" * (w + 2) for w in widths) + "|", *map(line, rows)])


def save(name: str, payload: dict) -> Path:
    """Write ``payload`` as ``benchmarks/results/<name>.json`` (git-ignored) and return the path."""
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(payload, indent=2) + "\n")
    return path


def finish(name: str, info: dict, rows: list[list[str]], header: list[str], results: list[dict]) -> Path:
    """The closing report: the load average at the end, every row in one table, the raw results saved."""
    info["load_average_end"] = [round(x, 2) for x in load_average()]
    print(f"\n# load average at the end: {info['load_average_end']}")
    print(table(rows, header))
    path = save(name, {"machine": info, "results": results})
    print(f"results: {path}")
    return path


@contextlib.contextmanager
def background_load(processes: int) -> Iterator[None]:
    """``processes`` busy-loop processes (pure Python, one core each) for the duration: a reproducible stand-in for
    the other jobs of a shared machine.  Stopped (by their process ids) on exit; each also stops by itself once its
    parent is gone (a killed benchmark leaves no load behind)."""
    loop = "import os\nparent = os.getppid()\nwhile os.getppid() == parent:\n    pass"
    busy = [subprocess.Popen([sys.executable, "-c", loop]) for _ in range(processes)]
    try:
        yield
    finally:
        for process in busy:
            process.kill()
            process.wait()
