#!/usr/bin/env python
"""Benchmark: speed on a busy machine.  darknet_torch's modes, onnxruntime and OpenCV DNN forward (and the coco128
``map`` pipeline) on a quiet machine and under a controlled background load, interleaved in one run.

    python benchmarks/bench_loaded.py                                 # load 0 and 4, default vs torch's settings
    python benchmarks/bench_loaded.py --load 0 2 4 --settings default torch passive 1-thread GOMP_SPINCOUNT=10000
    python benchmarks/bench_loaded.py --map eager exact --repeats 10  # also the coco128 map pipeline

The background load is ``--load K`` busy-loop processes (``common.background_load``), started before and stopped
after each table; the load average printed with each table also counts whatever else runs on the machine.
OpenMP reads its settings once, when torch loads, so every thread setting of darknet_torch runs in its own worker
process (``peers/engine_worker.py``: it imports darknet_torch first, as the CLI does) with that environment; the
peers share one more worker.  Workers start from this environment without its ``OMP_*``/``GOMP_*`` variables.
Settings:
  ``default``   nothing set: darknet_torch's own choice (``darknet_torch.threads``)
  ``torch``     torch as installed: libgomp's default spin-wait (``GOMP_SPINCOUNT=300000``, ~3 ms), one thread per core
  ``passive``   ``OMP_WAIT_POLICY=PASSIVE`` (waiting threads sleep at once), one thread per core
  ``1-thread``  ``OMP_NUM_THREADS=1`` with the default spin-wait
  ``VAR=VALUE[,VAR=VALUE]``  any environment, e.g. ``GOMP_SPINCOUNT=10000``; ``THREADS=N`` is no variable: the
                worker calls ``torch.set_num_threads(N)`` (torch caps ``OMP_NUM_THREADS`` at the cores)
The peers (their own thread pools, no OpenMP) get one intra-op thread per core.  Ratios are to onnxruntime's median
in the same table.  "CPU share" is the median of each forward's worker CPU time over its wall time: the cores the
engine got (2.0 = both of 2; under K busy processes a fair share of 2 threads is 4 / (K + 2) cores).

``--map ... onnxruntime`` also times the same ``evaluate`` pipeline (decoding, Darknet resize, boxes, NMS, AP) with
the network forward an onnxruntime session of our ONNX export (``peers/onnx_model.py``, one intra-op thread per
core).  It runs in each setting's worker, so the pipeline's torch parts run under that setting as ours do and only
the forward differs; the map rows' ratios are to it (``map onnxruntime [setting]``), and each map table ends with
the mAP of every pipeline.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (REPO, SHARED, background_load, finish, interleaved, load_average, machine, median,  # noqa: E402
                    print_header, runnable, table)
from peers.worker_process import WorkerProcess  # noqa: E402

sys.path.insert(0, str(REPO))
from darknet_torch.openmp import available_cores  # noqa: E402

WORKER = Path(__file__).resolve().parent / "peers" / "engine_worker.py"
CORES = available_cores()
SETTINGS = {"default": {},
            "torch": {"GOMP_SPINCOUNT": "300000", "OMP_NUM_THREADS": str(CORES)},
            "passive": {"OMP_WAIT_POLICY": "PASSIVE", "OMP_NUM_THREADS": str(CORES)},
            "1-thread": {"OMP_NUM_THREADS": "1", "GOMP_SPINCOUNT": "300000"}}
PEERS = ("onnxruntime", "opencv")
OPENMP_PREFIXES = ("OMP_", "GOMP_", "KMP_")


def setting_values(setting: str) -> dict[str, str]:
    """``setting``'s variables: a name of :data:`SETTINGS` or VAR=VALUE[,VAR=VALUE]."""
    if setting in SETTINGS:
        return dict(SETTINGS[setting])
    pairs = [item.split("=", 1) for item in setting.split(",")]
    if not all(len(pair) == 2 for pair in pairs):
        raise SystemExit(f"--settings {setting!r}: expected one of {', '.join(SETTINGS)} or VAR=VALUE[,VAR=VALUE]")
    return dict(pairs)


def setting_environment(setting: str) -> dict[str, str]:
    """This environment without OpenMP variables, plus ``setting``'s (``THREADS`` is for the worker, not libgomp)."""
    env = {name: value for name, value in os.environ.items() if not name.startswith(OPENMP_PREFIXES)}
    values = setting_values(setting)
    values.pop("THREADS", None)
    return {**env, **values}


def setting_threads(setting: str) -> int | None:
    """``THREADS=N`` of a setting: the worker's ``torch.set_num_threads``, else None (torch's own)."""
    threads = setting_values(setting).get("THREADS")
    return int(threads) if threads is not None else None


def start_workers(args: argparse.Namespace, workdir: Path) -> dict[str, tuple[WorkerProcess, str]]:
    """setting (or "peers") -> (its worker with every engine loaded, its OpenMP waiting and threads as it reports)."""
    workers = {}
    groups = [(setting, args.engines) for setting in args.settings] + ([("peers", args.peers)] if args.peers else [])
    for setting, engines in groups:
        worker = WorkerProcess([sys.executable, str(WORKER)],
                               setting_environment("torch" if setting == "peers" else setting), setting)
        info = worker.call("setup", engines=engines, model=args.model, batch=args.batch, size=args.size,
                           images=str(args.images), threads=CORES, workdir=str(workdir),
                           torch_threads=None if setting == "peers" else setting_threads(setting))
        openmp = info["openmp"]
        waiting = openmp["OMP_WAIT_POLICY"] or (f"spin {openmp['GOMP_SPINCOUNT']}" if openmp["GOMP_SPINCOUNT"]
                                                else "spin (libgomp default)")
        workers[setting] = (worker, "-" if setting == "peers" else f"{waiting}, {info['torch_threads']} threads")
    return workers


def runs_of(workers: dict, args: argparse.Namespace, maps: dict,
            shares: dict[str, list[float]]) -> list[tuple[str, dict, int, int]]:
    """The timed blocks: (what, name -> run, repeats, warm-up rounds): the forwards, then the map pipelines.
    Each forward also appends its CPU share (the worker's CPU seconds / wall seconds) to ``shares[name]``."""
    forward, pipeline = {}, {}
    for setting, (worker, _) in workers.items():
        for engine in args.peers if setting == "peers" else args.engines:
            name = engine if setting == "peers" else f"{engine} [{setting}]"

            def run_forward(w=worker, e=engine, name=name) -> float:
                answer = w.call("run", engine=e)
                shares.setdefault(name, []).append(answer["cpu_seconds"] / answer["seconds"])
                return answer["seconds"]
            forward[name] = run_forward
        for mode in () if setting == "peers" else args.map:
            def run(w=worker, m=mode, name=f"map {mode} [{setting}]") -> float:
                answer = w.call("evaluate", mode=m, data=str(args.data), batch_size=8)
                maps[name] = answer["map"]
                return answer["seconds"]
            pipeline[f"map {mode} [{setting}]"] = run
    blocks = [("forward", forward, args.repeats, args.warmup)]
    return blocks + ([("map", pipeline, args.map_repeats, args.map_warmup)] if pipeline else [])


def _duration(seconds: float, what: str) -> str:
    return f"{1000 * seconds:.1f}" if what == "forward" else f"{seconds:.2f} s"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--load", type=int, nargs="+", default=[0, 4], help="busy-loop processes per table")
    p.add_argument("--settings", nargs="+", default=["default", "torch"])
    p.add_argument("--engines", nargs="+", default=["eager", "exact", "bf16"])
    p.add_argument("--peers", nargs="*", default=list(PEERS), choices=PEERS)
    p.add_argument("--map", nargs="*", default=[],
                   help="also the coco128 map pipeline in these modes (onnxruntime: its forward an onnxruntime session)")
    p.add_argument("--data", type=Path, default=SHARED / "coco128" / "coco128.data")
    p.add_argument("--model", default="yolov3-tiny")
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--size", type=int, default=416)
    p.add_argument("--repeats", type=int, default=15)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--map-repeats", type=int, default=3)
    p.add_argument("--map-warmup", type=int, default=1)
    p.add_argument("--settle", type=float, default=5.0, help="seconds between starting the load and timing")
    p.add_argument("--images", type=Path, default=SHARED / "coco128" / "images" / "train2017")
    args = p.parse_args()
    args.engines, args.map = runnable(args.engines), runnable(args.map)

    info = machine()
    print_header(info)
    rows, results, quiet, maps = [], [], {}, {}
    header = ["load", "load average", "engine [setting]", "OpenMP", "median ms", "min ms", "max ms", "x onnxruntime",
              "x its quiet", "CPU share"]
    for load in args.load:
        with background_load(load), tempfile.TemporaryDirectory(prefix="bench-loaded-") as tmp:
            time.sleep(args.settle if load else 0)
            workers = start_workers(args, Path(tmp))  # under the load: the default chooses as a command would
            shares: dict[str, list[float]] = {}
            for what, runs, repeats, warmup in runs_of(workers, args, maps, shares):
                before = [round(x, 2) for x in load_average()]
                times = interleaved(runs, repeats, warmup)
                after = [round(x, 2) for x in load_average()]
                block = []
                for name, values in times.items():
                    seconds = median(values)
                    if load == args.load[0]:
                        quiet[name] = seconds
                    setting = name[name.index("[") + 1:-1] if "[" in name else "peers"
                    peer = "onnxruntime" if what == "forward" else f"map onnxruntime [{setting}]"
                    reference = median(times[peer]) if peer in times else None
                    share = median(shares[name][-repeats:]) if name in shares else None
                    block.append([load, f"{before[0]} -> {after[0]}", name, workers[setting][1],
                                  *(_duration(x, what) for x in (seconds, min(values), max(values))),
                                  f"{seconds / reference:.2f}" if reference else "-",
                                  f"{seconds / quiet[name]:.2f}" if name in quiet else "-",
                                  f"{share:.2f}" if share is not None else "-"])
                    results.append({"what": what, "load": load, "load_average": [before, after], "engine": name,
                                    "openmp": workers[setting][1], "median_seconds": seconds, "seconds": values,
                                    "cpu_share": share,
                                    "map": maps.get(name)})
                print(table(block, header), flush=True)
                if what == "map":
                    print("mAP@0.5: " + ", ".join(f"{name} {maps[name]:.6f}" for name in runs), flush=True)
                rows += block
            for worker, _ in workers.values():
                worker.close()
    finish("loaded", info, rows, header, results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
