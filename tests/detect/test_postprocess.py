"""darknet_detections_batch (one operation per step for the whole batch) against a plain per-image transcription;
correct_boxes against a transcription of Darknet's correct_yolo_boxes."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from darknet_torch.data.images import LetterboxInfo, letterbox_geometry
from darknet_torch.detect.postprocess import correct_boxes, darknet_detections_batch, darknet_row_order

GRIDS = [(3, 13, 13), (3, 26, 26)]


def per_image(decoded: torch.Tensor, keep_all_heads: list[bool], info: LetterboxInfo, thresh: float):
    """``get_network_boxes`` for one image, step by step (the pre-batching code)."""
    order = darknet_row_order(GRIDS)
    keep_all = torch.cat([torch.full((a * h * w,), f) for (a, h, w), f in zip(GRIDS, keep_all_heads)])[order]
    rows = decoded[order]
    chosen = keep_all | (rows[:, 4] > thresh)
    rows, keep_all = rows[chosen], keep_all[chosen]
    finite = torch.isfinite(rows).all(dim=1)
    rows, keep_all = rows[finite], keep_all[finite]
    probs = rows[:, 4:5] * rows[:, 5:]
    objectness = torch.where(keep_all, torch.ones_like(rows[:, 4]), rows[:, 4])
    probs = torch.where(probs > thresh, probs, torch.zeros_like(probs))
    scale = torch.tensor([info.net_w, info.net_h, info.net_w, info.net_h], dtype=rows.dtype)
    return correct_boxes(rows[:, :4] / scale, info), objectness, probs


@pytest.mark.parametrize("keep_all_heads", [[False, False], [True, False], [False, True]])
@pytest.mark.parametrize("thresh", [0.0, 0.25, 0.9])
def test_batch_equals_each_image_alone(keep_all_heads: list[bool], thresh: float) -> None:
    g = torch.Generator().manual_seed(3)
    n = sum(a * h * w for a, h, w in GRIDS)
    decoded = torch.rand(5, n, 5 + 20, generator=g)
    decoded[..., :4] *= 416
    decoded[..., 4] = torch.rand(5, n, generator=g) ** 8  # a few dozen cells above 0.25, as a real frame
    decoded[1] = 0  # nothing found
    decoded[2, 7, 3] = float("nan")
    decoded[2, 7, 4] = 0.99
    decoded[3, 11, 0] = float("inf")
    infos = [LetterboxInfo(416, 416, 416, 416, 416, 416, 0, 0), letterbox_geometry(640, 480, 416, 416),
             letterbox_geometry(300, 700, 416, 416), LetterboxInfo(640, 480, 416, 416, 416, 416, 0, 0),
             letterbox_geometry(333, 333, 416, 416)]
    batch = darknet_detections_batch(decoded, GRIDS, keep_all_heads, infos, thresh)
    assert len(batch) == len(infos)
    for b, (dets, info) in enumerate(zip(batch, infos)):
        for ours, expected in zip((dets.boxes, dets.objectness, dets.probs),
                                  per_image(decoded[b], keep_all_heads, info, thresh)):
            assert ours.dtype == expected.dtype and torch.equal(ours, expected)
    if not any(keep_all_heads):
        assert len(batch[1]) == 0


def c_correct_yolo_boxes(boxes: np.ndarray, info: LetterboxInfo) -> np.ndarray:
    """yolo_layer.c correct_yolo_boxes with letter=1, line by line in C's types: deltaw and ratiow are floats, the
    centre is computed in double (``deltaw / 2. / netw``), the size times the float ``1 / ratiow``."""
    deltaw, deltah = np.float32(info.net_w - info.new_w), np.float32(info.net_h - info.new_h)
    ratiow = np.float32(info.new_w) / np.float32(info.net_w)
    ratioh = np.float32(info.new_h) / np.float32(info.net_h)
    x = (boxes[:, 0].astype(np.float64) - float(deltaw) / 2.0 / info.net_w) / float(ratiow)
    y = (boxes[:, 1].astype(np.float64) - float(deltah) / 2.0 / info.net_h) / float(ratioh)
    w = boxes[:, 2] * (np.float32(1) / ratiow)
    h = boxes[:, 3] * (np.float32(1) / ratioh)
    return np.stack([x.astype(np.float32), y.astype(np.float32), w, h], axis=1)


@pytest.mark.parametrize("orig", [(640, 427), (773, 512), (300, 700), (417, 1000), (5000, 1)])
def test_correct_boxes_is_darknets_to_the_bit(orig: tuple[int, int]) -> None:
    info = letterbox_geometry(*orig, 416, 416)
    boxes = np.random.default_rng(sum(orig)).random((20000, 4), dtype=np.float32)
    ours = correct_boxes(torch.from_numpy(boxes), info)
    assert ours.dtype == torch.float32
    assert np.array_equal(ours.numpy(), c_correct_yolo_boxes(boxes, info))
