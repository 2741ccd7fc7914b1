"""Darknet's ``detector map`` scoring (``validate_detector_map``, src/detector.c) on plain arrays.

The model-free half of ``detector map``: given each image's post-NMS detections and its ground
truth, reproduce Darknet's matching, ranking, per-class AP, mAP and its summary at a confidence
threshold, with Darknet's float32/float64 arithmetic and summation order, so the printed numbers
agree digit for digit.

What Darknet does, and therefore what this does:

* Matching, per detection row in Darknet's array order: the truth of the **same class** with the
  highest IoU, if that IoU is **strictly** greater than ``iou_thresh`` (first truth wins ties).
* Ranking: all rows of all images are sorted by descending prob with a stable sort (glibc 2.36's
  ``qsort`` is a merge sort). Going down the ranking, a matched row is a TP if its truth was not
  matched by a higher-ranked row (``truth_flags``), otherwise an FP, like unmatched rows.
* Per class: precision = tp/(tp+fp), recall = tp/n_truths (0 without truths) at each of its
  rows. ``points=0`` (default): area under the precision curve made monotone from the right, at
  every unique recall; ``points=N``: mean over recalls i/(N-1) of the best precision at a recall
  >= it (levels rounded as Darknet's -Ofast build computes them). mAP is the mean over **all**
  classes, classes without ground truth counting as AP 0.
* Summary at ``thresh_calc_avg_iou``: rows with prob > thresh are TP if matched and no *earlier
  row of the same image* (in array order, at any prob) matched the same truth, else FP;
  FN = n_truths - TP; average IoU = sum of the TPs' IoU / (TP + FP), in float32.

Darknet's ``difficult`` list (VOC) is not modelled.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property

import numpy as np
import torch
from terminaltables import AsciiTable

from darknet_torch.ops.boxes import box_iou


@dataclass(frozen=True)
class MapResult:
    """Everything ``detector map`` prints. Arrays are indexed by class id."""

    #: (C,) float64 average precision per class, in [0, 1].
    ap: np.ndarray
    #: (C,) int64 ground-truth objects per class.
    truths_per_class: np.ndarray
    #: (C,) int64 TP and FP at the confidence threshold (Darknet prints them beside each AP).
    tp_per_class: np.ndarray
    fp_per_class: np.ndarray
    #: Mean of ``ap`` over all classes.
    map: float
    iou_thresh: float
    points: int
    conf_thresh: float
    #: Summary at ``conf_thresh`` (float32 values, as Darknet computes them; NaN if TP+FP == 0).
    precision: float
    recall: float
    f1: float
    tp: int
    fp: int
    fn: int
    avg_iou: float
    detections_count: int
    unique_truth_count: int


def expand_detections(boxes: np.ndarray, probs: np.ndarray) -> np.ndarray:
    """Darknet's detection array -> ``compute_map`` rows: one row ``x, y, w, h, class, prob``
    per (box, class) with prob > 0, boxes in array order and classes ascending, as
    ``validate_detector_map`` iterates them.

    Args:
        boxes: (N, 4) relative centre/size of each post-NMS detection, in Darknet's array order.
        probs: (N, C) class probabilities after NMS (suppressed ones are 0).
    """
    box_index, class_id = np.nonzero(np.asarray(probs) > 0)  # row-major: box, then class
    return np.column_stack([
        np.asarray(boxes, dtype=np.float32)[box_index],
        class_id.astype(np.float32),
        np.asarray(probs, dtype=np.float32)[box_index, class_id],
    ]).reshape(-1, 6)


def _check_rows(array: np.ndarray, columns: int, what: str, index: int) -> np.ndarray:
    rows = np.asarray(array, dtype=np.float32)
    if rows.size == 0:
        return np.zeros((0, columns), np.float32)
    if rows.ndim != 2 or rows.shape[1] < columns:
        raise ValueError(f"{what}[{index}] must have shape (n, >={columns}), got {rows.shape}")
    return rows


def _class_ids(column: np.ndarray, num_classes: int, what: str, index: int) -> np.ndarray:
    ids = column.astype(np.int64)
    if np.any((ids != column) | (ids < 0) | (ids >= num_classes)):
        raise ValueError(f"{what}[{index}] has class ids outside 0..{num_classes - 1}")
    return ids


def _match_image(dets: np.ndarray, det_class: np.ndarray, truths: np.ndarray,
                 truth_class: np.ndarray, iou_thresh: np.float32) -> tuple[np.ndarray, np.ndarray]:
    """Per detection row: index of its best same-class truth (-1 if none) and that IoU."""
    if len(dets) == 0 or len(truths) == 0:
        return np.full(len(dets), -1, np.int64), np.zeros(len(dets), np.float32)
    iou = box_iou(torch.from_numpy(dets[:, :4]), torch.from_numpy(truths[:, 1:5])).numpy()  # box.c box_iou
    # Darknet: iou > iou_thresh and iou > best-so-far (which starts at 0), so also iou > 0.
    eligible = (det_class[:, None] == truth_class[None, :]) & (iou > iou_thresh) & (iou > 0)
    candidate = np.where(eligible, iou, np.float32(-1))
    best = candidate.argmax(axis=1)  # first of equal IoUs, as Darknet's strict '>' keeps it
    best_iou = candidate[np.arange(len(dets)), best]
    matched = best_iou > 0
    return np.where(matched, best, -1), np.where(matched, best_iou, np.float32(0))


def _first_occurrences(truth_index: np.ndarray) -> np.ndarray:
    """True where a row matches a truth that no earlier row matched."""
    first = np.zeros(len(truth_index), bool)
    matched_rows = np.flatnonzero(truth_index >= 0)
    _, first_of_each = np.unique(truth_index[matched_rows], return_index=True)
    first[matched_rows[first_of_each]] = True
    return first


def _sequential_sum(values: np.ndarray) -> float:
    """Left-to-right sum, as a C loop adds (numpy's ``sum`` is pairwise)."""
    return float(np.add.accumulate(values)[-1]) if len(values) else 0.0


def _check_points(points: int) -> None:
    if points != 0 and points < 2:  # Darknet would divide by points - 1 = 0
        raise ValueError(f"points must be 0 or >= 2, got {points}")


def average_precision(precision: np.ndarray, recall: np.ndarray, points: int = 0) -> float:
    """One class's AP from its PR points, exactly as ``validate_detector_map`` integrates.

    Args:
        precision, recall: (n,) float64 at each of the class's detections in rank order
            (recall non-decreasing).
        points: 0 for the area under the curve at every unique recall (Darknet's default),
            N >= 2 for N-point interpolation (11: PascalVOC 2007, 101: MS COCO).
    """
    _check_points(points)
    n = len(precision)
    if n == 0:
        return 0.0
    best_from = np.maximum.accumulate(precision[::-1])[::-1]  # max precision at ranks >= k
    if points == 0:
        # Darknet walks the ranks backwards, weighting the recall step into rank k by the best
        # precision at ranks >= k-1; where the step is > 0, rank k is a TP, so precision[k] >=
        # precision[k-1] and that equals the best at ranks >= k. Summed from the last rank.
        steps = np.diff(recall, prepend=0.0) * best_from
        return _sequential_sum(steps[::-1])
    # Darknet's Makefile builds with -Ofast, whose reciprocal math turns ``point * 1.0 / (N-1)``
    # into ``point * (1.0 / (N-1))``: 0.3, 0.6 and 0.7 become 1 ulp larger than 3/10, 3/5 and 7/10,
    # so an exact recall of 3/5 misses level 0.6 there. The printed 11/101-point APs need this.
    levels = np.arange(points) * (1.0 / (points - 1))
    first_rank = np.searchsorted(recall, levels, side="left")  # first rank with recall >= level
    interpolated = np.where(first_rank < n, best_from[np.minimum(first_rank, n - 1)], 0.0)
    return _sequential_sum(interpolated) / points


@dataclass(frozen=True)
class MatchedDetections:
    """Every (detection, class) row of a data set matched to the ground truth as ``detector map`` matches them.

    Rows are in Darknet's array order (images in order, then each image's rows); truths are concatenated over the
    images. What ``compute_map`` scores, and what the evaluation plots draw, so both show the same numbers.
    """

    prob: np.ndarray  #: (R,) float32 probability of each row
    class_id: np.ndarray  #: (R,) int64 class of each row
    image: np.ndarray  #: (R,) int64 index of the row's image
    truth: np.ndarray  #: (R,) int64 index of the matched truth (same class, IoU > iou_thresh), -1 if none
    iou: np.ndarray  #: (R,) float32 IoU with that truth (0 if none)
    truth_class: np.ndarray  #: (T,) int64 class of each truth
    truth_image: np.ndarray  #: (T,) int64 index of each truth's image
    box: np.ndarray  #: (R, 4) float32 relative centre/size of each row
    truth_box: np.ndarray  #: (T, 4) float32 relative centre/size of each truth
    num_classes: int

    @cached_property
    def truths_per_class(self) -> np.ndarray:
        return np.bincount(self.truth_class, minlength=self.num_classes).astype(np.int64)

    @cached_property
    def first_match(self) -> np.ndarray:
        """(R,) bool: the summary's TP rule at any threshold: matched, and no earlier row (array order) took the
        same truth. At ``thresh`` the TPs are ``first_match & (prob > thresh)``, every other row above it an FP."""
        return _first_occurrences(self.truth)

    @cached_property
    def rank_order(self) -> np.ndarray:
        """Row indices by descending prob (stable, as glibc's merge-sort ``qsort``)."""
        return np.argsort(-self.prob, kind="stable")

    @cached_property
    def ranked_tp(self) -> np.ndarray:
        """(R,) bool in rank order: a truth counts once, for its best-ranked row."""
        return _first_occurrences(self.truth[self.rank_order])

    def pr_curve(self, class_id: int | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(prob, precision, recall) float64 at each rank of one class's rows (``None``: all rows pooled, recall
        over all truths): the points ``detector map`` integrates into the class's AP."""
        ranked_class = self.class_id[self.rank_order]
        keep = slice(None) if class_id is None else ranked_class == class_id
        is_tp = self.ranked_tp[keep]
        cum_tp = np.cumsum(is_tp)
        precision = cum_tp / np.arange(1, len(is_tp) + 1, dtype=np.float64)
        n_truths = len(self.truth_class) if class_id is None else self.truths_per_class[class_id]
        recall = cum_tp / float(n_truths) if n_truths else np.zeros(len(is_tp))
        return self.prob[self.rank_order][keep].astype(np.float64), precision, recall


def match_detections(detections: Sequence[np.ndarray], truths: Sequence[np.ndarray], num_classes: int,
                     iou_thresh: float = 0.5) -> MatchedDetections:
    """Match each image's rows to its truths as ``validate_detector_map`` does (see :func:`compute_map` for the
    input forms); rows with prob <= 0 are dropped, as Darknet skips them."""
    if len(detections) != len(truths):
        raise ValueError(f"{len(detections)} detection arrays for {len(truths)} truth arrays")
    iou_t = np.float32(iou_thresh)
    columns: dict[str, list[np.ndarray]] = {name: [] for name in
                                            ("prob", "class_id", "image", "truth", "iou", "truth_class",
                                             "truth_image", "box", "truth_box")}
    truth_offset = 0
    for image, (dets, gts) in enumerate(zip(detections, truths)):
        dets = _check_rows(dets, 6, "detections", image)
        dets = dets[dets[:, 5] > 0]
        gts = _check_rows(gts, 5, "truths", image)
        det_class = _class_ids(dets[:, 4], num_classes, "detections", image)
        gt_class = _class_ids(gts[:, 0], num_classes, "truths", image)
        index, iou = _match_image(dets, det_class, gts, gt_class, iou_t)
        columns["prob"].append(dets[:, 5])
        columns["class_id"].append(det_class)
        columns["image"].append(np.full(len(dets), image, np.int64))
        columns["truth"].append(np.where(index >= 0, index + truth_offset, -1))
        columns["iou"].append(iou)
        columns["truth_class"].append(gt_class)
        columns["truth_image"].append(np.full(len(gts), image, np.int64))
        columns["box"].append(dets[:, :4])
        columns["truth_box"].append(gts[:, 1:5])
        truth_offset += len(gts)
    empty = {"prob": np.zeros(0, np.float32), "iou": np.zeros(0, np.float32),
             "box": np.zeros((0, 4), np.float32), "truth_box": np.zeros((0, 4), np.float32)}
    joined = {name: np.concatenate(parts) if parts else empty.get(name, np.zeros(0, np.int64))
              for name, parts in columns.items()}
    return MatchedDetections(**joined, num_classes=num_classes)


def compute_map(
    detections: Sequence[np.ndarray],
    truths: Sequence[np.ndarray],
    num_classes: int,
    iou_thresh: float = 0.5,
    points: int = 0,
    thresh_calc_avg_iou: float = 0.25,
) -> MapResult:
    """Score detections against ground truth exactly as Darknet's ``detector map`` does.

    Args:
        detections: per image, (M, >=6) rows ``x, y, w, h, class_id, prob`` (box centre and size
            relative to the image; extra columns ignored), one row per (post-NMS detection,
            class) in Darknet's order: detections in the NMS-sorted array order, classes
            ascending (``expand_detections`` builds them). Rows with prob <= 0 are ignored, as
            Darknet skips them.
        truths: per image, (K, >=5) rows ``class_id, x, y, w, h`` (relative), e.g.
            ``read_labels(...).boxes``; an image without labels has K = 0.
        num_classes: C, the network's classes (Darknet takes them from the last YOLO layer).
        iou_thresh: a detection matches a truth if IoU > this (strict).
        points: 0 (area under the curve, the default), 11 or 101 (any N >= 2).
        thresh_calc_avg_iou: the confidence threshold of the summary (``-thresh``).

    All inputs are rounded to float32 first, as Darknet stores them. With no detection at all
    every AP is 0 (Darknet reads out of bounds there).
    """
    _check_points(points)
    matched = match_detections(detections, truths, num_classes, iou_thresh)
    return score_matched(matched, iou_thresh, points, thresh_calc_avg_iou)


def score_matched(matched: MatchedDetections, iou_thresh: float = 0.5, points: int = 0,
                  thresh_calc_avg_iou: float = 0.25) -> MapResult:
    """:func:`compute_map` on rows already matched with ``iou_thresh`` by :func:`match_detections`."""
    _check_points(points)
    iou_t, conf_t = np.float32(iou_thresh), np.float32(thresh_calc_avg_iou)
    num_classes, n_truths = matched.num_classes, len(matched.truth_class)

    # Summary at the confidence threshold, rows in array order (images, then detections).
    above = matched.prob > conf_t
    tp_rows = above & matched.first_match
    fp_rows = above & ~tp_rows
    tp, fp = int(tp_rows.sum()), int(fp_rows.sum())
    avg_iou = np.float32(_sequential_sum(matched.iou[tp_rows])) if tp else np.float32(0)
    if tp + fp:
        avg_iou = np.float32(avg_iou / np.float32(tp + fp))
    tp32, fp32, fn32 = np.float32(tp), np.float32(fp), np.float32(n_truths - tp)
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = tp32 / (tp32 + fp32)
        recall = tp32 / (tp32 + fn32)
        f1 = np.float32(2) * precision * recall / (precision + recall)

    ap = np.zeros(num_classes, np.float64)
    for class_id in np.unique(matched.class_id):
        _, class_precision, class_recall = matched.pr_curve(int(class_id))
        ap[class_id] = average_precision(class_precision, class_recall, points)

    return MapResult(
        ap=ap,
        truths_per_class=matched.truths_per_class,
        tp_per_class=np.bincount(matched.class_id[tp_rows], minlength=num_classes).astype(np.int64),
        fp_per_class=np.bincount(matched.class_id[fp_rows], minlength=num_classes).astype(np.int64),
        map=_sequential_sum(ap) / num_classes,
        iou_thresh=float(iou_t),
        points=points,
        conf_thresh=float(conf_t),
        precision=float(precision),
        recall=float(recall),
        f1=float(f1),
        tp=tp,
        fp=fp,
        fn=n_truths - tp,
        avg_iou=float(avg_iou),
        detections_count=len(matched.prob),
        unique_truth_count=n_truths,
    )


def _c_fixed(value: float, decimals: int) -> str:
    """printf("%.Nf"): glibc writes NaN as "nan"/"-nan" by sign (x86's 0/0 gives "-nan")."""
    if math.isnan(value):
        return "-nan" if math.copysign(1.0, value) < 0 else "nan"
    return f"{value:.{decimals}f}"


def format_map_report(result: MapResult, names: Sequence[str]) -> str:
    """A per-class table, then Darknet's summary lines worded and rounded exactly as
    ``detector map`` prints them (same float32 products for the percentages)."""
    if len(names) != len(result.ap):
        raise ValueError(f"{len(names)} names for {len(result.ap)} classes")
    rows = [["class_id", "name", "AP (%)", "truths", "TP", "FP"]]
    for class_id, name in enumerate(names):
        rows.append([
            str(class_id), name, f"{result.ap[class_id] * 100:.2f}",
            str(result.truths_per_class[class_id]),
            str(result.tp_per_class[class_id]), str(result.fp_per_class[class_id]),
        ])
    table = AsciiTable(rows)
    for column in (0, 2, 3, 4, 5):
        table.justify_columns[column] = "right"

    conf = _c_fixed(result.conf_thresh, 2)
    avg_iou_percent = float(np.float32(result.avg_iou) * np.float32(100))
    iou_percent = float(np.float32(result.iou_thresh) * np.float32(100))
    method = (f"used {result.points} Recall-points" if result.points
              else "used Area-Under-Curve for each unique Recall")
    lines = [
        f" detections_count = {result.detections_count}, "
        f"unique_truth_count = {result.unique_truth_count}  ",
        table.table,
        "",
        f" for conf_thresh = {conf}, precision = {_c_fixed(result.precision, 2)}, "
        f"recall = {_c_fixed(result.recall, 2)}, F1-score = {_c_fixed(result.f1, 2)} ",
        f" for conf_thresh = {conf}, TP = {result.tp}, FP = {result.fp}, FN = {result.fn}, "
        f"average IoU = {_c_fixed(avg_iou_percent, 2)} % ",
        "",
        f" IoU threshold = {iou_percent:2.0f} %, {method} ",
        f" mean average precision (mAP@{_c_fixed(result.iou_thresh, 2)}) = "
        f"{result.map:f}, or {_c_fixed(result.map * 100, 2)} % ",
    ]
    return "\n".join(lines)
