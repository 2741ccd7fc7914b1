"""NMS: Darknet goldens (every folder), a transcription of box.c as oracle, hand-made tie/swap cases."""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from darknet_torch.ops import NMS_KINDS, apply_nms, diounms_sort, do_nms_sort, nms_per_class, xywh_to_xyxy
from darknet_torch.ops.nms import _REPLAY_ROWS, darknet_array_order, darknet_nms

MINI = [
    "Gaussian_yolov3_BDD", "enet-coco", "yolov2", "yolov2-tiny", "yolov3", "yolov3-spp", "yolov3-tiny",
    "yolov3-tiny-prn", "yolov3-tiny_3l", "yolov4", "yolov4-csp", "yolov4-csp-swish", "yolov4-p5",
    "yolov4-sam-mish-csp-reorg-bfm", "yolov4-tiny", "yolov4-tiny-3l", "yolov4x-mish", "yolov7", "yolov7-tiny",
]  # fmt: skip
PHOTOS = [f"{photo}_{mode}" for photo in ("dog", "eagle", "giraffe", "horses") for mode in ("resize", "letterbox")]
GOLDEN_CASES = (
    [f"mini/{name}" for name in MINI]
    + ["real/dog_128_resize_all_layers"]
    + [f"real/{name}" for name in PHOTOS]
    + [f"real/{name}/mask123" for name in PHOTOS]
)
HEAD_TYPES = ("yolo", "Gaussian_yolo", "region")


def test_every_golden_detection_folder_is_covered(golden_dir: Path) -> None:
    present = {
        str(path.parent.relative_to(golden_dir))
        for pattern in ("mini/*/dets_pre_nms.f32", "real/*/dets_pre_nms.f32", "real/*/mask123/dets_pre_nms.f32")
        for path in golden_dir.glob(pattern)
    }
    assert present == set(GOLDEN_CASES)


def _read_survivors(path: Path) -> dict[tuple[int, int], float]:
    rows = np.fromfile(path, "<f4").reshape(-1, 3)
    return {(int(idx), int(cls)): float(prob) for idx, cls, prob in rows}


def _survivors(pre: np.ndarray, probs_after: torch.Tensor) -> dict[tuple[int, int], float]:
    rows, classes = np.nonzero(probs_after.numpy())
    return {(int(pre[r, 0]), int(c)): float(probs_after[r, c]) for r, c in zip(rows, classes)}


@pytest.mark.parametrize("case", GOLDEN_CASES)
def test_nms_matches_darknet_golden(golden_dir: Path, case: str) -> None:
    folder = golden_dir / case
    index = json.loads((folder / "index.json").read_text())
    det = index["detections"]
    pre = np.fromfile(folder / det["pre_nms"], "<f4").reshape(det["nboxes"], det["ncols"])
    table = torch.from_numpy(pre)
    boxes, objectness, probs = table[:, 1:5], table[:, 5], table[:, 6 : 6 + det["classes"]]
    before = probs.clone()

    expected = _read_survivors(folder / det["post_nms"])
    assert len(expected) < int((probs != 0).sum()), "golden without any suppression cannot test NMS"
    assert _survivors(pre, do_nms_sort(boxes, objectness, probs, det["nms_thresh"])) == expected
    assert torch.equal(probs, before)

    last_head = [layer for layer in index["layers"] if layer["type"] in HEAD_TYPES][-1]
    kind, beta = last_head.get("nms_kind", "default"), last_head.get("beta_nms", 0.6)
    cfg_file = folder / "dets_post_cfgnms.f32"
    assert cfg_file.exists() == (kind != "default")
    if cfg_file.exists():
        cfg_expected = _read_survivors(cfg_file)
        assert cfg_expected != expected
        assert _survivors(pre, apply_nms(boxes, objectness, probs, det["nms_thresh"], kind, beta)) == cfg_expected
    else:
        cfg_expected = expected
        assert _survivors(pre, apply_nms(boxes, objectness, probs, det["nms_thresh"], kind, beta)) == expected
    order, after = darknet_nms(boxes, objectness, probs, det["nms_thresh"], kind, beta)
    assert _survivors(pre, after) == cfg_expected and torch.equal(order, darknet_array_order(objectness, probs))


# --- oracle: src/box.c transcribed with Python lists and float32 scalars -----------------------------

F = np.float32


def _edges(b):
    return b[0] - b[2] / F(2), b[1] - b[3] / F(2), b[0] + b[2] / F(2), b[1] + b[3] / F(2)


def _box_iou(a, b) -> np.float32:
    al, at, ar, ab = _edges(a)
    bl, bt, br, bb = _edges(b)
    w, h = min(ar, br) - max(al, bl), min(ab, bb) - max(at, bt)
    inter = F(0) if (w < 0 or h < 0) else w * h
    union = a[2] * a[3] + b[2] * b[3] - inter
    return F(0) if (inter == 0 or union == 0) else inter / union


def _box_diou(a, b, exponent: float) -> np.float32:
    al, at, ar, ab = _edges(a)
    bl, bt, br, bb = _edges(b)
    w, h = max(ar, br) - min(al, bl), max(ab, bb) - min(at, bt)
    c = w * w + h * h
    iou = _box_iou(a, b)
    if c == 0:
        return iou
    d = (a[0] - b[0]) * (a[0] - b[0]) + (a[1] - b[1]) * (a[1] - b[1])
    return iou - F(math.pow(float(d / c), exponent))


def darknet_oracle(boxes, objectness, probs, thresh=0.45, kind="default", beta=0.6) -> np.ndarray:
    """do_nms_sort / diounms_sort, statement by statement (Python's sort is stable like glibc's msort)."""
    thresh = F(thresh)
    if kind == "greedynms":
        suppress = lambda a, b: _box_diou(a, b, 0.6) > thresh
    elif kind == "diounms":
        suppress = lambda a, b: _box_diou(a, b, float(F(beta))) > thresh
    else:
        suppress = lambda a, b: _box_iou(a, b) > thresh
    dets = [[i, boxes[i], objectness[i], probs[i].copy()] for i in range(len(boxes))]
    i, k = 0, len(dets) - 1
    while i <= k:
        if dets[i][2] == 0:
            dets[i], dets[k] = dets[k], dets[i]
            k -= 1
        else:
            i += 1
    total = k + 1
    for cls in range(probs.shape[1]):
        dets[:total] = sorted(dets[:total], key=lambda det: -det[3][cls])
        for i in range(total):
            if dets[i][3][cls] == 0:
                continue
            for j in range(i + 1, total):
                if suppress(dets[i][1], dets[j][1]):
                    dets[j][3][cls] = 0
    out = np.empty_like(probs)
    for idx, _, _, p in dets:
        out[idx] = p
    return out


def random_detections(seed: int, n: int = 48, classes: int = 4, units: float = 1.0):
    """Clustered boxes with many exactly tied probabilities and some zero-objectness rows."""
    rng = np.random.default_rng(seed)
    centres = rng.random((4, 2))[rng.integers(0, 4, n)] + rng.normal(0, 0.03, (n, 2))
    sizes = rng.choice([0.05, 0.1, 0.2, 0.4], (n, 1)) * np.exp(rng.normal(0, 0.2, (n, 2)))
    boxes = (np.concatenate((centres, sizes), 1) * units).astype(F)
    objectness = np.where(rng.random(n) < 0.15, 0, rng.random(n)).astype(F)
    probs = rng.choice(np.array([0, 0, 0.25, 0.5, 0.75], F), (n, classes))
    return boxes, objectness, probs


@pytest.mark.parametrize("kind", ["default", "greedynms", "diounms"])
@pytest.mark.parametrize("seed", range(8))
def test_matches_box_c_transcription_with_ties(seed: int, kind: str) -> None:
    boxes, objectness, probs = random_detections(seed, units=416.0 if seed % 2 else 1.0)
    beta = 0.8 if seed % 3 == 0 else 0.6
    expected = darknet_oracle(boxes, objectness, probs, 0.45, kind, beta)
    assert (expected != probs).any()
    ours = apply_nms(torch.from_numpy(boxes), torch.from_numpy(objectness), torch.from_numpy(probs), 0.45, kind, beta)
    np.testing.assert_array_equal(ours.numpy(), expected)


@pytest.mark.parametrize("thresh", [0.0, 0.1, 0.45, 0.9, 1.0])
def test_matches_box_c_transcription_across_thresholds_and_degenerate_boxes(thresh: float) -> None:
    boxes, objectness, probs = random_detections(100, n=60, classes=3)
    boxes[:3, 2] = [0.0, -0.1, np.nan]  # intersect nothing: never suppress nor get suppressed
    boxes[3:6] = boxes[6]  # identical boxes
    expected = darknet_oracle(boxes, objectness, probs, thresh)
    ours = do_nms_sort(torch.from_numpy(boxes), torch.from_numpy(objectness), torch.from_numpy(probs), thresh)
    np.testing.assert_array_equal(ours.numpy(), expected)


def test_matches_box_c_on_a_large_yolo_like_set() -> None:
    """1500 boxes on a 3-scale grid with sizes from 1/100 to 10x the image, against a per-class
    dense float32 IoU matrix (continuous probs: no ties, so the order is simply by prob)."""
    rng = np.random.default_rng(7)
    n, classes = 1500, 3
    grid = rng.integers(0, 3, n)
    cells = np.array([26, 13, 7])[grid]
    xy = (rng.integers(0, cells[:, None], (n, 2)) + rng.random((n, 2))) / cells[:, None]
    wh = np.array([0.03, 0.12, 0.4])[grid][:, None] * np.exp(rng.normal(0, 0.8, (n, 2)))
    boxes = np.concatenate((xy, wh), 1).astype(F)
    probs = np.where(rng.random((n, classes)) < 0.8, rng.random((n, classes)), 0).astype(F)
    expected = probs.copy()
    l, t, r, b = _edges(boxes.T)
    for cls in range(classes):
        order = [i for i in np.argsort(-probs[:, cls], kind="stable") if probs[i, cls] != 0]
        ow = np.minimum(r[order][:, None], r[order]) - np.maximum(l[order][:, None], l[order])
        oh = np.minimum(b[order][:, None], b[order]) - np.maximum(t[order][:, None], t[order])
        inter = np.where((ow < 0) | (oh < 0), F(0), ow * oh)
        area = boxes[order, 2] * boxes[order, 3]
        union = area[:, None] + area - inter
        over = np.where((inter == 0) | (union == 0), F(0), inter / np.where(union == 0, F(1), union)) > F(0.45)
        alive = np.ones(len(order), bool)
        for i in range(len(order)):
            if alive[i]:
                alive[i + 1 :] &= ~over[i, i + 1 :]
        expected[np.array(order)[~alive], cls] = 0
    assert (expected != probs).sum() > 100
    ours = do_nms_sort(torch.from_numpy(boxes), torch.ones(n), torch.from_numpy(probs))
    np.testing.assert_array_equal(ours.numpy(), expected)


# --- hand-made cases -------------------------------------------------------------------------------

def _t(rows) -> torch.Tensor:
    return torch.tensor(rows, dtype=torch.float32)


# Rows 0 and 1 overlap heavily (IoU 0.8); row 2 is far away.
HAND_BOXES = _t([[0.5, 0.5, 0.2, 0.2], [0.52, 0.5, 0.2, 0.2], [0.1, 0.1, 0.1, 0.1]])


def test_ties_follow_the_order_left_by_the_previous_class() -> None:
    """Class 1 ties rows 0 and 1; class 0 has already sorted row 1 first, so row 1 wins.
    A per-class stable sort by position would keep row 0 instead."""
    probs = _t([[0.2, 0.5], [0.9, 0.5], [0.3, 0.0]])
    out = do_nms_sort(HAND_BOXES, torch.ones(3), probs)
    torch.testing.assert_close(out, _t([[0.0, 0.0], [0.9, 0.5], [0.3, 0.0]]), rtol=0, atol=0)


def test_zero_objectness_rows_are_swapped_out_and_untouched() -> None:
    """Row 2 has objectness 0: it neither suppresses (its 0.9 would beat rows 1 and 3) nor is suppressed."""
    boxes = torch.cat((HAND_BOXES[:2], _t([[0.5, 0.5, 0.2, 0.2]]), HAND_BOXES[:1]))
    probs = _t([[0.0], [0.5], [0.9], [0.5]])  # row 2 has a prob but objectness 0
    out = do_nms_sort(boxes, _t([1.0, 1.0, 0.0, 1.0]), probs)
    torch.testing.assert_close(out, _t([[0.0], [0.5], [0.9], [0.0]]), rtol=0, atol=0)


def test_swap_with_last_reorders_tied_rows() -> None:
    """Objectness [0, 1, 1]: row 0 is swapped with row 2, so Darknet's array is [2, 1] and the
    tied row 2 (listed last) wins over row 1."""
    boxes = torch.cat((HAND_BOXES[2:], HAND_BOXES[:2]))
    out = do_nms_sort(boxes, _t([0.0, 1.0, 1.0]), _t([[0.0], [0.5], [0.5]]))
    torch.testing.assert_close(out, _t([[0.0], [0.0], [0.5]]), rtol=0, atol=0)


def test_threshold_is_strict() -> None:
    boxes = _t([[0.0, 0.0, 2.0, 2.0], [1.0, 0.0, 2.0, 2.0]])  # I = 2, U = 6
    exact = float(np.float32(2) / np.float32(6))
    probs = _t([[0.9], [0.8]])
    assert torch.equal(do_nms_sort(boxes, torch.ones(2), probs, exact), probs)
    assert do_nms_sort(boxes, torch.ones(2), probs, exact - 1e-6)[1, 0] == 0


def test_one_box_survives_for_several_classes_and_input_is_not_mutated() -> None:
    probs = _t([[0.9, 0.1], [0.8, 0.7], [0.0, 0.3]])
    before = probs.clone()
    out = do_nms_sort(HAND_BOXES, torch.ones(3), probs)
    torch.testing.assert_close(out, _t([[0.9, 0.0], [0.0, 0.7], [0.0, 0.3]]), rtol=0, atol=0)
    assert torch.equal(probs, before) and out.dtype == probs.dtype


def _shifted_pair(dx: float) -> tuple[float, float]:
    """Two 0.2 x 0.2 boxes dx apart horizontally: (IoU, d^2/c^2) by hand."""
    return (0.2 - dx) / (0.2 + dx), dx**2 / ((0.2 + dx) ** 2 + 0.2**2)


@pytest.mark.parametrize(
    ("dx", "kind", "beta", "suppressed"),
    [
        (0.07, "default", 0.6, True),  # IoU 0.48
        (0.07, "greedynms", 0.6, False),  # IoU - ratio^0.6 = 0.33: greedynms is not IoU-NMS
        (0.04, "greedynms", 0.6, True),  # IoU 0.67 - 0.085
        (0.04, "greedynms", 0.1, True),  # beta is ignored: hard-coded 0.6
        (0.04, "diounms", 0.6, True),
        (0.04, "diounms", 0.1, False),  # IoU 0.67 - ratio^0.1 = 0.004
    ],
)
def test_diou_nms_kinds_by_hand(dx: float, kind: str, beta: float, suppressed: bool) -> None:
    iou, ratio = _shifted_pair(dx)
    exponent = {"default": math.inf, "greedynms": 0.6, "diounms": beta}[kind]
    assert (iou - ratio**exponent > 0.45) == suppressed
    boxes = _t([[0.5, 0.5, 0.2, 0.2], [0.5 + dx, 0.5, 0.2, 0.2]])
    out = apply_nms(boxes, torch.ones(2), _t([[0.9], [0.8]]), 0.45, kind, beta)
    assert out[0, 0] == pytest.approx(0.9) and (out[1, 0] == 0) == suppressed


def test_cornersnms_is_the_default_nms() -> None:
    boxes, objectness, probs = (torch.from_numpy(a) for a in random_detections(3))
    expected = do_nms_sort(boxes, objectness, probs)
    assert torch.equal(apply_nms(boxes, objectness, probs, kind="cornersnms"), expected)
    assert torch.equal(diounms_sort(boxes, objectness, probs, nms_kind="cornersnms"), expected)


# --- plain class-wise NMS ----------------------------------------------------------------------------

def naive_nms_per_class(boxes_xyxy: np.ndarray, scores: np.ndarray, classes: np.ndarray, thresh: float):
    def area(b):
        return max(0.0, b[2] - b[0]) * max(0.0, b[3] - b[1])

    def pair_iou(a, b):
        w = min(a[2], b[2]) - max(a[0], b[0])
        h = min(a[3], b[3]) - max(a[1], b[1])
        inter = max(w, 0.0) * max(h, 0.0)
        union = area(a) + area(b) - inter
        return inter / union if inter > 0 and union > 0 else 0.0

    kept: list[int] = []
    for i in sorted(range(len(scores)), key=lambda i: -scores[i]):
        if all(classes[k] != classes[i] or pair_iou(boxes_xyxy[k], boxes_xyxy[i]) <= thresh for k in kept):
            kept.append(i)
    return kept


@pytest.mark.parametrize("seed", range(4))
def test_nms_per_class_matches_naive_greedy(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = 80
    xy = rng.random((n, 2)) * 100
    boxes = np.concatenate((xy, xy + rng.uniform(5, 30, (n, 2))), 1)
    scores = rng.random(n)
    classes = rng.integers(-1, 3, n)  # any integer ids
    kept = nms_per_class(torch.from_numpy(boxes), torch.from_numpy(scores), torch.from_numpy(classes), 0.4)
    assert kept.tolist() == naive_nms_per_class(boxes, scores, classes, 0.4)


def test_plain_kind_is_nms_per_class_on_every_nonzero_pair() -> None:
    boxes, objectness, probs = (torch.from_numpy(a) for a in random_detections(5, n=60))
    probs = probs + torch.rand(probs.shape, generator=torch.Generator().manual_seed(0)) * 1e-3 * (probs != 0)
    out = apply_nms(boxes, objectness, probs, 0.45, kind="plain")
    rows, classes = (probs != 0).nonzero(as_tuple=True)
    kept = nms_per_class(xywh_to_xyxy(boxes[rows]).double(), probs[rows, classes], classes, 0.45)
    expected = torch.zeros_like(probs)
    expected[rows[kept], classes[kept]] = probs[rows[kept], classes[kept]]
    assert torch.equal(out, expected)
    assert (out != probs).any()


# --- contract errors ---------------------------------------------------------------------------------

def test_bad_input_raises_clear_errors() -> None:
    boxes, objectness, probs = HAND_BOXES, torch.ones(3), torch.ones(3, 2)
    with pytest.raises(ValueError, match="unknown NMS kind 'soft'"):
        apply_nms(boxes, objectness, probs, kind="soft")
    with pytest.raises(ValueError, match=r"boxes \(N,4\), objectness \(N,\), probs \(N,C\)"):
        do_nms_sort(boxes, torch.ones(2), probs)
    with pytest.raises(ValueError, match="threshold must be >= 0"):
        do_nms_sort(boxes, objectness, probs, -0.1)
    with pytest.raises(ValueError, match="nms_kind must be"):
        diounms_sort(boxes, objectness, probs, nms_kind="default")
    assert set(NMS_KINDS) == {"default", "cornersnms", "greedynms", "diounms", "plain"}


def test_empty_input() -> None:
    out = do_nms_sort(torch.zeros(0, 4), torch.zeros(0), torch.zeros(0, 80))
    assert out.shape == (0, 80)
    assert nms_per_class(torch.zeros(0, 4), torch.zeros(0), torch.zeros(0, dtype=torch.long)).numel() == 0


def test_darknet_array_order_equals_one_stable_sort_per_class_with_empty_classes_and_ties():
    # darknet_array_order skips the classes no row scores; Darknet sorts by every class in turn (numpy replay)
    rng = np.random.default_rng(14)
    for _ in range(50):
        n, c = int(rng.integers(1, 30)), int(rng.integers(1, 12))
        probs = np.where(rng.random((n, c)) < 0.2, rng.integers(1, 4, (n, c)) / 4, 0).astype(np.float32)  # ties
        sequential = np.arange(n)
        for k in range(c):
            sequential = sequential[np.argsort(-probs[sequential, k], kind="stable")]
        assert darknet_array_order(torch.ones(n), torch.from_numpy(probs)).tolist() == sequential.tolist()


@pytest.mark.parametrize("kind", NMS_KINDS)
@pytest.mark.parametrize("n", [0, 1, 2, 7, 30, _REPLAY_ROWS, _REPLAY_ROWS + 1, 150])
def test_darknet_nms_equals_the_array_order_and_apply_nms(n: int, kind: str) -> None:
    # up to _REPLAY_ROWS rows darknet_nms replays box.c's loops on lists: the same order and probs, ties, zero
    # objectness, degenerate and identical boxes included
    for seed in range(6):
        boxes, objectness, probs = random_detections(seed, n=n, classes=(3, 20, 80)[seed % 3],
                                                     units=416.0 if seed % 2 else 1.0)
        if n > 6:
            boxes[:3, 2] = [0.0, -0.1, np.nan]
            boxes[3:6] = boxes[6]
        tensors = [torch.from_numpy(a) for a in (boxes, objectness, probs)]
        beta = 0.8 if seed % 3 == 0 else 0.6
        order, after = darknet_nms(*tensors, 0.45, kind, beta)
        assert torch.equal(order, darknet_array_order(tensors[1], tensors[2]))
        assert torch.equal(after, apply_nms(*tensors, 0.45, kind, beta))
        assert torch.equal(tensors[2], torch.from_numpy(probs))  # input untouched


def test_darknet_nms_rejects_what_apply_nms_rejects() -> None:
    with pytest.raises(ValueError, match="unknown NMS kind"):
        darknet_nms(torch.zeros(2, 4), torch.ones(2), torch.ones(2, 3), kind="soft")
    with pytest.raises(ValueError, match="threshold"):
        darknet_nms(torch.zeros(2, 4), torch.ones(2), torch.ones(2, 3), -1.0)
