"""Anchor boxes by k-means on the training labels, as Darknet's ``detector calc_anchors`` (src/detector.c).

Darknet scales every label's (w, h) to the network size, clusters them with the distance ``1 - IoU`` of boxes that
share a corner (``dist`` in src/matrix.c), starting from ``k`` distinct random boxes (``random_centers``) and
alternating assignment / mean update (``kmeans_expectation`` / ``kmeans_maximization``) until no assignment changes,
at most 1000 times.  The centres are then sorted by area and each box's best IoU with them is averaged.  Darknet seeds
with ``time(0)``; here a seed makes the result reproducible.

It lives in ``evaluate`` because it measures a dataset against the network (the average IoU is a fit metric) and
produces cfg values; nothing here serialises a model.
"""
from __future__ import annotations

import io
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from darknet_torch.data.dataset import DarknetDataset
from darknet_torch.data.labels import LabelIssue, missing_label_issue
from darknet_torch.errors import DataError
from darknet_torch.files import write_atomic

log = logging.getLogger(__name__)

MAX_ITERATIONS = 1000  # do_kmeans' cap


@dataclass(frozen=True)
class LabelSizes:
    """Every label box of a training list, as (w, h) in network pixels."""

    #: (N, 2) float32 w, h: relative label size times the network width / height.
    wh: np.ndarray
    num_images: int
    issues: tuple[LabelIssue, ...] = ()


@dataclass(frozen=True)
class AnchorResult:
    """Clusters of :func:`kmeans_anchors`."""

    #: (k, 2) float32 anchor w, h in network pixels, by increasing area (Darknet's order).
    anchors: np.ndarray
    #: (N,) index into ``anchors`` of each box's best-IoU anchor.
    assignments: np.ndarray
    #: Mean over boxes of the best IoU with an anchor (0..1); boxes whose IoU is not in [0, 1] count as 0.
    avg_iou: float
    #: Assign/update rounds run (Darknet prints this as ``iterations``).
    iterations: int


def wh_iou(boxes: np.ndarray, anchors: np.ndarray) -> np.ndarray:
    """(N, k) float32 IoU of (N, 2) and (k, 2) (w, h) boxes aligned at a corner (Darknet's ``1 - dist``)."""
    boxes = np.asarray(boxes, np.float32)[:, None, :]
    anchors = np.asarray(anchors, np.float32)[None, :, :]
    inter = np.minimum(boxes[..., 0], anchors[..., 0]) * np.minimum(boxes[..., 1], anchors[..., 1])
    union = boxes[..., 0] * boxes[..., 1] + anchors[..., 0] * anchors[..., 1] - inter
    with np.errstate(divide="ignore", invalid="ignore"):
        return inter / union


def _closest(boxes: np.ndarray, centers: np.ndarray) -> np.ndarray:
    """Index of the nearest centre by ``1 - IoU``, first one on ties (``closest_center``)."""
    distance = np.float32(1) - wh_iou(boxes, centers)
    return np.nan_to_num(distance, nan=np.inf).argmin(axis=1)


def _update_centers(boxes: np.ndarray, assignments: np.ndarray, centers: np.ndarray) -> np.ndarray:
    """Mean box of each cluster; a coordinate that comes out 0 (e.g. an empty cluster) keeps its old value
    (``kmeans_maximization``)."""
    k = len(centers)
    counts = np.bincount(assignments, minlength=k).astype(np.float64)
    sums = np.stack([np.bincount(assignments, weights=boxes[:, j], minlength=k) for j in range(2)], axis=1)
    means = np.divide(sums, counts[:, None], out=np.zeros_like(sums), where=counts[:, None] > 0).astype(np.float32)
    return np.where(means == 0, centers, means)


def kmeans_anchors(wh: np.ndarray, num_clusters: int, seed: int | np.random.Generator | None = None) -> AnchorResult:
    """Darknet's ``do_kmeans`` + the sorting and average IoU of ``calc_anchors`` on (N, 2) box sizes.

    Raises:
        DataError: fewer boxes than clusters; ValueError: ``num_clusters < 1``.
    """
    boxes = np.asarray(wh, np.float32).reshape(-1, 2)
    if num_clusters < 1:
        raise ValueError(f"the number of clusters must be >= 1, got {num_clusters}")
    if len(boxes) < num_clusters:
        raise DataError(f"{len(boxes)} label boxes cannot make {num_clusters} clusters")
    rng = np.random.default_rng(seed)
    centers = boxes[rng.permutation(len(boxes))[:num_clusters]].copy()
    assignments = np.zeros(len(boxes), np.int64)
    if num_clusters == 1:
        centers = _update_centers(boxes, assignments, centers)
    iterations = 0
    while iterations < MAX_ITERATIONS:
        closest = _closest(boxes, centers)
        converged = bool(np.array_equal(closest, assignments))
        assignments = closest
        if converged:
            break
        centers = _update_centers(boxes, assignments, centers)
        iterations += 1
    centers = centers[np.argsort(centers[:, 0] * centers[:, 1], kind="stable")]
    ious = wh_iou(boxes, centers)
    best = _closest(boxes, centers)
    best_iou = ious[np.arange(len(boxes)), best]
    valid = (best_iou >= 0) & (best_iou <= 1)  # Darknet reports and skips the others, but divides by all boxes
    avg_iou = float(best_iou[valid].sum(dtype=np.float64) / len(boxes))
    return AnchorResult(anchors=centers, assignments=best, avg_iou=avg_iou, iterations=iterations)


def load_label_sizes(data: DarknetDataset | str | os.PathLike[str], width: int, height: int) -> LabelSizes:
    """(w, h) of every label of the ``train=`` list of a ``.data`` file, scaled to ``width`` x ``height`` pixels.

    As Darknet's ``calc_anchors``: labels are found with ``replace_image_to_label``, every row is used whatever its
    class, suspect rows are reported but kept, a missing label file means no boxes (and is reported).

    Raises:
        CfgError: the ``.data`` file has no ``train=``; DataError: unreadable list or label file, an image whose label
        file cannot be named, or no boxes at all.
    """
    dataset = DarknetDataset.of(data)
    train = dataset.require("train", "calc_anchors clusters the training labels")
    scan = dataset.scan(train, None)
    scan.check_label_paths()
    if len(scan.boxes) == 0:
        raise DataError(f"{train}: no label boxes in the label files of its {len(scan.image_paths)} images")
    wh = scan.boxes[:, 3:5] * np.array([width, height], np.float32)
    issues = tuple(missing_label_issue(path) for path in scan.missing_labels) + scan.issues
    return LabelSizes(wh=wh.astype(np.float32), num_images=len(scan.image_paths), issues=issues)


def format_anchors(anchors: np.ndarray, width: int) -> str:
    """The ``anchors = ...`` line Darknet prints (``%3.0f,%3.0f`` pairs, ``%2.4f`` for networks <= 32 wide)."""
    spec = "3.0f" if width > 32 else "2.4f"
    return "anchors = " + ", ".join(f"{w:{spec}},{h:{spec}}" for w, h in np.asarray(anchors, np.float32))


def plot_anchors(wh: np.ndarray, result: AnchorResult, path: str | os.PathLike[str], width: int, height: int) -> Path:
    """Scatter plot (PNG etc. by extension) of the box sizes coloured by cluster, with the anchors marked."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(7, 7), dpi=100)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    axes.scatter(wh[:, 0], wh[:, 1], c=result.assignments, cmap="tab10" if len(result.anchors) <= 10 else "tab20",
                 s=6, alpha=0.6, linewidths=0)
    axes.scatter(result.anchors[:, 0], result.anchors[:, 1], c="black", marker="x", s=80, label="anchors")
    axes.set(xlim=(0, width), ylim=(0, height), xlabel="box width (network pixels)",
             ylabel="box height (network pixels)", aspect="equal",
             title=f"{len(result.anchors)} anchors for {width}x{height}, avg IoU {100 * result.avg_iou:.2f} %")
    axes.legend(loc="upper left")
    figure.tight_layout()
    out = Path(path)
    buffer = io.BytesIO()
    figure.savefig(buffer, format=out.suffix[1:].lower() or "png")
    write_atomic(out, buffer.getvalue())
    return out
