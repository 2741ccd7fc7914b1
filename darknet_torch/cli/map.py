"""``darknet_torch map``: Darknet's ``detector map`` (per-class AP, mAP, summary at a confidence threshold).

``darknet_torch map --data coco128.data --cfg yolov3-tiny.cfg --weights yolov3-tiny.weights [--points 101]``, or
Darknet's positional order ``darknet_torch map coco128.data yolov3-tiny.cfg yolov3-tiny.weights``; ``-points``,
``-iou_thresh`` and ``-thresh`` are accepted as Darknet spells them. Unlike Darknet, ``--letter-box`` is obeyed
(Darknet's map silently uses the cfg's ``[net] letter_box``, which is also our default).

Exit status: 0 when every image was read (missing label files are only reported, as Darknet does), 1 when some
images could not be read (their objects count as missed), 2 for a usage or configuration error.

Under ``torchrun --nproc_per_node=N -m darknet_torch map ...`` each process detects its share of the images and rank 0
scores them all and prints the one-process printout.
"""
from __future__ import annotations

import argparse
import logging
import sys

from darknet_torch.cli.distributed import run_on_every_rank
from darknet_torch.cli.options import (add_inference_options, float_in, inference_settings, non_negative_int,
                                       unit_float)
from darknet_torch.data.dataset import DarknetDataset
from darknet_torch.detect.build import build_predictor, load_for_inference
from darknet_torch.files import prepare_output_dir
from darknet_torch.detect.settings import DETECTOR_MAP
from darknet_torch.distributed import DistContext
from darknet_torch.errors import CfgError
from darknet_torch.evaluate.plots import write_evaluation_plots
from darknet_torch.evaluate.runner import evaluate
from darknet_torch.model.fast import NONE

log = logging.getLogger(__name__)


def _points(text: str) -> int:
    """--points: 0 (area under the curve) or a number of recall points >= 2."""
    value = non_negative_int(text)
    if value == 1:
        raise argparse.ArgumentTypeError("must be 0 or >= 2 (11, 101), got 1")
    return value


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("map", help="mean average precision on a .data file's valid= list (Darknet's detector map)",
                       description="Darknet's 'detector map' with its exact detections, matching and AP, plus "
                                   "optional COCO metrics of the same detections.")
    p.add_argument("positional", nargs="*", metavar="DATA CFG WEIGHTS",
                   help="Darknet's positional form, instead of --data/--cfg/--weights")
    p.add_argument("--data", help="Darknet .data file: valid= (image list), names=, classes=")
    p.add_argument("--cfg", help="Darknet .cfg file")
    p.add_argument("--weights", help="Darknet .weights or darknet_torch .pt")
    p.add_argument("--points", "-points", type=_points, default=0,
                   help="0: area under the curve (default), 11: PascalVOC 2007, 101: MS COCO")
    p.add_argument("--iou-thresh", "-iou_thresh", type=float_in(0, 1, high_open=True), default=0.5,
                   help="a detection is a TP when IoU > this (default: %(default)s)")
    p.add_argument("--thresh", "-thresh", type=unit_float, default=0.25,
                   help="Darknet's -thresh: confidence of the precision/recall/TP/FP/average-IoU lines "
                        "(default: %(default)s)")
    p.add_argument("--det-thresh", type=unit_float, default=DETECTOR_MAP.thresh,
                   help="detection threshold; Darknet's map hard-codes %(default)s")
    # The plain model by default: its printout is Darknet's to the last digit on the AVX-512 hosts (coco128 0.361300),
    # and exact's summation order can move that digit (0.361299).
    add_inference_options(p, batch_size=8, workers=None, fast=NONE, fast_why=": the plain model, whose printout is "
                          "Darknet's digit for digit", letter_box_help="letterbox instead of stretching (default: "
                          "the cfg's [net] letter_box, as Darknet's map)")
    p.add_argument("--coco", action="store_true",
                   help="also print COCO's mAP@[.5:.95] and @0.5 of the same detections (needs pycocotools)")
    p.add_argument("--plots", metavar="DIR",
                   help="also write PR / F1 / precision / recall curves, confusion matrices at --thresh and "
                        "per-class CSV tables to DIR (the numbers of the printout)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(run=run)


def _files(args: argparse.Namespace) -> tuple[str, str, str | None]:
    """(data, cfg, weights) from the positional form or the options, not both."""
    if args.positional:
        if len(args.positional) not in (2, 3):
            raise CfgError(f"expected DATA CFG [WEIGHTS], got {len(args.positional)} positional arguments")
        if args.data or args.cfg or args.weights:
            raise CfgError("give DATA CFG WEIGHTS either positionally or with --data/--cfg/--weights, not both")
        data, cfg, *weights = args.positional
        return data, cfg, weights[0] if weights else None
    if not (args.data and args.cfg):
        raise CfgError("--data and --cfg are required (or the positional form DATA CFG WEIGHTS)")
    return args.data, args.cfg, args.weights


def run(args: argparse.Namespace) -> int:
    return run_on_every_rank(_map, args)


def _map(args: argparse.Namespace, ctx: DistContext) -> int:
    # -thresh is the confidence of Darknet's summary lines; the detection threshold is --det-thresh
    settings = inference_settings(args, DETECTOR_MAP, thresh=args.det_thresh)
    data_path, cfg, weights = _files(args)
    if args.plots:
        prepare_output_dir(args.plots)  # a folder that cannot be written fails before the inference
    dataset = DarknetDataset.from_data_file(data_path)
    for warning in dataset.warnings:
        log.warning(warning)
    valid = dataset.require("valid", "detector map needs the list of validation images")
    names = dataset.names("detector map needs the class names")
    images = dataset.images(valid)
    if weights is None:
        log.warning("no weights given: evaluating the cfg's initial (random) weights")
    model, settings = load_for_inference(cfg, weights, ctx.device, settings)
    dataset.check_classes(model.num_classes)
    # int8 calibrates on the training list when there is one (the validation images are what it is scored on)
    train = dataset.config.train
    calibration = dataset.images(train) if settings.fast == "int8" and train is not None else images
    predictor = build_predictor(model, settings, names=names, calibration=calibration)
    del model  # a --fast predictor runs a copy: keeping the original would hold its weights twice

    report = evaluate(predictor, images, names, len(names), iou_thresh=args.iou_thresh, points=args.points,
                      batch_size=args.batch_size, workers=args.workers, decoder=args.decoder, coco=args.coco,
                      progress=not args.no_progress, conf_thresh=args.thresh, scan=dataset.scan(valid, len(names)),
                      ctx=ctx)
    if report is None:  # another rank than 0: rank 0 reports for all
        return 0
    for message in report.labels.messages():
        print(f"warning: {message}", file=sys.stderr)
    for message in report.warnings:
        print(f"warning: {message}", file=sys.stderr)
    for path, error in report.failed:
        print(f"error: {error}" if str(path) in error else f"error: {path}: {error}", file=sys.stderr)
    print(report.format(names))
    if args.plots:
        files = write_evaluation_plots(report.matched, report.darknet, names, args.plots)
        print(f"{len(files)} plots and tables written to {args.plots}")
    return 1 if report.failed else 0
