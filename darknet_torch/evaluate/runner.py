"""Darknet's ``detector map`` end to end: images -> detections -> labels -> scores (``validate_detector_map``).

Two steps, so one inference pass can be scored several ways (``-points 0/11/101``, IoU thresholds, COCO):

* :func:`collect_detections` runs the network over a validation list with batched DataLoader inference and
  Darknet's detection settings (:data:`~darknet_torch.detect.settings.DETECTOR_MAP`: thresh 0.005, NMS 0.45 with the
  last head's ``nms_kind``, resize or letterbox from ``[net] letter_box``), reads every label file Darknet would read, and keeps the rows in Darknet's order;
* :func:`score_detections` scores them with :func:`~darknet_torch.evaluate.ap.compute_map` (and pycocotools).

:func:`evaluate` does both; training's ``--map`` calls it with the in-memory model.  Under ``torchrun`` each
process detects its share of the images and rank 0 scores them all (:mod:`darknet_torch.evaluate.sharding`).
"""
from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from darknet_torch.data.images import Decoder
from darknet_torch.data.labels import LabelIssue, issue_files
from darknet_torch.data.loaders import InferenceBatch, inference_loader
from darknet_torch.data.report import DataReport, data_report
from darknet_torch.detect.predictor import Predictor
from darknet_torch.detect.settings import DETECTOR_MAP
from darknet_torch.distributed import DistContext, batch_shard, gather_lists
from darknet_torch.errors import CfgError
from darknet_torch.evaluate.ap import (MapResult, MatchedDetections, expand_detections, format_map_report,
                                      match_detections, score_matched)
from darknet_torch.evaluate.coco import CocoStats, coco_evaluate, require_pycocotools
from darknet_torch.evaluate.sharding import gather_detections
from darknet_torch.model.darknet import Darknet
from darknet_torch.runtime import loader_workers

@dataclass(frozen=True)
class LabelReport:
    """What reading the label files of a validation list found."""

    images: int
    #: Label files that do not exist (Darknet: "Can't open label file", the image has no objects).
    missing: tuple[Path, ...]
    #: Problems inside existing files (malformed or out-of-range lines: path and line number).
    issues: tuple[LabelIssue, ...]
    #: Ground-truth boxes used for scoring.
    boxes: int

    @classmethod
    def of(cls, scan: DataReport) -> "LabelReport":
        return cls(images=len(scan.image_paths), missing=scan.missing_labels, issues=scan.issues,
                   boxes=len(scan.boxes))

    @property
    def found(self) -> int:
        """Images whose label file exists."""
        return self.images - len(self.missing)

    def summary(self) -> str:
        """One line, e.g. ``labels found for 126 of 128 images (929 boxes); 2 missing label files``."""
        text = f"labels found for {self.found} of {self.images} images ({self.boxes} boxes)"
        if self.missing:
            text += f"; {len(self.missing)} missing label file{'s' if len(self.missing) > 1 else ''}"
        if self.issues:
            text += f"; {len(self.issues)} label line problem{'s' if len(self.issues) > 1 else ''}"
        return text

    def messages(self, limit: int = 10) -> list[str]:
        """The missing files and line problems, at most ``limit`` of each, then how many more (for line problems: in
        which files, up to ``limit`` of them, each with its count)."""
        lines = [f"{path}: label file not found; the image counts as having no objects (as in Darknet)"
                 for path in self.missing[:limit]]
        if len(self.missing) > limit:
            lines.append(f"... and {len(self.missing) - limit} more missing label files")
        lines += [str(issue) for issue in self.issues[:limit]]
        if len(self.issues) > limit:
            lines.append(f"... and {len(self.issues) - limit} more label line problems, in "
                         f"{issue_files(self.issues[limit:], limit)}")
        return lines


@dataclass(frozen=True)
class DatasetDetections:
    """One inference pass over a validation list, ready to be scored any number of times.

    All sequences are indexed like ``paths``.
    """

    paths: tuple[Path, ...]
    #: Per image, (M, 6) float32 rows ``x, y, w, h, class_id, prob`` (relative to the original image), one per
    #: (post-NMS detection, class) with prob > 0, in Darknet's array order (see :func:`detect_in_darknet_order`).
    detections: tuple[np.ndarray, ...]
    #: Per image, (K, 5) float32 ``class_id, cx, cy, w, h`` from its label file (K = 0 if missing).
    truths: tuple[np.ndarray, ...]
    #: (N, 2) int64 original ``width, height`` of each image; 0, 0 for images that could not be read.
    image_sizes: np.ndarray
    labels: LabelReport
    #: Images that could not be read, with the reason; their objects count as missed (never silently dropped).
    failed: tuple[tuple[Path, str], ...]
    num_classes: int
    #: Images used despite a problem, one message each naming the file (a truncated JPEG stb_image grey-filled).
    warnings: tuple[str, ...] = ()


@dataclass(frozen=True)
class EvalReport:
    """Darknet's mAP, what the labels looked like, and the optional COCO metrics of the same detections."""

    darknet: MapResult
    labels: LabelReport
    failed: tuple[tuple[Path, str], ...]
    coco: CocoStats | None = None
    #: See :attr:`DatasetDetections.warnings`.
    warnings: tuple[str, ...] = ()
    #: The matched rows ``darknet`` was scored from (what the evaluation plots draw).
    matched: MatchedDetections | None = None

    @property
    def map(self) -> float:
        """Darknet's mAP at ``darknet.iou_thresh`` (a fraction, as Darknet returns it)."""
        return self.darknet.map

    def format(self, names: Sequence[str]) -> str:
        """The label summary, Darknet's per-class table and summary lines, then COCO's summary if computed."""
        parts = [self.labels.summary()]
        if self.failed:
            parts.append(f"{len(self.failed)} image(s) could not be read; their objects count as missed")
        parts.append(format_map_report(self.darknet, names))
        if self.coco is not None:
            parts += ["", "COCO metrics (pycocotools) of the same detections:", self.coco.summary]
        return "\n".join(parts)


def detect_in_darknet_order(predictor: Predictor, inputs: torch.Tensor, infos: Sequence) -> list[np.ndarray]:
    """``compute_map`` rows of a prepared batch, exactly as ``validate_detector_map`` collects them: one row per
    (detection, class) with prob > 0, detections in the array order Darknet's NMS leaves."""
    return [expand_detections(d.boxes.numpy(), d.probs.numpy()) for d in predictor.detect_batch(inputs, infos)]


def read_truths(image_paths: Sequence[str | os.PathLike[str]], num_classes: int,
                scan: DataReport | None = None) -> tuple[tuple[np.ndarray, ...], LabelReport]:
    """Every image's ground truth rows (Darknet's ``replace_image_to_label`` + ``read_boxes``) and a report.

    ``scan``: the same images already scanned with ``num_classes`` (e.g. ``DarknetDataset.scan``); default: scanned
    here with :func:`~darknet_torch.data.report.data_report`.
    """
    paths = tuple(Path(p) for p in image_paths)
    report = data_report(paths, num_classes) if scan is None else scan
    if report.image_paths != paths or report.num_classes != num_classes:
        raise ValueError("the label scan describes other images or another class count")
    report.check_label_paths()
    return tuple(report.labels_of(i) for i in range(len(paths))), LabelReport.of(report)


def map_predictor(model: Darknet | Predictor, letterbox: bool | None = None,
                  det_thresh: float | None = None) -> Predictor:
    """The predictor ``detector map`` runs: ``model`` itself when it is a :class:`Predictor` (its settings rule),
    else one with :data:`DETECTOR_MAP` changed by ``letterbox`` / ``det_thresh`` where given."""
    if isinstance(model, Predictor):
        if letterbox is not None or det_thresh is not None:
            raise ValueError("letterbox/det_thresh belong in the predictor's settings")
        return model
    changes = {"letterbox": letterbox} if det_thresh is None else {"letterbox": letterbox, "thresh": det_thresh}
    return Predictor(model, settings=DETECTOR_MAP.replace(**changes))


def check_class_counts(model: Darknet, names: Sequence[str], num_classes: int) -> None:
    """The names, ``num_classes`` and the network's last head must agree (Darknet's detector map refuses too)."""
    if not (len(names) == num_classes == model.num_classes):
        raise CfgError(f"class counts disagree: {len(names)} names, num_classes={num_classes}, the network's last "
                       f"head has classes={model.num_classes} (Darknet's detector map refuses this too)")


def detect_batches(predictor: Predictor, batches: Iterable[InferenceBatch], count: int,
                   progress: bool = True
                   ) -> tuple[list[np.ndarray | None], np.ndarray, list[tuple[Path, str]], list[str]]:
    """Run :func:`detect_in_darknet_order` over ``batches`` covering images ``0..count-1`` (any batching).

    Returns per-image rows (None for images that failed to load), (count, 2) original sizes, the failures, and the
    warnings of images used despite a problem (see :attr:`DatasetDetections.warnings`).
    Useful to score several models on batches prepared once (same input size and fitting mode).
    """
    detections: list[np.ndarray | None] = [None] * count
    sizes = np.zeros((count, 2), np.int64)
    failed: list[tuple[Path, str]] = []
    warnings: list[str] = []
    with tqdm(total=count, unit="img", desc="mAP", dynamic_ncols=True, disable=not progress) as bar:
        for batch in batches:
            good = batch.good
            if good:
                rows = detect_in_darknet_order(predictor, batch.inputs, [item.info for item in good])
                for item, image_rows in zip(good, rows):
                    detections[item.index] = image_rows
                    sizes[item.index] = (item.info.orig_w, item.info.orig_h)
            failed += [(item.path, item.error) for item in batch.failed]
            warnings += [item.warning for item in good if item.warning]
            bar.update(len(batch.items))
    return detections, sizes, failed, warnings


def collect_detections(model: Darknet | Predictor, image_paths: Sequence[str | os.PathLike[str]], num_classes: int,
                       *, letterbox: bool | None = None, batch_size: int = 8, workers: int | None = None,
                       decoder: Decoder = "auto", det_thresh: float | None = None, progress: bool = True,
                       batches: Iterable[InferenceBatch] | None = None,
                       scan: DataReport | None = None, ctx: DistContext | None = None) -> DatasetDetections | None:
    """Detections and ground truth of every image, as ``detector map`` gathers them.

    ``model``: a network (run with :data:`DETECTOR_MAP`, ``letterbox`` and ``det_thresh`` where given) or a
    :class:`Predictor` built with its own settings (e.g. ``build_predictor(model, DETECTOR_MAP.replace(fast=...))``).
    ``letterbox=None`` follows the cfg's ``[net] letter_box`` (Darknet's map ignores its ``-letter_box`` flag).
    The model is switched to eval mode for the pass and restored afterwards. Labels are read first (or taken from
    ``scan``, see :func:`read_truths`), so a broken label path fails before the (long) inference.
    ``batches``: these images already prepared for this network size and fitting mode (e.g. kept across
    repeated evaluations, or shared by models that differ only in their heads); default: read with
    :func:`~darknet_torch.data.loaders.inference_loader` (``batch_size``, ``workers``, ``decoder``; ``workers=None``:
    2 with CUDA, 0 on the CPU, see :func:`~darknet_torch.runtime.loader_workers`).
    ``ctx``: distributed (torchrun), each rank detects whole batches of the images and rank 0 returns the
    detections of all of them (identical to one process's); the other ranks return None.

    Raises:
        DataError: a label file exists but cannot be read, or an image has an extension Darknet cannot map to
            a label file.
    """
    paths = tuple(Path(p) for p in image_paths)
    truths, label_report = read_truths(paths, num_classes, scan)
    predictor = map_predictor(model, letterbox, det_thresh)
    model = predictor.model
    ctx = ctx or DistContext()
    if batches is not None and ctx.enabled:
        raise ValueError("prepared batches cannot be shared out between processes")
    mine = batch_shard(len(paths), batch_size, ctx)
    was_training = model.training
    model.eval()
    try:
        if batches is None:
            if workers is None:
                workers = loader_workers(predictor.device, 2)
            batches = inference_loader([paths[i] for i in mine], predictor.preparer, batch_size, workers, decoder)
        rows, sizes, failed, warnings = detect_batches(predictor, batches, len(mine), progress and ctx.is_main)
    finally:
        model.train(was_training)
    if ctx.enabled:
        gathered = gather_detections(rows, sizes, failed, mine, len(paths), ctx)
        warnings = gather_lists(warnings, ctx)  # every rank takes part; rank order (the messages name their images)
        if gathered is None:
            return None
        rows, sizes, failed = gathered
    empty = np.zeros((0, 6), np.float32)
    return DatasetDetections(
        paths=paths,
        detections=tuple(empty if r is None else r for r in rows),
        truths=truths,
        image_sizes=sizes,
        labels=label_report,
        failed=tuple(failed),
        num_classes=num_classes,
        warnings=tuple(warnings),
    )


def score_detections(data: DatasetDetections, iou_thresh: float = 0.5, points: int = 0,
                     conf_thresh: float = 0.25, coco: bool = False) -> EvalReport:
    """Darknet's mAP (``-iou_thresh``, ``-points``, ``-thresh`` = ``conf_thresh`` of the summary line) and,
    with ``coco``, COCO's mAP@[.5:.95] / @0.5 of the same detections (needs the ``coco`` extra)."""
    matched = match_detections(data.detections, data.truths, data.num_classes, iou_thresh)
    result = score_matched(matched, iou_thresh, points, conf_thresh)
    stats = coco_evaluate(data.detections, data.truths, data.image_sizes, data.num_classes) if coco else None
    return EvalReport(result, data.labels, data.failed, stats, data.warnings, matched)


def evaluate(model: Darknet | Predictor, image_paths: Sequence[str | os.PathLike[str]], names: Sequence[str],
             num_classes: int, iou_thresh: float = 0.5, points: int = 0, letterbox: bool | None = None,
             batch_size: int = 8, workers: int | None = None, decoder: Decoder = "auto", coco: bool = False,
             progress: bool = True, conf_thresh: float = 0.25, det_thresh: float | None = None,
             scan: DataReport | None = None, ctx: DistContext | None = None) -> EvalReport | None:
    """``darknet detector map`` for an in-memory model: one inference pass, then :func:`score_detections`.

    Args:
        model: the network (any device; eval mode is set for the pass and restored), or a :class:`Predictor` whose
            settings replace ``letterbox`` and ``det_thresh``.
        image_paths: the validation images; labels are found with Darknet's ``replace_image_to_label``.
        names, num_classes: must agree with each other and with the network's last head.
        iou_thresh: a detection matches a truth when IoU > this (strict, as Darknet).
        points: 0 (area under the curve, Darknet's default), 11 or 101.
        letterbox: None = the cfg's ``[net] letter_box``.
        decoder: "auto" (stb_image when libstb is installed: Darknet's exact pixels), "stb" or "pil".
        coco: also compute pycocotools' metrics (checked before inference).
        conf_thresh: Darknet's ``-thresh``: the confidence of the precision/recall/TP/FP/avg-IoU summary.
        det_thresh: detection threshold (None: Darknet's map's hard-coded 0.005).
        scan: the images' labels already scanned (``DarknetDataset.scan``); default: read here.
        ctx: distributed (torchrun): every rank detects its share, rank 0 scores and returns the report of the
            whole list (the one-process report); the other ranks return None.

    Raises:
        CfgError: the class counts disagree.
        DarknetError: ``coco`` without pycocotools installed.
    """
    predictor = map_predictor(model, letterbox, det_thresh)
    check_class_counts(predictor.model, names, num_classes)
    if coco:
        require_pycocotools()
    data = collect_detections(predictor, image_paths, num_classes, batch_size=batch_size, workers=workers,
                              decoder=decoder, progress=progress, scan=scan, ctx=ctx)
    if data is None:
        return None
    return score_detections(data, iou_thresh, points, conf_thresh, coco)
