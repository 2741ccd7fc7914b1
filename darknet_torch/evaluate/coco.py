"""COCO metrics (mAP@[.5:.95], @0.5, @0.75, by object size) of the detections ``detector map`` collected.

Scored by pycocotools (the ``coco`` extra), fed in memory: ground truth from the YOLO label rows, detections as
Darknet's ``print_cocos`` writes them (pixel ``x, y, w, h`` clipped to the image, one entry per class with
prob > 0; :func:`darknet_torch.detect.outputs_format.coco_records`). Category ids are the class ids and image
ids the positions in the list, so any dataset works, not only COCO's.

COCO's rules differ from Darknet's on purpose and give different numbers: a detection matches the best
*still unmatched* truth with IoU >= t (Darknet: the best truth, strict >, and a duplicate is an FP), at most
100 detections per image and class, 101 recall points, and classes without ground truth are left out of the
mean (Darknet counts them as AP 0).
"""
from __future__ import annotations

import contextlib
import io
from collections.abc import Sequence
from dataclasses import dataclass
from types import ModuleType

import numpy as np

from darknet_torch.detect.outputs_format import coco_records
from darknet_torch.detect.predictor import Detection
from darknet_torch.errors import DarknetError

#: The 12 numbers of ``COCOeval.summarize``, in its order.
STAT_NAMES = (
    "AP@[.5:.95]", "AP@.5", "AP@.75", "AP small", "AP medium", "AP large",
    "AR maxDets=1", "AR maxDets=10", "AR maxDets=100", "AR small", "AR medium", "AR large",
)


@dataclass(frozen=True)
class CocoStats:
    """pycocotools' results for bounding boxes."""

    #: (12,) ``COCOeval.stats`` (see ``STAT_NAMES``); -1 where undefined (no ground truth in that range).
    stats: np.ndarray
    #: (C,) AP@[.5:.95] and AP@.5 per class (area all, 100 detections); NaN for classes without ground truth.
    class_ap: np.ndarray
    class_ap50: np.ndarray
    #: ``COCOeval.summarize``'s printout.
    summary: str

    @property
    def map(self) -> float:
        """mAP@[.5:.95]."""
        return float(self.stats[0])

    @property
    def map50(self) -> float:
        return float(self.stats[1])


def require_pycocotools() -> tuple[ModuleType, ModuleType]:
    """The ``pycocotools.coco`` and ``pycocotools.cocoeval`` modules, or a clear error naming the extra."""
    try:
        from pycocotools import coco, cocoeval
    except ImportError as exc:
        raise DarknetError(
            "COCO metrics need pycocotools, which is not installed: pip install 'darknet_torch[coco]' "
            "(or pip install pycocotools)"
        ) from exc
    return coco, cocoeval


def _columns(rows: np.ndarray, columns: int) -> np.ndarray:
    """The first ``columns`` columns of an (n, >=columns) array as float64; (0, columns) when empty."""
    rows = np.asarray(rows, np.float64)
    return rows[:, :columns] if rows.size else np.zeros((0, columns))


def coco_ground_truth(truths: Sequence[np.ndarray], image_sizes: np.ndarray, num_classes: int) -> dict:
    """A COCO ``instances`` dataset from YOLO label rows.

    Args:
        truths: per image, (K, >=5) rows ``class_id, cx, cy, w, h`` relative to the image.
        image_sizes: (N, 2) ``width, height`` in pixels; 0, 0 for an unreadable image, whose objects then
            stay missed (no detections) and fall in COCO's "small" range.
        num_classes: categories 0..C-1 (all listed, with or without objects).
    """
    images, annotations = [], []
    for image_id, (rows, (width, height)) in enumerate(zip(truths, np.asarray(image_sizes).tolist())):
        rows = _columns(rows, 5)
        scale = np.array([width, height, width, height], np.float64)
        boxes = rows[:, 1:5] * scale
        boxes[:, :2] -= boxes[:, 2:] / 2  # centre -> top-left corner
        images.append({"id": image_id, "width": width, "height": height})
        for class_id, box in zip(rows[:, 0].astype(int).tolist(), boxes.tolist()):
            annotations.append({"id": len(annotations) + 1,  # COCOeval treats id 0 as "unmatched"
                                "image_id": image_id, "category_id": class_id, "bbox": box,
                                "area": box[2] * box[3], "iscrowd": 0})
    return {"images": images, "annotations": annotations,
            "categories": [{"id": c, "name": str(c)} for c in range(num_classes)]}


def coco_results(detections: Sequence[np.ndarray], image_sizes: np.ndarray) -> list[dict]:
    """COCO results entries of ``compute_map`` rows (``x, y, w, h, class_id, prob`` per image), via Darknet's
    ``print_cocos`` conversion."""
    records: list[dict] = []
    for image_id, (rows, (width, height)) in enumerate(zip(detections, np.asarray(image_sizes).tolist())):
        dets = [Detection(int(c), "", p, x, y, w, h) for x, y, w, h, c, p in _columns(rows, 6).tolist()]
        records += coco_records(image_id, dets, width, height)
    return records


def _per_class_ap(precision: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(C,) AP@[.5:.95] and AP@.5 from ``eval['precision']`` (T, R, K, A, M), area all, last maxDets."""
    table = precision[:, :, :, 0, -1]  # (T, R, K)
    defined = (table > -1).all(axis=(0, 1))
    with np.errstate(invalid="ignore"):
        ap = np.where(defined, table.mean(axis=(0, 1)), np.nan)
        ap50 = np.where(defined, table[0].mean(axis=0), np.nan)
    return ap, ap50


def coco_evaluate(detections: Sequence[np.ndarray], truths: Sequence[np.ndarray], image_sizes: np.ndarray,
                  num_classes: int) -> CocoStats:
    """Score detections with pycocotools' ``COCOeval(iouType="bbox")`` at its default parameters.

    Args:
        detections: per image, (M, >=6) rows ``x, y, w, h, class_id, prob`` (relative centre/size), e.g.
            :attr:`DatasetDetections.detections`.
        truths: per image, (K, >=5) rows ``class_id, cx, cy, w, h`` (relative).
        image_sizes: (N, 2) ``width, height`` in pixels (needed for COCO's small/medium/large ranges).
        num_classes: C.

    Raises:
        DarknetError: pycocotools is not installed.
    """
    if not (len(detections) == len(truths) == len(image_sizes)):
        raise ValueError(f"{len(detections)} detection arrays, {len(truths)} truth arrays, "
                         f"{len(image_sizes)} image sizes")
    coco_module, cocoeval_module = require_pycocotools()
    chatter = io.StringIO()  # pycocotools prints progress on stdout; keep only its summary
    with contextlib.redirect_stdout(chatter):
        ground_truth = coco_module.COCO()
        ground_truth.dataset = coco_ground_truth(truths, image_sizes, num_classes)
        ground_truth.createIndex()
        records = coco_results(detections, image_sizes)
        if records:
            results = ground_truth.loadRes(records)
        else:  # loadRes cannot take an empty list
            results = coco_module.COCO()
            results.dataset = {**ground_truth.dataset, "annotations": []}
            results.createIndex()
        evaluator = cocoeval_module.COCOeval(ground_truth, results, iouType="bbox")
        evaluator.evaluate()
        evaluator.accumulate()
    summary = io.StringIO()
    with contextlib.redirect_stdout(summary):
        evaluator.summarize()
    class_ap, class_ap50 = _per_class_ap(evaluator.eval["precision"])
    return CocoStats(np.asarray(evaluator.stats, np.float64), class_ap, class_ap50, summary.getvalue().rstrip())
