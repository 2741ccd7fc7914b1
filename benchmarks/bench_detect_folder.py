#!/usr/bin/env python
"""Benchmark: end-to-end detection over a folder of images (decode, pre-process, forward, NMS, write outputs).

    python benchmarks/bench_detect_folder.py                      # coco128 (../shared), yolov3-tiny, 3 repeats
    python benchmarks/bench_detect_folder.py --folder data/samples --batch-size 1 4 --workers 0 1 2
    python benchmarks/bench_detect_folder.py --runners darknet_torch darknet_torch-bf16 pytorchyolo pytorchyolo-nodraw

Each runner is one function ``(paths, output_dir) -> None`` that processes every image once; the harness times the
runners interleaved (A B C A B C ...) ``--repeats`` times after one warm-up round and prints the median (and
min/max) seconds and images/s, with the speed-up over the first pytorchyolo runner.  Model loading is outside the
timed part (each runner builds what it needs in its ``prepare`` step).  Runners:
  ``darknet_torch``          detect_images (DataLoader workers, batched forward, Darknet NMS, threaded writer of
                             annotated images + label files + JSON), on ``load_model``'s model
  ``darknet_torch-<mode>``   the same on ``optimize_for_inference(model, mode)`` (bf16, int8, compile, exact)
  ``pytorchyolo``            pytorchyolo 1.8.0's ``detect_directory`` (its loader, forward, NMS, matplotlib drawing
                             of every image; conf 0.5, NMS 0.4 as its CLI), in its venv (peers/pytorchyolo_peer.py)
  ``pytorchyolo-nodraw``     the same without the drawing (no files written)
With ``--no-write`` darknet_torch writes nothing either.  To add a peer, add a ``prepare_<name>`` function returning
a runner and list it in ``RUNNERS``.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Callable

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from darknet_torch.config.data_files import read_names  # noqa: E402
from darknet_torch.detect.pipeline import detect_images  # noqa: E402
from darknet_torch.detect.predictor import Predictor  # noqa: E402
from darknet_torch.detect.sources import expand_sources  # noqa: E402
from darknet_torch.model.fast import FAST_MODES, optimize_for_inference  # noqa: E402
from darknet_torch.model.loading import load_model  # noqa: E402
from darknet_torch.runtime import keep_freed_memory  # noqa: E402
from common import interleaved, machine, print_header, runnable  # noqa: E402

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


def prepare_darknet_torch(config: Config, mode: str | None = None) -> Runner:
    """darknet_torch's own pipeline: DataLoader workers, batched forward, Darknet NMS, threaded writer; with ``mode``
    on the model from ``optimize_for_inference`` (int8 calibrated on data/samples)."""
    model = load_model(config.cfg, config.weights, "cpu")
    if mode is not None:
        from bench_inference import CALIBRATION_DIR, network_inputs

        calibration = [network_inputs(expand_sources([CALIBRATION_DIR]), model.input_size[0])]
        model = optimize_for_inference(model, mode, calibration if mode == "int8" else None)
    predictor = Predictor(model, read_names(config.names))

    def run(paths: list[Path], output_dir: Path) -> None:
        report = detect_images(predictor, paths, output_dir if config.write else None,
                               batch_size=config.batch_size, workers=config.workers, decoder=config.decoder,
                               save_labels=config.write, progress=False)
        if not report.ok:
            raise RuntimeError(f"{len(report.failed)} images failed, e.g. {report.failed[0].error}")

    return run


def prepare_pytorchyolo(config: Config, draw: bool = True) -> Runner:
    """pytorchyolo's detect_directory in its venv; its ImageFolder reads a folder, so ``paths`` are linked into one."""
    from peers.pytorchyolo_peer import PytorchyoloProcess, peer_cfg

    workdir = Path(tempfile.mkdtemp(prefix="bench-detect-peer-"))
    peer = PytorchyoloProcess(torch.get_num_threads())
    official = peer_cfg(REPO.parent / "shared" / "darknet" / "cfg" / f"{config.cfg.stem}.cfg", workdir / "peer.cfg")
    peer.call("load", cfg=str(official), weights=str(config.weights))
    names = read_names(config.names)

    def run(paths: list[Path], output_dir: Path) -> None:
        folder = workdir / "images"
        if not folder.exists():
            folder.mkdir()
            for path in paths:
                (folder / path.name).symlink_to(path.resolve())
        answer = peer.call("detect_folder", folder=str(folder), output=str(output_dir), batch_size=config.batch_size,
                           n_cpu=config.workers, draw=draw and config.write, conf_thres=0.5, nms_thres=0.4,
                           classes=names)
        if answer["images"] != len(paths):
            raise RuntimeError(f"pytorchyolo detected {answer['images']} of {len(paths)} images")

    return run


RUNNERS: dict[str, Callable[[Config], Runner]] = {
    "darknet_torch": prepare_darknet_torch,
    **{f"darknet_torch-{mode}": partial(prepare_darknet_torch, mode=mode) for mode in FAST_MODES},
    "pytorchyolo": prepare_pytorchyolo,
    "pytorchyolo-nodraw": partial(prepare_pytorchyolo, draw=False),
}


def time_runners(runners: dict[str, Runner], paths: list[Path], repeats: int) -> dict[str, list[float]]:
    """Seconds per full pass over ``paths`` of every runner, interleaved: one untimed round, then ``repeats``."""
    with tempfile.TemporaryDirectory(prefix="bench-detect-") as tmp:
        counter = iter(range(10 ** 9))

        def timed_pass(runner: Runner) -> float:
            output = Path(tmp) / f"run{next(counter)}"
            start = time.perf_counter()
            runner(paths, output)
            return time.perf_counter() - start
        return interleaved({name: partial(timed_pass, runner) for name, runner in runners.items()}, repeats,
                           warmup=1)


def main() -> int:
    shared = REPO.parent / "shared"
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--folder", type=Path, default=shared / "coco128" / "images" / "train2017")
    p.add_argument("--limit", type=int, default=0, help="use only the first N images (0: all)")
    p.add_argument("--cfg", type=Path, default=REPO / "cfg" / "yolov3-tiny.cfg")
    p.add_argument("--weights", type=Path, default=REPO / "weights" / "yolov3-tiny.weights")
    p.add_argument("--names", type=Path, default=REPO / "data" / "coco.names")
    p.add_argument("--runners", nargs="+", choices=list(RUNNERS),
                   default=["darknet_torch", "darknet_torch-bf16", "pytorchyolo", "pytorchyolo-nodraw"])
    p.add_argument("--batch-size", type=int, nargs="+", default=[1, 4])
    p.add_argument("--workers", type=int, nargs="+", default=[1])
    p.add_argument("--decoder", default="auto", choices=("auto", "pil", "stb"))
    p.add_argument("--no-write", action="store_true", help="time detection only, no files written")
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args()
    args.runners = runnable(args.runners)
    keep_freed_memory()  # as `darknet_torch detect` does
    if not args.weights.exists():
        fallback = shared / "weights" / args.weights.name
        if not fallback.exists():
            p.error(f"{args.weights} not found: python weights/download_weights.py yolov3-tiny")
        args.weights = fallback

    paths = expand_sources([args.folder])
    paths = paths[: args.limit] if args.limit else paths
    print_header(machine())
    print(f"{len(paths)} images from {args.folder}; torch {torch.__version__}, {torch.get_num_threads()} threads; "
          f"{args.cfg.name}, decoder={args.decoder}, {'no files' if args.no_write else 'images+labels+json'} "
          f"written; median of {args.repeats} interleaved runs after a warm-up")
    print(f"{'runner':<22}{'batch':>6}{'workers':>8}{'median s':>10}{'min s':>8}{'max s':>8}{'images/s':>10}"
          f"{'x pytorchyolo':>15}")
    for batch_size in args.batch_size:
        for workers in args.workers:
            config = Config(args.cfg, args.weights, args.names, batch_size, workers, args.decoder, not args.no_write)
            times = time_runners({name: RUNNERS[name](config) for name in args.runners}, paths, args.repeats)
            peer = next((statistics.median(v) for n, v in times.items() if n.startswith("pytorchyolo")), None)
            for name, values in times.items():
                median = statistics.median(values)
                ratio = f"{peer / median:.2f}" if peer else "-"
                print(f"{name:<22}{batch_size:>6}{workers:>8}{median:>10.2f}{min(values):>8.2f}{max(values):>8.2f}"
                      f"{len(paths) / median:>10.1f}{ratio:>15}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
