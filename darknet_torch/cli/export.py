"""``darknet_torch export``: a cfg + weights as an ONNX file with decoding (and optionally NMS) in the graph.

Before anything is written, the graph is run in memory with onnxruntime (when installed) against PyTorch on random
inputs, at every batch size / input size the export promises; if it cannot run or they disagree by more than 1e-4
relative, exit status 1 and no file (a file on disk is one that passed).  ``-o -`` writes the file to standard output
and the status line to standard error.
"""
from __future__ import annotations

import argparse
import logging
from pathlib import Path

import torch

from darknet_torch.cli.options import add_img_size_argument, inference_settings, int_at_least, positive_int, unit_float
from darknet_torch.detect.build import build_predictor
from darknet_torch.detect.settings import DETECTOR_TEST
from darknet_torch.errors import DarknetError
from darknet_torch.export.onnx import (DEFAULT_OPSET, MAX_OPSET, MIN_OPSET, NmsOptions, compare_with_torch,
                                       onnx_bytes, onnx_session, run_onnx, size_multiple, write_onnx)
from darknet_torch.files import human_stream, prepare_output_file
from darknet_torch.model.darknet import Darknet

log = logging.getLogger(__name__)

VERIFY_TOLERANCE = 1e-4  # max |onnx - torch| / max |torch|, as the golden tests allow per layer


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("export", help="export a network (decode included) to ONNX",
                       description="Write an ONNX graph computing Darknet.forward: images BxCxHxW (C = [net] "
                                   "channels; RGB in [0,1] for 3) -> "
                                   "detections BxNx(5+C) (cx, cy, w, h in input pixels, objectness, class "
                                   "probabilities); with --nms, Kx7 rows (batch, x1, y1, x2, y2, score, class).")
    p.add_argument("--cfg", required=True, help="Darknet .cfg")
    p.add_argument("--weights", required=True, help="Darknet .weights or darknet_torch .pt")
    p.add_argument("--format", choices=("onnx",), default="onnx", help="output format (default: %(default)s)")
    p.add_argument("--output", "-o", help="output file, - for standard output (default: the weights' name with "
                                          ".onnx)")
    add_img_size_argument(p, "input height [width] to trace at (default: [net] height/width)")
    p.add_argument("--batch-size", type=positive_int, default=1, help="batch size to trace at (default: %(default)s)")
    p.add_argument("--dynamic-batch", action="store_true", help="any batch size at run time")
    p.add_argument("--dynamic-size", action="store_true",
                   help="any input height/width at run time: multiples of the step the export prints (the "
                        "network's stride, or more when a layer downsamples further)")
    p.add_argument("--opset", type=int_at_least(MIN_OPSET, MAX_OPSET), default=DEFAULT_OPSET,
                   help=f"ONNX opset, {MIN_OPSET}..{MAX_OPSET} (default: %(default)s)")
    p.add_argument("--nms", action="store_true",
                   help="append class-wise NMS (ONNX NonMaxSuppression, IoU rule of Darknet's do_nms_sort)")
    p.add_argument("--nms-thresh", type=unit_float, default=DETECTOR_TEST.nms,
                   help="with --nms: IoU above which boxes are suppressed (default: %(default)s)")
    p.add_argument("--thresh", type=unit_float, default=DETECTOR_TEST.thresh,
                   help="with --nms: keep objectness*class > THRESH (default: %(default)s)")
    p.add_argument("--max-per-class", type=positive_int, default=NmsOptions.max_per_class,
                   help="with --nms: at most this many boxes per image and class (default: %(default)s)")
    p.add_argument("--no-verify", action="store_true", help="skip the onnxruntime check")
    p.set_defaults(run=run)


def _check_shapes(model: Darknet, size: tuple[int, int], args: argparse.Namespace) -> list[tuple[int, ...]]:
    """Input shapes the exported file must handle: the traced one, plus another batch / size when dynamic."""
    h, w = size
    channels = model.net.channels
    shapes = [(args.batch_size, channels, h, w)]
    if args.dynamic_batch:
        shapes.append((args.batch_size + 1, channels, h, w))
    if args.dynamic_size:
        step = size_multiple(model)
        shapes.append((args.batch_size, channels, h + step, w + 2 * step))
    return shapes


def _compare(session, model: Darknet, shapes: list[tuple[int, ...]], nms: bool) -> None:
    """Run the graph at every shape (against PyTorch unless NMS is in the graph).

    Raises:
        DarknetError: the graph cannot run at a shape, or differs from PyTorch by more than VERIFY_TOLERANCE.
    """
    if nms:
        for shape in shapes:
            rows = run_onnx(session, torch.rand(*shape))
            log.info("onnxruntime check: %s -> %d detections on random input", "x".join(map(str, shape)), len(rows))
        return
    errors = compare_with_torch(session, model, shapes)
    report = ", ".join(f"{e:.2g} at {'x'.join(map(str, s))}" for s, e in zip(shapes, errors))
    log.info("onnxruntime vs PyTorch, max relative difference: %s", report)
    if max(errors) > VERIFY_TOLERANCE:
        raise DarknetError(f"ONNX output differs from PyTorch by more than {VERIFY_TOLERANCE:g}")


def _verified(data: bytes, model: Darknet, size: tuple[int, int], args: argparse.Namespace) -> bool:
    """Whether the graph, not written yet, runs in onnxruntime as PyTorch does (True, warned, without onnxruntime):
    a failed check leaves no file that looks valid."""
    try:
        session = onnx_session(data)
    except DarknetError as exc:
        log.warning("not verified: %s", exc)
        return True
    try:
        _compare(session, model, _check_shapes(model, size, args), args.nms)
    except DarknetError as exc:
        log.error("error: %s; nothing written (--no-verify writes it unchecked)", exc)
        return False
    return True


def run(args: argparse.Namespace) -> int:
    settings = inference_settings(args, DETECTOR_TEST, nms=args.nms_thresh)  # --nms is a flag here
    size = settings.input_size
    output = prepare_output_file(args.output or Path(args.weights).with_suffix(".onnx"),
                                 sources=[args.cfg, args.weights])
    predictor = build_predictor(args.cfg, settings, weights=args.weights, device="cpu")
    model = predictor.model
    nms = NmsOptions(settings.nms, settings.thresh, args.max_per_class) if args.nms else None
    if nms is not None and predictor.nms_kind in ("greedynms", "diounms"):
        log.warning("the cfg asks for nms_kind=%s (DIoU-based in Darknet); the ONNX graph uses plain IoU NMS",
                    predictor.nms_kind)
    data = onnx_bytes(model, size, args.batch_size, args.dynamic_batch, args.dynamic_size, args.opset, nms)
    if not args.no_verify and not _verified(data, model, size or model.input_size, args):
        return 1
    write_onnx(output, data)
    print(f"exported {output} (opset {args.opset}, {len(data) / 1e6:.1f} MB)", file=human_stream(output))
    return 0
