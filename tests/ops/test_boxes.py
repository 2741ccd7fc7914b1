"""Box ops: hand-computed IoU/GIoU/DIoU/CIoU values, Darknet float32 arithmetic, gradients."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from darknet_torch.ops import box_iou, ciou, diou, diou_penalty, giou, iou, xywh_to_xyxy, xyxy_to_xywh


def t(*rows: tuple[float, ...], dtype: torch.dtype = torch.float64) -> torch.Tensor:
    return torch.tensor(rows, dtype=dtype)


# a = 2x2 at the origin; b = 2x2 shifted by (1, 1): intersection 1, union 7, enclosing box 3x3.
A = t((0.0, 0.0, 2.0, 2.0))
B_SHIFTED = t((1.0, 1.0, 2.0, 2.0))


def test_xywh_xyxy_known_values_and_round_trip() -> None:
    xywh = t((1.0, 2.0, 4.0, 6.0), (0.5, 0.5, 1.0, 0.0))
    xyxy = t((-1.0, -1.0, 3.0, 5.0), (0.0, 0.5, 1.0, 0.5))
    torch.testing.assert_close(xywh_to_xyxy(xywh), xyxy, rtol=0, atol=0)
    torch.testing.assert_close(xyxy_to_xywh(xyxy), xywh, rtol=0, atol=0)
    batch = torch.rand(3, 5, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    torch.testing.assert_close(xyxy_to_xywh(xywh_to_xyxy(batch)), batch)


def test_partial_overlap_by_hand() -> None:
    assert iou(A, B_SHIFTED).item() == pytest.approx(1 / 7)
    assert giou(A, B_SHIFTED).item() == pytest.approx(1 / 7 - (9 - 7) / 9)
    # centre distance^2 = 2, enclosing diagonal^2 = 3^2 + 3^2 = 18
    assert diou(A, B_SHIFTED).item() == pytest.approx(1 / 7 - 2 / 18)
    assert diou(A, B_SHIFTED, beta=0.6).item() == pytest.approx(1 / 7 - (2 / 18) ** 0.6)
    assert diou_penalty(A, B_SHIFTED, beta=0.6).item() == pytest.approx((1 / 9) ** 0.6)
    # same aspect ratio: no aspect term, CIoU == DIoU
    assert ciou(A, B_SHIFTED).item() == pytest.approx(1 / 7 - 1 / 9)


def test_disjoint_boxes_by_hand() -> None:
    far = t((5.0, 0.0, 2.0, 2.0))  # enclosing box x in [-1, 6], y in [-1, 1]: 7 x 2
    assert iou(A, far).item() == 0
    assert giou(A, far).item() == pytest.approx(0 - (14 - 8) / 14)
    assert diou(A, far).item() == pytest.approx(0 - 25 / (49 + 4))
    assert ciou(A, far).item() == pytest.approx(0 - 25 / (49 + 4))


def test_touching_and_doubly_negative_overlap_give_zero() -> None:
    touching = t((2.0, 0.0, 2.0, 2.0))
    assert iou(A, touching).item() == 0
    # both overlaps are -2: their product is positive, but Darknet returns 0
    diagonal = t((3.0, 3.0, 1.0, 1.0))
    assert iou(t((0.0, 0.0, 1.0, 1.0)), diagonal).item() == 0


def test_containment_by_hand() -> None:
    big, small = t((0.0, 0.0, 4.0, 4.0)), t((0.0, 0.0, 2.0, 2.0))
    for fn in (iou, giou, diou, ciou):
        assert fn(big, small).item() == pytest.approx(0.25)
    off_centre = t((1.0, 1.0, 2.0, 2.0))  # inside big, touching its corner: d^2 = 2, c^2 = 32
    assert diou(big, off_centre).item() == pytest.approx(0.25 - 2 / 32)


def test_ciou_aspect_term_by_hand() -> None:
    pred, truth = t((0.0, 0.0, 2.0, 1.0)), t((0.0, 0.0, 1.0, 2.0))  # I = 1, U = 3, same centre
    v = 4 / math.pi**2 * (math.atan(1 / 2) - math.atan(2 / 1)) ** 2
    alpha = v / (1 - 1 / 3 + v + 1e-6)
    assert ciou(pred, truth).item() == pytest.approx(1 / 3 - alpha * v)


def test_degenerate_boxes_give_zero_not_nan() -> None:
    point = t((0.5, 0.5, 0.0, 0.0))
    for fn in (iou, giou, diou):
        assert fn(point, point).item() == 0


def test_box_iou_is_the_pairwise_matrix_of_iou() -> None:
    gen = torch.Generator().manual_seed(0)
    a, b = torch.rand(5, 4, generator=gen), torch.rand(7, 4, generator=gen)
    matrix = box_iou(a, b)
    assert matrix.shape == (5, 7)
    assert torch.equal(matrix, iou(a[:, None], b[None, :]))
    # a box with itself: 1 up to float32 rounding of the edges (as in Darknet)
    torch.testing.assert_close(box_iou(a, a).diagonal(), torch.ones(5), rtol=0, atol=1e-6)


def test_dtype_and_broadcasting_are_preserved() -> None:
    gen = torch.Generator().manual_seed(1)
    a = torch.rand(3, 1, 4, dtype=torch.float64, generator=gen)
    b = torch.rand(1, 6, 4, dtype=torch.float64, generator=gen)
    for fn in (iou, giou, diou, ciou):
        out = fn(a, b)
        assert out.shape == (3, 6) and out.dtype == torch.float64
    assert diou(a.float(), b.float(), beta=0.6).dtype == torch.float32


def _darknet_iou_f32(a: np.ndarray, b: np.ndarray) -> np.float32:
    """box.c box_iou transcribed on float32 scalars (the oracle for bit-exactness)."""
    two = np.float32(2)

    def overlap(x1, w1, x2, w2):
        left = max(x1 - w1 / two, x2 - w2 / two)
        right = min(x1 + w1 / two, x2 + w2 / two)
        return right - left

    w = overlap(a[0], a[2], b[0], b[2])
    h = overlap(a[1], a[3], b[1], b[3])
    inter = np.float32(0) if (w < 0 or h < 0) else w * h
    union = a[2] * a[3] + b[2] * b[3] - inter
    return np.float32(0) if (inter == 0 or union == 0) else inter / union


def test_float32_iou_is_bit_exact_with_box_c() -> None:
    rng = np.random.default_rng(1)
    a = rng.random((300, 4), dtype=np.float32)
    b = (a + rng.normal(0, 0.05, a.shape)).astype(np.float32)
    ours = iou(torch.from_numpy(a), torch.from_numpy(b)).numpy()
    expected = np.array([_darknet_iou_f32(p, q) for p, q in zip(a, b)], dtype=np.float32)
    assert (expected > 0).mean() > 0.5
    np.testing.assert_array_equal(ours, expected)


GENERIC_PRED = t((0.30, 0.40, 0.50, 0.30), (0.62, 0.55, 0.20, 0.40))
GENERIC_TRUTH = t((0.35, 0.45, 0.40, 0.35), (0.50, 0.52, 0.25, 0.30))


@pytest.mark.parametrize("fn", [iou, giou, diou, ciou], ids=lambda f: f.__name__)
def test_gradients_match_finite_differences(fn) -> None:
    """Generic overlapping boxes (no ties between edges). For CIoU the truths share the predictions'
    aspect ratio, where the constant-alpha convention and the full derivative coincide."""
    pred = GENERIC_PRED.clone().requires_grad_(True)
    truth = GENERIC_TRUTH.clone().requires_grad_(True)
    if fn is ciou:
        truth = torch.cat((GENERIC_TRUTH[:, :2], GENERIC_PRED[:, 2:] * 0.8), 1).requires_grad_(True)
    assert torch.autograd.gradcheck(fn, (pred, truth))


def test_ciou_gradient_treats_alpha_as_constant() -> None:
    pred = t((0.3, 0.4, 0.5, 0.2)).requires_grad_(True)
    truth = t((0.35, 0.42, 0.3, 0.4))
    ciou(pred, truth).sum().backward()
    p = pred.detach()
    v = lambda box: 4 / math.pi**2 * (torch.atan(truth[:, 2] / truth[:, 3]) - torch.atan(box[:, 2] / box[:, 3])) ** 2
    alpha = (v(p) / (1 - iou(p, truth) + v(p) + 1e-6)).item()
    reference = p.clone().requires_grad_(True)
    (diou(reference, truth) - alpha * v(reference)).sum().backward()
    torch.testing.assert_close(pred.grad, reference.grad)


def test_giou_and_diou_pull_disjoint_boxes_together() -> None:
    pred = t((0.2, 0.2, 0.1, 0.1)).requires_grad_(True)
    truth = t((0.7, 0.7, 0.1, 0.1))
    assert torch.autograd.grad(iou(pred, truth).sum(), pred)[0].abs().sum() == 0
    for fn in (giou, diou, ciou):
        grad = torch.autograd.grad(fn(pred, truth).sum(), pred)[0]
        assert torch.isfinite(grad).all()
        assert grad[0, 0] > 0 and grad[0, 1] > 0  # increasing x, y towards the truth raises the score


def test_no_nan_gradient_from_degenerate_pairs() -> None:
    pred = t((0.5, 0.5, 0.0, 0.0), (0.5, 0.5, 0.2, 0.2)).requires_grad_(True)
    truth = t((0.5, 0.5, 0.0, 0.0), (0.5, 0.5, 0.2, 0.2))
    for fn in (iou, giou, diou):
        grad = torch.autograd.grad(fn(pred, truth).sum(), pred)[0]
        assert torch.isfinite(grad).all()
