"""[yolo] training loss: hand-made assignment cases, and the gradient against a loop transcription of Darknet.

The oracle below (``darknet_delta``) is written straight from AlexeyAB ``process_batch`` / ``delta_yolo_box`` /
``delta_yolo_class`` / ``averages_yolo_deltas`` and box.c ``box_iou`` / ``dx_box_iou``, one prediction and one truth
at a time in Python floats; the vectorised loss must give a gradient w.r.t. the head input equal to ``-delta``.
"""
from __future__ import annotations

import math
from collections import Counter
from dataclasses import replace

import numpy as np
import pytest
import torch

from darknet_torch import Darknet
from darknet_torch.errors import DarknetError, DataError
from darknet_torch.model.heads import GaussianYOLOLayer, YoloConfig, YOLOLayer
from darknet_torch.model.heads.yolo_loss import yolo_delta, yolo_loss

ANCHORS = ((12, 10), (20, 24), (40, 30), (60, 70), (100, 90), (150, 120))   # pixels, for a 160x128 input


def make_head(**overrides) -> YOLOLayer:
    config = dict(classes=3, mask=(1, 2, 3), anchors=ANCHORS, scale_x_y=1.0, new_coords=False, nms_kind="default",
                  beta_nms=0.6, ignore_thresh=0.5, truth_thresh=1.0, iou_thresh=1.0, iou_loss="mse",
                  iou_normalizer=0.75, obj_normalizer=1.0, cls_normalizer=1.0, delta_normalizer=1.0,
                  max_delta=math.inf, label_smooth_eps=0.0, objectness_smooth=False, random=0.0, jitter=0.2,
                  resize=1.0, focal_loss=False)
    config.update(overrides)
    return YOLOLayer(YoloConfig(**config))


# --------------------------------------------------------------------------------------------- the oracle
def box_iou(a, b):
    def overlap(x1, w1, x2, w2):
        return min(x1 + w1 / 2, x2 + w2 / 2) - max(x1 - w1 / 2, x2 - w2 / 2)

    ow, oh = overlap(a[0], a[2], b[0], b[2]), overlap(a[1], a[3], b[1], b[3])
    inter = 0.0 if ow < 0 or oh < 0 else ow * oh
    union = a[2] * a[3] + b[2] * b[3] - inter
    return 0.0 if inter == 0 or union == 0 else inter / union


def box_iou_kind(a, b, kind):
    """box.c box_iou_kind: box_iou, box_giou, box_diou (power 0.6) or box_ciou of a (the anchor) against b."""
    plain = box_iou(a, b)
    left, right = min(a[0] - a[2] / 2, b[0] - b[2] / 2), max(a[0] + a[2] / 2, b[0] + b[2] / 2)
    top, bot = min(a[1] - a[3] / 2, b[1] - b[3] / 2), max(a[1] + a[3] / 2, b[1] + b[3] / 2)
    w, h = right - left, bot - top
    if kind == "iou":
        return plain
    if kind == "giou":
        c = w * h
        ow = min(a[0] + a[2] / 2, b[0] + b[2] / 2) - max(a[0] - a[2] / 2, b[0] - b[2] / 2)
        oh = min(a[1] + a[3] / 2, b[1] + b[3] / 2) - max(a[1] - a[3] / 2, b[1] - b[3] / 2)
        union = a[2] * a[3] + b[2] * b[3] - (0.0 if ow < 0 or oh < 0 else ow * oh)
        return plain if c == 0 else plain - (c - union) / c
    c = w * w + h * h
    d = (a[0] - b[0]) ** 2 + (a[1] - b[1]) ** 2
    if c == 0:
        return plain
    if kind == "diou":
        return plain - (d / c) ** 0.6
    v = 4 / math.pi ** 2 * (math.atan(b[2] / b[3]) - math.atan(a[2] / a[3])) ** 2
    return plain - (d / c + v / (1 - plain + v + 0.000001) * v)


def dx_box_iou(pred, truth, kind):
    top, bot = pred[1] - pred[3] / 2, pred[1] + pred[3] / 2
    left, right = pred[0] - pred[2] / 2, pred[0] + pred[2] / 2
    pt, pb, pl, pr = min(top, bot), max(top, bot), min(left, right), max(left, right)
    tt, tb = truth[1] - truth[3] / 2, truth[1] + truth[3] / 2
    tl, tr = truth[0] - truth[2] / 2, truth[0] + truth[2] / 2
    X = (pb - pt) * (pr - pl)
    Xhat = (tb - tt) * (tr - tl)
    Ih = min(pb, tb) - max(pt, tt)
    Iw = min(pr, tr) - max(pl, tl)
    I = Iw * Ih
    U = X + Xhat - I
    S = (pred[0] - truth[0]) ** 2 + (pred[1] - truth[1]) ** 2
    giou_Cw = max(pr, tr) - min(pl, tl)
    giou_Ch = max(pb, tb) - min(pt, tt)
    giou_C = giou_Cw * giou_Ch
    dX = {"t": -(pr - pl), "b": pr - pl, "l": -(pb - pt), "r": pb - pt}
    dI = {"t": -Iw if pt > tt else 0, "b": Iw if pb < tb else 0, "l": -Ih if pl > tl else 0, "r": Ih if pr < tr else 0}
    dU = {k: dX[k] - dI[k] for k in dX}
    dC = {"t": -giou_Cw if pt < tt else 0, "b": giou_Cw if pb > tb else 0,
          "l": -giou_Ch if pl < tl else 0, "r": giou_Ch if pr > tr else 0}
    p = {k: ((U * dI[k]) - (I * dU[k])) / (U * U) if U > 0 else 0.0 for k in dX}
    p["t"] = p["t"] if top < bot else p["b"]
    p["b"] = p["b"] if top < bot else p["t"]
    p["l"] = p["l"] if left < right else p["r"]
    p["r"] = p["r"] if left < right else p["l"]
    if kind == "giou":
        if giou_C > 0:
            p = {k: p[k] + ((giou_C * dU[k]) - (U * dC[k])) / (giou_C * giou_C) for k in p}
        if Iw <= 0 or Ih <= 0:
            p = {k: ((giou_C * dU[k]) - (U * dC[k])) / (giou_C * giou_C) for k in p}
    Cw, Ch = giou_Cw, giou_Ch
    C = Cw * Cw + Ch * Ch
    dCw_dx = (1 if pr > tr else 0) - (1 if pl < tl else 0)
    dCw_dw = (0.5 if pr > tr else 0) - (-0.5 if pl < tl else 0)
    dCh_dy = (1 if pb > tb else 0) - (1 if pt < tt else 0)
    dCh_dh = (0.5 if pb > tb else 0) - (-0.5 if pt < tt else 0)
    dx, dy, dw, dh = p["l"] + p["r"], p["t"] + p["b"], p["r"] - p["l"], p["b"] - p["t"]
    if kind in ("diou", "ciou"):
        alpha_dw = alpha_dh = 0.0
        if kind == "ciou":
            gap = math.atan(truth[2] / truth[3]) - math.atan(pred[2] / pred[3])
            ar_loss = 4 / math.pi ** 2 * gap * gap
            alpha = ar_loss / (1 - I / U + ar_loss + 0.000001)
            alpha_dw = alpha * 8 / math.pi ** 2 * gap * pred[3]
            alpha_dh = alpha * -8 / math.pi ** 2 * gap * pred[2]
        terms = ((2 * (truth[0] - pred[0]) * C - 2 * Cw * dCw_dx * S) / (C * C),
                 (2 * (truth[1] - pred[1]) * C - 2 * Ch * dCh_dy * S) / (C * C),
                 2 * Cw * dCw_dw * S / (C * C) + alpha_dw,
                 2 * Ch * dCh_dh * S / (C * C) + alpha_dh)
        if C > 0:
            dx, dy, dw, dh = dx + terms[0], dy + terms[1], dw + terms[2], dh + terms[3]
        if Iw <= 0 or Ih <= 0:
            dx, dy, dw, dh = terms
    return dx, dy, dw, dh


def darknet_delta(head: YOLOLayer, out: torch.Tensor, truths: list[list[tuple]], net_hw,
                  fired: Counter | None = None) -> np.ndarray:
    """forward_yolo_layer's l.delta, loop by loop.  ``truths[b]`` = [(class, x, y, w, h), ...] in order.

    ``fired`` counts which branches ran, so tests can check that their cases exercise them.
    """
    fired = Counter() if fired is None else fired
    c = head.config
    B, _, H, W = out.shape
    nA, nC = len(c.mask), c.classes
    net_h, net_w = net_hw
    o = out.detach().double().reshape(B, nA, 5 + nC, H, W).numpy()
    d = np.zeros_like(o)

    def get_box(b, n, j, i, anchor):
        x = o[b, n, :, j, i]
        aw, ah = c.anchors[anchor]
        if c.new_coords:
            return [(i + x[0]) / W, (j + x[1]) / H, x[2] * x[2] * 4 * aw / net_w, x[3] * x[3] * 4 * ah / net_h]
        return [(i + x[0]) / W, (j + x[1]) / H, math.exp(x[2]) * aw / net_w, math.exp(x[3]) * ah / net_h]

    def delta_box(truth, b, n, j, i, anchor, scale):
        x = o[b, n, :4, j, i]
        pred = get_box(b, n, j, i, anchor)
        result = box_iou(pred, truth)
        pred[2] = pred[2] or 1.0
        pred[3] = pred[3] or 1.0
        aw, ah = c.anchors[anchor]
        if c.iou_loss == "mse":
            tx, ty = truth[0] * W - i, truth[1] * H - j
            if c.new_coords:
                tw, th = math.sqrt(truth[2] * net_w / (4 * aw)), math.sqrt(truth[3] * net_h / (4 * ah))
            else:
                tw, th = math.log(truth[2] * net_w / aw), math.log(truth[3] * net_h / ah)
            for k, t in enumerate((tx, ty, tw, th)):
                d[b, n, k, j, i] += scale * (t - x[k]) * c.iou_normalizer
        else:
            grads = list(dx_box_iou(pred, truth, c.iou_loss))
            if not c.new_coords:
                grads[2] *= math.exp(x[2])
                grads[3] *= math.exp(x[3])
            for k in range(4):
                g = grads[k] * c.iou_normalizer
                g = 0.0 if math.isnan(g) or math.isinf(g) else g
                fired["clipped"] += abs(g) > c.max_delta
                d[b, n, k, j, i] += min(max(g, -c.max_delta), c.max_delta)
        return result

    def smooth(y):
        return y * (1 - c.label_smooth_eps) + 0.5 * c.label_smooth_eps if c.label_smooth_eps else y

    def delta_class(b, n, j, i, cls):
        if d[b, n, 5 + cls, j, i]:
            d[b, n, 5 + cls, j, i] = smooth(1.0) - o[b, n, 5 + cls, j, i]
            return
        if c.focal_loss:
            pt = o[b, n, 5 + cls, j, i] + 0.000000000000001
            grad = -(1 - pt) * (2 * pt * math.log(pt) + pt - 1)
            for k in range(nC):
                d[b, n, 5 + k, j, i] = ((1.0 if k == cls else 0.0) - o[b, n, 5 + k, j, i]) * (0.5 * grad)
            return
        for k in range(nC):
            d[b, n, 5 + k, j, i] = smooth(1.0 if k == cls else 0.0) - o[b, n, 5 + k, j, i]

    def assign(b, t, anchor):
        cls, *truth = truths[b][t]
        n = c.mask.index(anchor)
        j, i = int(truth[1] * H), int(truth[0] * W)
        fired["shared cell"] += bool(d[b, n, 4, j, i] > 0)
        delta_box(truth, b, n, j, i, anchor, 2 - truth[2] * truth[3])
        if c.objectness_smooth:
            if d[b, n, 4, j, i] == 0:
                d[b, n, 4, j, i] = c.obj_normalizer * (1 - o[b, n, 4, j, i])
        else:
            d[b, n, 4, j, i] = c.obj_normalizer * (1 - o[b, n, 4, j, i])
        delta_class(b, n, j, i, cls)

    for b in range(B):
        for j in range(H):
            for i in range(W):
                for n in range(nA):
                    pred = get_box(b, n, j, i, c.mask[n])
                    best_match_iou = best_iou = 0.0
                    best_t = 0
                    for t, (_, *truth) in enumerate(truths[b]):
                        class_match = any(o[b, n, 5 + k, j, i] > 0.25 for k in range(nC))
                        overlap = box_iou(pred, truth)
                        if overlap > best_match_iou and class_match:
                            best_match_iou = overlap
                        if overlap > best_iou:
                            best_iou, best_t = overlap, t
                    objectness = o[b, n, 4, j, i]
                    d[b, n, 4, j, i] = c.obj_normalizer * (0 - objectness)
                    if best_match_iou > c.ignore_thresh:
                        if c.objectness_smooth:
                            d[b, n, 4, j, i] = max(d[b, n, 4, j, i], c.obj_normalizer * (best_match_iou - objectness))
                        else:
                            d[b, n, 4, j, i] = 0
                        fired["ignored"] += 1
                    if best_iou > c.truth_thresh:
                        fired["truth_thresh"] += 1
                        multiplier = best_iou * best_iou
                        target = multiplier if c.objectness_smooth else 1.0
                        d[b, n, 4, j, i] = c.obj_normalizer * (target - objectness)
                        cls, *truth = truths[b][best_t]
                        delta_class(b, n, j, i, cls)
                        if c.objectness_smooth:
                            d[b, n, 5 + cls, j, i] = multiplier - o[b, n, 5 + cls, j, i]
                        delta_box(truth, b, n, j, i, c.mask[n], 2 - truth[2] * truth[3])
        for t, (_, _, _, tw, th) in enumerate(truths[b]):
            shape_iou = [box_iou([0, 0, aw / net_w, ah / net_h], [0, 0, tw, th]) for aw, ah in c.anchors]
            best_n, best = 0, 0.0
            for n, value in enumerate(shape_iou):
                if value > best:
                    best_n, best = n, value
            if best_n in c.mask:
                assign(b, t, best_n)
            kind_iou = [box_iou_kind([0, 0, aw / net_w, ah / net_h], [0, 0, tw, th], c.iou_thresh_kind)
                        for aw, ah in c.anchors]
            for n, value in enumerate(kind_iou):
                if n in c.mask and n != best_n and c.iou_thresh < 1 and value > c.iou_thresh:
                    assign(b, t, n)
                    fired["extra anchor"] += 1
        if c.iou_thresh < 1:
            for j in range(H):
                for i in range(W):
                    for n in range(nA):
                        if d[b, n, 4, j, i] != 0:
                            count = sum(d[b, n, 5 + k, j, i] > 0 for k in range(nC))
                            if count > 1:
                                fired["averaged"] += 1
                            if count:
                                d[b, n, :4, j, i] /= count
    return d.reshape(out.shape)


# --------------------------------------------------------------------------------------------- gradient vs oracle
NET_HW = (128, 160)   # non-square input and grid, to catch transposed rows/columns

TRUTHS = [
    [(0, 0.37, 0.41, 0.14, 0.20), (2, 0.35, 0.43, 0.13, 0.19),    # same cell, same anchor, two classes
     (1, 0.71, 0.62, 0.35, 0.52), (1, 0.12, 0.85, 0.07, 0.08)],   # a big box; a small one whose anchor is 0
    [(2, 0.55, 0.28, 0.26, 0.22), (0, 0.86, 0.79, 0.22, 0.30)],
]

CASES = {
    "mse": {},
    "mse-scale_xy-smooth_eps-truth_thresh": dict(scale_x_y=1.05, label_smooth_eps=0.1, truth_thresh=0.35,
                                                 ignore_thresh=0.3, iou_normalizer=0.5),
    "mse-new_coords": dict(new_coords=True, scale_x_y=2.0, ignore_thresh=0.3),
    "ciou-new_coords-iou_thresh-objectness_smooth": dict(iou_loss="ciou", new_coords=True, scale_x_y=2.0,
                                                         iou_thresh=0.213, objectness_smooth=True, max_delta=0.05,
                                                         iou_normalizer=0.05, obj_normalizer=4.0,
                                                         ignore_thresh=0.3),
    "ciou-iou_thresh-max_delta": dict(iou_loss="ciou", scale_x_y=1.2, iou_thresh=0.213, max_delta=0.02,
                                      iou_normalizer=0.07, ignore_thresh=0.3, truth_thresh=0.4),
    "giou": dict(iou_loss="giou", ignore_thresh=0.3),
    "giou-iou_thresh_kind_giou": dict(iou_loss="giou", iou_thresh=0.1, iou_thresh_kind="giou", ignore_thresh=0.3),
    "mse-iou_thresh_kind_ciou": dict(iou_thresh=0.213, iou_thresh_kind="ciou", ignore_thresh=0.3),
    "diou-focal": dict(iou_loss="diou", focal_loss=True, ignore_thresh=0.3),
    "mse-smooth-truth_thresh": dict(objectness_smooth=True, truth_thresh=0.4, ignore_thresh=0.25, label_smooth_eps=0.2),
}


def head_input_for(head: YOLOLayer, seed: int) -> torch.Tensor:
    """A random conv output (w, h entries near the anchors' sizes so that predictions overlap the truths); with
    new_coords the conv applied the logistic, so values are in (0, 1)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(len(TRUTHS), head.num_anchors, head.entries, 4, 5, generator=g) * 1.5
    x[:, :, 2:4] *= 0.2
    x = x.reshape(len(TRUTHS), -1, 4, 5)
    return (torch.sigmoid(x) if head.config.new_coords else x).requires_grad_()


def targets_tensor(truths) -> torch.Tensor:
    rows = [[b, *t] for b, image in enumerate(truths) for t in image]
    return torch.tensor(rows, dtype=torch.float32)


@pytest.mark.parametrize("case", sorted(CASES))
def test_gradient_matches_darknet_delta(case):
    head = make_head(**CASES[case])
    x = head_input_for(head, seed=sorted(CASES).index(case))
    out = head(x)
    expected = darknet_delta(head, out, TRUTHS, NET_HW)
    targets = targets_tensor(TRUTHS)

    delta, parts = yolo_delta(head, out.detach(), targets, NET_HW)
    np.testing.assert_allclose(delta.numpy(), expected, rtol=1e-5, atol=1e-5)

    loss, parts = yolo_loss(head, out, targets, NET_HW)
    loss.backward()
    np.testing.assert_allclose(x.grad.numpy(), -expected, rtol=1e-5, atol=1e-5)
    assert loss.item() == pytest.approx(float((expected ** 2).sum()), rel=1e-5)
    assert parts["count"].item() >= 4


def test_cases_exercise_every_branch():
    """The oracle cases above must really hit ignores, truth_thresh positives, shared cells, extra anchors, the
    iou_thresh averaging and max_delta clipping, or the gradient test proves little."""
    for case, overrides in CASES.items():
        head = make_head(**overrides)
        fired = Counter()
        darknet_delta(head, head(head_input_for(head, sorted(CASES).index(case))), TRUTHS, NET_HW, fired)
        assert fired["ignored"] > 0 and fired["shared cell"] > 0, (case, fired)
        assert fired["truth_thresh"] > 0 or head.config.truth_thresh == 1, (case, fired)
        assert (fired["extra anchor"] > 0 and fired["averaged"] > 0) or head.config.iou_thresh == 1, (case, fired)
        assert fired["clipped"] > 0 or head.config.max_delta == math.inf, (case, fired)
    # two truths of different classes share a cell: both class deltas are positive there, the third negative
    head = make_head()
    delta, _ = yolo_delta(head, head(head_input_for(head, 0)).detach(), targets_tensor(TRUTHS), NET_HW)
    cls = delta.reshape(2, 3, 8, 4, 5)[0, 0, 5:, 1, 1]
    assert (cls[[0, 2]] > 0).all() and cls[1] < 0


def test_delta_normalizer_scales_the_gradient():
    head = make_head(delta_normalizer=0.5)
    x = head_input_for(head, 3)
    out = head(x)
    expected = darknet_delta(head, out, TRUTHS, NET_HW)
    yolo_loss(head, out, targets_tensor(TRUTHS), NET_HW)[0].backward()
    np.testing.assert_allclose(x.grad.numpy(), -0.5 * expected, rtol=1e-5, atol=1e-5)


def test_head_input_path_is_exact_when_the_sigmoid_saturates():
    """Through ``out`` a saturated logit (sigmoid == 1.0 in float32) loses its gradient; via head_input it does not."""
    head = make_head()
    x = head_input_for(head, 1).detach()
    x[1, 4] = 30.0                                     # anchor 0's objectness logit in image 1: saturated
    x.requires_grad_()
    out = head(x)
    expected = darknet_delta(head, out, TRUTHS, NET_HW)
    yolo_loss(head, out, targets_tensor(TRUTHS), NET_HW, head_input=x)[0].backward()
    np.testing.assert_allclose(x.grad.numpy(), -expected, rtol=1e-5, atol=1e-5)
    assert (x.grad[1, 4] > 0.99).all()                 # -delta = +1 - 0: a false positive is pushed down


# --------------------------------------------------------------------------------------------- hand-made cases
# 64x64 input, 4x4 grid (16 px cells), anchors 8, 16, 32, 48 px, this head has mask 1,2.
SMALL_ANCHORS = ((8, 8), (16, 16), (32, 32), (48, 48))


def small_head(**overrides) -> YOLOLayer:
    return make_head(**{"classes": 2, "mask": (1, 2), "anchors": SMALL_ANCHORS, "ignore_thresh": 0.7, **overrides})


def small_delta(head, x, truths):
    out = head(x)
    targets = torch.tensor(truths, dtype=torch.float32).reshape(-1, 6)
    delta, parts = yolo_delta(head, out.detach(), targets, (64, 64))
    return out.detach().reshape(1, 2, 7, 4, 4), delta.reshape(1, 2, 7, 4, 4), parts


def test_best_anchor_and_cell_with_the_mse_scale():
    head = small_head()
    x = torch.zeros(1, 14, 4, 4, requires_grad=True)        # x = y = 0.5 in the cell, w = h = anchor, p = 0.5
    out, d, parts = small_delta(head, x, [[0, 1, 0.4, 0.6, 0.3, 0.25]])
    # 19.2 x 16 px: best anchor 16x16 (index 1 = slot 0); cell col floor(0.4*4) = 1, row floor(0.6*4) = 2
    assert parts["count"].item() == 1
    scale = 2 - 0.3 * 0.25
    expected_box = [scale * (0.6 - 0.5) * 0.75, scale * (0.4 - 0.5) * 0.75, scale * math.log(0.3 * 64 / 16) * 0.75,
                    0.0]
    np.testing.assert_allclose(d[0, 0, :4, 2, 1].numpy(), expected_box, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(d[0, 0, 4:, 2, 1].numpy(), [0.5, -0.5, 0.5])     # obj, class 0, class 1
    box, obj, cls = d[0, :, :4].clone(), d[0, :, 4].clone(), d[0, :, 5:].clone()
    box[0, :, 2, 1], obj[0, 2, 1], cls[0, :, 2, 1] = 0, -0.5, 0
    assert torch.all(box == 0) and torch.all(obj == -0.5) and torch.all(cls == 0)      # nothing anywhere else
    # the gradient w.r.t. the conv output is -delta (no logistic derivative), here for x and for a background obj
    loss, _ = yolo_loss(head, head(x), torch.tensor([[0, 1, 0.4, 0.6, 0.3, 0.25]]), (64, 64))
    loss.backward()
    assert x.grad[0, 0, 2, 1].item() == pytest.approx(-scale * 0.1 * 0.75, rel=1e-5)
    assert x.grad[0, 4, 0, 0].item() == pytest.approx(0.5, rel=1e-6)


def test_best_anchor_outside_the_mask_assigns_nothing():
    head = small_head()
    out, d, parts = small_delta(head, torch.zeros(1, 14, 4, 4), [[0, 0, 0.4, 0.6, 0.125, 0.125]])  # 8x8 px: anchor 0
    assert parts["count"].item() == 0
    assert torch.all(d[:, :, :4] == 0) and torch.all(d[:, :, 5:] == 0) and torch.all(d[:, :, 4] == -0.5)


def test_iou_thresh_assigns_extra_anchors():
    # 8x8 px truth: best anchor 0 is not in the mask, but anchor 1 (16x16, shape IoU 0.25) passes iou_thresh=0.2
    head = small_head(iou_thresh=0.2)
    _, d, parts = small_delta(head, torch.zeros(1, 14, 4, 4), [[0, 0, 0.4, 0.6, 0.125, 0.125]])
    assert parts["count"].item() == 1 and d[0, 0, 4, 2, 1] == 0.5 and d[0, 1, 4, 2, 1] == -0.5
    # 16x16 px truth: best anchor 1 (slot 0) and anchor 2 (32x32, shape IoU 0.25) both train cell (1, 2)
    _, d, parts = small_delta(head, torch.zeros(1, 14, 4, 4), [[0, 0, 0.4, 0.6, 0.25, 0.25]])
    assert parts["count"].item() == 2
    assert d[0, 0, 4, 2, 1] == 0.5 and d[0, 1, 4, 2, 1] == 0.5
    assert d[0, 1, 2, 2, 1].item() == pytest.approx((2 - 0.0625) * math.log(0.25 * 64 / 32) * 0.75, rel=1e-6)
    # not with iou_thresh above the shape IoU
    _, _, parts = small_delta(small_head(iou_thresh=0.3), torch.zeros(1, 14, 4, 4), [[0, 0, 0.4, 0.6, 0.25, 0.25]])
    assert parts["count"].item() == 1


@pytest.mark.parametrize("kind,thresh,extra", [("iou", 0.3, True), ("giou", 0.3, False), ("ciou", 0.3, True),
                                               ("ciou", 0.32, False), ("diou", 0.32, True)])
def test_iou_thresh_kind_picks_the_extra_anchors(kind, thresh, extra):
    """16x16 px truth; best anchor 16x16 (slot 0); the 8x32 anchor (slot 1) has IoU 1/3, GIoU 1/12, CIoU 0.316,
    DIoU 1/3 (same centre): box_iou_kind decides whether it is trained too."""
    head = small_head(anchors=((4, 4), (16, 16), (8, 32), (48, 48)), iou_thresh=thresh, iou_thresh_kind=kind)
    _, _, parts = small_delta(head, torch.zeros(1, 14, 4, 4), [[0, 0, 0.4, 0.6, 0.25, 0.25]])
    assert parts["count"].item() == (2 if extra else 1)


def test_ignore_thresh_needs_a_class_above_quarter():
    # truth 16x16 px at (0.4, 0.6): assigned to slot 0 of cell (1, 2).  Slot 1 of the same cell predicts 32*0.5 px
    # at (0.375, 0.625): IoU 0.6807 with the truth, above ignore_thresh=0.5 -> no objectness delta ...
    head = small_head(ignore_thresh=0.5)
    x = torch.zeros(1, 14, 4, 4)
    x[0, 7 + 2:7 + 4, 2, 1] = math.log(0.5)
    _, d, _ = small_delta(head, x, [[0, 0, 0.4, 0.6, 0.25, 0.25]])
    assert d[0, 1, 4, 2, 1] == 0 and d[0, 0, 4, 2, 1] == 0.5
    # ... with objectness_smooth it is pulled towards the IoU instead ...
    _, d, _ = small_delta(small_head(ignore_thresh=0.5, objectness_smooth=True), x, [[0, 0, 0.4, 0.6, 0.25, 0.25]])
    assert d[0, 1, 4, 2, 1].item() == pytest.approx(0.225 * 0.225 / (0.125 - 0.225 * 0.225) - 0.5, rel=1e-5)
    # ... but only if some class probability of that prediction exceeds 0.25 (compare_yolo_class)
    x[0, 7 + 5:7 + 7, 2, 1] = -5.0
    out, d, _ = small_delta(head, x, [[0, 0, 0.4, 0.6, 0.25, 0.25]])
    assert d[0, 1, 4, 2, 1] == -out[0, 1, 4, 2, 1]


def test_no_targets_only_pushes_objectness_down():
    head = small_head()
    out, d, parts = small_delta(head, torch.randn(1, 14, 4, 4), [])
    assert parts["count"].item() == 0 and parts["iou"].item() == 0
    assert torch.all(d[:, :, 4] == -out[:, :, 4]) and torch.all(d[:, :, :4] == 0) and torch.all(d[:, :, 5:] == 0)


def test_bad_targets_and_gaussian_heads_are_refused():
    head = small_head()
    out = head(torch.zeros(1, 14, 4, 4))
    with pytest.raises(DataError, match="class 2 is out of range"):
        yolo_loss(head, out, torch.tensor([[0, 2, 0.5, 0.5, 0.1, 0.1]]), (64, 64))
    with pytest.raises(DataError, match="batch has 1"):
        yolo_loss(head, out, torch.tensor([[1, 0, 0.5, 0.5, 0.1, 0.1]]), (64, 64))
    with pytest.raises(DataError, match=r"\[0, 1\]"):
        yolo_loss(head, out, torch.tensor([[0, 0, 1.5, 0.5, 0.1, 0.1]]), (64, 64))
    with pytest.raises(DataError, match=r"\(T, 6\)"):
        yolo_loss(head, out, torch.zeros(3, 5), (64, 64))
    gaussian = GaussianYOLOLayer(replace(head.config))
    with pytest.raises(DarknetError, match="Gaussian_yolo"):
        yolo_loss(gaussian, torch.zeros(1, 2 * 11, 4, 4), torch.zeros(0, 6), (64, 64))


# --------------------------------------------------------------------------------------------- overfit sanity
TINY_CFG = """
[net]
batch=1
width=64
height=64
channels=3

[convolutional]
filters=16
size=3
stride=1
pad=1
activation=leaky

[maxpool]
size=2
stride=2

[convolutional]
filters=32
size=3
stride=1
pad=1
activation=leaky

[maxpool]
size=2
stride=2

[convolutional]
filters=32
size=3
stride=1
pad=1
activation=leaky

[maxpool]
size=2
stride=2

[convolutional]
filters=64
size=3
stride=1
pad=1
activation=leaky

[maxpool]
size=2
stride=2

[convolutional]
filters=64
size=3
stride=1
pad=1
activation=leaky

[convolutional]
size=1
stride=1
pad=1
filters=21
activation=linear

[yolo]
mask=3,4,5
anchors=6,8, 10,12, 14,16, 20,24, 28,30, 40,44
classes=2
num=6

[route]
layers=-5

[convolutional]
size=1
stride=1
pad=1
filters=21
activation=linear

[yolo]
mask=0,1,2
anchors=6,8, 10,12, 14,16, 20,24, 28,30, 40,44
classes=2
num=6
"""


def test_overfits_one_image(tmp_path, one_thread):
    torch.manual_seed(0)
    cfg = tmp_path / "tiny.cfg"
    cfg.write_text(TINY_CFG)
    model = Darknet(cfg)
    boxes = torch.tensor([[0, 0, 0.30, 0.30, 0.25, 0.30],
                          [0, 1, 0.70, 0.65, 0.50, 0.45]])
    image = torch.rand(1, 3, 64, 64) * 0.2
    for _, cls, cx, cy, w, h in boxes.tolist():
        x0, y0, x1, y1 = (int(round(v * 64)) for v in (cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2))
        image[0, int(cls), y0:y1, x0:x1] = 0.9
    optimizer = torch.optim.SGD(model.parameters(), lr=0.002, momentum=0.9)
    losses = []
    model.train()
    for _ in range(150):
        optimizer.zero_grad()
        loss, _ = model(image, boxes)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert np.mean(losses[-5:]) < losses[0] / 10, (losses[0], losses[-5:])

    model.eval()
    with torch.no_grad():
        det = model(image)[0]
    for _, cls, *truth in boxes.tolist():
        best = det[torch.argmax(det[:, 4] * det[:, 5 + int(cls)])]
        found = [v / 64 for v in best[:4].tolist()]
        assert box_iou(found, truth) > 0.5, (cls, found, truth)
