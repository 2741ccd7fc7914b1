"""CPU time per frame of fitting a uint8 RGB frame to the network, on one thread (the video reader's work).

    python benchmarks/bench_preprocess.py [--sizes 640x480 1920x1080] [--baseline images_before.py]

Paths, each bit-identical: ``float`` = ``preprocess(u8_hwc_to_unit_chw(frame))`` (the reader before issue 14),
``uint8`` = ``preprocess_u8(frame)``; ``--baseline`` adds ``float`` of another revision's ``images.py``
(``git show REV:darknet_torch/data/images.py > images_before.py``).  Interleaved rounds of 50 calls each, thread CPU
time (``time.thread_time``), so other processes' load costs little.
"""
from __future__ import annotations

import argparse
import importlib.util
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import REPO, interleaved, load_average, median  # noqa: E402

sys.path.insert(0, str(REPO))
from darknet_torch.data import images  # noqa: E402


def cpu_ms(work, calls: int = 50):
    def run() -> float:
        started = time.thread_time()
        for _ in range(calls):
            work()
        return (time.thread_time() - started) / calls * 1000
    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", nargs="+", default=["640x480"], help="frame sizes WxH")
    parser.add_argument("--net", type=int, default=416)
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--baseline", type=Path, help="an images.py of another revision, timed as 'before'")
    args = parser.parse_args()
    torch.set_num_threads(1)  # as the video reader thread
    paths = {}
    if args.baseline:
        spec = importlib.util.spec_from_file_location("images_before", args.baseline)
        before = sys.modules["images_before"] = importlib.util.module_from_spec(spec)  # dataclasses look it up
        spec.loader.exec_module(before)
        paths["before"] = lambda x, lb: before.preprocess(before.u8_hwc_to_unit_chw(x), args.net, args.net, lb)
    paths["float"] = lambda x, lb: images.preprocess(images.u8_hwc_to_unit_chw(x), args.net, args.net, lb)
    paths["uint8"] = lambda x, lb: images.preprocess_u8(x, args.net, args.net, lb)
    print(f"load average at start {load_average()[0]:.2f}")
    print("| frame | mode | " + " | ".join(f"{name} ms (median, min)" for name in paths) + " |")
    print("|---|---|" + "---|" * len(paths))
    for size in args.sizes:
        w, h = (int(v) for v in size.split("x"))
        frame = np.random.default_rng(0).integers(0, 256, (h, w, 3), dtype=np.uint8)
        for letterbox in (False, True):
            runs = {name: cpu_ms(lambda p=path: p(frame, letterbox)) for name, path in paths.items()}
            times = interleaved(runs, args.repeats, warmup=1, gap=0, progress=False)
            cells = [f"{median(t):.2f}, {min(t):.2f}" for t in times.values()]
            print(f"| {size} | {'letterbox' if letterbox else 'stretch'} | " + " | ".join(cells) + " |")
    print(f"load average at end {load_average()[0]:.2f}")


if __name__ == "__main__":
    main()
