"""Non-maximum suppression: Darknet-exact ``do_nms_sort`` / ``diounms_sort`` and a plain class-wise NMS.

Darknet detections are rows of (box, objectness, per-class probs); NMS runs per class and zeroes
the probabilities of suppressed (row, class) pairs, so one box may survive for several classes.

Exactness notes (src/box.c):
* Rows with objectness == 0 are swapped to the end and take no part (neither suppress nor get suppressed).
* For each class k, the *same* array is re-sorted by descending prob[k] with glibc's stable merge sort,
  so ties are broken by the order the previous classes left; we replay that sequence of sorts only
  when some class actually contains tied probabilities.
* Suppression is strict (``> thresh``) and computed on float32 xywh boxes like box.c.

Speed (no Python loop over boxes, no N x N matrix): the box pairs that can conflict at all are found
once per call with a size-levelled spatial index (a pair with IoU > t has similar sizes and close
centres), each conflicting pair is tested with the exact Darknet criterion, and the greedy passes of
all classes are then settled together on that sparse conflict graph.
"""
from __future__ import annotations

import math
from typing import Callable

import torch
from torch import Tensor

from darknet_torch.ops.boxes import diou, iou, xyxy_to_xywh

__all__ = ["NMS_KINDS", "do_nms_sort", "diounms_sort", "nms_per_class", "apply_nms", "darknet_array_order",
           "darknet_nms"]

NMS_KINDS = ("default", "cornersnms", "greedynms", "diounms", "plain")
"""Accepted ``kind`` values of :func:`apply_nms` (the cfg's ``nms_kind`` spellings, plus ``plain``)."""

# box.c box_diou (used by nms_kind=greedynms) hard-codes the exponent 0.6 as a C double.
_GREEDYNMS_BETA = 0.6

# Up to this many rows darknet_nms replays Darknet's loops on Python lists (see there); at 64 rows with 30 % of 80
# classes scored the replay still takes 0.4x the vectorised passes' time, at 8 rows 0.06-0.1x.
_REPLAY_ROWS = 64

# Candidate box pairs are tested in chunks of this many, to bound memory (~100 MB).
_PAIR_BUDGET = 1 << 21

Criterion = Callable[[Tensor, Tensor], Tensor]


def _check_detections(boxes: Tensor, objectness: Tensor, probs: Tensor) -> None:
    n = boxes.shape[0] if boxes.dim() == 2 else -1
    if boxes.dim() != 2 or boxes.shape[1] != 4 or objectness.shape != (n,) or probs.dim() != 2 or probs.shape[0] != n:
        raise ValueError(
            "NMS expects boxes (N,4), objectness (N,), probs (N,C); got "
            f"{tuple(boxes.shape)}, {tuple(objectness.shape)}, {tuple(probs.shape)}"
        )


def _swap_compaction_order(objectness: Tensor) -> Tensor:
    """Row indices of the detections Darknet keeps, in the array order its swap-with-last loop leaves.

    (box.c ``do_nms_sort`` prologue.) Rows with objectness != 0 already in the front part stay put;
    the front holes, in increasing order, receive the non-zero rows of the back part in decreasing order.
    """
    active = objectness != 0
    n_active = int(active.sum())
    rows = torch.arange(objectness.shape[0], device=objectness.device)
    front = rows[:n_active]
    holes = front[~active[:n_active]]
    movers = rows[n_active:][active[n_active:]].flip(0)
    order = front.clone()
    order[holes] = movers
    return order


def darknet_array_order(objectness: Tensor, probs: Tensor) -> Tensor:
    """Row order Darknet's ``do_nms_sort``/``diounms_sort`` leave the detection array in (pre-NMS ``probs``).

    After the swap-with-last of objectness-0 rows (which then drop out), the whole array is re-sorted stably by
    descending ``prob[k]`` for k = 0..C-1, so the final order is lexicographic with the last class most
    significant.  It decides which of two duplicates ``detector map`` counts as the TP, and the printout order.
    """
    order = _swap_compaction_order(objectness)
    # A stable sort by an all-zero column leaves the order as it is: only the classes some row scores are sorted by
    # (a handful of 80 for a video frame's detections).
    for k in (probs != 0).any(0).nonzero().flatten().tolist():
        order = order[probs[order, k].sort(descending=True, stable=True).indices]
    return order


def _darknet_pair_order(probs: Tensor) -> tuple[Tensor, Tensor]:
    """All (position, class) pairs with prob != 0, ordered by class, then as Darknet's sort for that class.

    ``probs`` is in Darknet's array order (after the swap). Without tied probabilities a class's order
    is simply by descending prob; with ties we replay Darknet's successive stable sorts of the whole
    array (one sort per class, up to the last class that has a tie).
    """
    classes, positions = (probs.T != 0).nonzero(as_tuple=True)
    values = probs[positions, classes]
    by_value = values.sort(descending=True, stable=True).indices
    order = by_value[classes[by_value].sort(stable=True).indices]
    classes, positions, values = classes[order], positions[order], values[order]

    tied = torch.zeros(probs.shape[1], dtype=torch.bool, device=probs.device)
    tied[classes[1:][(classes[1:] == classes[:-1]) & (values[1:] == values[:-1])]] = True
    if tied.any():
        ends = torch.bincount(classes, minlength=probs.shape[1]).cumsum(0).tolist()
        darknet_array = torch.arange(probs.shape[0], device=probs.device)
        for k in range(int(tied.nonzero().max()) + 1):
            darknet_array = darknet_array[probs[darknet_array, k].sort(descending=True, stable=True).indices]
            if tied[k]:
                start = ends[k - 1] if k else 0
                positions[start : ends[k]] = darknet_array[probs[darknet_array, k] != 0]
    return positions, classes


def _box_levels(boxes: Tensor) -> tuple[Tensor, Tensor]:
    """Size level of every box that can overlap anything, for :func:`_conflict_pairs`.

    Returns (rows, level): the rows with finite, positive w and h (the others intersect nothing) and
    ``level`` with ``2**(level-1) < side <= 2**level`` for the box's larger side.
    """
    usable = torch.isfinite(boxes).all(1) & (boxes[:, 2] > 0) & (boxes[:, 3] > 0)
    rows = usable.nonzero(as_tuple=True)[0]
    side = boxes[rows, 2:].double().amax(1)
    level = torch.ceil(torch.log2(side))
    level = level - (torch.exp2(level - 1) >= side).double() + (torch.exp2(level) < side).double()
    return rows, level.long()


def _expand_ranges(owner: Tensor, lo: Tensor, count: Tensor) -> tuple[Tensor, Tensor]:
    """Flatten ranges ``[lo, lo+count)``: (owner repeated per element, position) pairs."""
    total = int(count.sum())
    owners = owner.repeat_interleave(count, output_size=total)
    offsets = torch.arange(total, device=owner.device) - (count.cumsum(0) - count).repeat_interleave(
        count, output_size=total
    )
    return owners, lo.repeat_interleave(count, output_size=total) + offsets


def _conflict_pairs(boxes: Tensor, conflicts: Criterion, min_iou: float) -> tuple[Tensor, Tensor]:
    """All unordered index pairs (u, v) of ``boxes`` satisfying the symmetric ``conflicts`` criterion.

    ``conflicts`` must imply ``IoU > min_iou >= 0`` (true of every NMS test with a threshold >= 0);
    only pairs that can pass that bound are tested, so work grows with the number of close pairs of
    similar size, not N^2. With m = 1 - min_iou, IoU > min_iou implies
      * ``|dx| < m (wu + wv)/2`` and ``|dy| < m (hu + hv)/2`` (the overlap must exceed min_iou * max side),
      * larger-side ratio > min_iou, so a box meets only the few size levels just above its own.
    Boxes are grouped by size level; within a level they are sorted by (y strip, x) so that each
    searcher finds its candidates with a few binary searches.
    """
    rows, level = _box_levels(boxes)
    if min_iou >= 1 or rows.numel() < 2:
        return rows.new_empty(0), rows.new_empty(0)
    reach = math.floor(1.001 - math.log2(min_iou)) if min_iou > 0 else math.inf
    x, y, w, h = boxes[rows].double().unbind(1)
    margin = (1 - min_iou) * 1.001 / 2
    x0, y0 = x.min(), y.min()
    xq_unit = (x.max() - x0).clamp(min=1e-300) / 2**30
    y_span = (y.max() - y0).clamp(min=1e-300)
    found_u, found_v = [rows.new_empty(0)], [rows.new_empty(0)]
    for lvl in level.unique().tolist():
        members = (level == lvl).nonzero(as_tuple=True)[0]
        askers = ((level <= lvl) & (level >= lvl - reach)).nonzero(as_tuple=True)[0]
        reach_x = margin * (w[askers] + w[members].max())
        reach_y = margin * (h[askers] + h[members].max())
        strip_height = torch.maximum(reach_y.max(), y_span / 2**30)
        strip_of = ((y[members] - y0) / strip_height).floor().long()
        keys, order = (strip_of * 2**31 + ((x[members] - x0) / xq_unit).floor().long()).sort()
        members = members[order]

        x_lo = ((x[askers] - reach_x - x0) / xq_unit).floor().clamp(0, 2**31 - 1).long()
        x_hi = ((x[askers] + reach_x - x0) / xq_unit).floor().clamp(0, 2**31 - 1).long()
        first_strip = ((y[askers] - reach_y - y0) / strip_height).floor().long()
        last_strip = ((y[askers] + reach_y - y0) / strip_height).floor().long()
        for offset in range(3):
            s = first_strip + offset
            lo = torch.searchsorted(keys, s * 2**31 + x_lo)
            count = torch.where(s <= last_strip, torch.searchsorted(keys, s * 2**31 + x_hi, right=True) - lo, 0)
            starts = count.cumsum(0) - count
            for chunk_start in range(0, int(count.sum()), _PAIR_BUDGET):
                chunk = (starts >= chunk_start) & (starts < chunk_start + _PAIR_BUDGET)
                asker, position = _expand_ranges(askers[chunk], lo[chunk], count[chunk])
                u, v = asker, members[position]
                new = (level[u] < lvl) | (u < v)
                u, v = rows[u[new]], rows[v[new]]
                hit = conflicts(boxes[u], boxes[v])
                found_u.append(u[hit])
                found_v.append(v[hit])
    return torch.cat(found_u), torch.cat(found_v)


def _greedy_keep(earlier: Tensor, later: Tensor, n_items: int) -> Tensor:
    """Greedy NMS on a conflict graph: item i survives unless an earlier *surviving* item conflicts with it.

    Items are numbered in processing order; each edge says ``earlier[e] < later[e]`` conflict.
    An item is settled as suppressed as soon as one earlier conflict is settled as kept, and as kept
    once all its earlier conflicts are settled as suppressed. The lowest unsettled item always settles,
    so this terminates; in practice a handful of vectorised sweeps settle everything.
    """
    keep = torch.ones(n_items, dtype=torch.bool, device=earlier.device)
    settled = torch.ones_like(keep)
    settled[later] = False
    while earlier.numel():
        source_kept = settled[earlier] & keep[earlier]
        suppressed = torch.zeros_like(keep)
        suppressed[later[source_kept]] = True
        blocked = torch.zeros_like(keep)
        blocked[later[~settled[earlier]]] = True
        newly_suppressed = suppressed & ~settled
        keep &= ~newly_suppressed
        settled |= newly_suppressed | ~blocked
        live = ~settled[later] & (~settled[earlier] | keep[earlier])
        earlier, later = earlier[live], later[live]
    return keep


def _greedy_keep_items(
    boxes: Tensor, rows: Tensor, classes: Tensor, n_classes: int, conflicts: Criterion, thresh: float
) -> Tensor:
    """Greedy NMS of (row, class) items listed in processing order; returns their keep mask.

    Items of different classes never interact. The box geometry is examined once per row
    (:func:`_conflict_pairs`); each conflicting row pair then becomes one conflict per class in
    which both rows have an item. ``classes`` must lie in ``[0, n_classes)``.
    """
    n_items = rows.shape[0]
    item_of = torch.full((boxes.shape[0], n_classes), -1, dtype=torch.long, device=rows.device)
    item_of[rows, classes] = torch.arange(n_items, device=rows.device)
    listed = torch.zeros(boxes.shape[0], dtype=torch.bool, device=rows.device)
    listed[rows] = True
    listed = listed.nonzero(as_tuple=True)[0]
    local_u, local_v = _conflict_pairs(boxes[listed], conflicts, thresh)
    u, v = listed[local_u], listed[local_v]

    earlier, later = [u.new_empty(0)], [u.new_empty(0)]
    step = max(1, _PAIR_BUDGET // max(1, n_classes))
    for start in range(0, u.shape[0], step):
        item_u, item_v = item_of[u[start : start + step]], item_of[v[start : start + step]]
        shared = (item_u >= 0) & (item_v >= 0)
        earlier.append(torch.minimum(item_u[shared], item_v[shared]))
        later.append(torch.maximum(item_u[shared], item_v[shared]))
    return _greedy_keep(torch.cat(earlier), torch.cat(later), n_items)


def _zero_losers(probs: Tensor, rows: Tensor, classes: Tensor, keep: Tensor) -> Tensor:
    out = probs.clone()
    out[rows[~keep], classes[~keep]] = 0
    return out


def _darknet_class_nms(boxes: Tensor, objectness: Tensor, probs: Tensor, conflicts: Criterion, thresh: float) -> Tensor:
    """Shared body of ``do_nms_sort`` and ``diounms_sort``: Darknet's pair order, then greedy NMS."""
    _check_detections(boxes, objectness, probs)
    _check_thresh(thresh)
    darknet_array = _swap_compaction_order(objectness)
    positions, classes = _darknet_pair_order(probs[darknet_array])
    rows = darknet_array[positions]
    keep = _greedy_keep_items(boxes, rows, classes, probs.shape[1], conflicts, thresh)
    return _zero_losers(probs, rows, classes, keep)


def _check_thresh(thresh: float) -> None:
    if not thresh >= 0:
        raise ValueError(f"NMS threshold must be >= 0, got {thresh!r}")


def _iou_above(thresh: float) -> Criterion:
    return lambda a, b: iou(a, b) > thresh


def do_nms_sort(boxes: Tensor, objectness: Tensor, probs: Tensor, iou_thresh: float = 0.45) -> Tensor:
    """Darknet's default NMS (box.c ``do_nms_sort``), reproduced exactly.

    Args:
        boxes: (N, 4) xywh boxes (any consistent units; Darknet uses image-relative ones). Use
            float32 for bit-exact Darknet decisions.
        objectness: (N,) rows with objectness == 0 are left untouched and suppress nothing.
        probs: (N, C) class probabilities, already thresholded (0 where prob <= thresh).
        iou_thresh: a later box is suppressed for class k when IoU > iou_thresh (strict).

    Returns:
        A new (N, C) tensor: ``probs`` with every suppressed (row, class) entry set to 0.
    """
    return _darknet_class_nms(boxes, objectness, probs, _darknet_criterion("default", iou_thresh, 0), iou_thresh)


def diounms_sort(
    boxes: Tensor,
    objectness: Tensor,
    probs: Tensor,
    iou_thresh: float = 0.45,
    nms_kind: str = "greedynms",
    beta: float = 0.6,
) -> Tensor:
    """Darknet's ``diounms_sort`` (box.c), as ``detector test``/``map`` call it for ``nms_kind != default``.

    Same contract and processing order as :func:`do_nms_sort`; only the suppression test differs:
      * ``greedynms``: ``IoU - (d^2/c^2)^0.6 > iou_thresh`` (box.c ``box_diou``, beta hard-coded 0.6,
        ``beta`` is ignored, like Darknet ignores ``beta_nms`` here);
      * ``diounms``: ``IoU - (d^2/c^2)^beta > iou_thresh`` (``box_diounms``; ``beta`` = the layer's
        ``beta_nms``, a C float, so it is rounded to float32 first);
      * ``cornersnms``: plain ``IoU > iou_thresh`` (never reached from a cfg: Darknet's parser maps
        ``cornersnms`` to the default NMS, which gives the same result).
    d is the centre distance, c the diagonal of the smallest enclosing box.
    """
    if nms_kind not in ("greedynms", "diounms", "cornersnms"):
        raise ValueError(f"diounms_sort: nms_kind must be greedynms, diounms or cornersnms, got {nms_kind!r}")
    return _darknet_class_nms(boxes, objectness, probs, _darknet_criterion(nms_kind, iou_thresh, beta), iou_thresh)


def _darknet_criterion(kind: str, iou_thresh: float, beta: float) -> Criterion:
    """The suppression test of a Darknet ``kind`` (see :func:`diounms_sort`)."""
    if kind == "greedynms":
        return lambda a, b: diou(a, b, _GREEDYNMS_BETA) > iou_thresh
    if kind == "diounms":
        exponent = torch.tensor(beta, dtype=torch.float32).item()
        return lambda a, b: diou(a, b, exponent) > iou_thresh
    return _iou_above(iou_thresh)


def nms_per_class(boxes_xyxy: Tensor, scores: Tensor, classes: Tensor, iou_thresh: float = 0.45) -> Tensor:
    """Plain class-wise greedy NMS (the usual torchvision-style semantics, not Darknet's tie order).

    Args:
        boxes_xyxy: (N, 4) corner boxes ``(x1, y1, x2, y2)``.
        scores: (N,) higher is better; ties keep the lower index first.
        classes: (N,) integer class ids; boxes of different classes never suppress each other.
        iou_thresh: a lower-scored box is removed when its IoU with a kept one is > iou_thresh.

    Returns:
        (K,) int64 indices of the kept boxes, by descending score.
    """
    n = boxes_xyxy.shape[0] if boxes_xyxy.dim() == 2 else -1
    if boxes_xyxy.dim() != 2 or boxes_xyxy.shape[1] != 4 or scores.shape != (n,) or classes.shape != (n,):
        raise ValueError(
            "nms_per_class expects boxes (N,4), scores (N,), classes (N,); got "
            f"{tuple(boxes_xyxy.shape)}, {tuple(scores.shape)}, {tuple(classes.shape)}"
        )
    _check_thresh(iou_thresh)
    class_ids, dense_classes = classes.unique(return_inverse=True)
    order = _class_score_order(scores, dense_classes)
    keep = _greedy_keep_items(
        xyxy_to_xywh(boxes_xyxy), order, dense_classes[order], class_ids.shape[0], _iou_above(iou_thresh), iou_thresh
    )
    kept = order[keep]
    return kept[scores[kept].sort(descending=True, stable=True).indices]


def _class_score_order(scores: Tensor, classes: Tensor) -> Tensor:
    """Indices sorted by class, then by descending score, ties by index (the plain NMS processing order)."""
    by_score = scores.sort(descending=True, stable=True).indices
    return by_score[classes[by_score].sort(stable=True).indices]


def _plain_nms(boxes: Tensor, objectness: Tensor, probs: Tensor, iou_thresh: float) -> Tensor:
    """:func:`nms_per_class` semantics on every non-zero (row, class) pair, in the probs-in/probs-out contract."""
    _check_detections(boxes, objectness, probs)
    _check_thresh(iou_thresh)
    rows, classes = (probs != 0).nonzero(as_tuple=True)
    order = _class_score_order(probs[rows, classes], classes)
    rows, classes = rows[order], classes[order]
    keep = _greedy_keep_items(boxes, rows, classes, probs.shape[1], _iou_above(iou_thresh), iou_thresh)
    return _zero_losers(probs, rows, classes, keep)


def apply_nms(
    boxes: Tensor,
    objectness: Tensor,
    probs: Tensor,
    iou_thresh: float = 0.45,
    kind: str = "default",
    beta: float = 0.6,
) -> Tensor:
    """The one NMS entry point for detection and evaluation code.

    ``kind`` is the last head's ``nms_kind`` (Darknet's ``detector test``/``map`` rule):
    ``default`` and ``cornersnms`` -> :func:`do_nms_sort` (Darknet's parser maps cornersnms to default);
    ``greedynms``/``diounms`` -> :func:`diounms_sort` with ``beta`` = the head's ``beta_nms``;
    ``plain`` -> :func:`nms_per_class` on every non-zero (row, class) pair (objectness ignored).
    Contract as :func:`do_nms_sort`: returns a new (N, C) probs with suppressed entries zeroed.
    """
    if kind in ("default", "cornersnms"):
        return do_nms_sort(boxes, objectness, probs, iou_thresh)
    if kind in ("greedynms", "diounms"):
        return diounms_sort(boxes, objectness, probs, iou_thresh, kind, beta)
    if kind == "plain":
        return _plain_nms(boxes, objectness, probs, iou_thresh)
    raise ValueError(f"unknown NMS kind {kind!r}; expected one of {', '.join(NMS_KINDS)}")


def darknet_nms(boxes: Tensor, objectness: Tensor, probs: Tensor, iou_thresh: float = 0.45, kind: str = "default",
                beta: float = 0.6) -> tuple[Tensor, Tensor]:
    """:func:`darknet_array_order` and :func:`apply_nms` of the same detections in one call: (order, new probs).

    A video frame has a few dozen rows at most, where the vectorised passes spend milliseconds in a few hundred
    small torch operations; up to :data:`_REPLAY_ROWS` rows the Darknet kinds instead replay box.c's loops as
    written (the swap, then per class a stable sort and the greedy pass) on Python lists, after one pairwise test
    of the boxes: the same result, 10x faster for a handful of rows.
    """
    if kind not in NMS_KINDS or kind == "plain" or boxes.shape[0] > _REPLAY_ROWS:
        return darknet_array_order(objectness, probs), apply_nms(boxes, objectness, probs, iou_thresh, kind, beta)
    _check_detections(boxes, objectness, probs)
    _check_thresh(iou_thresh)
    conflict = _darknet_criterion(kind, iou_thresh, beta)(boxes[:, None], boxes[None]).tolist()
    prob, active, order = probs.tolist(), [o != 0 for o in objectness.tolist()], list(range(boxes.shape[0]))
    i, last = 0, len(order) - 1
    while i <= last:  # the objectness-0 rows are swapped with the last one and drop out
        if active[order[i]]:
            i += 1
        else:
            order[i], order[last] = order[last], order[i]
            last -= 1
    del order[last + 1:]
    removed: list[tuple[int, int]] = []
    for k in (probs != 0).any(0).nonzero().flatten().tolist():
        order.sort(key=lambda row: prob[row][k], reverse=True)  # stable, as glibc's merge sort
        kept: list[int] = []
        for row in order:
            if prob[row][k] != 0:
                if any(conflict[earlier][row] for earlier in kept):
                    removed.append((row, k))
                else:
                    kept.append(row)
    out = probs.clone()
    if removed:
        rows, classes = zip(*removed)
        out[list(rows), list(classes)] = 0
    return torch.tensor(order, dtype=torch.long, device=probs.device), out
