#!/usr/bin/env python
"""Benchmark: training throughput (images/s) on coco128, yolov3-tiny at 416x416, darknet_torch vs pytorchyolo.

    python benchmarks/bench_train.py                        # batch 8, 10 iterations per run, 3 rounds + 1 warm-up
    python benchmarks/bench_train.py --iterations 16 --repeats 5 --peer-workers 0 2 4 --peer-keeps-freed-memory

Both start from the official yolov3-tiny weights with the same mini-batch (``--batch``, one mini-batch per update)
and fixed 416x416 input (darknet_torch: ``random=0``; pytorchyolo: no multi-scale).  Each run trains
``--iterations`` mini-batches and is timed from the data loader's start to the last optimizer step (model
construction and weight loading excluded).  darknet_torch: ``build_trainer(...).run()`` as ``darknet_torch train``
runs it (Darknet's augmentation, loss and SGD schedule; the cfg rewritten by finetune_coco128.cpu_cfg; the command's
defaults: float32, channels-last and in-process loading on the CPU, glibc keeping freed memory), and with ``--amp``
(bfloat16 autocast).  pytorchyolo: its train.py loop (imgaug augmentation, ``compute_loss``, the cfg's optimizer:
Adam) once per ``--peer-workers`` value of its ``n_cpu``; ratios are against its fastest.  images/s = images /
seconds.  ``--peer-keeps-freed-memory`` adds pytorchyolo runs with glibc's tunables set as darknet_torch sets them.
"""
from __future__ import annotations

import argparse
import logging
import sys
import tempfile
from pathlib import Path
from types import SimpleNamespace
from typing import Callable

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (REPO, SHARED, interleaved, load_average, machine, median, print_header, runnable,  # noqa: E402
                    save, table, timed)

sys.path.insert(0, str(REPO))
from darknet_torch.config.data_files import read_data_file, read_image_list  # noqa: E402
from darknet_torch.runtime import keep_freed_memory  # noqa: E402
from darknet_torch.train.run import TrainOptions, build_trainer  # noqa: E402
from finetune_coco128 import cpu_cfg  # noqa: E402


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--cfg", type=Path, default=REPO / "cfg" / "yolov3-tiny.cfg")
    p.add_argument("--weights", type=Path, default=SHARED / "weights" / "yolov3-tiny.weights")
    p.add_argument("--coco128", type=Path, default=SHARED / "coco128")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--iterations", type=int, default=10)
    p.add_argument("--workers", type=int, default=None,
                   help="darknet_torch's loader processes (default: its own default, 0 on the CPU)")
    p.add_argument("--peer-workers", type=int, nargs="+", default=[2, 0],
                   help="pytorchyolo's n_cpu values to time (its best counts)")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--no-pytorchyolo", action="store_true")
    p.add_argument("--peer-keeps-freed-memory", action="store_true",
                   help="also time pytorchyolo with glibc keeping freed memory, as darknet_torch's commands do")
    args = p.parse_args()
    logging.disable(logging.INFO)  # build_trainer's data report, once per run
    keep_freed_memory()  # as `darknet_torch train` does

    info = machine()
    print_header(info)
    images: dict[str, int] = {}
    with tempfile.TemporaryDirectory(prefix="bench-train-") as tmp:
        out = Path(tmp)
        settings = SimpleNamespace(batch=args.batch, subdivisions=1, iterations=args.iterations + 1, lr=0.001,
                                   burn_in=0)
        cfg = out / f"{args.cfg.stem}-bench.cfg"
        cfg.write_text(cpu_cfg(args.cfg.read_text(), settings))
        image_list = out / "train.txt"
        paths = read_image_list(read_data_file(args.coco128 / "coco128.data").train)
        image_list.write_text("".join(f"{path.resolve()}\n" for path in paths))
        data = out / "coco128.data"
        data.write_text(f"classes = 80\ntrain = {image_list}\nvalid = {image_list}\n"
                        f"names = {args.coco128 / 'coco.names'}\nbackup = {out / 'backup'}\n")

        def ours(amp: bool) -> Callable[[], float]:
            def run() -> float:
                trainer = build_trainer(TrainOptions(data=data, cfg=cfg, weights=args.weights, clear=True,
                                                     workers=args.workers, seed=0, progress=False, amp=amp))
                return timed(lambda: trainer.run(stop_at=args.iterations))()
            return run

        runs = {name: ours("--amp" in name) for name in runnable(["darknet_torch", "darknet_torch --amp (bf16)"])}
        images.update(dict.fromkeys(runs, args.iterations * args.batch))
        peers = None
        if not args.no_pytorchyolo:
            from peers.pytorchyolo_peer import PeerSettings, peer_cfg

            peers = PeerSettings(torch.get_num_threads(), args.peer_workers, args.peer_keeps_freed_memory)
            official = peer_cfg(SHARED / "darknet" / "cfg" / f"{args.cfg.stem}.cfg", out / "peer.cfg",
                                batch=args.batch)
            runs.update(peers.runs("train", lambda name, answer: images.__setitem__(name, answer["images"]),
                                   cfg=str(official), weights=str(args.weights), list=str(image_list),
                                   iterations=args.iterations, seed=0))
        times = interleaved(runs, args.repeats, args.warmup)
        if peers is not None:
            peers.close()

    rate = {name: images[name] / median(values) for name, values in times.items()}
    peer_rates = [value for name, value in rate.items() if name.startswith("pytorchyolo")]
    reference = max(peer_rates) if peer_rates else None  # the peer at its best setting
    rows = [[name, f"{median(values):.1f}", images[name], f"{rate[name]:.2f}",
             f"{rate[name] / reference:.2f}" if reference else "-"] for name, values in times.items()]
    info["load_average_end"] = [round(x, 2) for x in load_average()]
    workers = "default" if args.workers is None else args.workers
    print(f"# yolov3-tiny 416x416, batch {args.batch}, {args.iterations} iterations per run, darknet_torch loader "
          f"workers: {workers}, {torch.get_num_threads()} threads; load average at the end {info['load_average_end']}")
    print(table(rows, ["trainer", "median s per run", "images per run", "images/s", "x best pytorchyolo"]))
    results = [{"trainer": n, "seconds": v, "images": images[n], "images_per_second": rate[n]} for n, v in times.items()]
    print(f"results: {save('train', {'machine': info, 'results': results})}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
