#!/usr/bin/env python
"""Experiment: fine-tune the official yolov3-tiny COCO weights on coco128 on CPU; mAP@0.5 before/after, images/s.

    python benchmarks/finetune_coco128.py                              # 100 iterations of 16 images at 416x416
    python benchmarks/finetune_coco128.py --iterations 200 --batch 32 --subdivisions 4
    python benchmarks/finetune_coco128.py --amp --out runs/finetune_coco128_bf16     # bfloat16 autocast

The cfg (default ``cfg/yolov3-tiny.cfg``, whose second head has the ``mask = 1,2,3`` the weights were trained with) is
copied with a CPU-sized ``[net]``: ``batch``/``subdivisions`` from the flags, ``max_batches = --iterations``,
``learning_rate = --lr`` with a short ``burn_in`` and a x0.1 step at 80 %, and ``random = 0`` on the heads so every
iteration trains at 416x416 (Darknet's multi-scale would go up to 608).  Training starts at iteration 0 (``-clear``:
the weights' header says 500,208 iterations) and evaluates Darknet's ``detector map`` on the same 128 images before
and after.  images/s counts training images over the wall time of the training loop alone.  Results are printed and
written to ``<out>/results.json``.
"""
from __future__ import annotations

import argparse
import json
import re
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from darknet_torch.config.data_files import read_data_file, read_image_list, read_names  # noqa: E402
from darknet_torch.evaluate.runner import evaluate  # noqa: E402
from darknet_torch.model.loading import load_model  # noqa: E402
from darknet_torch.runtime import keep_freed_memory  # noqa: E402
from darknet_torch.train.run import TrainOptions, build_trainer  # noqa: E402


def parse_args() -> argparse.Namespace:
    shared = REPO.parent / "shared"
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--cfg", type=Path, default=REPO / "cfg" / "yolov3-tiny.cfg")
    p.add_argument("--weights", type=Path, default=shared / "weights" / "yolov3-tiny.weights")
    p.add_argument("--coco128", type=Path, default=shared / "coco128")
    p.add_argument("--iterations", type=int, default=100)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--subdivisions", type=int, default=2)
    p.add_argument("--lr", type=float, default=0.001)
    p.add_argument("--burn-in", type=int, default=10)
    p.add_argument("--workers", type=int, default=None, help="loader processes (default: the trainer's, 0 on CPU)")
    p.add_argument("--amp", action="store_true", help="bfloat16 autocast on CPU (float16 on CUDA)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=REPO / "runs" / "finetune_coco128")
    return p.parse_args()


def cpu_cfg(text: str, args: argparse.Namespace) -> str:
    """The cfg with the [net] training keys replaced and ``random=0`` on every head."""
    net = {"batch": args.batch, "subdivisions": args.subdivisions, "max_batches": args.iterations,
           "learning_rate": args.lr, "burn_in": args.burn_in, "policy": "steps",
           "steps": max(1, args.iterations * 4 // 5), "scales": 0.1}
    end = text.find("\n[", text.index("[net]"))  # [net] ends where the next section starts
    first, layers = (text, "") if end < 0 else (text[:end], text[end:])
    for key, value in net.items():
        first, found = re.subn(rf"(?m)^\s*{key}\s*=.*$", f"{key}={value}", first)
        if not found:
            first += f"\n{key}={value}"
    layers = re.sub(r"(?m)^\s*random\s*=.*$", "random=0", layers)
    return first + layers


def map50(cfg: Path, weights: Path, images: list[Path], names: list[str], workers: int | None) -> float:
    model = load_model(cfg, weights)
    return evaluate(model, images, names, len(names), workers=workers, progress=False).map


def main() -> int:
    args = parse_args()
    keep_freed_memory()  # as `darknet_torch train` does
    for path in (args.cfg, args.weights, args.coco128 / "train.txt"):
        if not path.exists():
            print(f"error: {path} not found", file=sys.stderr)
            return 2
    args.out.mkdir(parents=True, exist_ok=True)
    cfg = args.out / f"{args.cfg.stem}-finetune.cfg"
    cfg.write_text(cpu_cfg(args.cfg.read_text(), args))
    data = args.out / "coco128.data"
    data.write_text(f"classes = 80\ntrain = {args.coco128 / 'train.txt'}\nvalid = {args.coco128 / 'train.txt'}\n"
                    f"names = {args.coco128 / 'coco.names'}\nbackup = {args.out / 'backup'}\n")
    parsed = read_data_file(data)
    images, names = read_image_list(parsed.train), read_names(parsed.names)

    before = map50(cfg, args.weights, images, names, args.workers)
    print(f"mAP@0.5 before fine-tuning: {100 * before:.2f} %")
    trainer = build_trainer(TrainOptions(data=data, cfg=cfg, weights=args.weights, clear=True, workers=args.workers,
                                         seed=args.seed, amp=args.amp))
    started = time.perf_counter()
    result = trainer.run()
    seconds = time.perf_counter() - started
    trained_images = args.iterations * trainer.settings.batch
    after = map50(cfg, args.out / "backup" / f"{cfg.stem}_final.weights", images, names, args.workers)
    results = {"cfg": str(args.cfg), "iterations": args.iterations, "batch": trainer.settings.batch,
               "subdivisions": args.subdivisions, "learning_rate": args.lr, "input": "416x416", "amp": args.amp,
               "threads": torch.get_num_threads(), "map50_before": before, "map50_after": after,
               "final_avg_loss": result.avg_loss, "train_seconds": seconds,
               "images_per_second": trained_images / seconds}
    (args.out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    print(f"mAP@0.5 before {100 * before:.2f} %, after {100 * after:.2f} % ({args.iterations} iterations of "
          f"{trainer.settings.batch} images); training {trained_images / seconds:.2f} images/s "
          f"({seconds:.0f} s, {torch.get_num_threads()} threads)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
