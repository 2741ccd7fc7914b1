#!/usr/bin/env python
"""Where the video output thread's CPU goes per 640x480 frame, after the forward (issue 14).

    python benchmarks/profile_post.py [--passes 5] [--frames 60] [--photos] [--cprofile detections|draw|json]

The real yolov3-tiny (exact) runs once on ``--frames`` frames of ``bench_video.py``'s video (dog.jpg stretched to
640x480, sliding 4 px per frame; ``--photos``: the four photos in turn instead), in batches of 4 like the demo; then
each step of ``_OutputStage`` is timed alone on that cached output, one torch thread, process CPU time, best of
``--passes`` passes, per frame: boxes + NMS (``detections_from_output``) and ``to_detections``, ``select_boxes``,
the tracker, drawing on the frame array (each pass starting with an empty label cache, as a video's first pass;
then again with the labels of the pass before), the JSON record.  ``--cprofile STEP`` prints that step's top
functions.
"""
from __future__ import annotations

import argparse
import cProfile
import json
import pstats
import sys
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import REPO, SHARED  # noqa: E402

sys.path.insert(0, str(REPO))
from darknet_torch.config.data_files import read_names  # noqa: E402
from darknet_torch.detect.build import build_predictor  # noqa: E402
from darknet_torch.detect import outputs_draw  # noqa: E402
from darknet_torch.detect.outputs_draw import draw_detections_on_array  # noqa: E402
from darknet_torch.detect.outputs_format import darknet_json_frame, select_boxes  # noqa: E402
from darknet_torch.video.tracker import IoUTracker  # noqa: E402


def frames(count: int, photos: bool) -> list[np.ndarray]:
    paths = sorted((SHARED / "images").glob("*.jpg")) if photos else [SHARED / "images" / "dog.jpg"]
    images = [np.asarray(Image.open(p).convert("RGB").resize((640, 480))) for p in paths]
    return [np.ascontiguousarray(np.roll(images[i % len(images)], 4 * (i // len(images)), axis=1))
            for i in range(count)]


def best_ms(work: Callable[[], object], passes: int, per: int) -> float:
    """Best process-CPU milliseconds per item of ``passes`` runs of ``work`` over ``per`` items."""
    best = float("inf")
    for _ in range(passes):
        started = time.process_time()
        work()
        best = min(best, time.process_time() - started)
    return best / per * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=int, default=60)
    parser.add_argument("--photos", action="store_true", help="the four photos in turn, not the sliding dog")
    parser.add_argument("--passes", type=int, default=5)
    parser.add_argument("--cprofile", choices=["detections", "draw", "json"])
    args = parser.parse_args()
    predictor = build_predictor(REPO / "cfg" / "yolov3-tiny.cfg", weights=SHARED / "weights" / "yolov3-tiny.weights",
                                names=read_names(REPO / "data" / "coco.names"))
    images = frames(args.frames, args.photos)
    prepared = [predictor.prepare_u8(f) for f in images]
    batches = []
    for i in range(0, len(prepared), 4):
        chunk = prepared[i:i + 4]
        batch = torch.stack([p[0] for p in chunk])
        batches.append((predictor.forward_batch(batch), tuple(batch.shape[-2:]), [p[1] for p in chunk]))
    torch.set_num_threads(1)  # as the output thread
    n, thresh, classes = len(images), predictor.thresh, predictor.model.num_classes

    def detections() -> list:
        return [predictor.to_detections(d) for out, hw, infos in batches
                for d in predictor.detections_from_output(out, hw, infos)]

    found = detections()
    boxes = [[b.best for b in select_boxes(d, thresh)] for d in found]
    tracked = IoUTracker()
    ids = [{(b.x, b.y, b.w, b.h): i for b, i in zip(bs, tracked.update(bs))} for bs in boxes]

    def tracker() -> None:
        t = IoUTracker()
        for bs in boxes:
            t.update(bs)

    def draw(cold: bool = True) -> None:
        clear_label_cache = getattr(outputs_draw, "_label_pixels", None)
        if clear_label_cache is not None and cold:
            clear_label_cache.cache_clear()
        for image, dets, track_ids in zip(images, found, ids):
            draw_detections_on_array(image.copy(), dets, classes, thresh, track_ids)

    def copies() -> None:
        for image in images:
            image.copy()

    def as_json() -> None:
        for i, (dets, track_ids) in enumerate(zip(found, ids)):
            json.dumps(darknet_json_frame(i + 1, "video.mp4", dets, track_ids), ensure_ascii=False)

    steps = {"detections": detections, "select_boxes": lambda: [select_boxes(d, thresh) for d in found],
             "tracker": tracker, "draw": draw, "draw, labels cached": lambda: draw(cold=False),
             "(frame copies in draw)": copies, "json": as_json}
    if args.cprofile:
        profile = cProfile.Profile()
        profile.runcall(lambda: [steps[args.cprofile]() for _ in range(20)])
        pstats.Stats(profile).sort_stats("cumulative").print_stats(30)
        return
    print(f"{n} frames, {sum(len(b) for b in boxes) / n:.2f} boxes and {sum(len(d) for d in found) / n:.2f} "
          f"detections per frame; CPU ms per frame, best of {args.passes}, 1 thread")
    for name, work in steps.items():
        work()
        print(f"  {name:<24}{best_ms(work, args.passes, n):7.3f}")
    if hasattr(outputs_draw, "_label_pixels"):
        print(f"  label cache in one pass: {outputs_draw._label_pixels.cache_info()}")


if __name__ == "__main__":
    main()
