"""Detection over many images: batches from the inference DataLoader, Darknet's boxes, results as plain data.

A bad image (unreadable, corrupt, empty, not an image, too large) becomes an :class:`ImageResult` with its error;
the run goes on and the report says what failed.  Files are written by :class:`~darknet_torch.detect.outputs.
OutputWriter` off the critical path; the JSON files are written once at the end.  Under ``torchrun`` each process
detects its share of the images (:func:`~darknet_torch.distributed.batch_shard`) and rank 0 gathers the results.
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

from tqdm import tqdm

from darknet_torch.data.images import Decoder
from darknet_torch.data.loaders import InferenceBatch, inference_loader
from darknet_torch.detect.outputs import (OutputWriter, annotated_image_path, label_file_path, output_names,
                                          write_json)
from darknet_torch.files import prepare_output_dir, prepare_output_file, refuse_overwriting_sources
from darknet_torch.detect.outputs_format import (COCO_CATEGORY_IDS, coco_image_id, coco_records,
                                                 darknet_json_frame)
from darknet_torch.detect.build import build_predictor
from darknet_torch.detect.predictor import Detection, Predictor
from darknet_torch.detect.settings import DETECTOR_TEST, InferenceSettings
from darknet_torch.detect.sources import expand_sources
from darknet_torch.distributed import DistContext, batch_shard, gather_in_input_order, gather_lists
from darknet_torch.files import is_stream


@dataclass(frozen=True)
class ImageResult:
    """Detections of one image: ``detections`` relative to the original ``width`` x ``height`` image
    (see :class:`Detection`; ``.xyxy(width, height)`` gives pixels), or ``error`` (which names the path)."""

    path: Path
    width: int
    height: int
    detections: list[Detection]
    error: str | None = None
    #: This image's share of its batch's forward + post-processing time.
    seconds: float = 0.0
    #: A problem that did not stop detection (a truncated JPEG stb_image grey-filled, as Darknet does); names the path.
    warning: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


@dataclass
class DetectReport:
    """Everything a run produced: per-image results in input order, file-writing failures, wall time."""

    results: list[ImageResult]
    write_errors: list[str] = field(default_factory=list)
    seconds: float = 0.0
    output_dir: Path | None = None

    @property
    def failed(self) -> list[ImageResult]:
        return [r for r in self.results if not r.ok]

    @property
    def ok(self) -> bool:
        """True when every image was detected and every file written."""
        return not self.failed and not self.write_errors


def detect_images(predictor: Predictor, paths: Sequence[str | os.PathLike[str]], output_dir: str | os.PathLike[str]
                  | None = None, *, batch_size: int = 4, workers: int = 1, decoder: Decoder = "auto",
                  save_images: bool = True, save_labels: bool = False, save_json: bool = True,
                  json_path: str | os.PathLike[str] | None = None, progress: bool | None = None,
                  on_result: Callable[[ImageResult], None] | None = None,
                  ctx: DistContext | None = None, save_crops: bool = False) -> DetectReport:
    """Run ``predictor`` on ``paths`` (in order) and, if ``output_dir`` is given, write the results there.

    Outputs (see :mod:`darknet_torch.detect.outputs`): annotated images (``save_images``), Darknet label files
    (``save_labels``), crops of the detections in ``crops/<class>/`` (``save_crops``), Darknet ``-out`` JSON at
    ``json_path`` (default ``output_dir/results.json``; ``save_json``) and ``coco_results.json`` beside it (in
    ``output_dir`` when ``json_path`` is ``-``, a pipe or a device) when every
    image name carries a numeric COCO id.
    ``progress``: show a progress bar (None: when there are several images and stderr is a terminal).
    ``on_result`` is called for each image as soon as its detections are known (in input order), e.g. to print.

    With a distributed ``ctx`` (torchrun), each rank detects whole batches of ``paths`` and writes their image and
    label files (under the names a one-process run gives them); rank 0 gathers every result, calls ``on_result`` for
    each in input order, writes the JSON files and returns the whole run's report; the other ranks return the report
    of their own images.  Outputs are byte-identical to one process's.

    Raises:
        DataError: ``output_dir`` or ``json_path`` cannot be written, or an output file would replace one of
            ``paths`` (all checked before any image is processed).
    """
    paths = [Path(p) for p in paths]
    folder = None
    if output_dir is not None:
        folder, files, folders = prepare_image_outputs(paths, output_dir, save_images=save_images,
                                                       save_labels=save_labels, save_json=save_json,
                                                       json_path=json_path, save_crops=save_crops)
        refuse_overwriting_sources(files, paths, folders)
    writer = None
    if folder is not None and (save_images or save_labels or save_crops):
        writer = OutputWriter(folder, predictor.model.num_classes, predictor.thresh, save_images, save_labels,
                              decoder, save_crops=save_crops)
    names = output_names(paths)
    ctx = ctx or DistContext()
    mine = batch_shard(len(paths), batch_size, ctx)
    results: list[ImageResult] = []
    start = time.perf_counter()
    bar = tqdm(total=len(mine), unit="img", desc="detect", dynamic_ncols=True,
               disable=_bar_disabled(progress, len(mine)) if ctx.is_main else True)
    try:
        for batch in inference_loader([paths[i] for i in mine], predictor.preparer, batch_size, workers, decoder):
            for index, result in _detect_batch(predictor, batch):
                results.append(result)
                if writer is not None and result.ok:
                    writer.submit(result.path, names[mine[index]], result.detections)
                if on_result is not None and not ctx.enabled:
                    on_result(result)
            bar.update(len(batch.items))
    finally:
        bar.close()
        write_errors = writer.close() if writer is not None else []
    report = DetectReport(results, write_errors, 0.0, folder)
    if ctx.enabled:
        report = _gather_report(report, mine, len(paths), ctx, on_result)
    if folder is not None and save_json and ctx.is_main:
        report.write_errors.extend(_write_json_files(report, *_json_files(folder, json_path),
                                                     predictor.model.num_classes))
    report.seconds = time.perf_counter() - start
    return report


def prepare_image_outputs(paths: Sequence[Path], output_dir: str | os.PathLike[str], *, save_images: bool = True,
                          save_labels: bool = False, save_json: bool = True,
                          json_path: str | os.PathLike[str] | None = None,
                          save_crops: bool = False) -> tuple[Path, list[Path], list[Path]]:
    """Create ``output_dir`` and check that the JSON file can be written (before any work; ``detect`` calls it
    before the model loads, :func:`detect_images` again); (folder, files, folders) as :func:`planned_outputs`.

    Raises:
        DataError: the folder or the JSON file cannot be written.
    """
    folder = prepare_output_dir(output_dir)
    if save_json and json_path is not None:
        prepare_output_file(json_path)
    files, folders = planned_outputs(paths, folder, save_images=save_images, save_labels=save_labels,
                                     save_json=save_json, json_path=json_path, save_crops=save_crops)
    return folder, files, folders


def planned_outputs(paths: Sequence[Path], output_dir: Path, *, save_images: bool = True, save_labels: bool = False,
                    save_json: bool = True, json_path: str | os.PathLike[str] | None = None,
                    save_crops: bool = False) -> tuple[list[Path], list[Path]]:
    """(files, folders) :func:`detect_images` writes for ``paths`` into ``output_dir``: every file it can name
    before the run, and the folders whose file names depend on the detections (crops); to refuse a run that would
    write over its own sources before it starts."""
    names = output_names(paths)
    files = [annotated_image_path(output_dir, n, p) for n, p in zip(names, paths)] if save_images else []
    files += [label_file_path(output_dir, n) for n in names] if save_labels else []
    files += list(_json_files(output_dir, json_path)) if save_json else []
    return files, [output_dir / "crops"] if save_crops else []


def _json_files(output_dir: Path, json_path: str | os.PathLike[str] | None) -> tuple[Path, Path]:
    """Darknet ``-out`` JSON (default ``results.json``) and ``coco_results.json``: beside the former, or in
    ``output_dir`` when the JSON goes to ``-``, a pipe or a device."""
    darknet = Path(json_path) if json_path else output_dir / "results.json"
    return darknet, (output_dir if is_stream(darknet) else darknet.parent) / "coco_results.json"


def _gather_report(report: DetectReport, mine: list[int], count: int, ctx: DistContext,
                   on_result: Callable[[ImageResult], None] | None) -> DetectReport:
    """Rank 0: every rank's results in input order (each passed to ``on_result``) and file failures (rank order);
    the other ranks: ``report`` itself."""
    results = gather_in_input_order(list(zip(mine, report.results)), count, ctx)
    write_errors = gather_lists(report.write_errors, ctx)
    if results is None or write_errors is None:
        return report
    for result in results if on_result is not None else ():
        on_result(result)
    return DetectReport(results, write_errors, 0.0, report.output_dir)


def _bar_disabled(progress: bool | None, count: int) -> bool | None:
    if progress is None:
        return True if count < 2 else None  # tqdm's None: shown only when stderr is a terminal
    return not progress


def _detect_batch(predictor: Predictor, batch: InferenceBatch) -> list[tuple[int, ImageResult]]:
    """(input index, result) for every item of one batch, good and failed, in input order."""
    good = batch.good
    per_image = 0.0
    found: dict[int, list[Detection]] = {}
    if good:
        tick = time.perf_counter()
        dets = predictor.detect_batch(batch.inputs, [item.info for item in good])
        per_image = (time.perf_counter() - tick) / len(good)
        found = {item.index: predictor.to_detections(d) for item, d in zip(good, dets)}
    results = []
    for item in batch.items:
        if item.error is not None:
            result = ImageResult(item.path, 0, 0, [], item.error)
        else:
            result = ImageResult(item.path, item.info.orig_w, item.info.orig_h, found[item.index], seconds=per_image,
                                 warning=item.warning)
        results.append((item.index, result))
    return results


def _write_json_files(report: DetectReport, json_path: Path, coco_path: Path, num_classes: int) -> list[str]:
    """Darknet ``-out`` JSON (frame_id = 1-based position in the input) and, if ids are known, COCO results."""
    good = [(i, r) for i, r in enumerate(report.results, start=1) if r.ok]
    files = {json_path: [darknet_json_frame(i, r.path, r.detections) for i, r in good]}
    ids = [coco_image_id(r.path) for _, r in good]
    if good and all(i is not None for i in ids):
        categories = COCO_CATEGORY_IDS if num_classes == len(COCO_CATEGORY_IDS) else None
        files[coco_path] = [
            rec for image_id, (_, r) in zip(ids, good)
            for rec in coco_records(image_id, r.detections, r.width, r.height, categories)]
    errors = []
    for path, data in files.items():
        try:
            write_json(path, data)
        except OSError as exc:
            errors.append(f"{path}: cannot write: {exc.strerror or exc}")
    return errors


def detect(sources: Sequence[str | os.PathLike[str]] | str | os.PathLike[str], cfg: str | os.PathLike[str],
           weights: str | os.PathLike[str], names: Sequence[str] | None = None, output_dir: str | os.PathLike[str]
           | None = None, *, recursive: bool = False, settings: InferenceSettings = DETECTOR_TEST,
           device: str | None = None, **options) -> DetectReport:
    """One call from files to results: load ``cfg``/``weights``, expand ``sources``, run :func:`detect_images`.

    ``names``: class names (default: class indices).  ``settings``: thresholds, NMS, letterbox, input size, fast
    mode (default: Darknet's ``detector test``).  Other keyword ``options`` go to :func:`detect_images`.
    Example: ``[ (r.path, [(d.name, d.score, d.xyxy(r.width, r.height)) for d in r.detections])
    for r in detect("data/samples", "cfg/yolov4-tiny.cfg", "weights/yolov4-tiny.weights").results ]``.
    """
    if isinstance(sources, (str, os.PathLike)):
        sources = [sources]
    paths = expand_sources(sources, recursive)
    predictor = build_predictor(cfg, settings, weights=weights, names=names, device=device, calibration=paths)
    return detect_images(predictor, paths, output_dir, **options)
