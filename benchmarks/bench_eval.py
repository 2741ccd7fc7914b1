#!/usr/bin/env python
"""Benchmark: evaluation of coco128 (yolov3-tiny, 416) by darknet_torch and by pytorchyolo, interleaved; and the
coco128 mAP@0.5 of every darknet_torch fast mode next to the exact one.

    python benchmarks/bench_eval.py                         # exact, bf16, int8 vs pytorchyolo, 3 interleaved rounds
    python benchmarks/bench_eval.py --modes exact bf16 int8 compile --repeats 5

Timed: the whole evaluation from image paths to mAP (image decoding, resizing, forward, NMS, matching, AP), the model
already loaded.  darknet_torch runs :func:`darknet_torch.evaluate.runner.evaluate` as ``darknet_torch map`` does
(Darknet's ``detector map``: threshold 0.005, NMS 0.45, area-under-curve AP; the command's defaults: in-process
decoding on the CPU unless ``--workers``, glibc keeping freed memory) on the model returned by
``optimize_for_inference(model, mode)``; ``eager`` is ``load_model``'s model as is.  pytorchyolo runs its ``test.py``
evaluation (``_create_validation_data_loader`` + ``_evaluate`` with its defaults conf 0.01, NMS 0.4, IoU 0.5) with the
same batch size, once per ``--peer-workers`` value of its ``n_cpu``; speed-ups are against its fastest.  The two mAPs
differ in method (Darknet's vs pytorchyolo's matching and AP), so compare times across tools and mAPs only across
darknet_torch modes.  int8 is calibrated on ``data/samples`` (not on coco128).
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (REPO, SHARED, interleaved, load_average, machine, median, print_header, runnable,  # noqa: E402
                    save, table, timed)

sys.path.insert(0, str(REPO))
from bench_inference import CALIBRATION_DIR, network_inputs  # noqa: E402
from darknet_torch.config.data_files import read_data_file, read_image_list, read_names  # noqa: E402
from darknet_torch.detect.sources import expand_sources  # noqa: E402
from darknet_torch.evaluate.runner import evaluate  # noqa: E402
from darknet_torch.model.fast import FAST_MODES, optimize_for_inference  # noqa: E402
from darknet_torch.model.loading import load_model  # noqa: E402
from darknet_torch.runtime import keep_freed_memory  # noqa: E402

MODES = ("eager", *FAST_MODES)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--cfg", type=Path, default=REPO / "cfg" / "yolov3-tiny.cfg")
    p.add_argument("--weights", type=Path, default=SHARED / "weights" / "yolov3-tiny.weights")
    p.add_argument("--data", type=Path, default=SHARED / "coco128" / "coco128.data")
    p.add_argument("--modes", nargs="+", default=["exact", "bf16", "int8"], choices=MODES)
    p.add_argument("--no-pytorchyolo", action="store_true")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--workers", type=int, default=None,
                   help="darknet_torch's loader processes (default: evaluate's own, 0 on the CPU)")
    p.add_argument("--peer-workers", type=int, nargs="+", default=[2, 0],
                   help="pytorchyolo's n_cpu values to time (its best counts)")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--warmup", type=int, default=1)
    args = p.parse_args()
    args.modes = runnable(args.modes)

    keep_freed_memory()  # as `darknet_torch map` does
    info = machine()
    print_header(info)
    data = read_data_file(args.data)
    images, names = read_image_list(data.valid), read_names(data.names)
    model = load_model(args.cfg, args.weights)
    calibration = [network_inputs(expand_sources([CALIBRATION_DIR]), model.input_size[0])]
    maps: dict[str, float] = {}
    runs = {}
    for mode in args.modes:
        net = model if mode == "eager" else optimize_for_inference(model, mode, calibration)

        def run(net=net, mode=mode) -> None:
            maps[mode] = evaluate(net, images, names, len(names), batch_size=args.batch_size,
                                  workers=args.workers, progress=False).map
        runs[f"darknet_torch {mode}"] = timed(run)
    peers = None
    with tempfile.TemporaryDirectory(prefix="bench-eval-") as tmp:
        if not args.no_pytorchyolo:
            from peers.pytorchyolo_peer import PeerSettings, peer_cfg

            image_list = Path(tmp) / "coco128.txt"
            image_list.write_text("".join(f"{path.resolve()}\n" for path in images))
            official = peer_cfg(SHARED / "darknet" / "cfg" / f"{args.cfg.stem}.cfg", Path(tmp) / "peer.cfg")
            peers = PeerSettings(torch.get_num_threads(), args.peer_workers)
            peers.call_all("load", cfg=str(official), weights=str(args.weights))
            runs.update(peers.runs("evaluate", lambda name, answer: maps.__setitem__(name, answer["map50"]),
                                   list=str(image_list), batch_size=args.batch_size, conf_thres=0.01,
                                   nms_thres=0.4, iou_thres=0.5, classes=names))
        times = interleaved(runs, args.repeats, args.warmup)
        if peers is not None:
            peers.close()

    peer_times = [median(values) for name, values in times.items() if name.startswith("pytorchyolo")]
    reference = min(peer_times) if peer_times else None  # the peer at its best setting
    exact_map = maps.get("exact")
    rows, results = [], []
    for engine, values in times.items():
        is_peer = engine.startswith("pytorchyolo")
        mode = engine if is_peer else engine.split()[-1]
        seconds = median(values)
        speedup = f"{reference / seconds:.2f}" if reference else "-"
        delta = "-" if exact_map is None or is_peer else f"{100 * (maps[mode] - exact_map):+.2f}"
        rows.append([engine, f"{seconds:.2f}", f"{len(images) / seconds:.1f}", speedup, f"{100 * maps[mode]:.2f}",
                     delta])
        results.append({"engine": engine, "median_seconds": seconds, "seconds": values, "map50": maps[mode]})
    info["load_average_end"] = [round(x, 2) for x in load_average()]
    workers = "default" if args.workers is None else args.workers
    print(f"# {len(images)} images, batch {args.batch_size}, darknet_torch loader workers: {workers}, "
          f"{torch.get_num_threads()} threads; load average at the end {info['load_average_end']}")
    print(table(rows, ["engine", "median s", "images/s", "speed-up vs best pytorchyolo", "mAP@0.5 %",
                       "mAP change vs exact (points)"]))
    print(f"results: {save('eval', {'machine': info, 'results': results})}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
