"""Evaluation plots and tables (``map --plots DIR``) drawn from the rows ``detector map`` scored.

Everything here is computed from the :class:`~darknet_torch.evaluate.ap.MatchedDetections` that
:func:`~darknet_torch.evaluate.ap.score_matched` turned into the printout, so the pictures show the printed numbers:
the per-class PR points are the ones each AP integrates, the "all classes" precision/recall/F1 at ``--thresh`` are the
summary line's, the confusion matrix's diagonal is the per-class TP column. Each function returns the arrays it plots;
:func:`write_evaluation_plots` writes them as CSV beside the PNGs (matplotlib's Agg canvas, never a window).

Files: ``pr_curve.png`` (+ ``pr_curve.csv``), ``f1_curve.png``, ``p_curve.png``, ``r_curve.png``
(+ ``confidence_curves.csv``), ``confusion_matrix.png``, ``confusion_matrix_normalized.png``
(+ ``confusion_matrix.csv``), ``per_class.csv``.
"""
from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from darknet_torch.evaluate.ap import MapResult, MatchedDetections
from darknet_torch.files import write_atomic
from darknet_torch.ops.boxes import box_iou

#: Confidence thresholds of the P/R/F1 curves (rows with prob > t count, as Darknet's ``-thresh``).
DEFAULT_THRESHOLDS = np.round(np.linspace(0.0, 1.0, 101), 2)
#: Above this many classes the PR/confidence plots draw the classes without a legend.
LEGEND_CLASSES = 20


@dataclass(frozen=True)
class ConfidenceCurves:
    """TP/FP and precision, recall, F1 at each threshold, per class and for all classes (Darknet's summary rule:
    a row counts when prob > t; a TP is a row that first matched its truth). Rates are NaN where undefined."""

    thresholds: np.ndarray  #: (K,) float64
    tp: np.ndarray  #: (C, K) int64
    fp: np.ndarray  #: (C, K) int64
    truths: np.ndarray  #: (C,) int64

    @staticmethod
    def _rates(tp: np.ndarray, fp: np.ndarray, truths: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        with np.errstate(divide="ignore", invalid="ignore"):
            precision = tp / (tp + fp)
            recall = tp / truths
            f1 = 2 * precision * recall / (precision + recall)
        return precision, recall, f1

    def per_class(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(C, K) precision, recall, F1."""
        return self._rates(self.tp, self.fp, self.truths[:, None].astype(np.float64))

    def overall(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(K,) precision, recall, F1 over all classes: the ``for conf_thresh = t`` summary line at each t."""
        return self._rates(self.tp.sum(0), self.fp.sum(0), np.float64(self.truths.sum()))


def confidence_curves(matched: MatchedDetections, thresholds: Sequence[float] = DEFAULT_THRESHOLDS
                      ) -> ConfidenceCurves:
    """TP/FP per class at each threshold, counted as the map summary counts them (thresholds compared in float32)."""
    t = np.asarray(thresholds, np.float64)
    first = matched.first_match
    tp = _counts_above(matched.prob[first], matched.class_id[first], matched.num_classes, t.astype(np.float32))
    fp = _counts_above(matched.prob[~first], matched.class_id[~first], matched.num_classes, t.astype(np.float32))
    return ConfidenceCurves(t, tp, fp, matched.truths_per_class)


def _counts_above(prob: np.ndarray, class_id: np.ndarray, num_classes: int, thresholds: np.ndarray) -> np.ndarray:
    """(C, K) number of rows of each class with prob > each threshold (sorted once per class, then searched)."""
    order = np.lexsort((prob, class_id))  # by class, then prob ascending
    bounds = np.searchsorted(class_id[order], np.arange(num_classes + 1))
    counts = np.zeros((num_classes, len(thresholds)), np.int64)
    for c in np.flatnonzero(np.diff(bounds)):
        ranked = prob[order[bounds[c]:bounds[c + 1]]]
        counts[c] = len(ranked) - np.searchsorted(ranked, thresholds, side="right")
    return counts


@dataclass(frozen=True)
class ConfusionMatrix:
    """``counts[predicted, true]`` at one confidence threshold; index C (the last) is background.

    The diagonal is Darknet's TP per class at ``thresh``; row sums are the rows above ``thresh`` per predicted class
    (TP + FP); column sums are the truths per class. An FP goes to the column of the unclaimed other-class truth it
    overlaps most (IoU > ``iou_thresh``; highest-confidence FPs claim first), else to background; a truth that no
    row claimed is a miss (background row).
    """

    counts: np.ndarray  #: (C+1, C+1) int64
    thresh: float
    iou_thresh: float

    def normalized(self) -> np.ndarray:
        """Each column divided by its sum (what fraction of a true class went where); NaN for empty columns."""
        with np.errstate(divide="ignore", invalid="ignore"):
            return self.counts / self.counts.sum(axis=0, keepdims=True)


def confusion_matrix(matched: MatchedDetections, thresh: float = 0.25, iou_thresh: float = 0.5) -> ConfusionMatrix:
    """The confusion matrix of the rows with prob > ``thresh`` (see :class:`ConfusionMatrix`)."""
    c = matched.num_classes
    counts = np.zeros((c + 1, c + 1), np.int64)
    above = matched.prob > np.float32(thresh)
    tp_rows = above & matched.first_match
    np.add.at(counts, (matched.class_id[tp_rows], matched.class_id[tp_rows]), 1)
    claimed = np.zeros(len(matched.truth_class), bool)
    claimed[matched.truth[tp_rows]] = True
    fp_rows = np.flatnonzero(above & ~tp_rows)
    fp_rows = fp_rows[np.argsort(-matched.prob[fp_rows], kind="stable")]
    for image in np.unique(matched.image[fp_rows]):
        rows = fp_rows[matched.image[fp_rows] == image]
        truths = np.flatnonzero(matched.truth_image == image)
        iou = box_iou(torch.from_numpy(matched.box[rows]), torch.from_numpy(matched.truth_box[truths])).numpy()
        for row, row_iou in zip(rows, iou):
            free = (~claimed[truths]) & (matched.truth_class[truths] != matched.class_id[row]) & (row_iou > iou_thresh)
            column = c
            if free.any():
                best = truths[np.flatnonzero(free)[row_iou[free].argmax()]]
                claimed[best] = True
                column = matched.truth_class[best]
            counts[matched.class_id[row], column] += 1
    np.add.at(counts, (c, matched.truth_class[~claimed]), 1)
    return ConfusionMatrix(counts, float(thresh), float(iou_thresh))


def per_class_rows(result: MapResult, names: Sequence[str]) -> list[dict[str, object]]:
    """``per_class.csv``: the printout's per-class table (AP, truths, TP, FP at ``--thresh``) with precision =
    TP / (TP + FP) and recall = TP / truths (empty where undefined)."""
    rows = []
    for class_id, name in enumerate(names):
        tp, fp = int(result.tp_per_class[class_id]), int(result.fp_per_class[class_id])
        truths = int(result.truths_per_class[class_id])
        rows.append({"class_id": class_id, "name": name, "ap": float(result.ap[class_id]), "truths": truths,
                     "tp": tp, "fp": fp, "precision": tp / (tp + fp) if tp + fp else "",
                     "recall": tp / truths if truths else ""})
    return rows


# ------------------------------------------------------------------------------------------------------- drawing
def _png(figure: Figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()


def _figure(size: tuple[float, float] = (7, 5)) -> Figure:
    figure = Figure(figsize=size, dpi=100, layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def render_pr_curve(matched: MatchedDetections, result: MapResult, names: Sequence[str]) -> bytes:
    """Per-class PR curves (classes with truths; labelled with their AP when at most ``LEGEND_CLASSES``) and the
    pooled curve of all classes."""
    figure = _figure()
    ax = figure.add_subplot()
    shown = np.flatnonzero(matched.truths_per_class > 0)
    legend = len(shown) <= LEGEND_CLASSES
    for class_id in shown:
        _, precision, recall = matched.pr_curve(int(class_id))
        label = f"{names[class_id]} {100 * result.ap[class_id]:.1f}%" if legend else None
        ax.plot(recall, precision, linewidth=1, color=None if legend else "grey", alpha=1 if legend else 0.4,
                label=label)
    _, precision, recall = matched.pr_curve(None)
    ax.plot(recall, precision, linewidth=2.5, color="tab:blue", label="all classes (pooled)")
    method = f"{result.points}-point" if result.points else "area under curve"
    ax.set(xlim=(0, 1), ylim=(0, 1.02), xlabel="recall", ylabel="precision",
           title=f"mAP@{result.iou_thresh:.2f} = {100 * result.map:.2f} % ({method})")
    ax.grid(True, alpha=0.3)
    ax.legend(loc="lower left", fontsize="small" if legend else "medium")
    return _png(figure)


def render_confidence_curve(curves: ConfidenceCurves, which: str, names: Sequence[str], thresh: float) -> bytes:
    """``which`` (precision, recall or f1) against the confidence threshold, per class and for all classes."""
    index = ("precision", "recall", "f1").index(which)
    per_class, overall = curves.per_class()[index], curves.overall()[index]
    figure = _figure()
    ax = figure.add_subplot()
    shown = np.flatnonzero(curves.truths > 0)
    legend = len(shown) <= LEGEND_CLASSES
    for class_id in shown:
        ax.plot(curves.thresholds, per_class[class_id], linewidth=1, color=None if legend else "grey",
                alpha=1 if legend else 0.4, label=names[class_id] if legend else None)
    ax.plot(curves.thresholds, overall, linewidth=2.5, color="tab:blue", label="all classes")
    ax.axvline(thresh, color="tab:red", linestyle="--", linewidth=1, label=f"--thresh {thresh:g}")
    title = {"precision": "precision", "recall": "recall", "f1": "F1"}[which]
    if which == "f1" and np.isfinite(overall).any():
        best = int(np.nanargmax(overall))
        title += f": best {overall[best]:.3f} at confidence > {curves.thresholds[best]:.2f}"
    ax.set(xlim=(0, 1), ylim=(0, 1.02), xlabel="confidence threshold", ylabel=which, title=title)
    ax.grid(True, alpha=0.3)
    ax.legend(loc="best", fontsize="small")
    return _png(figure)


def render_confusion_matrix(matrix: ConfusionMatrix, names: Sequence[str], normalized: bool) -> bytes:
    """The matrix over the classes that have truths or predictions at the threshold (plus background)."""
    c = len(names)
    used = np.flatnonzero((matrix.counts[:c].sum(axis=1) + matrix.counts[:, :c].sum(axis=0)) > 0)
    keep = np.append(used, c)
    values = (matrix.normalized() if normalized else matrix.counts)[np.ix_(keep, keep)]
    labels = [names[i] for i in used] + ["background"]
    size = min(4 + 0.2 * len(keep), 14)
    figure = _figure((size + 1.5, size))
    ax = figure.add_subplot()
    image = ax.imshow(np.nan_to_num(values, nan=0.0), cmap="Blues", vmin=0, vmax=1 if normalized else None)
    figure.colorbar(image, ax=ax, shrink=0.8)
    ticks = np.arange(len(keep))
    fontsize = 8 if len(keep) <= 30 else 5
    ax.set_xticks(ticks, labels, rotation=90, fontsize=fontsize)
    ax.set_yticks(ticks, labels, fontsize=fontsize)
    if len(keep) <= 30:
        for (row, column), value in np.ndenumerate(values):
            if value > 0:
                ax.text(column, row, f"{value:.2f}" if normalized else str(int(value)), ha="center", va="center",
                        fontsize=fontsize, color="white" if value > np.nanmax(values) / 2 else "black")
    kind = "normalised by true class" if normalized else "counts"
    ax.set(xlabel="true", ylabel="predicted",
           title=f"confusion matrix ({kind}), confidence > {matrix.thresh:g}, IoU > {matrix.iou_thresh:g}")
    return _png(figure)


# ------------------------------------------------------------------------------------------------------- files
def _csv_bytes(header: Sequence[str], rows: Sequence[Sequence[object]]) -> bytes:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return buffer.getvalue().encode()


def _fraction(value: float) -> str:
    """A rate for CSV: repr-exact float, empty when undefined (NaN)."""
    return "" if np.isnan(value) else repr(float(value))


def write_evaluation_plots(matched: MatchedDetections, result: MapResult, names: Sequence[str],
                           output_dir: str | Path, thresholds: Sequence[float] = DEFAULT_THRESHOLDS) -> list[Path]:
    """Write every plot and CSV (see the module docstring) into ``output_dir`` (created); returns the paths.

    ``matched`` and ``result`` must be the pair ``score_matched`` produced (``EvalReport.matched`` / ``.darknet``).
    """
    if len(names) != matched.num_classes:
        raise ValueError(f"{len(names)} names for {matched.num_classes} classes")
    folder = Path(output_dir)
    folder.mkdir(parents=True, exist_ok=True)
    curves = confidence_curves(matched, thresholds)
    matrix = confusion_matrix(matched, result.conf_thresh, result.iou_thresh)
    files: dict[str, bytes] = {"pr_curve.png": render_pr_curve(matched, result, names)}
    for which, name in (("f1", "f1_curve.png"), ("precision", "p_curve.png"), ("recall", "r_curve.png")):
        files[name] = render_confidence_curve(curves, which, names, result.conf_thresh)
    files["confusion_matrix.png"] = render_confusion_matrix(matrix, names, normalized=False)
    files["confusion_matrix_normalized.png"] = render_confusion_matrix(matrix, names, normalized=True)

    per_class = per_class_rows(result, names)
    files["per_class.csv"] = _csv_bytes(list(per_class[0]), [list(row.values()) for row in per_class])
    pr_rows = []
    for class_id in [None, *np.flatnonzero(matched.truths_per_class > 0)]:
        confidence, precision, recall = matched.pr_curve(None if class_id is None else int(class_id))
        label = "all" if class_id is None else names[class_id]
        pr_rows += [[-1 if class_id is None else int(class_id), label, repr(float(p)), repr(float(pr)),
                     repr(float(r))] for p, pr, r in zip(confidence, precision, recall)]
    files["pr_curve.csv"] = _csv_bytes(["class_id", "name", "confidence", "precision", "recall"], pr_rows)
    conf_rows = []
    per_class_rates = curves.per_class()
    for class_id in range(-1, matched.num_classes):
        if class_id >= 0 and curves.truths[class_id] == 0 and not curves.tp[class_id].any() \
                and not curves.fp[class_id].any():
            continue
        tp = curves.tp.sum(0) if class_id < 0 else curves.tp[class_id]
        fp = curves.fp.sum(0) if class_id < 0 else curves.fp[class_id]
        rates = curves.overall() if class_id < 0 else [r[class_id] for r in per_class_rates]
        label = "all" if class_id < 0 else names[class_id]
        conf_rows += [[class_id, label, f"{t:.2f}", int(tp[k]), int(fp[k]), *(_fraction(r[k]) for r in rates)]
                      for k, t in enumerate(curves.thresholds)]
    files["confidence_curves.csv"] = _csv_bytes(
        ["class_id", "name", "threshold", "tp", "fp", "precision", "recall", "f1"], conf_rows)
    labels = [*names, "background"]
    files["confusion_matrix.csv"] = _csv_bytes(
        ["predicted \\ true", *labels], [[labels[i], *map(int, row)] for i, row in enumerate(matrix.counts)])
    for name, content in files.items():
        write_atomic(folder / name, content)
    return [folder / name for name in files]
