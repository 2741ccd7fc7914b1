#!/usr/bin/env python
"""Benchmark: end-to-end detection over a folder of images (decode, pre-process, forward, NMS, write outputs).

    python benchmarks/bench_detect_folder.py                      # coco128 (../shared), yolov3-tiny, 3 repeats
    python benchmarks/bench_detect_folder.py --folder data/samples --batch-size 1 4 --workers 0 1 2

Each runner is one function ``(paths, config, output_dir) -> None`` that processes every image once; the harness
times it ``--repeats`` times after one warm-up and prints the median (and min/max) seconds and images/s.  Model
loading is outside the timed part (each runner builds what it needs in its ``prepare`` step).  To compare a peer
implementation, add a ``prepare_<name>`` function returning such a runner and list it in ``RUNNERS``.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from darknet_torch.config.data_files import read_names  # noqa: E402
from darknet_torch.detect.pipeline import detect_images  # noqa: E402
from darknet_torch.detect.predictor import Predictor  # noqa: E402
from darknet_torch.detect.sources import expand_sources  # noqa: E402
from darknet_torch.model.loading import load_model  # noqa: E402

Runner = Callable[[list[Path], Path], None]


@dataclass(frozen=True)
class Config:
    """One benchmark setting, shared by every runner."""

    cfg: Path
    weights: Path
    names: Path
    batch_size: int
    workers: int
    decoder: str
    write: bool


def prepare_darknet_torch(config: Config) -> Runner:
    """darknet_torch's own pipeline: DataLoader workers, batched forward, Darknet NMS, threaded writer."""
    model = load_model(config.cfg, config.weights, "cpu")
    predictor = Predictor(model, read_names(config.names))

    def run(paths: list[Path], output_dir: Path) -> None:
        report = detect_images(predictor, paths, output_dir if config.write else None,
                               batch_size=config.batch_size, workers=config.workers, decoder=config.decoder,
                               save_labels=config.write, progress=False)
        if not report.ok:
            raise RuntimeError(f"{len(report.failed)} images failed, e.g. {report.failed[0].error}")

    return run


RUNNERS: dict[str, Callable[[Config], Runner]] = {
    "darknet_torch": prepare_darknet_torch,
}


def time_runner(runner: Runner, paths: list[Path], repeats: int) -> list[float]:
    """Seconds per full pass over ``paths``: one untimed warm-up, then ``repeats`` timed passes."""
    times = []
    with tempfile.TemporaryDirectory(prefix="bench-detect-") as tmp:
        runner(paths, Path(tmp) / "warmup")
        for i in range(repeats):
            start = time.perf_counter()
            runner(paths, Path(tmp) / f"run{i}")
            times.append(time.perf_counter() - start)
    return times


def main() -> int:
    shared = REPO.parent / "shared"
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--folder", type=Path, default=shared / "coco128" / "images" / "train2017")
    p.add_argument("--limit", type=int, default=0, help="use only the first N images (0: all)")
    p.add_argument("--cfg", type=Path, default=REPO / "cfg" / "yolov3-tiny.cfg")
    p.add_argument("--weights", type=Path, default=REPO / "weights" / "yolov3-tiny.weights")
    p.add_argument("--names", type=Path, default=REPO / "data" / "coco.names")
    p.add_argument("--runners", nargs="+", default=list(RUNNERS), choices=list(RUNNERS))
    p.add_argument("--batch-size", type=int, nargs="+", default=[1, 4])
    p.add_argument("--workers", type=int, nargs="+", default=[1])
    p.add_argument("--decoder", default="auto", choices=("auto", "pil", "stb"))
    p.add_argument("--no-write", action="store_true", help="time detection only, no files written")
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args()
    if not args.weights.exists():
        fallback = shared / "weights" / args.weights.name
        if not fallback.exists():
            p.error(f"{args.weights} not found: python weights/download_weights.py yolov3-tiny")
        args.weights = fallback

    paths = expand_sources([args.folder])
    paths = paths[: args.limit] if args.limit else paths
    print(f"{len(paths)} images from {args.folder}; torch {torch.__version__}, {torch.get_num_threads()} threads; "
          f"{args.cfg.name}, decoder={args.decoder}, {'no files' if args.no_write else 'images+labels+json'} "
          f"written; median of {args.repeats} after a warm-up")
    print(f"{'runner':<16}{'batch':>6}{'workers':>8}{'median s':>10}{'min s':>8}{'max s':>8}{'images/s':>10}")
    for name in args.runners:
        for batch_size in args.batch_size:
            for workers in args.workers:
                config = Config(args.cfg, args.weights, args.names, batch_size, workers, args.decoder,
                                not args.no_write)
                times = time_runner(RUNNERS[name](config), paths, args.repeats)
                median = statistics.median(times)
                print(f"{name:<16}{batch_size:>6}{workers:>8}{median:>10.2f}{min(times):>8.2f}{max(times):>8.2f}"
                      f"{len(paths) / median:>10.1f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
