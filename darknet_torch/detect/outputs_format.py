"""Darknet's text and JSON forms of one image's detections (no I/O here; :mod:`outputs` writes them).

Input everywhere is the plain :class:`~darknet_torch.detect.predictor.Detection` list that
:meth:`Predictor.to_detections` returns: one entry per (box, class) with a non-zero probability, boxes in Darknet's
array order and, within a box, classes in increasing order.  Darknet itself works per *box* (a ``detection`` with a
probability per class), so :func:`group_by_box` first regroups the entries: consecutive entries with the same box
are one Darknet detection (two distinct Darknet boxes are never bit-identical: they come from different cells or
anchors).

Arithmetic that decides a printed digit is done in float32, as Darknet's C does it.

The Predictor's entries come in the array order Darknet's NMS leaves (``do_nms_sort``: sorted by the last class's
probability), so the JSON objects, label lines and the printout's ties follow Darknet's order exactly.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from darknet_torch.config.sections import DIGITS_TEXT
from darknet_torch.detect.predictor import Detection
from darknet_torch.detect.settings import DETECTOR_TEST

#: Darknet's ``coco_ids`` (detector.c): COCO category id of each of the 80 classes, used in COCO results files.
COCO_CATEGORY_IDS = (1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 27, 28,
                     31, 32, 33, 34, 35, 36, 37, 38, 39, 40, 41, 42, 43, 44, 46, 47, 48, 49, 50, 51, 52, 53, 54, 55,
                     56, 57, 58, 59, 60, 61, 62, 63, 64, 65, 67, 70, 72, 73, 74, 75, 76, 77, 78, 79, 80, 81, 82, 84,
                     85, 86, 87, 88, 89, 90)

_F32 = np.float32
#: ``detection_to_json`` (image.c) writes only (box, class) pairs with probability above this, whatever the run's
#: threshold (``get_network_boxes`` already applied that one).
JSON_MIN_PROB = _F32(0.005)


@dataclass(frozen=True)
class BoxDetection:
    """One Darknet detection: a box and its classes above the threshold, ``best`` first, then in class order."""

    classes: tuple[Detection, ...]

    @property
    def best(self) -> Detection:
        return self.classes[0]


def group_by_box(detections: Sequence[Detection]) -> list[list[Detection]]:
    """Consecutive entries sharing a box, as Darknet's per-box detections, in array order."""
    groups: list[list[Detection]] = []
    for det in detections:
        if groups and _same_box(groups[-1][0], det):
            groups[-1].append(det)
        else:
            groups.append([det])
    return groups


def _same_box(a: Detection, b: Detection) -> bool:
    return (a.x, a.y, a.w, a.h) == (b.x, b.y, b.w, b.h)


def _shown(det: Detection) -> bool:
    # Darknet hides classes whose name starts with "dont_show" (get_actual_detections).
    return not det.name.startswith("dont_show")


def select_boxes(detections: Sequence[Detection], thresh: float) -> list[BoxDetection]:
    """Darknet's ``get_actual_detections``: boxes with a shown class ``> thresh``, best class first.

    The best class is the first (lowest id) with the highest probability; the other classes ``> thresh`` follow in
    class order (a ``dont_show`` class can never be best but, as in Darknet, is still listed after it).
    """
    limit = float(_F32(thresh))
    selected = []
    for group in group_by_box(detections):
        group = sorted(group, key=lambda d: d.class_id)
        best = None
        for det in group:
            if det.score > (best.score if best else limit) and _shown(det):
                best = det
        if best is not None:
            rest = [d for d in group if d is not best and d.score > limit]
            selected.append(BoxDetection((best, *rest)))
    return selected


def _c_round(value: float) -> float:
    """C's ``round``: half away from zero (keeps the sign of zero, so -0.3 prints as ``-0`` like printf)."""
    return math.copysign(math.floor(abs(value) + 0.5), value)


def darknet_pixels(det: Detection, width: int, height: int) -> tuple[float, float, float, float]:
    """``left_x, top_y, width, height`` as Darknet's ``-ext_output`` computes them (float32, then ``round``)."""
    x, y, w, h = (_F32(v) for v in (det.x, det.y, det.w, det.h))
    W, H = _F32(width), _F32(height)
    return (_c_round(float((x - w / _F32(2)) * W)), _c_round(float((y - h / _F32(2)) * H)),
            _c_round(float(w * W)), _c_round(float(h * H)))


def _printout_line(det: Detection, width: int, height: int, ext_output: bool) -> str:
    line = f"{det.name}: {float(_F32(det.score) * _F32(100)):.0f}%"
    if ext_output:
        left, top, w, h = darknet_pixels(det, width, height)
        line += f"\t(left_x: {left:4.0f}   top_y: {top:4.0f}   width: {w:4.0f}   height: {h:4.0f})"
    return line


def darknet_printout(detections: Sequence[Detection], width: int, height: int, thresh: float = DETECTOR_TEST.thresh,
                     ext_output: bool = True) -> list[str]:
    """The lines Darknet's ``detector test`` prints for one image (image.c ``draw_detections_v3``).

    Boxes sorted by left edge (float32, stable as glibc's merge-sort ``qsort``); per box the best class, then its
    other classes ``> thresh`` in class order; ``name: NN%`` with ``%.0f`` of ``prob*100``; with ``ext_output``
    each line adds ``(left_x, top_y, width, height)`` in pixels of the ``width`` x ``height`` original image.
    """
    boxes = select_boxes(detections, thresh)
    boxes.sort(key=lambda b: _F32(b.best.x) - _F32(b.best.w) / _F32(2))
    return [_printout_line(det, width, height, ext_output) for box in boxes for det in box.classes]


def label_lines(detections: Sequence[Detection], thresh: float = DETECTOR_TEST.thresh) -> list[str]:
    """Darknet's ``-save_labels`` lines: ``class cx cy w h`` (relative, ``%2.4f``), one per box, its best class.

    As in detector.c ``test_detector``: boxes in array order, the first class with the highest probability
    ``> thresh``; coordinates are not clipped (a box may reach outside the image).
    """
    limit = float(_F32(thresh))
    lines = []
    for group in group_by_box(detections):
        best = max(group, key=lambda d: (d.score, -d.class_id))
        if best.score > limit:
            lines.append(f"{best.class_id} {best.x:2.4f} {best.y:2.4f} {best.w:2.4f} {best.h:2.4f}")
    return lines


def darknet_json_frame(frame_id: int, filename: str | Path, detections: Sequence[Detection],
                       track_ids: Mapping[tuple[float, float, float, float], int] | None = None) -> dict:
    """One image in Darknet's ``-out`` JSON form (``detection_to_json``): every shown (box, class) with probability
    above :data:`JSON_MIN_PROB` (float32, as Darknet compares), in array order.

    ``track_ids`` (video): a tracker's id per box, keyed by ``(x, y, w, h)``; objects of a tracked box get
    ``"track_id"``."""
    objects = []
    for d in detections:
        if _shown(d) and _F32(d.score) > JSON_MIN_PROB:
            obj = {"class_id": d.class_id, "name": d.name,
                   "relative_coordinates": {"center_x": d.x, "center_y": d.y, "width": d.w, "height": d.h},
                   "confidence": d.score}
            track_id = track_ids.get((d.x, d.y, d.w, d.h)) if track_ids else None
            if track_id is not None:
                obj["track_id"] = track_id
            objects.append(obj)
    return {"frame_id": frame_id, "filename": str(filename), "objects": objects}


def coco_image_id(path: str | Path) -> int | None:
    """COCO image id from a file name as Darknet reads it (digits after the last ``_``), or None if not numeric.

    ``000000000139.jpg`` -> 139, ``COCO_val2014_000000000042.jpg`` -> 42, ``dog.jpg`` -> None.
    """
    tail = Path(path).stem.rsplit("_", 1)[-1]
    return int(tail) if DIGITS_TEXT.fullmatch(tail) else None


def coco_records(image_id: int, detections: Sequence[Detection], width: int, height: int,
                 category_ids: Sequence[int] | None = None) -> list[dict]:
    """COCO results entries ``{image_id, category_id, bbox: [x, y, w, h] pixels, score}`` (detector.c ``print_cocos``).

    Boxes are clipped to the image as Darknet does; ``category_ids[class_id]`` maps classes to COCO ids (default:
    the class id itself).
    """
    records = []
    for d in detections:
        x0, x1 = max((d.x - d.w / 2) * width, 0.0), min((d.x + d.w / 2) * width, float(width))
        y0, y1 = max((d.y - d.h / 2) * height, 0.0), min((d.y + d.h / 2) * height, float(height))
        category = category_ids[d.class_id] if category_ids is not None else d.class_id
        records.append({"image_id": image_id, "category_id": category,
                        "bbox": [x0, y0, x1 - x0, y1 - y0], "score": d.score})
    return records
