#!/usr/bin/env python
"""Where darknet_torch's time goes: evaluation and training of yolov3-tiny on coco128, split into stages.

    python benchmarks/profile_stages.py eval  [--mode exact] [--workers 2]
    python benchmarks/profile_stages.py train [--batches 4] [--amp]

``eval``: image decoding + resizing alone (in-process), the forward alone, forward + Darknet post-processing and NMS
(the difference is NMS), the AP computation, then the whole ``evaluate`` with ``--workers`` loader processes (the
difference to the sum shows what the loader processes and the inference threads cost each other on few cores).
``train``: drawing mini-batches from the training loader in-process (Darknet's augmentation), then one optimizer
step (forward, loss, backward, SGD) on a fixed batch, with torch.profiler's top operators of that step.
"""
from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import REPO, SHARED, machine, print_header  # noqa: E402

sys.path.insert(0, str(REPO))
from darknet_torch.config.data_files import read_data_file, read_image_list, read_names  # noqa: E402
from darknet_torch.data.loaders import inference_loader  # noqa: E402
from darknet_torch.detect.predictor import Predictor  # noqa: E402
from darknet_torch.detect.settings import DETECTOR_MAP  # noqa: E402
from darknet_torch.evaluate.runner import detect_batches, evaluate, read_truths  # noqa: E402
from darknet_torch.evaluate.ap import compute_map  # noqa: E402
from darknet_torch.model.fast import optimize_for_inference  # noqa: E402
from darknet_torch.model.loading import load_model  # noqa: E402
from darknet_torch.runtime import keep_freed_memory  # noqa: E402

CFG, WEIGHTS, DATA = REPO / "cfg" / "yolov3-tiny.cfg", SHARED / "weights" / "yolov3-tiny.weights", \
    SHARED / "coco128" / "coco128.data"


def stage(name: str, work):
    started = time.perf_counter()
    result = work()
    print(f"  {name:<58}{time.perf_counter() - started:8.2f} s", flush=True)
    return result


def profile_eval(mode: str, workers: int) -> None:
    data = read_data_file(DATA)
    images, names = read_image_list(data.valid), read_names(data.names)
    model = load_model(CFG, WEIGHTS)
    model = model if mode == "eager" else optimize_for_inference(model, mode)
    predictor = Predictor(model, settings=DETECTOR_MAP)
    print(f"evaluation of {len(images)} images, yolov3-tiny {mode}, batch 8, {torch.get_num_threads()} threads")
    batches = stage("decode + resize every image (in-process)",
                    lambda: list(inference_loader(images, predictor.preparer, 8, 0, "auto")))

    def forward() -> None:
        with torch.inference_mode():
            for batch in batches:
                model(batch.inputs)
    stage("forward only", forward)
    rows, sizes, _, _ = stage("forward + Darknet boxes + NMS (detect_batches)",
                           lambda: detect_batches(predictor, batches, len(images), progress=False))
    truths = list(read_truths(images, len(names))[0])
    stage("AP (compute_map)", lambda: compute_map(rows, truths, len(names), 0.5, 0, 0.25))
    stage(f"whole evaluate(), {workers} loader workers",
          lambda: evaluate(model, images, names, len(names), workers=workers, progress=False))


def profile_train(batches: int, amp: bool) -> None:
    from finetune_coco128 import cpu_cfg

    from darknet_torch.train.run import TrainOptions, build_trainer

    logging.disable(logging.INFO)
    with tempfile.TemporaryDirectory(prefix="profile-train-") as tmp:
        out = Path(tmp)
        cfg = out / "yolov3-tiny-bench.cfg"
        cfg.write_text(cpu_cfg(CFG.read_text(), SimpleNamespace(batch=8, subdivisions=1, iterations=100, lr=0.001,
                                                                 burn_in=0)))
        paths = read_image_list(read_data_file(DATA).train)
        (out / "train.txt").write_text("".join(f"{p.resolve()}\n" for p in paths))
        (out / "coco128.data").write_text(f"classes = 80\ntrain = {out / 'train.txt'}\nvalid = {out / 'train.txt'}\n"
                                          f"names = {SHARED / 'coco128' / 'coco.names'}\nbackup = {out}\n")
        trainer = build_trainer(TrainOptions(data=out / "coco128.data", cfg=cfg, weights=WEIGHTS, clear=True,
                                             workers=0, seed=0, progress=False, amp=amp))
        print(f"training yolov3-tiny 416, batch 8, {torch.get_num_threads()} threads")
        stream = iter(trainer.batches(0))
        drawn = stage(f"draw {batches} augmented mini-batches (in-process)",
                      lambda: [next(stream) for _ in range(batches)])
        model, targets = trainer.model.train(), drawn[0][1]
        inputs = drawn[0][0].contiguous(memory_format=trainer.memory_format)

        def step() -> None:
            trainer.optimizer.zero_grad(set_to_none=True)
            with torch.autocast("cpu", dtype=trainer.autocast_dtype, enabled=amp):
                loss, _ = model.compute_loss(inputs, targets)
            loss.backward()
            trainer.optimizer.step()
        step()
        stage("one step: forward + loss + backward + SGD (after a warm-up step)", step)
        from torch.profiler import ProfilerActivity, profile

        with profile(activities=[ProfilerActivity.CPU]) as prof:
            step()
        print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=12))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("what", choices=("eval", "train"))
    p.add_argument("--mode", default="exact", choices=("eager", "exact", "bf16", "int8", "compile"))
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--batches", type=int, default=4)
    p.add_argument("--amp", action="store_true", help="train: bfloat16 autocast, as `train --amp`")
    args = p.parse_args()
    keep_freed_memory()  # as every darknet_torch command does
    print_header(machine())
    if args.what == "eval":
        profile_eval(args.mode, args.workers)
    else:
        profile_train(args.batches, args.amp)
    return 0


if __name__ == "__main__":
    sys.exit(main())
