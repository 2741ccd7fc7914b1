#!/usr/bin/env python
"""Benchmark: model forward time of darknet_torch (exact and fast modes) against OpenCV DNN, onnxruntime and
pytorchyolo, interleaved in one run.

    python benchmarks/bench_inference.py                                   # yolov3-tiny + yolov3, batch 1 and 8
    python benchmarks/bench_inference.py --models yolov3-tiny --batch 1 --threads 1 2 --repeats 20

"Forward" is the network including its box decoding (every engine's YOLO layers decode), excluding image decoding,
resizing and NMS; each engine gets the same float32 input (the first B coco128 images stretched to 416x416).
Engines:
  ``eager``        darknet_torch as ``load_model`` returns it (BN folded, NCHW), what detect/map ran before fast.py
  ``exact``/``bf16``/``int8``/``compile``   ``optimize_for_inference(model, mode)`` (darknet_torch/model/fast.py)
  ``opencv``       ``cv2.dnn.readNetFromDarknet`` on the official cfg, OpenCV backend, CPU target
  ``onnxruntime``  our ONNX export (darknet_torch.export.onnx.export_onnx), CPU provider, graph optimisations on
  ``pytorchyolo``  pytorchyolo 1.8.0's ``load_model`` + ``model(x)`` under no_grad, in its own venv (subprocess)
Every engine uses ``--threads`` intra-op threads.  Runs are interleaved (A B C ... A B C) after warm-up rounds and
the median is reported with its ratio to OpenCV DNN's median.  yolov3 has no weights in ../shared: all engines load
the same random weights (speed does not depend on the values; int8 is calibrated on them).
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (REPO, SHARED, finish, interleaved, machine, median, print_header, runnable, table,  # noqa: E402
                    timed)

sys.path.insert(0, str(REPO))
from darknet_torch.data.images import load_image, preprocess  # noqa: E402
from darknet_torch.detect.sources import expand_sources  # noqa: E402
from darknet_torch.model.darknet import Darknet  # noqa: E402
from darknet_torch.model.fast import FAST_MODES, optimize_for_inference  # noqa: E402
from darknet_torch.model.loading import load_model  # noqa: E402

PEERS = ("opencv", "onnxruntime", "pytorchyolo")
ENGINES = ("eager", *FAST_MODES, *PEERS)
CALIBRATION_DIR = REPO / "data" / "samples"


def network_inputs(paths: list[Path], size: int) -> torch.Tensor:
    """``len(paths) x 3 x size x size`` float32: the images stretched as Darknet's detector does."""
    return torch.stack([preprocess(load_image(p), size, size, letterbox=False)[0] for p in paths])


def model_files(name: str, workdir: Path) -> tuple[Path, Path, Path]:
    """(our cfg, official cfg for the peers, weights): real yolov3-tiny weights, random ones for other nets."""
    from peers.pytorchyolo_peer import peer_cfg

    ours = REPO / "cfg" / f"{name}.cfg"
    official = peer_cfg(SHARED / "darknet" / "cfg" / f"{name}.cfg", workdir / f"{name}-peer.cfg")
    weights = SHARED / "weights" / f"{name}.weights"
    if not weights.exists():
        torch.manual_seed(0)
        weights = workdir / f"{name}-random.weights"
        Darknet(ours).save_darknet_weights(weights)
    return ours, official, weights


def prepare_engines(engines: list[str], cfg: Path, official_cfg: Path, weights: Path, inputs: torch.Tensor,
                    calibration: torch.Tensor, threads: int, workdir: Path, pytorchyolo) -> dict:
    """One zero-argument timed run per engine, all on ``inputs``."""
    runs = {}
    model = load_model(cfg, weights)
    for engine in engines:
        if engine == "eager":
            runs[engine] = timed(lambda m=model: _no_grad_forward(m, inputs))
        elif engine in FAST_MODES:
            fast = optimize_for_inference(model, engine, [calibration] if engine == "int8" else None)
            with torch.inference_mode():
                fast(inputs)  # compile / first-call work outside the timing
            runs[engine] = timed(lambda m=fast: _no_grad_forward(m, inputs))
        elif engine == "opencv":
            runs[engine] = _opencv_run(official_cfg, weights, inputs.numpy(), threads)
        elif engine == "onnxruntime":
            runs[engine] = _onnxruntime_run(model, workdir / f"{cfg.stem}.onnx", inputs.numpy(), threads)
        elif engine == "pytorchyolo":
            array = workdir / f"input-{inputs.shape[0]}.npy"
            np.save(array, inputs.numpy())
            pytorchyolo.call("load", cfg=str(official_cfg), weights=str(weights))
            runs[engine] = lambda path=str(array): pytorchyolo.call("forward", input=path)["seconds"]
    return runs


def _no_grad_forward(model: torch.nn.Module, inputs: torch.Tensor) -> None:
    with torch.inference_mode():
        model(inputs)


def _opencv_run(cfg: Path, weights: Path, blob: np.ndarray, threads: int):
    import cv2

    cv2.setNumThreads(threads)
    net = cv2.dnn.readNetFromDarknet(str(cfg), str(weights))
    net.setPreferableBackend(cv2.dnn.DNN_BACKEND_OPENCV)
    net.setPreferableTarget(cv2.dnn.DNN_TARGET_CPU)
    outputs = net.getUnconnectedOutLayersNames()

    def forward() -> None:
        net.setInput(blob)
        net.forward(outputs)
    return timed(forward)


def _onnxruntime_run(model: Darknet, path: Path, array: np.ndarray, threads: int):
    from peers.onnx_model import exported_session

    session = exported_session(model, path, threads)
    name = session.get_inputs()[0].name
    return timed(lambda: session.run(None, {name: array}))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--models", nargs="+", default=["yolov3-tiny", "yolov3"])
    p.add_argument("--batch", type=int, nargs="+", default=[1, 8])
    p.add_argument("--threads", type=int, nargs="+", default=[torch.get_num_threads()])
    p.add_argument("--engines", nargs="+", default=list(ENGINES), choices=ENGINES)
    p.add_argument("--size", type=int, default=416)
    p.add_argument("--repeats", type=int, default=20)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--images", type=Path, default=SHARED / "coco128" / "images" / "train2017")
    p.add_argument("--interop", type=int, help="torch.set_num_interop_threads (default: torch's)")
    args = p.parse_args()
    args.engines = runnable(args.engines)
    if args.interop:
        torch.set_num_interop_threads(args.interop)

    info = machine()
    print_header(info)
    pytorchyolo = None
    rows, results = [], []
    with tempfile.TemporaryDirectory(prefix="bench-inference-") as tmp:
        workdir = Path(tmp)
        images = expand_sources([args.images])
        calibration = network_inputs(expand_sources([CALIBRATION_DIR]), args.size)
        for threads in args.threads:
            torch.set_num_threads(threads)
            if "pytorchyolo" in args.engines:
                from peers.pytorchyolo_peer import PytorchyoloProcess

                pytorchyolo = PytorchyoloProcess(threads)
            for name in args.models:
                cfg, official, weights = model_files(name, workdir)
                for batch in args.batch:
                    inputs = network_inputs(images[:batch], args.size)
                    runs = prepare_engines(args.engines, cfg, official, weights, inputs, calibration, threads,
                                           workdir, pytorchyolo)
                    times = interleaved(runs, args.repeats, args.warmup)
                    reference = median(times["opencv"]) if "opencv" in times else None
                    for engine, values in times.items():
                        ms = 1000 * median(values)
                        ratio = f"{ms / (1000 * reference):.2f}" if reference else "-"
                        rows.append([name, batch, threads, engine, f"{ms:.1f}", f"{1000 * min(values):.1f}",
                                     f"{1000 * max(values):.1f}", ratio])
                        results.append({"model": name, "batch": batch, "threads": threads, "engine": engine,
                                        "median_ms": ms, "seconds": values})
                    print(table(rows[-len(times):], HEADER), flush=True)
            if pytorchyolo is not None:
                pytorchyolo.close()
    finish("inference", info, rows, HEADER, results)
    return 0


HEADER = ["model", "batch", "threads", "engine", "median ms", "min ms", "max ms", "x OpenCV"]

if __name__ == "__main__":
    sys.exit(main())
