"""Darknet's ``[yolo]`` training loss (AlexeyAB ``forward_yolo_layer`` / ``process_batch``), vectorised.

**Why a delta and not textbook losses.**  Darknet does not differentiate a loss function: it writes a per-entry
``l.delta`` (target minus activated output, with ignore masks, sequential overwrites of class deltas, accumulated box
deltas, ``max_delta`` clipping, ``objectness_smooth``, the iou_thresh averaging, and ``dx_box_iou``'s hand-written
IoU gradients whose w/h terms are multiplied by ``exp(tw)`` only) and ``backward_yolo_layer`` hands that delta
*unchanged* to the preceding conv, skipping the logistic's derivative.  So for every entry the gradient that reaches
the head's input (the conv output) is ``-delta`` (Darknet adds delta to the weights, i.e. delta = minus the
gradient).  No closed-form loss reproduces all those quirks, so :func:`yolo_delta` computes Darknet's delta
exactly (vectorised over cells, targets and images), and :func:`yolo_loss` turns it into a tensor whose gradient
w.r.t. the head input is ``-delta_normalizer * delta`` (Darknet's GPU ``backward_yolo_layer_gpu`` scales by
``delta_normalizer``).  In closed form that gradient *is* the textbook loss where one exists: for ``new_coords=0``
obj/cls get BCE-with-logits (``(p - y)``), x/y get ``scale * iou_normalizer * s * BCE-with-logits(t, (tx+(s-1)/2)/s)``
with ``scale = 2 - w*h`` and s = ``scale_x_y``, w/h get ``scale * iou_normalizer * (t - tw)^2 / 2``; with
``new_coords=1`` everything is an MSE on the activated values.

**How the gradient reaches the conv.**  ``out`` is the head's activated map, so autograd multiplies whatever
gradient we put on ``out`` by the head's activation slope (``s*y*(1-y)`` for sigmoid entries, ``s`` for new_coords
x/y).  :func:`yolo_loss` therefore puts ``-delta / slope`` on ``out``; the division is undone by autograd up to a
few ulps.  Where float32 saturates (``y`` exactly 0 or 1, |logit| > ~16.6) the slope is 0 and that entry's gradient
is lost; pass ``head_input`` (the tensor the head was applied to) and the gradient goes straight to it with no
division, exactly as Darknet.

**The value** returned is Darknet's ``l.cost`` = ``sum(delta**2)`` over the layer and the batch (what Darknet logs;
divide by the batch for its "avg loss").  Sums over the batch, like Darknet, whose update divides the learning rate
by the batch.

Not replicated: a truth with ``cx == 0`` does not end the image's truth list (Darknet ``if (!truth.x) break``); a
truth at ``cx == 1`` uses the last cell (Darknet writes one cell past the row); ``[yolo] map=``,
``counters_per_class`` (class multipliers; so ``cls_normalizer`` has no effect, as in Darknet without them), the
``[net]`` bad-label rejection options, and adversarial training (training warns about each when set).  Exact float-equality tests on deltas (a class delta that is exactly 0) follow the generic case.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from darknet_torch.errors import DarknetError, DataError
from darknet_torch.model.heads.yolo import GaussianYOLOLayer, YoloConfig, YOLOLayer
from darknet_torch.ops import ciou, diou, giou, iou

__all__ = ["yolo_loss", "yolo_delta"]

# compare_yolo_class: a prediction counts as "matching" (may be ignored) only if some class probability exceeds this.
_CLASS_MATCH_THRESH = 0.25
# Slopes below this are treated as saturated: dividing by them would overflow float32.
_MIN_SLOPE = 1e-30


def yolo_loss(head: YOLOLayer, out: Tensor, targets: Tensor, net_hw: tuple[int, int],
              head_input: Tensor | None = None) -> tuple[Tensor, dict[str, Tensor]]:
    """Darknet's ``[yolo]`` loss for one head.

    ``out``: the head's forward output ``(B, nA*(5+C), H, W)`` (Darknet's activated ``l.output``).
    ``targets``: float ``(T, 6)`` rows ``[batch_index, class, cx, cy, w, h]``, box relative to the network input,
    same device as ``out``; rows of one image are used in their order (Darknet's truth order).
    ``net_hw``: network input (height, width) in pixels.  ``head_input``: optionally the tensor ``out`` was computed
    from; the gradient then flows to it directly (exact even for saturated logits).

    Returns ``(loss, parts)``: the scalar (value ``sum(delta**2)``, gradient w.r.t. the head input
    ``-delta_normalizer * delta``) and detached logging values: ``box``, ``obj``, ``cls`` (their shares of the
    value), ``iou`` (mean IoU of the assigned predictions), ``count`` (assignments), ``recall50``, ``recall75``,
    ``obj_pos`` / ``cls_pos`` (mean objectness / true-class probability where assigned), ``obj_any`` (mean
    objectness).
    """
    with torch.no_grad():
        result = _darknet_delta(head, out.detach().float(), targets, net_hw)
        if head_input is None:      # autograd will multiply by the head's activation slope: divide it out first
            carrier, gradient = out, _divide_by_slope(head, out.detach().float(), result.delta, result.touched)
        else:
            carrier, gradient = head_input, result.delta
    surrogate = -(carrier.float() * gradient).sum() * head.config.delta_normalizer
    parts = result.parts
    cost = parts["box"] + parts["obj"] + parts["cls"]
    return cost + (surrogate - surrogate.detach()), parts


def yolo_delta(head: YOLOLayer, out: Tensor, targets: Tensor,
               net_hw: tuple[int, int]) -> tuple[Tensor, dict[str, Tensor]]:
    """Darknet's ``l.delta`` for this head (same shape and layout as ``out``, float32) and the logging parts.

    Arguments as :func:`yolo_loss`.  Matches AlexeyAB ``process_batch`` (the body of ``forward_yolo_layer``).
    """
    with torch.no_grad():
        result = _darknet_delta(head, out.detach().float(), targets, net_hw)
    return result.delta, result.parts


@dataclass(frozen=True)
class _Delta:
    delta: Tensor               # same shape as the head output
    touched: _Cells              # every cell whose box/class deltas may be non-zero
    parts: dict[str, Tensor]


def _darknet_delta(head: YOLOLayer, out: Tensor, targets: Tensor, net_hw: tuple[int, int]) -> _Delta:
    """process_batch for every image at once.  Box and class deltas are only ever written at a few cells (the
    assigned ones and the truth_thresh positives), so everything but objectness works on gathered rows."""
    _check_head(head)
    cfg = head.config
    b, _, h, w = out.shape
    na, nc = head.num_anchors, head.num_classes
    p = out.reshape(b, na, 5 + nc, h, w)
    truths = _Truths(targets, b, nc)
    delta = torch.zeros_like(p)
    obj = p[:, :, 4]
    delta[:, :, 4] = cfg.obj_normalizer * (0 - obj)

    # Per prediction: the best IoU with a truth of its image -> ignored, or positive above truth_thresh.
    pred = _predicted_boxes(head, p, net_hw)   # (B, nA, H, W, 4)
    best_iou, best_truth = truths.best_match(pred.reshape(b, -1, 4))
    best_iou, best_truth = best_iou.reshape(obj.shape), best_truth.reshape(obj.shape)
    _ignore(delta, p, _Cells.where(best_iou > cfg.ignore_thresh), best_iou, cfg)
    positive = best_iou > cfg.truth_thresh
    pos = _Cells.where(positive)
    if len(pos):
        t = best_truth[pos.index]
        true_cls = truths.cls[t]
        iou_sq = best_iou[pos.index] ** 2
        pos.put(delta, 4, cfg.obj_normalizer * ((iou_sq if cfg.objectness_smooth else 1) - obj[pos.index]))
        pos.put(delta, slice(5, None), _class_delta(pos.take(p, slice(5, None)), true_cls, cfg))
        if cfg.objectness_smooth:
            pos.put(delta, 5 + true_cls, iou_sq - pos.take(p, 5 + true_cls))
        pos.put(delta, slice(0, 4), _box_delta(pred[pos.index], pos.take(p, slice(0, 4)), truths.box[t],
                                               head.anchors[pos.anchor].float(), pos.col, pos.row, (h, w), net_hw,
                                               cfg)[0])

    # Per truth: the anchors (so the cells) it trains, processed in Darknet's order.
    a = _assignments(truths, cfg, (b, na, h, w), net_hw)
    cells = a.cells
    assigned_iou = obj.new_zeros(0)
    if len(cells):
        assigned_box, assigned_iou = _box_delta(pred[cells.index], cells.take(p, slice(0, 4)), truths.box[a.truth],
                                                a.anchor_wh, cells.col, cells.row, (h, w), net_hw, cfg)
        cells.add(delta, slice(0, 4), assigned_box)
        new_obj = cfg.obj_normalizer * (1 - obj[cells.index])
        if cfg.objectness_smooth:
            current = cells.take(delta, 4)
            new_obj = torch.where(current == 0, new_obj, current)
        cells.put(delta, 4, new_obj)
        _apply_class_deltas(delta, p, a, truths.cls[a.truth], positive, cfg)

    touched = pos.union(cells)
    if cfg.iou_thresh < 1:      # averages_yolo_deltas
        classes_in_box = (touched.take(delta, slice(5, None)) > 0).sum(dim=1)
        divide = (touched.take(delta, 4) != 0) & (classes_in_box > 0)
        divisor = torch.where(divide, classes_in_box, torch.ones_like(classes_in_box)).unsqueeze(1)
        touched.put(delta, slice(0, 4), touched.take(delta, slice(0, 4)) / divisor)

    parts = _parts(delta, assigned_iou, p, a, truths)
    return _Delta(delta.reshape(out.shape), touched, parts)


def _predicted_boxes(head: YOLOLayer, p: Tensor, net_hw: tuple[int, int]) -> Tensor:
    """get_yolo_box for every cell, relative to the network input: ``(B, nA, H, W, 4)``."""
    b, na, _, h, w = p.shape
    net_h, net_w = net_hw
    pixels = torch.tensor([net_w, net_h, net_w, net_h], dtype=p.dtype, device=p.device)
    no_classes = p[:, :, 5:5]
    boxes = head.boxes_from_maps(p[:, :, 0], p[:, :, 1], p[:, :, 2], p[:, :, 3], p[:, :, 4], no_classes, net_hw)
    return (boxes[..., :4] / pixels).reshape(b, na, h, w, 4)


def _ignore(delta: Tensor, p: Tensor, candidates: _Cells, best_iou: Tensor, cfg: YoloConfig) -> None:
    """No objectness delta (or, with objectness_smooth, one towards the IoU) for predictions overlapping a truth by
    more than ignore_thresh -- but only those with some class probability above 0.25 (compare_yolo_class)."""
    if not len(candidates):
        return
    matches = (candidates.take(p, slice(5, None)) > _CLASS_MATCH_THRESH).any(dim=1)
    current = candidates.take(delta, 4)
    if cfg.objectness_smooth:
        towards_iou = cfg.obj_normalizer * (best_iou[candidates.index] - candidates.take(p, 4))
        ignored = torch.maximum(current, towards_iou)
    else:
        ignored = torch.zeros_like(current)
    candidates.put(delta, 4, torch.where(matches, ignored, current))


# ----------------------------------------------------------------------------------------------------- cells
@dataclass(frozen=True)
class _Cells:
    """A set of predictions (rows may repeat), addressed as (image, anchor slot, row, col) index tensors into
    ``(B, nA, E, H, W)`` maps, so entries of a few cells are read and written without reshaping whole maps."""

    image: Tensor
    anchor: Tensor
    row: Tensor
    col: Tensor
    shape: tuple[int, int, int, int]     # B, nA, H, W

    @classmethod
    def where(cls, mask: Tensor) -> _Cells:
        """The cells where a ``(B, nA, H, W)`` mask is true."""
        return cls(*mask.nonzero(as_tuple=True), shape=tuple(mask.shape))

    @classmethod
    def from_flat(cls, flat: Tensor, shape: tuple[int, int, int, int]) -> _Cells:
        _, na, h, w = shape
        return cls(flat // (na * h * w), flat // (h * w) % na, flat // w % h, flat % w, shape)

    @property
    def index(self) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """Indexes ``(B, nA, H, W)`` maps."""
        return self.image, self.anchor, self.row, self.col

    @property
    def flat(self) -> Tensor:
        _, na, h, w = self.shape
        return ((self.image * na + self.anchor) * h + self.row) * w + self.col

    def __len__(self) -> int:
        return len(self.image)

    def take(self, maps: Tensor, entry: int | slice | Tensor) -> Tensor:
        """``maps[b, a, entry, j, i]`` per cell: ``(N,)`` for one entry, ``(N, k)`` for a slice."""
        return maps[self.image, self.anchor, entry, self.row, self.col]

    def put(self, maps: Tensor, entry: int | slice | Tensor, values: Tensor) -> None:
        maps[self.image, self.anchor, entry, self.row, self.col] = values

    def add(self, maps: Tensor, entry: slice, values: Tensor) -> None:
        """Accumulate ``(N, k)`` values into entries ``entry`` (repeated cells add up)."""
        entries = torch.arange(maps.shape[2], device=maps.device)[entry].unsqueeze(0)
        index = (self.image.unsqueeze(1), self.anchor.unsqueeze(1), entries, self.row.unsqueeze(1),
                 self.col.unsqueeze(1))
        maps.index_put_(index, values, accumulate=True)

    def union(self, other: _Cells) -> _Cells:
        """Both sets, each cell once."""
        return _Cells.from_flat(torch.unique(torch.cat([self.flat, other.flat])), self.shape)


# ----------------------------------------------------------------------------------------------------- targets
class _Truths:
    """``targets`` grouped per image (stable: each image keeps its rows' order), validated."""

    def __init__(self, targets: Tensor, batch: int, classes: int) -> None:
        if targets.ndim != 2 or targets.shape[1] != 6:
            raise DataError(f"targets must be a (T, 6) tensor [batch_index, class, cx, cy, w, h], got "
                            f"{tuple(targets.shape)}")
        targets = targets.detach().float()
        image, cls, box = targets[:, 0].long(), targets[:, 1].long(), targets[:, 2:6]
        _check_targets(image, cls, box, batch, classes)
        order = torch.argsort(image, stable=True)
        self.image, self.cls, self.box = image[order], cls[order], box[order]
        counts = torch.bincount(self.image, minlength=batch)
        self.first = torch.cumsum(counts, 0) - counts          # row of each image's first truth
        self.slot = torch.arange(len(order), device=targets.device) - self.first[self.image]
        self.per_image = int(counts.max()) if len(order) else 0

    def best_match(self, pred: Tensor) -> tuple[Tensor, Tensor]:
        """For ``(B, P, 4)`` predictions: the best IoU with a truth of the same image and that truth's row.

        Ties go to the first truth (Darknet's strict ``>``); a prediction overlapping nothing gets IoU 0.
        """
        b, n = pred.shape[:2]
        if self.per_image == 0:
            return pred.new_zeros(b, n), torch.zeros(b, n, dtype=torch.long, device=pred.device)
        padded = pred.new_zeros(b, self.per_image, 4)
        padded[self.image, self.slot] = self.box
        valid = torch.zeros(b, 1, self.per_image, dtype=torch.bool, device=pred.device)
        valid[self.image, 0, self.slot] = True
        ious = torch.where(valid, iou(pred.unsqueeze(2), padded.unsqueeze(1)), pred.new_zeros(()))
        best, index = ious.amax(dim=2), ious.argmax(dim=2)      # (Tensor.max(dim) is far slower on CPU)
        return best, self.first.unsqueeze(1) + index


def _check_targets(image: Tensor, cls: Tensor, box: Tensor, batch: int, classes: int) -> None:
    """Bad labels are errors here (Darknet prints a warning and skips or misuses them)."""
    if not len(image):
        return
    if not bool(torch.isfinite(box).all()):
        raise DataError("targets contain non-finite box coordinates")
    if int(image.min()) < 0 or int(image.max()) >= batch:
        raise DataError(f"targets refer to images {int(image.min())}..{int(image.max())} but the batch has {batch}")
    bad = cls[(cls < 0) | (cls >= classes)]
    if len(bad):
        raise DataError(f"target class {int(bad[0])} is out of range for a [yolo] head with classes={classes}")
    if bool((box < 0).any()) or bool((box > 1).any()):
        raise DataError("target boxes must be relative to the network input (cx, cy, w, h in [0, 1])")


def _check_head(head: YOLOLayer) -> None:
    if isinstance(head, GaussianYOLOLayer):
        raise DarknetError("training loss for [Gaussian_yolo] is not implemented (only [yolo] heads can be trained)")


@dataclass(frozen=True)
class _Assigned:
    """The (truth, anchor) pairs of process_batch's truth loop and the cells they train."""

    truth: Tensor         # row in _Truths
    anchor_wh: Tensor     # (N, 2) pixels
    cells: _Cells
    order: Tensor         # Darknet's processing order within an image (smaller first)


def _thresh_iou(kind: str, truth_shapes: Tensor, anchor_shapes: Tensor, shape_iou: Tensor) -> Tensor:
    """box.c ``box_iou_kind(anchor, truth, iou_thresh_kind)`` for every (truth, anchor) pair, both centred at 0."""
    if kind == "iou":
        return shape_iou
    pairs = torch.broadcast_shapes(truth_shapes.unsqueeze(1).shape, anchor_shapes.unsqueeze(0).shape)
    anchor, truth = anchor_shapes.unsqueeze(0).expand(pairs), truth_shapes.unsqueeze(1).expand(pairs)
    if kind == "giou":
        return giou(anchor, truth)
    if kind == "diou":
        return diou(anchor, truth, 0.6)  # box_diou's hard-coded power
    return ciou(anchor, truth)


def _assignments(truths: _Truths, cfg: YoloConfig, shape: tuple[int, int, int, int],
                 net_hw: tuple[int, int]) -> _Assigned:
    """The best anchor of all the layer's anchors (by shape IoU) if it is in this head's mask, plus every other
    masked anchor whose shape IoU exceeds ``iou_thresh``."""
    _, na, h, w = shape
    net_h, net_w = net_hw
    device = truths.box.device
    anchors = torch.tensor(cfg.anchors, dtype=torch.float32, device=device)                 # (A, 2) pixels
    total = len(anchors)
    shapes = torch.cat([torch.zeros_like(anchors), anchors / torch.tensor([net_w, net_h], device=device)], dim=1)
    truth_shapes = torch.cat([torch.zeros_like(truths.box[:, :2]), truths.box[:, 2:]], dim=1)
    shape_iou = iou(truth_shapes.unsqueeze(1), shapes.unsqueeze(0))                          # (T, A)
    best = shape_iou.argmax(dim=1, keepdim=True) if len(truth_shapes) else shape_iou.new_zeros((0, 1), dtype=torch.long)
    primary = torch.arange(total, device=device) == best
    if cfg.iou_thresh < 1:
        chosen = primary | (_thresh_iou(cfg.iou_thresh_kind, truth_shapes, shapes, shape_iou) > cfg.iou_thresh)
    else:
        chosen = primary
    mask_slot = torch.full((total,), -1, dtype=torch.long, device=device)
    mask_slot[torch.tensor(cfg.mask, device=device)] = torch.arange(na, device=device)
    truth, anchor = (chosen & (mask_slot >= 0)).nonzero(as_tuple=True)
    col = (truths.box[truth, 0] * w).long().clamp(max=w - 1)     # C's (int)(truth.x * l.w)
    row = (truths.box[truth, 1] * h).long().clamp(max=h - 1)
    cells = _Cells(truths.image[truth], mask_slot[anchor], row, col, shape)
    # Within an image: truth by truth; its best anchor first, then the others by index.
    order = truth * (total + 1) + torch.where(primary[truth, anchor], 0, anchor + 1)
    return _Assigned(truth, anchors[anchor], cells, order)


# ----------------------------------------------------------------------------------------------------- deltas
def _box_delta(pred: Tensor, raw: Tensor, truth: Tensor, anchor_wh: Tensor, col: Tensor, row: Tensor,
               grid_hw: tuple[int, int], net_hw: tuple[int, int], cfg: YoloConfig) -> tuple[Tensor, Tensor]:
    """delta_yolo_box for matched rows: ``(M, 4)`` deltas for entries x, y, w, h and the ``(M,)`` IoUs.

    ``pred``: get_yolo_box boxes (relative), ``raw``: the activated entries 0..3, ``truth``: relative xywh,
    ``anchor_wh``: pixels, ``col``/``row``: the predicting cell.
    """
    h, w = grid_hw
    net_h, net_w = net_hw
    box_iou = iou(pred, truth)
    if cfg.iou_loss == "mse":
        tx = truth[:, 0] * w - col
        ty = truth[:, 1] * h - row
        if cfg.new_coords:
            tw = torch.sqrt(truth[:, 2] * net_w / (4 * anchor_wh[:, 0]))
            th = torch.sqrt(truth[:, 3] * net_h / (4 * anchor_wh[:, 1]))
        else:
            tw = torch.log(truth[:, 2] * net_w / anchor_wh[:, 0])
            th = torch.log(truth[:, 3] * net_h / anchor_wh[:, 1])
        scale = (2 - truth[:, 2] * truth[:, 3]).unsqueeze(1)
        return scale * (torch.stack([tx, ty, tw, th], dim=1) - raw) * cfg.iou_normalizer, box_iou
    safe = pred.clone()                                          # "avoid nan in dx_box_iou"
    safe[:, 2:] = torch.where(safe[:, 2:] == 0, torch.ones_like(safe[:, 2:]), safe[:, 2:])
    grad = _iou_gradient(safe, truth, cfg.iou_loss)
    if not cfg.new_coords:
        grad[:, 2:] = grad[:, 2:] * torch.exp(raw[:, 2:])
    grad = torch.nan_to_num(grad * cfg.iou_normalizer, nan=0.0, posinf=0.0, neginf=0.0)   # fix_nan_inf
    return grad.clamp(-cfg.max_delta, cfg.max_delta), box_iou


def _iou_gradient(pred: Tensor, truth: Tensor, kind: str) -> Tensor:
    """box.c dx_box_iou: Darknet's hand-written gradient of IoU/GIoU/DIoU/CIoU w.r.t. pred (x, y, w, h).

    Transcribed term by term (including its quirks: w/h derivatives not halved, alpha from ``Iw*Ih`` even when
    both are negative, only the distance/aspect terms when the boxes do not overlap).  ``(M, 4)``.
    """
    px, py, pw, ph = pred.unbind(1)
    gx, gy, gw, gh = truth.unbind(1)
    zero = pred.new_zeros(())
    top, bot, left, right = py - ph / 2, py + ph / 2, px - pw / 2, px + pw / 2
    p_t, p_b = torch.minimum(top, bot), torch.maximum(top, bot)
    p_l, p_r = torch.minimum(left, right), torch.maximum(left, right)
    g_t, g_b, g_l, g_r = gy - gh / 2, gy + gh / 2, gx - gw / 2, gx + gw / 2
    area = (p_b - p_t) * (p_r - p_l)
    inter_h = torch.minimum(p_b, g_b) - torch.maximum(p_t, g_t)
    inter_w = torch.minimum(p_r, g_r) - torch.maximum(p_l, g_l)
    inter = inter_w * inter_h
    union = area + (g_b - g_t) * (g_r - g_l) - inter
    dist2 = (px - gx) * (px - gx) + (py - gy) * (py - gy)
    enc_w = torch.maximum(p_r, g_r) - torch.minimum(p_l, g_l)
    enc_h = torch.maximum(p_b, g_b) - torch.minimum(p_t, g_t)
    enc = enc_w * enc_h

    d_area = {"t": -(p_r - p_l), "b": p_r - p_l, "l": -(p_b - p_t), "r": p_b - p_t}
    d_inter = {"t": torch.where(p_t > g_t, -inter_w, zero), "b": torch.where(p_b < g_b, inter_w, zero),
               "l": torch.where(p_l > g_l, -inter_h, zero), "r": torch.where(p_r < g_r, inter_h, zero)}
    d_union = {k: d_area[k] - d_inter[k] for k in "tblr"}
    d_enc = {"t": torch.where(p_t < g_t, -enc_w, zero), "b": torch.where(p_b > g_b, enc_w, zero),
             "l": torch.where(p_l < g_l, -enc_h, zero), "r": torch.where(p_r > g_r, enc_h, zero)}
    grad = {k: torch.where(union > 0, (union * d_inter[k] - inter * d_union[k]) / (union * union), zero)
            for k in "tblr"}
    grad["t"] = torch.where(top < bot, grad["t"], grad["b"])
    grad["l"] = torch.where(left < right, grad["l"], grad["r"])
    apart = (inter_w <= 0) | (inter_h <= 0)
    if kind == "giou":
        term = {k: (enc * d_union[k] - union * d_enc[k]) / (enc * enc) for k in "tblr"}
        grad = {k: torch.where(apart, term[k], torch.where(enc > 0, grad[k] + term[k], grad[k])) for k in "tblr"}
    dx, dy = grad["l"] + grad["r"], grad["t"] + grad["b"]
    dw, dh = grad["r"] - grad["l"], grad["b"] - grad["t"]
    if kind in ("diou", "ciou"):
        one = pred.new_ones(())
        denc_w_dx = torch.where(p_r > g_r, one, zero) - torch.where(p_l < g_l, one, zero)
        denc_w_dw = torch.where(p_r > g_r, 0.5 * one, zero) - torch.where(p_l < g_l, -0.5 * one, zero)
        denc_h_dy = torch.where(p_b > g_b, one, zero) - torch.where(p_t < g_t, one, zero)
        denc_h_dh = torch.where(p_b > g_b, 0.5 * one, zero) - torch.where(p_t < g_t, -0.5 * one, zero)
        diag = enc_w * enc_w + enc_h * enc_h
        diag2 = diag * diag
        tx = (2 * (gx - px) * diag - 2 * enc_w * denc_w_dx * dist2) / diag2
        ty = (2 * (gy - py) * diag - 2 * enc_h * denc_h_dy * dist2) / diag2
        tw = 2 * enc_w * denc_w_dw * dist2 / diag2
        th = 2 * enc_h * denc_h_dh * dist2 / diag2
        if kind == "ciou":
            gap = torch.atan(gw / gh) - torch.atan(pw / ph)
            aspect = 4 / (math.pi * math.pi) * gap * gap
            alpha = aspect / (1 - inter / union + aspect + 0.000001)
            tw = tw + alpha * (8 / (math.pi * math.pi) * gap * ph)
            th = th + alpha * (-8 / (math.pi * math.pi) * gap * pw)
        overlap_terms = [torch.where(diag > 0, g + t, g) for g, t in ((dx, tx), (dy, ty), (dw, tw), (dh, th))]
        dx, dy, dw, dh = (torch.where(apart, t, g) for g, t in zip(overlap_terms, (tx, ty, tw, th)))
    return torch.stack([dx, dy, dw, dh], dim=1)


def _class_delta(p: Tensor, true_cls: Tensor, cfg: YoloConfig) -> Tensor:
    """delta_yolo_class for a cell whose class deltas are still unset: every class, ``(M, C)``."""
    onehot = torch.zeros_like(p).scatter_(1, true_cls.unsqueeze(1), 1.0)
    if cfg.focal_loss:
        pt = p.gather(1, true_cls.unsqueeze(1)) + 0.000000000000001
        grad = -(1 - pt) * (2 * pt * torch.log(pt) + pt - 1)
        return (onehot - p) * (0.5 * grad)
    return _smoothed(onehot, cfg.label_smooth_eps) - p


def _smoothed(y: Tensor | float, eps: float) -> Tensor | float:
    return y * (1 - eps) + 0.5 * eps if eps else y


def _apply_class_deltas(delta: Tensor, p: Tensor, a: _Assigned, true_cls: Tensor, positive: Tensor,
                        cfg: YoloConfig) -> None:
    """The truth loop's delta_yolo_class calls, in Darknet's order, without a loop.

    The first call on a cell whose class deltas are unset writes every class; every later call on that cell (and
    every call on a cell already set by the truth_thresh branch) only sets its own class to ``1 - p`` (smoothed).
    """
    cells = a.cells
    unique, inverse = torch.unique(cells.flat, return_inverse=True)
    first = torch.full((len(unique),), torch.iinfo(torch.long).max, dtype=torch.long, device=unique.device)
    first.scatter_reduce_(0, inverse, a.order, reduce="amin")
    writes_all = (a.order == first[inverse]) & ~positive[cells.index]
    full = _Cells(*(index[writes_all] for index in cells.index), shape=cells.shape)
    full.put(delta, slice(5, None), _class_delta(full.take(p, slice(5, None)), true_cls[writes_all], cfg))
    own = _Cells(*(index[~writes_all] for index in cells.index), shape=cells.shape)
    own_entry = 5 + true_cls[~writes_all]
    own.put(delta, own_entry, _smoothed(1.0, cfg.label_smooth_eps) - own.take(p, own_entry))


# ----------------------------------------------------------------------------------------------------- gradient
def _divide_by_slope(head: YOLOLayer, out: Tensor, delta: Tensor, touched: _Cells) -> Tensor:
    """``delta`` divided by d(out)/d(head input) entry by entry (0 where the activation is saturated).

    Only objectness is non-zero everywhere; x, y and classes only at the ``touched`` cells.
    """
    b, _, h, w = out.shape
    p = out.reshape(b, head.num_anchors, -1, h, w)
    gradient = delta.reshape(p.shape).clone()
    if head.config.new_coords:
        gradient[:, :, :2] /= head.xy_scale
        return gradient.reshape(out.shape)
    obj = p[:, :, 4]
    gradient[:, :, 4] = _safe_divide(gradient[:, :, 4], (1 - obj) * obj)
    if len(touched):
        y = ((touched.take(p, slice(0, 2)) - head.xy_bias) / head.xy_scale).clamp(0, 1)
        touched.put(gradient, slice(0, 2), _safe_divide(touched.take(gradient, slice(0, 2)),
                                                        head.xy_scale * ((1 - y) * y)))
        cls = touched.take(p, slice(5, None))
        touched.put(gradient, slice(5, None), _safe_divide(touched.take(gradient, slice(5, None)), (1 - cls) * cls))
    return gradient.reshape(out.shape)


def _safe_divide(value: Tensor, slope: Tensor) -> Tensor:
    usable = slope > _MIN_SLOPE
    return torch.where(usable, value / torch.where(usable, slope, torch.ones_like(slope)), torch.zeros_like(value))


def _parts(delta: Tensor, assigned_iou: Tensor, p: Tensor, a: _Assigned, truths: _Truths) -> dict[str, Tensor]:
    count = assigned_iou.numel()
    denominator = max(count, 1)
    squares = (delta * delta).sum(dim=(0, 1, 3, 4))
    true_p = a.cells.take(p, 5 + truths.cls[a.truth])
    return {
        "box": squares[:4].sum(),
        "obj": squares[4],
        "cls": squares[5:].sum(),
        "iou": assigned_iou.sum() / denominator,
        "count": torch.tensor(float(count), device=p.device),
        "recall50": (assigned_iou > 0.5).sum() / denominator,
        "recall75": (assigned_iou > 0.75).sum() / denominator,
        "obj_pos": a.cells.take(p, 4).sum() / denominator,
        "cls_pos": true_p.sum() / denominator,
        "obj_any": p[:, :, 4].mean(),
    }
