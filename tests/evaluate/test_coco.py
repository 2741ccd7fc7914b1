"""COCO metrics through pycocotools: hand-computed cases, and a cross-check against a second path, a naive
implementation of COCO's rules written in this file from the COCOeval documentation (greedy matching of each
detection, best score first, to the best still-unmatched truth with IoU >= t; at most 100 detections per image
and class; 101-point interpolated precision; classes without truths left out). Tolerance 1e-12: the two paths do
the same float64 arithmetic, so they may differ only in the last bits of a sum."""
from __future__ import annotations

import sys

import numpy as np
import pytest

pytest.importorskip("pycocotools", reason="the 'coco' extra (pycocotools) is not installed")

from darknet_torch.errors import DarknetError  # noqa: E402
from darknet_torch.evaluate.ap import compute_map  # noqa: E402
from darknet_torch.evaluate.coco import coco_evaluate, require_pycocotools  # noqa: E402

SIZE = np.array([[100, 100]])
ONE = pytest.approx(1.0, abs=1e-12)  # COCOeval's precision is tp / (tp + fp + eps)
TRUTH = [0, 0.5, 0.5, 0.5, 0.5]  # pixels [25, 25, 50, 50] on a 100 x 100 image


def rows(values: list[list[float]], columns: int) -> np.ndarray:
    return np.array(values, np.float32).reshape(-1, columns)


def score(dets: list[list[float]], truths: list[list[float]], classes: int = 1, sizes=SIZE):
    return coco_evaluate([rows(dets, 6)], [rows(truths, 5)], sizes, classes)


# --------------------------------------------------------------------------- hand-computed cases

def test_a_perfect_detection_scores_1_everywhere():
    stats = score([[0.5, 0.5, 0.5, 0.5, 0, 0.9]], [TRUTH])
    assert stats.map == ONE and stats.map50 == ONE and stats.stats[2] == ONE
    assert stats.class_ap[0] == ONE


def test_iou_two_thirds_matches_at_4_of_the_10_thresholds():
    # Shifted right by 10 px: intersection 40 x 50, union 5000 - 2000 -> IoU 2/3, matched at .50 .55 .60 .65.
    stats = score([[0.6, 0.5, 0.5, 0.5, 0, 0.9]], [TRUTH])
    assert stats.map50 == ONE
    assert stats.stats[2] == 0.0  # AP@.75
    assert stats.map == pytest.approx(0.4, abs=1e-12)


def test_boxes_are_clipped_to_the_image_as_darknet_print_cocos_does():
    # Truth [0, 0, 50, 50] px; the detection [-10, -10, 60, 60] px has IoU 2500/3600 unclipped, 1 when clipped.
    stats = score([[0.2, 0.2, 0.6, 0.6, 0, 0.9]], [[0, 0.25, 0.25, 0.5, 0.5]])
    assert stats.stats[2] == ONE and stats.map == ONE


def test_a_duplicate_goes_to_the_free_truth_in_coco_but_is_an_fp_in_darknet():
    # Truths A and B (B shifted right by 10 px). Detection 1 = A exactly; detection 2 (shifted by 2 px)
    # overlaps A with IoU 48/52 and B with IoU 42/58. COCO gives detection 2 to the still-free B: AP 1.
    # Darknet matches it to its best truth A, already taken, so it is an FP and B is missed: AP 1/2.
    truth_a, truth_b = [0, 0.5, 0.5, 0.5, 0.5], [0, 0.6, 0.5, 0.5, 0.5]
    det_1, det_2 = [0.5, 0.5, 0.5, 0.5, 0, 0.9], [0.52, 0.5, 0.5, 0.5, 0, 0.8]
    coco = score([det_1, det_2], [truth_a, truth_b])
    darknet = compute_map([rows([det_1, det_2], 6)], [rows([truth_a, truth_b], 5)], 1)
    assert coco.map50 == ONE
    assert darknet.ap.tolist() == [0.5]


def test_classes_without_truth_are_left_out_of_the_mean_unlike_darknet():
    dets = [[0.5, 0.5, 0.5, 0.5, 0, 0.9], [0.2, 0.2, 0.1, 0.1, 1, 0.8]]  # class 1 has no truth
    coco = score(dets, [TRUTH], classes=2)
    assert coco.map50 == ONE
    assert coco.class_ap50[0] == ONE and np.isnan(coco.class_ap50[1])
    assert compute_map([rows(dets, 6)], [rows([TRUTH], 5)], 2).map == 0.5


def test_no_detections_score_0_and_no_truths_are_undefined():
    assert score([], [TRUTH]).map == 0.0
    assert score([[0.5, 0.5, 0.5, 0.5, 0, 0.9]], []).map == -1.0  # COCOeval's "undefined"


def test_missing_pycocotools_gives_a_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "pycocotools", None)  # makes "import pycocotools" raise ImportError
    with pytest.raises(DarknetError, match=r"pip install 'darknet_torch\[coco\]'"):
        require_pycocotools()


# --------------------------------------------------------------------------- second path

def _corners(boxes: np.ndarray, width: float, height: float, clip: bool) -> np.ndarray:
    x1, y1 = (boxes[:, 0] - boxes[:, 2] / 2) * width, (boxes[:, 1] - boxes[:, 3] / 2) * height
    x2, y2 = (boxes[:, 0] + boxes[:, 2] / 2) * width, (boxes[:, 1] + boxes[:, 3] / 2) * height
    if clip:  # Darknet's print_cocos: only the outer sides are clipped
        x1, y1, x2, y2 = np.maximum(x1, 0), np.maximum(y1, 0), np.minimum(x2, width), np.minimum(y2, height)
    return np.stack([x1, y1, x2, y2], axis=1)


def _iou(a, b) -> float:
    w = min(a[2], b[2]) - max(a[0], b[0])
    h = min(a[3], b[3]) - max(a[1], b[1])
    if w <= 0 or h <= 0:
        return 0.0
    inter = w * h
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def reference_coco_ap(detections, truths, sizes, num_classes) -> np.ndarray:
    """(10, C) AP per IoU threshold and class (area all, 100 detections); NaN for classes without truths."""
    thresholds = np.linspace(0.5, 0.95, 10)
    recall_levels = np.linspace(0.0, 1.0, 101)
    ap = np.full((10, num_classes), np.nan)
    for k in range(num_classes):
        outcomes = [[] for _ in thresholds]  # per threshold: (score, is_tp) in image order, then score order
        n_truths = 0
        for dets, gts, (width, height) in zip(detections, truths, sizes):
            dets, gts = np.asarray(dets, np.float64), np.asarray(gts, np.float64)
            gt_boxes = _corners(gts[gts[:, 0] == k, 1:5], width, height, clip=False)
            mine = dets[dets[:, 4] == k]
            mine = mine[np.argsort(-mine[:, 5], kind="stable")][:100]
            det_boxes = _corners(mine[:, :4], width, height, clip=True)
            n_truths += len(gt_boxes)
            for t_index, t in enumerate(thresholds):
                taken = [False] * len(gt_boxes)
                for det_box, det_score in zip(det_boxes, mine[:, 5]):
                    best, best_iou = -1, min(t, 1 - 1e-10)
                    for g, gt_box in enumerate(gt_boxes):
                        overlap = _iou(det_box, gt_box)
                        if not taken[g] and overlap >= best_iou:
                            best, best_iou = g, overlap
                    if best >= 0:
                        taken[best] = True
                    outcomes[t_index].append((det_score, best >= 0))
        if n_truths == 0:
            continue
        for t_index, pairs in enumerate(outcomes):
            ranked = sorted(pairs, key=lambda pair: -pair[0])  # stable, like COCO's mergesort
            tp = np.cumsum([hit for _, hit in ranked], dtype=np.float64)
            fp = np.cumsum([not hit for _, hit in ranked], dtype=np.float64)
            recall = tp / n_truths
            precision = list(tp / (tp + fp + np.spacing(1)))
            for i in range(len(precision) - 1, 0, -1):
                precision[i - 1] = max(precision[i - 1], precision[i])
            sampled = []
            for level in recall_levels:
                reached = np.flatnonzero(recall >= level)
                sampled.append(precision[reached[0]] if len(reached) else 0.0)
            ap[t_index, k] = np.mean(sampled)
    return ap


def random_case(seed: int, images: int = 30, classes: int = 4):
    """Truths and jittered detections (duplicates, wrong classes, background, ties) on images of varied sizes;
    one image has 130 detections of one class, so the 100-per-image cap matters."""
    rng = np.random.default_rng(seed)
    detections, truths, sizes = [], [], []
    for image in range(images):
        k = int(rng.integers(0, 6))
        gts = np.column_stack([rng.integers(0, classes, k), rng.uniform(0.2, 0.8, (k, 2)),
                               rng.uniform(0.05, 0.5, (k, 2))]).astype(np.float32)
        dets = []
        for gt in gts:
            for _ in range(int(rng.integers(0, 4))):
                box = gt[1:5] + rng.normal(0, 0.04, 4) * [1, 1, 0.5, 0.5]
                cls = gt[0] if rng.random() < 0.85 else rng.integers(0, classes)
                dets.append([*box, cls, rng.integers(1, 30) / 30])
        for _ in range(130 if image == 3 else int(rng.integers(0, 5))):
            dets.append([*rng.uniform(0.1, 0.9, 2), *rng.uniform(0.05, 0.4, 2), 1 if image == 3 else
                         rng.integers(0, classes), rng.uniform(0.005, 1)])
        detections.append(np.array(dets, np.float32).reshape(-1, 6))
        truths.append(gts.reshape(-1, 5))
        sizes.append([int(rng.integers(200, 900)), int(rng.integers(200, 900))])
    return detections, truths, np.array(sizes)


def assert_agrees_with_reference(detections, truths, sizes, num_classes):
    stats = coco_evaluate(detections, truths, sizes, num_classes)
    reference = reference_coco_ap(detections, truths, sizes, num_classes)
    with_truth = ~np.isnan(reference[0])
    assert np.array_equal(~np.isnan(stats.class_ap), with_truth)
    np.testing.assert_allclose(stats.class_ap50[with_truth], reference[0, with_truth], rtol=0, atol=1e-12)
    np.testing.assert_allclose(stats.class_ap[with_truth], reference[:, with_truth].mean(axis=0),
                               rtol=0, atol=1e-12)
    assert stats.map == pytest.approx(reference[:, with_truth].mean(), abs=1e-12)
    assert stats.map50 == pytest.approx(reference[0, with_truth].mean(), abs=1e-12)
    assert stats.stats[2] == pytest.approx(reference[5, with_truth].mean(), abs=1e-12)  # AP@.75
    return stats


@pytest.mark.parametrize("seed", range(3))
def test_pycocotools_agrees_with_the_naive_coco_rules_on_random_cases(seed):
    detections, truths, sizes = random_case(seed)
    stats = assert_agrees_with_reference(detections, truths, sizes, 4)
    assert 0.05 < stats.map < 0.95  # a case where matching decisions matter, not a trivial 0 or 1


@pytest.mark.slow
def test_pycocotools_agrees_with_the_naive_coco_rules_on_real_detections(coco128_dir, real_weights, golden_dir):
    from darknet_torch.config.data_files import read_data_file, read_image_list
    from darknet_torch.evaluate.runner import collect_detections
    from darknet_torch.model.loading import load_model

    paths = read_image_list(read_data_file(coco128_dir / "coco128.data").valid)[:24]
    model = load_model(golden_dir / "real" / "yolov3-tiny_mask123.cfg", real_weights)
    data = collect_detections(model, paths, 80, batch_size=8, workers=1, progress=False)
    assert sum(len(d) for d in data.detections) > 1000
    stats = assert_agrees_with_reference(data.detections, data.truths, data.image_sizes, 80)
    assert stats.map50 > 0.3
