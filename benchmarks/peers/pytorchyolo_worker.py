"""Runs the ``pytorchyolo`` peer inside its own venv: JSON requests on stdin, one JSON answer per line on stdout.

Started by :class:`benchmarks.peers.pytorchyolo_peer.PytorchyoloProcess`, so the parent can interleave it with the
other engines; every answer carries the seconds measured *here*, around pytorchyolo's own code only (no IPC).  It
imports only the venv's packages (never darknet_torch: a different torch lives here).

Requests (``{"cmd": ..., **arguments}``):
  ``load`` cfg, weights                        -> {}
  ``forward`` input (.npy, float32 B x 3 x H x W)  -> {seconds}: ``model(x)`` under no_grad, as pytorchyolo's detect
  ``detect_folder`` folder, output, batch_size, n_cpu, draw, conf_thres, nms_thres -> {seconds, images}
  ``evaluate`` list, batch_size, n_cpu, conf_thres, nms_thres, iou_thres -> {seconds, images, map50}
  ``train`` cfg, weights, list, iterations, n_cpu, seed -> {seconds, images}
  ``quit``
"""
from __future__ import annotations

import contextlib
import io
import sys
import time

from worker_process import serve_requests  # peers/ is this script's sys.path[0]


def _quiet():
    """pytorchyolo prints progress bars and per-image lines; keep stdout for the JSON answers."""
    return contextlib.redirect_stdout(io.StringIO())


class Worker:
    def __init__(self, threads: int) -> None:
        import torch

        torch.set_num_threads(threads)
        self.torch = torch
        self.model = None

    def load(self, cfg: str, weights: str | None) -> dict:
        from pytorchyolo.models import load_model

        with _quiet():
            self.model = load_model(cfg, weights).eval()
        return {}

    def forward(self, input: str) -> dict:
        import numpy as np

        x = self.torch.from_numpy(np.load(input))
        with self.torch.no_grad():
            started = time.perf_counter()
            self.model(x)
            return {"seconds": time.perf_counter() - started}

    def detect_folder(self, folder: str, output: str, batch_size: int, n_cpu: int, draw: bool, conf_thres: float,
                      nms_thres: float, classes: list[str]) -> dict:
        """pytorchyolo's ``detect_directory`` with the loaded model (loading is not timed); ``draw=False`` stops
        after its ``detect`` (no files written)."""
        from pytorchyolo import detect

        img_size = int(self.model.hyperparams["height"])
        with _quiet(), contextlib.redirect_stderr(io.StringIO()):
            started = time.perf_counter()
            loader = detect._create_data_loader(folder, batch_size, img_size, n_cpu)
            detections, paths = detect.detect(self.model, loader, output, conf_thres, nms_thres)
            if draw:
                detect._draw_and_save_output_images(detections, paths, img_size, output, classes)
            seconds = time.perf_counter() - started
        if draw:
            import matplotlib.pyplot as plt

            plt.close("all")
        return {"seconds": seconds, "images": len(paths)}

    def evaluate(self, list: str, batch_size: int, n_cpu: int, conf_thres: float, nms_thres: float,
                 iou_thres: float, classes: list[str]) -> dict:
        """pytorchyolo's ``test.py`` evaluation (its validation loader, NMS, batch statistics and AP)."""
        from pytorchyolo import test

        img_size = int(self.model.hyperparams["height"])
        with _quiet(), contextlib.redirect_stderr(io.StringIO()):
            started = time.perf_counter()
            loader = test._create_validation_data_loader(list, batch_size, img_size, n_cpu)
            metrics = test._evaluate(self.model, loader, classes, img_size, iou_thres, conf_thres, nms_thres,
                                     verbose=False)
            seconds = time.perf_counter() - started
        ap = metrics[2] if metrics is not None else None
        return {"seconds": seconds, "images": len(loader.dataset), "map50": float(ap.mean()) if ap is not None else None}

    def train(self, cfg: str, weights: str | None, list: str, iterations: int, n_cpu: int, seed: int) -> dict:
        """``iterations`` mini-batches of pytorchyolo's training loop (its train.py: augmenting loader, forward,
        compute_loss, backward, optimizer as the cfg says), timed from loader creation to the last step."""
        import torch.optim as optim
        from pytorchyolo.models import load_model
        from pytorchyolo.train import _create_data_loader
        from pytorchyolo.utils.loss import compute_loss

        self.torch.manual_seed(seed)
        with _quiet():
            model = load_model(cfg, weights)
        hp = model.hyperparams
        mini_batch = hp["batch"] // hp["subdivisions"]
        params = [p for p in model.parameters() if p.requires_grad]
        if hp.get("optimizer") in (None, "adam"):
            optimizer = optim.Adam(params, lr=hp["learning_rate"], weight_decay=hp["decay"])
        else:
            optimizer = optim.SGD(params, lr=hp["learning_rate"], weight_decay=hp["decay"], momentum=hp["momentum"])
        model.train()
        images = 0
        with contextlib.redirect_stderr(io.StringIO()):
            started = time.perf_counter()
            loader = _create_data_loader(list, mini_batch, hp["height"], n_cpu)
            for batch_i, (_, imgs, targets) in enumerate(loader):
                if batch_i == iterations:
                    break
                outputs = model(imgs)
                loss, _ = compute_loss(outputs, targets, model)
                loss.backward()
                if (batch_i + 1) % hp["subdivisions"] == 0:
                    optimizer.step()
                    optimizer.zero_grad()
                images += imgs.shape[0]
            seconds = time.perf_counter() - started
        return {"seconds": seconds, "images": images}


def main() -> int:
    return serve_requests(Worker(int(sys.argv[1]) if len(sys.argv) > 1 else 1))


if __name__ == "__main__":
    sys.exit(main())
