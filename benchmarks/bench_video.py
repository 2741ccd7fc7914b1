#!/usr/bin/env python
"""Benchmark: ``demo`` throughput on a 640x480 video against the bare model, in one interleaved run.

    python benchmarks/bench_video.py                                       # yolov3-tiny, exact and bf16
    python benchmarks/bench_video.py --cfg cfg/yolov4-tiny.cfg --weights weights/yolov4-tiny.weights
    python benchmarks/bench_video.py --cfg cfg/yolov4-tiny.cfg --random-weights   # no weights file at hand

The video: ``--frames`` frames of 640x480 H.264 (a photo sliding across the frame, 30 fps), generated in a temporary
folder.  ``bare``: the model's forward pass alone (box decoding included, no image work, no NMS), batch 1, on the
prepared frames; its frames/s is ``1000 / forward-ms``.  ``bare-batch``: the same forward at the demo's
``--batch-size`` (per frame), reported as a second, stricter ratio (the demo batches: bf16 runs much faster per frame
in batches).  ``demo``: :func:`darknet_torch.video.run_video` on the file
as ``darknet_torch demo`` runs it: decoding, Darknet's resize, batched forward + NMS, tracker, drawing, H.264
encoding of the annotated video and the JSON lines, all timed from the first frame to the finalised file (the
demo picks its forward's thread count itself, printed at the end).
Ratio = demo frames/s / bare frames/s (the issue's bar: at least 0.8).  ``demo-json``: the same without the
annotated video (JSON lines only: no drawing, no encoding).  Modes are ``--fast`` modes.

``--float-reader`` adds ``demo-float``: the demo whose reader fits frames the float way (``u8 -> float`` of the whole
frame, then Darknet's resize), interleaved with the uint8 reader's for an A/B of issue 14's resize.

``--random-weights`` (for a cfg whose weights are not at hand, e.g. yolov4-tiny): random weights with every head's
objectness off (no detections; see :func:`silence_random_heads`).
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path
from unittest import mock

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import darknet_torch  # noqa: E402,F401 (before torch: it chooses OpenMP's waiting policy from the load, as the CLI does)

import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import REPO, SHARED, interleaved, machine, median, print_header, runnable, save, table, timed  # noqa: E402

from darknet_torch.data.images import u8_hwc_to_unit_chw  # noqa: E402
from darknet_torch.detect.build import build_predictor  # noqa: E402
from darknet_torch.detect.predictor import Predictor  # noqa: E402
from darknet_torch.detect.settings import DETECTOR_TEST  # noqa: E402
from darknet_torch.model.loading import load_model  # noqa: E402
from darknet_torch.video.pipeline import VideoOutputs, run_video  # noqa: E402
from darknet_torch.video.sources import open_source  # noqa: E402
from darknet_torch.video.writer import VideoWriter  # noqa: E402


def make_video(path: Path, frames: int, width: int = 640, height: int = 480) -> list[np.ndarray]:
    """A photo sliding 4 px per frame, written as H.264; returns the frames."""
    photo = SHARED / "images" / "dog.jpg"
    image = np.asarray(Image.open(photo if photo.exists() else REPO / "data" / "samples" / "chelsea.jpg")
                       .convert("RGB").resize((width, height)))
    images = [np.ascontiguousarray(np.roll(image, 4 * i, axis=1)) for i in range(frames)]
    writer = VideoWriter(path, fps=30)
    for frame in images:
        writer.write(frame)
    writer.close()
    return images


def silence_random_heads(model: torch.nn.Module) -> None:
    """Objectness ~2e-9 in every cell of every head (a frame without objects).  Random weights put every cell and
    class near 0.5, about the threshold: thousands of boxes per frame, which no trained model draws; trained
    yolov3-tiny finds 4 on this video, whose drawing and NMS cost well under a millisecond."""
    with torch.no_grad():
        for i in model.head_indices:
            conv = model.module_list[i - 1].conv
            step = conv.out_channels // model.module_list[i].num_anchors
            conv.weight[4::step] = 0.0
            conv.bias[4::step] = -20.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cfg", default=str(REPO / "cfg" / "yolov3-tiny.cfg"))
    parser.add_argument("--weights", default=str(SHARED / "weights" / "yolov3-tiny.weights"))
    parser.add_argument("--modes", nargs="+", default=["exact", "bf16"], help="--fast modes (default: %(default)s)")
    parser.add_argument("--frames", type=int, default=90, help="frames in the video (default: %(default)s)")
    parser.add_argument("--batch-size", type=int, default=4, help="demo's --batch-size (default: %(default)s)")
    parser.add_argument("--repeats", type=int, default=3, help="timed rounds (default: %(default)s)")
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's)")
    parser.add_argument("--random-weights", action="store_true",
                        help="random weights, objectness off (no detections), instead of --weights")
    parser.add_argument("--float-reader", action="store_true",
                        help="also time 'demo-float': the demo with its reader on the float path (u8 -> float, "
                             "then resize), as before the uint8 path")
    args = parser.parse_args()
    args.modes = runnable(args.modes)
    if args.threads:
        torch.set_num_threads(args.threads)
    info = machine()
    print_header(info)
    model = load_model(args.cfg, None if args.random_weights else args.weights, "cpu")
    if args.random_weights:
        silence_random_heads(model)
    name = Path(args.cfg).stem
    with tempfile.TemporaryDirectory() as tmp:
        video = Path(tmp) / "bench.mp4"
        images = make_video(video, args.frames)
        predictors = {mode: build_predictor(model, DETECTOR_TEST.replace(fast=mode)) for mode in args.modes}
        frames = [predictors[args.modes[0]].prepare_u8(f)[0] for f in images[:20]]
        inputs = [x[None] for x in frames]
        batches = [torch.stack(frames[i:i + args.batch_size]) for i in range(0, len(frames), args.batch_size)]

        def bare(predictor: Predictor, xs: list[torch.Tensor]):
            def work() -> None:
                with torch.inference_mode():
                    for x in xs:
                        predictor.model(x)
            return timed(work)

        def demo(predictor: Predictor, mode: str, video_out: bool, float_reader: bool = False):
            outputs = VideoOutputs(video=Path(tmp) / f"out-{mode}.mp4" if video_out else None,
                                   json_lines=Path(tmp) / f"out-{mode}.jsonl")
            reader = (lambda self, pixels: self.prepare(u8_hwc_to_unit_chw(pixels))) if float_reader else None

            def run() -> float:
                with mock.patch.object(Predictor, "prepare_u8", reader or Predictor.prepare_u8):
                    report = run_video(predictor, open_source(str(video)), outputs, batch_size=args.batch_size,
                                       progress=False)
                assert report.ok and report.frames == args.frames, report.errors
                chosen_threads.setdefault(mode, []).append(report.forward_threads)
                return report.seconds
            return run

        runs, chosen_threads = {}, {}
        for mode, predictor in predictors.items():
            runs[f"bare {mode}"] = bare(predictor, inputs)
            runs[f"bare-batch {mode}"] = bare(predictor, batches)
            runs[f"demo {mode}"] = demo(predictor, mode, video_out=True)
            runs[f"demo-json {mode}"] = demo(predictor, mode, video_out=False)
            if args.float_reader:
                runs[f"demo-float {mode}"] = demo(predictor, mode, video_out=True, float_reader=True)
        times = interleaved(runs, args.repeats, warmup=1)
    rows, results = [], {}
    for mode in args.modes:
        forward_ms = median(times[f"bare {mode}"]) / len(inputs) * 1000
        batch_ms = median(times[f"bare-batch {mode}"]) / len(inputs) * 1000
        bare_fps, demo_fps = 1000 / forward_ms, args.frames / median(times[f"demo {mode}"])
        json_fps = args.frames / median(times[f"demo-json {mode}"])
        results[mode] = {"forward_ms": forward_ms, "bare_fps": bare_fps, "demo_fps": demo_fps,
                         "ratio": demo_fps / bare_fps, "demo_json_fps": json_fps, "json_ratio": json_fps / bare_fps,
                         "forward_ms_batch": batch_ms, "ratio_batch": demo_fps * batch_ms / 1000,
                         "demo_forward_threads": chosen_threads.get(mode)}
        if args.float_reader:
            float_fps = args.frames / median(times[f"demo-float {mode}"])
            results[mode].update(demo_float_fps=float_fps, float_ratio=float_fps / bare_fps)
            print(f"# {mode}: demo with the float reader {float_fps:.1f} frames/s (ratio {float_fps / bare_fps:.2f}), "
                  f"with the uint8 reader {demo_fps:.1f} ({demo_fps / bare_fps:.2f})")
        rows.append([name + (" (random weights)" if args.random_weights else ""), mode, f"{forward_ms:.1f}",
                     f"{bare_fps:.1f}", f"{demo_fps:.1f}", f"{demo_fps / bare_fps:.2f}", f"{json_fps:.1f}",
                     f"{json_fps / bare_fps:.2f}", f"{batch_ms:.1f}", f"{demo_fps * batch_ms / 1000:.2f}"])
    print(table(rows, ["model", "mode", "forward ms (batch 1)", "bare frames/s", "demo frames/s", "ratio",
                       "demo, JSON only, frames/s", "ratio", f"forward ms per frame (batch {args.batch_size})",
                       "ratio to it"]))
    print(f"# load average after the run: {[round(x, 2) for x in os.getloadavg()]}; the demo's forward threads "
          f"(every run, with and without the video): {chosen_threads}")
    path = save(f"bench_video_{name}", {"machine": info, "frames": args.frames, "batch_size": args.batch_size,
                                         "random_weights": args.random_weights, "times": times, "results": results})
    print(f"# raw timings: {path}")


if __name__ == "__main__":
    main()
