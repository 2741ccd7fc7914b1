"""From the model's decoded output to Darknet's detections (``get_network_boxes``), for one image.

Darknet keeps a yolo box when its objectness is ``> thresh`` and sets ``prob[j] = obj*cls[j]`` if that is ``> thresh``
else 0; ``[region]`` heads keep every box.  Rows come in Darknet's order (heads in cfg order, cells row-major, anchor
inner), which only matters for breaking exact ties in NMS but keeps us identical to Darknet there too.  Boxes are
relative to the original image after ``correct_yolo_boxes`` (the letterbox undo, with Darknet's float offset).
Rows holding NaN or inf (diverged weights) are dropped with a warning, where Darknet would keep the inf ones.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from functools import lru_cache
from typing import Sequence

import numpy as np
import torch
from torch import Tensor

from darknet_torch.data.images import LetterboxInfo
from darknet_torch.detect.settings import DETECTOR_TEST

log = logging.getLogger(__name__)


@dataclass
class Detections:
    """Darknet detections of one image: ``boxes`` (N,4) relative cx,cy,w,h; ``objectness`` (N,); ``probs`` (N,C)."""

    boxes: Tensor
    objectness: Tensor
    probs: Tensor

    def __len__(self) -> int:
        return self.boxes.shape[0]

    def select(self, keep: Tensor) -> "Detections":
        return Detections(self.boxes[keep], self.objectness[keep], self.probs[keep])

    def strongest(self, limit: int) -> tuple["Detections", int]:
        """At most ``limit`` (box, class) pairs with non-zero probability, the highest kept (the others' probability
        set to 0, rows and their order unchanged), and how many were dropped.  A cap on what an image can produce:
        ``thresh=0, nms=1`` keeps every pair (e.g. 202,800 for yolov3-tiny at 416)."""
        flat = self.probs.reshape(-1)
        found = int(torch.count_nonzero(flat))
        if found <= limit:
            return self, 0
        kept = torch.zeros_like(flat)
        top = torch.topk(flat, limit).indices
        kept[top] = flat[top]
        return Detections(self.boxes, self.objectness, kept.reshape(self.probs.shape)), found - limit


def darknet_row_order(grids: list[tuple[int, int, int]], device: torch.device | None = None) -> Tensor:
    """Permutation from the model's row order (anchor, row, col) to Darknet's (row, col, anchor), heads in order."""
    parts, offset = [], 0
    for anchors, h, w in grids:
        index = torch.arange(anchors * h * w, device=device).reshape(anchors, h * w)
        parts.append(index.T.reshape(-1) + offset)
        offset += anchors * h * w
    return torch.cat(parts)


@lru_cache(maxsize=16)
def _row_layout(grids: tuple[tuple[int, int, int], ...], keep_all_heads: tuple[bool, ...],
                device: torch.device) -> tuple[Tensor, Tensor]:
    """:func:`darknet_row_order` and, in that order, whether each row is a ``[region]`` head's: the same for every
    batch of a network and input size (a video's frames), so built once.  Shared: never modified."""
    order = darknet_row_order(list(grids), device)
    keep_all = torch.cat([torch.full((a * h * w,), flag, dtype=torch.bool, device=device)
                          for (a, h, w), flag in zip(grids, keep_all_heads)])
    return order, keep_all[order]


def correct_boxes(boxes: Tensor, info: LetterboxInfo) -> Tensor:
    """``correct_yolo_boxes``: float32 boxes relative to the network input -> relative to the original image.

    Uses Darknet's float half-gap offset although the image was pasted at an integer offset (golden/README.md 6.5),
    and its precisions, so each value is C's to the bit: the centre in double (``(b.x - deltaw/2./netw) / ratiow``
    mixes in a double constant), the size times the float32 reciprocal (``b.w *= 1 / ratiow``).
    """
    if (info.new_w, info.new_h) == (info.net_w, info.net_h):
        return boxes
    ratios = np.float32(info.box_scale)
    centre = (boxes[:, :2].double() - boxes.new_tensor(info.box_offset, dtype=torch.float64)) / \
        boxes.new_tensor(ratios, dtype=torch.float64)
    size = boxes[:, 2:4] * boxes.new_tensor(np.float32(1) / ratios)
    return torch.cat([centre.float(), size], dim=1)


def darknet_detections(decoded: Tensor, grids: list[tuple[int, int, int]], keep_all_heads: list[bool],
                       info: LetterboxInfo, thresh: float = DETECTOR_TEST.thresh) -> Detections:
    """Darknet's ``get_network_boxes`` for one image (see :func:`darknet_detections_batch`)."""
    return darknet_detections_batch(decoded[None], grids, keep_all_heads, [info], thresh)[0]


def darknet_detections_batch(decoded: Tensor, grids: list[tuple[int, int, int]], keep_all_heads: list[bool],
                             infos: Sequence[LetterboxInfo], thresh: float = DETECTOR_TEST.thresh) -> list[Detections]:
    """Darknet's ``get_network_boxes`` for every image of a batch.

    ``decoded``: ``(B, N, 5+C)`` from :meth:`Darknet.forward`; ``grids``: :meth:`Darknet.head_grids`;
    ``keep_all_heads[i]``: head i is a ``[region]`` head (every box kept, as Darknet does); ``infos[b]``: how image b
    was fitted into the network input (:func:`darknet_torch.data.images.preprocess`).  Only the kept rows are
    gathered and checked (a few dozen of thousands), each step one operation for the whole batch: a video's frames
    spend no time on the others.
    """
    order, keep_all = _row_layout(tuple(map(tuple, grids)), tuple(keep_all_heads), decoded.device)
    image, row = (keep_all | (decoded[:, order, 4] > thresh)).nonzero(as_tuple=True)  # each image's rows in order
    rows = decoded[image, order[row]]
    finite = torch.isfinite(rows).all(dim=1)
    dropped = int((~finite).sum())
    if dropped:  # Darknet would keep them; they would crash drawing and write 'inf' into label files
        log.warning("dropped %d detection(s) with NaN/inf values (diverged or damaged weights?)", dropped)
        image, row, rows = image[finite], row[finite], rows[finite]
    # Darknet's region detections carry objectness 1 (their sigmoid objectness is folded into prob).
    objectness = torch.where(keep_all[row], torch.ones_like(rows[:, 4]), rows[:, 4])
    probs = rows[:, 4:5] * rows[:, 5:]
    probs = torch.where(probs > thresh, probs, torch.zeros_like(probs))
    counts = torch.bincount(image, minlength=len(infos)).tolist()  # the rows are grouped by image
    return [Detections(correct_boxes(xywh / xywh.new_tensor([info.net_w, info.net_h, info.net_w, info.net_h]), info),
                       obj, prob)
            for xywh, obj, prob, info in zip(rows[:, :4].split(counts), objectness.split(counts), probs.split(counts),
                                             infos)]
