"""Box geometry: the single home of IoU / GIoU / DIoU / CIoU and xywh <-> xyxy conversion.

Conventions (Darknet's): a box is ``(x, y, w, h)`` = centre and size, in any consistent units
(Darknet uses units relative to the image). Every function takes tensors whose last dimension
is 4 and broadcasts over the leading dimensions, so the same code serves matched pairs (losses),
one-against-many (NMS) and pairwise matrices.

The arithmetic follows src/box.c operation by operation (edges as ``x -/+ w/2``, union as
``wa*ha + wb*hb - I``), so float32 inputs give Darknet's float32 results; this is what makes the
NMS survivor sets identical to Darknet's. All functions except the thresholded comparisons are
differentiable.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor

__all__ = [
    "xywh_to_xyxy",
    "xyxy_to_xywh",
    "box_iou",
    "iou",
    "giou",
    "diou_penalty",
    "diou",
    "ciou",
]


def xywh_to_xyxy(boxes: Tensor) -> Tensor:
    """``(..., 4)`` centre/size boxes -> ``(..., 4)`` corner boxes ``(x1, y1, x2, y2)``, same units."""
    x, y, w, h = boxes.unbind(-1)
    return torch.stack((x - w / 2, y - h / 2, x + w / 2, y + h / 2), dim=-1)


def xyxy_to_xywh(boxes: Tensor) -> Tensor:
    """``(..., 4)`` corner boxes ``(x1, y1, x2, y2)`` -> ``(..., 4)`` centre/size boxes, same units."""
    x1, y1, x2, y2 = boxes.unbind(-1)
    return torch.stack(((x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1), dim=-1)


def _corners(boxes: Tensor) -> tuple[Tensor, Tensor]:
    """(left, top) and (right, bottom) as ``(..., 2)`` tensors, computed as box.c does (``x -/+ w/2``)."""
    centre, half = boxes[..., :2], boxes[..., 2:] / 2
    return centre - half, centre + half


def _intersection_union(a: Tensor, b: Tensor) -> tuple[Tensor, Tensor]:
    """Intersection and union areas, as box.c ``box_intersection`` / ``box_union``."""
    a_lt, a_rb = _corners(a)
    b_lt, b_rb = _corners(b)
    # Darknet returns 0 when either overlap is negative (even if both are, whose product is positive).
    overlap = (torch.minimum(a_rb, b_rb) - torch.maximum(a_lt, b_lt)).clamp(min=0)
    inter = overlap[..., 0] * overlap[..., 1]
    union = a[..., 2] * a[..., 3] + b[..., 2] * b[..., 3] - inter
    return inter, union


def _enclosing_wh(a: Tensor, b: Tensor) -> Tensor:
    """``(..., 2)`` width and height of the smallest box enclosing both (box.c ``box_c``)."""
    a_lt, a_rb = _corners(a)
    b_lt, b_rb = _corners(b)
    return torch.maximum(a_rb, b_rb) - torch.minimum(a_lt, b_lt)


def _safe_ratio(num: Tensor, den: Tensor, valid: Tensor) -> Tensor:
    """``num/den`` where ``valid`` else 0, without NaN gradients from the masked-out branch."""
    return torch.where(valid, num / torch.where(valid, den, torch.ones_like(den)), torch.zeros_like(num))


def iou(a: Tensor, b: Tensor) -> Tensor:
    """Elementwise IoU of broadcastable ``(..., 4)`` xywh boxes (box.c ``box_iou``).

    0 when the boxes do not overlap, or when the intersection or the union is exactly 0.
    """
    inter, union = _intersection_union(a, b)
    return _safe_ratio(inter, union, (inter != 0) & (union != 0))


def box_iou(a: Tensor, b: Tensor) -> Tensor:
    """Pairwise IoU matrix: ``(N, 4)`` x ``(M, 4)`` xywh boxes -> ``(N, M)``, Darknet conventions."""
    return iou(a.unsqueeze(-2), b.unsqueeze(-3))


def giou(a: Tensor, b: Tensor) -> Tensor:
    """Elementwise generalised IoU (box.c ``box_giou``): ``IoU - (C - U)/C``, C the enclosing area.

    Returns the plain IoU when the enclosing area is 0.
    """
    inter, union = _intersection_union(a, b)
    plain = _safe_ratio(inter, union, (inter != 0) & (union != 0))
    enc_wh = _enclosing_wh(a, b)
    enclosing = enc_wh[..., 0] * enc_wh[..., 1]
    return plain - _safe_ratio(enclosing - union, enclosing, enclosing != 0)


def _centre_distance_ratio(a: Tensor, b: Tensor) -> tuple[Tensor, Tensor]:
    """``d^2/c^2`` (squared centre distance over squared enclosing diagonal) and the mask ``c^2 != 0``."""
    enc_wh = _enclosing_wh(a, b)
    diag2 = enc_wh[..., 0] * enc_wh[..., 0] + enc_wh[..., 1] * enc_wh[..., 1]
    gap = a[..., :2] - b[..., :2]
    valid = diag2 != 0
    return _safe_ratio(gap[..., 0] * gap[..., 0] + gap[..., 1] * gap[..., 1], diag2, valid), valid


def diou_penalty(a: Tensor, b: Tensor, beta: float = 1.0) -> Tensor:
    """DIoU penalty ``(d^2/c^2)^beta`` elementwise; 0 when the enclosing diagonal c is 0.

    As in box.c, the power is taken in double precision (C ``pow``) and rounded back to the
    input dtype. ``beta < 1`` has an infinite gradient at d = 0: use it for NMS, not for losses.
    """
    ratio, _ = _centre_distance_ratio(a, b)
    if beta == 1.0:
        return ratio
    return ratio.to(torch.float64).pow(beta).to(ratio.dtype)


def diou(a: Tensor, b: Tensor, beta: float = 1.0) -> Tensor:
    """Elementwise Distance-IoU ``IoU - (d^2/c^2)^beta``; the plain IoU when c is 0.

    ``beta=1`` is the DIoU of the paper and of Darknet's ``iou_loss=diou`` gradient.
    box.c ``box_diou`` (used by ``nms_kind=greedynms``) is ``beta=0.6``; ``box_diounms`` passes
    the layer's ``beta_nms``.
    """
    return iou(a, b) - diou_penalty(a, b, beta)


def ciou(a: Tensor, b: Tensor) -> Tensor:
    """Elementwise Complete-IoU of predictions ``a`` against truths ``b`` (box.c ``box_ciou``).

    ``IoU - d^2/c^2 - alpha*v`` with ``v = 4/pi^2 (atan(wb/hb) - atan(wa/ha))^2`` and
    ``alpha = v / (1 - IoU + v + 1e-6)``; the plain IoU when c is 0. Not symmetric in a, b.
    ``alpha`` is treated as a constant in the backward pass, as in the CIoU paper (and in Darknet,
    whose hand-written gradient multiplies the aspect-ratio derivative by ``alpha``).
    """
    plain = iou(a, b)
    ratio, valid = _centre_distance_ratio(a, b)
    aspect_gap = torch.atan(b[..., 2] / b[..., 3]) - torch.atan(a[..., 2] / a[..., 3])
    v = (4 / math.pi**2) * aspect_gap * aspect_gap
    with torch.no_grad():
        alpha = v / (1 - plain + v + 0.000001)
    return torch.where(valid, plain - (ratio + alpha * v), plain)
