"""darknet_torch's engines and the in-process peers of ``bench_inference.py`` in a subprocess, so that each runs with
its own environment (OpenMP settings are read once, when torch loads) and the parent interleaves their runs.

Requests (``{"cmd": ..., **arguments}``, JSON lines; see :mod:`peers.worker_process`):
  ``setup`` engines, model, batch, size, images, threads, workdir[, torch_threads] -> {torch_threads, openmp}: loads
          every engine (``threads``: the peers'; ``torch_threads``: ``torch.set_num_threads``, else torch's default)
  ``run`` engine                                      -> {seconds, cpu_seconds}: one forward, measured here
  ``evaluate`` mode, data, batch_size                             -> {seconds, map}: coco128 as ``darknet_torch map``
                                                                     (mode ``onnxruntime``: the same pipeline, the
                                                                     forward an onnxruntime session, see onnx_model.py)
  ``quit``
"""
from __future__ import annotations

import os
import sys
import time
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(BENCHMARKS.parent), str(BENCHMARKS)]

import darknet_torch  # noqa: E402,F401  first, as in the CLI: its thread settings apply before torch loads
import torch  # noqa: E402

from peers.worker_process import serve_requests  # noqa: E402

OPENMP_VARIABLES = ("OMP_NUM_THREADS", "OMP_WAIT_POLICY", "GOMP_SPINCOUNT")


class Worker:
    def __init__(self) -> None:
        self.runs: dict = {}
        self.models: dict = {}

    def setup(self, engines: list[str], model: str, batch: int, size: int, images: str, threads: int,
              workdir: str, torch_threads: int | None = None) -> dict:
        from bench_inference import CALIBRATION_DIR, model_files, network_inputs, prepare_engines
        from darknet_torch.detect.sources import expand_sources

        if torch_threads:
            torch.set_num_threads(torch_threads)
        cfg, official, weights = model_files(model, Path(workdir))
        inputs = network_inputs(expand_sources([Path(images)])[:batch], size)
        calibration = network_inputs(expand_sources([CALIBRATION_DIR]), size) if "int8" in engines else None
        self.runs = prepare_engines(engines, cfg, official, weights, inputs, calibration, threads, Path(workdir),
                                    None)
        self.models = {"cfg": cfg, "weights": weights}
        self.workdir, self.threads = Path(workdir), threads
        return {"torch_threads": torch.get_num_threads(),
                "openmp": {name: os.environ.get(name) for name in OPENMP_VARIABLES}}

    def run(self, engine: str) -> dict:
        """One timed forward, and the CPU time this process used meanwhile (all its threads: the share it got)."""
        cpu = time.process_time()
        seconds = self.runs[engine]()
        return {"seconds": seconds, "cpu_seconds": time.process_time() - cpu}

    def evaluate(self, mode: str, data: str, batch_size: int) -> dict:
        """coco128 from image paths to mAP, as ``darknet_torch map [--fast mode]`` (``eager``: no --fast;
        ``onnxruntime``: the eager pipeline with an onnxruntime session of the ONNX export as the forward)."""
        from darknet_torch.config.data_files import read_data_file, read_image_list, read_names
        from darknet_torch.evaluate.runner import evaluate
        from darknet_torch.model.fast import optimize_for_inference
        from darknet_torch.model.loading import load_model
        from darknet_torch.runtime import keep_freed_memory

        keep_freed_memory()  # as `darknet_torch map` does
        if mode not in self.models:
            model = load_model(self.models["cfg"], self.models["weights"])
            if mode == "onnxruntime":
                from peers.onnx_model import OnnxDarknet

                cfg = self.models["cfg"]  # the file bench_inference's onnxruntime engine exports, if it ran here
                self.models[mode] = OnnxDarknet(model, self.workdir / f"{cfg.stem}.onnx", self.threads)
            else:
                self.models[mode] = model if mode == "eager" else optimize_for_inference(model, mode)
        settings = read_data_file(Path(data))
        images, names = read_image_list(settings.valid), read_names(settings.names)
        started = time.perf_counter()
        report = evaluate(self.models[mode], images, names, len(names), batch_size=batch_size, progress=False)
        return {"seconds": time.perf_counter() - started, "map": report.map}


if __name__ == "__main__":
    sys.exit(serve_requests(Worker()))
