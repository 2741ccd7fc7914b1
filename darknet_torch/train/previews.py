"""Augmented training batches as JPEG mosaics with their boxes (``--show-imgs``, Darknet's ``-show_imgs``).

What the network is trained on, after every augmentation (jitter, mosaic, mixup, colour, blur, letterbox, the
multi-scale size), with the targets the loss receives drawn in Darknet's class colours: the quickest check that labels
and augmentation are right. Darknet's ``-show_imgs`` opens a window per image and writes ``aug_*.jpg`` files; here the
first mini-batch of an iteration becomes one mosaic ``<folder>/batch_<iteration>.jpg``, for the first ``first``
iterations and whenever the file ``<folder>/request`` exists (create it during a run: the next iteration is saved and
the file removed). Only the main process writes; rendering happens only on those iterations.
"""
from __future__ import annotations

import io
import logging
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image
from torch import Tensor

from darknet_torch.detect.outputs_draw import draw_detections
from darknet_torch.detect.predictor import Detection
from darknet_torch.files import write_atomic

log = logging.getLogger(__name__)

#: The mosaic's largest side in pixels (tiles are scaled down to fit).
MOSAIC_SIDE = 1280
#: Images of a mini-batch shown at most.
MAX_IMAGES = 16
REQUEST_FILE = "request"


def batch_mosaic(images: Tensor, targets: Tensor, names: Sequence[str], max_images: int = MAX_IMAGES,
                 side: int = MOSAIC_SIDE) -> Image.Image:
    """A grid of the first ``max_images`` images (``(B, 3, H, W)`` RGB in [0, 1]) with their targets (``(T, 6)``
    rows ``image, class, cx, cy, w, h``, relative) drawn and labelled with the class names."""
    count = min(len(images), max_images)
    columns = math.ceil(math.sqrt(count))
    rows = math.ceil(count / columns)
    height, width = images.shape[2:]
    scale = min(1.0, side / (columns * max(width, height)))
    tile_w, tile_h = max(1, round(width * scale)), max(1, round(height * scale))
    mosaic = Image.new("RGB", (columns * tile_w, rows * tile_h), (114, 114, 114))
    pixels = (images[:count].detach().float().clamp(0, 1) * 255).round().byte().permute(0, 2, 3, 1).cpu().numpy()
    boxes = targets.detach().float().cpu().numpy()
    for index in range(count):
        tile = Image.fromarray(np.ascontiguousarray(pixels[index]), "RGB").resize((tile_w, tile_h), Image.BILINEAR)
        truths = [Detection(int(c), names[int(c)] if int(c) < len(names) else str(int(c)), 1.0, x, y, w, h)
                  for _, c, x, y, w, h in boxes[boxes[:, 0] == index]]
        tile = draw_detections(tile, truths, len(names), thresh=0.0, show_scores=False)
        mosaic.paste(tile, ((index % columns) * tile_w, (index // columns) * tile_h))
    return mosaic


class BatchPreviews:
    """Decides which iterations to preview and writes their mosaics into ``folder``."""

    def __init__(self, folder: Path, names: Sequence[str], first: int = 0) -> None:
        self.folder, self.names, self.remaining = folder, list(names), first

    def wanted(self) -> bool:
        """One of the first ``first`` iterations of this run, or a pending request (one ``stat`` per iteration)."""
        return self.remaining > 0 or (self.folder / REQUEST_FILE).exists()

    def save(self, iteration: int, images: Tensor, targets: Tensor) -> Path:
        """Write ``batch_<iteration>.jpg`` (atomically) and clear a pending request; returns the path."""
        path = self.folder / f"batch_{iteration}.jpg"
        buffer = io.BytesIO()
        batch_mosaic(images, targets, self.names).save(buffer, format="JPEG", quality=85)
        write_atomic(path, buffer.getvalue())
        self.remaining -= 1
        (self.folder / REQUEST_FILE).unlink(missing_ok=True)
        log.info("training batch of iteration %d saved to %s", iteration, path)
        return path
