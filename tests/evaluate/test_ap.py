"""Darknet's `detector map` scoring: hand-computed cases, plus a naive transcription of
validate_detector_map (written from the C source, loop by loop) as an oracle on random data."""
from __future__ import annotations

import math

import numpy as np
import pytest

from darknet_torch.evaluate.ap import (
    average_precision,
    compute_map,
    expand_detections,
    format_map_report,
)

BOX = [0.5, 0.5, 0.5, 0.5]          # all values exact in float32
FAR = [0.1, 0.1, 0.05, 0.05]        # overlaps nothing near BOX
NO_DETS = np.zeros((0, 6), np.float32)


def truth(class_id: int, box: list[float] = BOX) -> list[float]:
    return [class_id, *box]


def det(box: list[float], class_id: int, prob: float) -> list[float]:
    return [*box, class_id, prob]


def arr(rows: list[list[float]], columns: int) -> np.ndarray:
    return np.array(rows, np.float32).reshape(-1, columns)


def test_perfect_detections_give_ap_1_for_every_method():
    dets = [arr([det(BOX, 0, 0.9)], 6), arr([det(BOX, 0, 0.8)], 6)]
    truths = [arr([truth(0)], 5), arr([truth(0)], 5)]
    for points in (0, 11, 101):
        result = compute_map(dets, truths, num_classes=1, points=points)
        assert result.ap.tolist() == [1.0]
        assert result.map == 1.0
    assert (result.tp, result.fp, result.fn) == (2, 0, 0)
    assert (result.precision, result.recall, result.f1, result.avg_iou) == (1.0, 1.0, 1.0, 1.0)


def test_false_positive_ranked_above_the_true_positive_halves_ap():
    # ranks: FP (p=0, r=0), TP (p=1/2, r=1) -> AUC = 1 * 1/2; 11-point: best p at r>=x is 1/2
    dets = [arr([det(FAR, 0, 0.9), det(BOX, 0, 0.8)], 6)]
    for points in (0, 11):
        result = compute_map(dets, [arr([truth(0)], 5)], 1, points=points)
        assert result.ap.tolist() == [0.5]


def test_duplicate_detection_of_one_truth_is_a_false_positive():
    shifted = [0.5, 0.5, 0.375, 0.5]  # IoU 0.75 with BOX
    dets = [arr([det(BOX, 0, 0.9), det(shifted, 0, 0.8)], 6)]
    result = compute_map(dets, [arr([truth(0)], 5)], 1)
    # ranks: TP (p=1, r=1), FP (p=1/2, r=1) -> AP 1
    assert result.ap.tolist() == [1.0]
    assert (result.tp, result.fp, result.fn) == (1, 1, 0)
    assert result.precision == 0.5
    assert result.avg_iou == 0.5  # (1 + 0 for the FP) / (TP + FP)


def test_summary_deduplicates_in_array_order_but_ranking_in_prob_order():
    # Darknet's conf-thresh stats let the *earlier row of the image* claim the truth, even when a
    # later row has a higher prob; the ranking (AP) gives the truth to the higher prob.
    shifted = [0.5, 0.5, 0.375, 0.5]  # IoU 0.75
    dets = [arr([det(shifted, 0, 0.8), det(BOX, 0, 0.9)], 6)]
    result = compute_map(dets, [arr([truth(0)], 5)], 1)
    assert (result.tp, result.fp) == (1, 1)
    assert result.avg_iou == 0.375  # the shifted row's 0.75, over TP + FP = 2
    assert result.ap.tolist() == [1.0]


def test_an_earlier_row_below_the_threshold_still_claims_the_truth():
    dets = [arr([det(BOX, 0, 0.1), det(BOX, 0, 0.9)], 6)]
    result = compute_map(dets, [arr([truth(0)], 5)], 1)
    assert (result.tp, result.fp, result.fn) == (0, 1, 1)
    assert result.ap.tolist() == [1.0]  # ranked first, the 0.9 row is the TP


def test_class_without_detections_has_ap_0_and_all_classes_count_in_map():
    dets = [arr([det(BOX, 0, 0.9)], 6)]
    truths = [arr([truth(0), truth(1, FAR)], 5)]
    result = compute_map(dets, truths, num_classes=3)  # class 2: no truth, no detection
    assert result.ap.tolist() == [1.0, 0.0, 0.0]
    assert result.map == pytest.approx(1 / 3, abs=1e-15)
    assert result.truths_per_class.tolist() == [1, 1, 0]
    assert (result.tp, result.fp, result.fn) == (1, 0, 1)


def test_detections_of_a_class_without_ground_truth_are_false_positives():
    dets = [arr([det(BOX, 1, 0.9), det(BOX, 0, 0.8)], 6)]  # same box, wrong class first
    result = compute_map(dets, [arr([truth(0)], 5)], num_classes=2)
    assert result.ap.tolist() == [1.0, 0.0]
    assert result.tp_per_class.tolist() == [1, 0]
    assert result.fp_per_class.tolist() == [0, 1]


@pytest.mark.parametrize(("iou_thresh", "matched"), [(0.5, False), (0.49, True)])
def test_iou_threshold_is_strict(iou_thresh, matched):
    half = [0.5, 0.5, 0.25, 0.5]  # IoU with BOX: 0.125 / 0.25 = 0.5 exactly
    result = compute_map([arr([det(half, 0, 0.9)], 6)], [arr([truth(0)], 5)], 1,
                         iou_thresh=iou_thresh)
    assert result.ap.tolist() == [1.0 if matched else 0.0]
    assert (result.tp, result.fp) == ((1, 0) if matched else (0, 1))


def test_first_truth_wins_an_iou_tie():
    left, right = [0.375, 0.5, 0.25, 0.5], [0.625, 0.5, 0.25, 0.5]
    # BOX has IoU 0.5 with both; the second row fits `right` only. If the tie went to `right`,
    # the second row would be a duplicate (FP) instead of a TP.
    dets = [arr([det(BOX, 0, 0.9), det(right, 0, 0.8)], 6)]
    result = compute_map(dets, [arr([truth(0, left), truth(0, right)], 5)], 1, iou_thresh=0.4)
    assert (result.tp, result.fp, result.fn) == (2, 0, 0)
    assert result.ap.tolist() == [1.0]


# One class, 3 truths (one per image), ranked TP 0.9, FP 0.8, TP 0.7, FP 0.6:
#   rank  precision  recall
#    0      1         1/3
#    1      1/2       1/3
#    2      2/3       2/3
#    3      1/2       2/3
# AUC: 1/3 * 1 + (2/3 - 1/3) * 2/3 = 5/9.
# 11-point: recall levels 0, .1, .2, .3 -> 1; .4, .5, .6 -> 2/3; .7 .. 1 -> 0: (4 + 2) / 11.
# 101-point: levels 0..0.33 (34) -> 1; 0.34..0.66 (33) -> 2/3; rest 0: (34 + 22) / 101.
CURVE_DETS = [arr([det(BOX, 0, 0.9), det(FAR, 0, 0.8)], 6),
              arr([det(BOX, 0, 0.7), det(FAR, 0, 0.6)], 6),
              NO_DETS]
CURVE_TRUTHS = [arr([truth(0)], 5)] * 3


@pytest.mark.parametrize(("points", "expected"), [(0, 5 / 9), (11, 6 / 11), (101, 56 / 101)])
def test_auc_and_n_point_interpolation_on_a_hand_computed_curve(points, expected):
    result = compute_map(CURVE_DETS, CURVE_TRUTHS, 1, points=points)
    assert result.ap[0] == pytest.approx(expected, abs=1e-15)


# Five truths ranked TP, TP, TP, FP, TP: recall .2 .4 .6 .6 .8, precision 1 1 1 .75 .8. Darknet's -Ofast build
# computes the 11-point level 0.6 as 6 * (1.0/10) = 0.6000000000000001 > 3/5, so it is first reached at recall
# .8 (precision .8), not at .6 (precision 1): levels 0-.5 -> 1, .6 .7 .8 -> .8, .9 1 -> 0: 8.4 / 11, where
# exact levels would give 8.6 / 11. Darknet's printed 11-point APs on coco128 agree only with the former.
def test_n_point_levels_are_rounded_as_darknets_ofast_build():
    dets = [arr([det(BOX, 0, 0.9)], 6), arr([det(BOX, 0, 0.8)], 6), arr([det(BOX, 0, 0.7)], 6),
            arr([det(FAR, 0, 0.6), det(BOX, 0, 0.5)], 6), NO_DETS]
    result = compute_map(dets, [arr([truth(0)], 5)] * 5, 1, points=11)
    assert result.ap[0] == pytest.approx(8.4 / 11, abs=1e-12)


def test_average_precision_directly():
    precision = np.array([1, 1 / 2, 2 / 3, 1 / 2])
    recall = np.array([1 / 3, 1 / 3, 2 / 3, 2 / 3])
    assert average_precision(precision, recall) == pytest.approx(5 / 9, abs=1e-15)
    assert average_precision(np.zeros(0), np.zeros(0), 11) == 0.0
    with pytest.raises(ValueError, match="points"):
        average_precision(precision, recall, points=1)


def test_summary_at_conf_thresh_counts_only_probs_strictly_above_it():
    shifted = [0.5, 0.5, 0.375, 0.5]  # IoU 0.75
    dets = [
        arr([det(shifted, 0, 0.9), det(FAR, 0, 0.5), det(FAR, 0, 0.25)], 6),  # 0.25: not counted
        arr([det(BOX, 0, 0.3), det(BOX, 1, 0.2)], 6),                          # 0.2: not counted
        NO_DETS,
    ]
    truths = [arr([truth(0)], 5), arr([truth(0), truth(1)], 5), arr([truth(1, FAR)], 5)]
    result = compute_map(dets, truths, num_classes=2)
    assert (result.tp, result.fp, result.fn) == (2, 1, 2)  # 4 truths
    assert result.tp_per_class.tolist() == [2, 0]
    assert result.fp_per_class.tolist() == [1, 0]
    assert result.avg_iou == pytest.approx((0.75 + 1.0) / 3, rel=1e-7)  # float32
    assert result.precision == pytest.approx(2 / 3, rel=1e-7)
    assert result.recall == 0.5
    assert result.f1 == pytest.approx(4 / 7, rel=1e-6)  # 2 * 2/3 * 1/2 / (2/3 + 1/2)
    assert (result.detections_count, result.unique_truth_count) == (5, 4)


def test_rows_with_zero_prob_are_ignored_and_no_detections_give_zero_ap():
    zero = [arr([det(BOX, 0, 0.0)], 6)]
    result = compute_map(zero, [arr([truth(0)], 5)], 1)
    assert result.detections_count == 0
    assert result.ap.tolist() == [0.0]
    assert (result.tp, result.fp, result.fn) == (0, 0, 1)
    assert math.isnan(result.precision)  # Darknet: 0/0


def test_bad_inputs_are_rejected():
    with pytest.raises(ValueError, match="class ids"):
        compute_map([arr([det(BOX, 5, 0.9)], 6)], [arr([], 5)], 2)
    with pytest.raises(ValueError, match="class ids"):
        compute_map([NO_DETS], [arr([truth(2)], 5)], 2)
    with pytest.raises(ValueError, match="shape"):
        compute_map([np.zeros((2, 4))], [arr([], 5)], 2)
    with pytest.raises(ValueError, match="truth arrays"):
        compute_map([NO_DETS], [], 2)
    with pytest.raises(ValueError, match="points"):
        compute_map([NO_DETS], [arr([], 5)], 2, points=1)


def test_expand_detections_follows_darknets_box_then_class_order():
    boxes = np.array([[0.1, 0.2, 0.3, 0.4], [0.5, 0.6, 0.7, 0.8]])
    probs = np.array([[0.0, 0.7, 0.2], [0.9, 0.0, 0.0]])
    rows = expand_detections(boxes, probs)
    assert rows.dtype == np.float32
    np.testing.assert_array_equal(rows, np.array([
        [0.1, 0.2, 0.3, 0.4, 1, 0.7],
        [0.1, 0.2, 0.3, 0.4, 2, 0.2],
        [0.5, 0.6, 0.7, 0.8, 0, 0.9],
    ], np.float32))
    assert expand_detections(np.zeros((0, 4)), np.zeros((0, 3))).shape == (0, 6)


def test_report_prints_darknets_summary_lines():
    result = compute_map(CURVE_DETS, CURVE_TRUTHS, 1)
    report = format_map_report(result, ["thing"]).split("\n")
    assert report[0] == " detections_count = 4, unique_truth_count = 3  "
    row = next(line for line in report if "thing" in line)
    assert [cell.strip() for cell in row.split("|")[1:-1]] == ["0", "thing", "55.56", "3", "2", "2"]
    assert report[-5:] == [
        " for conf_thresh = 0.25, precision = 0.50, recall = 0.67, F1-score = 0.57 ",
        " for conf_thresh = 0.25, TP = 2, FP = 2, FN = 1, average IoU = 50.00 % ",
        "",
        " IoU threshold = 50 %, used Area-Under-Curve for each unique Recall ",
        " mean average precision (mAP@0.50) = 0.555556, or 55.56 % ",
    ]
    eleven = format_map_report(compute_map(CURVE_DETS, CURVE_TRUTHS, 1, points=11), ["thing"])
    assert eleven.endswith(
        " IoU threshold = 50 %, used 11 Recall-points \n"
        " mean average precision (mAP@0.50) = 0.545455, or 54.55 % "
    )
    strict = format_map_report(compute_map(CURVE_DETS, CURVE_TRUTHS, 1, iou_thresh=0.75), ["t"])
    assert " IoU threshold = 75 %, used Area-Under-Curve for each unique Recall " in strict
    assert "(mAP@0.75)" in strict
    with pytest.raises(ValueError, match="names"):
        format_map_report(result, ["a", "b"])


# --- oracle: validate_detector_map transcribed loop by loop (float32 boxes, double PR) ---

def _reference_iou(a, b) -> np.float32:
    f = np.float32
    def overlap(x1, w1, x2, w2):
        left = max(x1 - w1 / f(2), x2 - w2 / f(2))
        right = min(x1 + w1 / f(2), x2 + w2 / f(2))
        return f(right - left)
    w = overlap(a[0], a[2], b[0], b[2])
    h = overlap(a[1], a[3], b[1], b[3])
    inter = f(0) if (w < 0 or h < 0) else f(w * h)
    union = f(f(a[2] * a[3]) + f(b[2] * b[3]) - inter)
    return f(0) if (inter == 0 or union == 0) else f(inter / union)


def _reference_map(all_dets, all_truths, classes, iou_thresh, points, conf_thresh):
    f = np.float32
    iou_thresh, conf_thresh = f(iou_thresh), f(conf_thresh)
    detections = []  # (prob, class_id, unique_truth_index)
    truth_classes_count = [0] * classes
    unique_truth_count, tp_thresh, fp_thresh, avg_iou = 0, 0, 0, f(0)
    for dets, truths in zip(all_dets, all_truths):
        for t in truths:
            truth_classes_count[int(t[0])] += 1
        checkpoint = len(detections)
        for d in dets:
            prob, class_id = f(d[5]), int(d[4])
            if not prob > 0:
                continue
            truth_index, max_iou = -1, f(0)
            for j, t in enumerate(truths):
                current = _reference_iou(d[:4], t[1:5])
                if current > iou_thresh and class_id == int(t[0]) and current > max_iou:
                    max_iou, truth_index = current, unique_truth_count + j
            detections.append((prob, class_id, truth_index))
            if prob > conf_thresh:
                found = any(z[2] == truth_index for z in detections[checkpoint:-1])
                if truth_index > -1 and not found:
                    avg_iou = f(avg_iou + max_iou)
                    tp_thresh += 1
                else:
                    fp_thresh += 1
        unique_truth_count += len(truths)
    if tp_thresh + fp_thresh:
        avg_iou = f(avg_iou / f(tp_thresh + fp_thresh))

    ranked = sorted(detections, key=lambda d: -d[0])  # stable, like glibc's merge sort
    n = len(ranked)
    precision = [[0.0] * n for _ in range(classes)]
    recall = [[0.0] * n for _ in range(classes)]
    tp, fp, truth_flags = [0] * classes, [0] * classes, [0] * unique_truth_count
    for rank, (_, class_id, truth_index) in enumerate(ranked):
        if truth_index > -1 and truth_flags[truth_index] == 0:
            truth_flags[truth_index] = 1
            tp[class_id] += 1
        else:
            fp[class_id] += 1
        for i in range(classes):
            fn = truth_classes_count[i] - tp[i]
            precision[i][rank] = tp[i] / (tp[i] + fp[i]) if tp[i] + fp[i] > 0 else 0.0
            recall[i][rank] = tp[i] / (tp[i] + fn) if tp[i] + fn > 0 else 0.0
    aps = []
    for i in range(classes):
        ap = 0.0
        if n and points == 0:
            last_recall, last_precision = recall[i][n - 1], precision[i][n - 1]
            for rank in range(n - 2, -1, -1):
                delta = last_recall - recall[i][rank]
                last_recall = recall[i][rank]
                if precision[i][rank] > last_precision:
                    last_precision = precision[i][rank]
                ap += delta * last_precision
            ap += (last_recall - 0) * last_precision
        elif n:
            for point in range(points):
                # as Darknet's -Ofast build computes the level (reciprocal math): see ap.py
                level, best = point * (1.0 / (points - 1)), 0.0
                for rank in range(n):
                    if recall[i][rank] >= level and precision[i][rank] > best:
                        best = precision[i][rank]
                ap += best
            ap /= points
        aps.append(ap)
    mean = 0.0
    for ap in aps:
        mean += ap
    return aps, mean / classes, tp_thresh, fp_thresh, avg_iou


def _random_case(seed: int, classes: int = 3, images: int = 25):
    rng = np.random.default_rng(seed)
    all_dets, all_truths = [], []
    for _ in range(images):
        k = rng.integers(0, 5)
        centres = rng.uniform(0.2, 0.8, (k, 2))
        sizes = rng.uniform(0.05, 0.4, (k, 2))
        truths = np.column_stack([rng.integers(0, classes, k), centres, sizes]).astype(np.float32)
        rows = []
        for t in truths:  # jittered copies (some duplicates, some with the wrong class)
            for _ in range(rng.integers(0, 3)):
                box = t[1:5] + rng.normal(0, 0.03, 4) * [1, 1, 0.5, 0.5]
                cls = t[0] if rng.random() < 0.8 else rng.integers(0, classes)
                rows.append([*box, cls, rng.integers(0, 20) / 20])  # ties and zero probs
        for _ in range(rng.integers(0, 4)):  # background boxes
            rows.append([*rng.uniform(0.1, 0.9, 2), *rng.uniform(0.05, 0.3, 2),
                         rng.integers(0, classes), rng.integers(1, 20) / 20])
        order = rng.permutation(len(rows))
        all_dets.append(np.array(rows, np.float32).reshape(-1, 6)[order])
        all_truths.append(truths)
    return all_dets, all_truths


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize(("points", "iou_thresh"), [(0, 0.5), (11, 0.5), (101, 0.5), (0, 0.3)])
def test_matches_a_loop_by_loop_transcription_of_darknet(seed, points, iou_thresh):
    dets, truths = _random_case(seed)
    aps, mean, tp, fp, avg_iou = _reference_map(dets, truths, 3, iou_thresh, points, 0.25)
    result = compute_map(dets, truths, 3, iou_thresh=iou_thresh, points=points)
    assert result.ap.tolist() == aps  # bit-identical: same operations in the same order
    assert result.map == mean
    assert (result.tp, result.fp) == (tp, fp)
    assert result.avg_iou == float(avg_iou)
    assert result.detections_count == sum(int((d[:, 5] > 0).sum()) for d in dets)
