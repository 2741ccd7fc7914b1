"""``detect --crop``: each detection cut out of the original image, filed by class (``OUTPUT/crops/<class>/``).

The boxes are the ones drawn and printed (Darknet's ``get_actual_detections`` at ``thresh``: one per box, named by its
best class). A crop covers the whole box (left/top rounded down, right/bottom up), clipped to the image; it is at
least one pixel. File ``crops/<class>/<image name>_<n>.<ext>``: ``n`` counts the image's boxes from 1 in Darknet's
array order, the extension follows the annotated image's rule (the source's format when Pillow writes it, else PNG).
"""
from __future__ import annotations

import math
import re
from collections.abc import Sequence
from pathlib import Path

from PIL import Image

from darknet_torch.detect.outputs_format import select_boxes
from darknet_torch.detect.predictor import Detection

_UNSAFE = re.compile(r"[^\w.\- ]+")


def class_folder_name(name: str) -> str:
    """A class name as a folder name: characters other than letters, digits, ``_ . -`` and space become ``_``."""
    safe = _UNSAFE.sub("_", name).strip(" .")
    return safe or "_"


def crop_box(det: Detection, width: int, height: int) -> tuple[int, int, int, int]:
    """Pixel (left, top, right, bottom), right/bottom exclusive, covering the box and clipped to the image."""
    left = min(max(math.floor((det.x - det.w / 2) * width), 0), width - 1)
    top = min(max(math.floor((det.y - det.h / 2) * height), 0), height - 1)
    right = min(max(math.ceil((det.x + det.w / 2) * width), left + 1), width)
    bottom = min(max(math.ceil((det.y + det.h / 2) * height), top + 1), height)
    return left, top, right, bottom


def crops(image: Image.Image, detections: Sequence[Detection], thresh: float, name: str,
          suffix: str) -> list[tuple[Path, Image.Image]]:
    """``(relative path, crop)`` of every box shown at ``thresh``: ``crops/<class>/<name>_<n><suffix>``."""
    out = []
    for n, box in enumerate(select_boxes(detections, thresh), start=1):
        path = Path("crops") / class_folder_name(box.best.name) / f"{name}_{n}{suffix}"
        out.append((path, image.crop(crop_box(box.best, *image.size))))
    return out
