"""``darknet_torch export``: a cfg + weights as an ONNX file with decoding (and optionally NMS) in the graph.

After writing, the file is run once with onnxruntime (when installed) against PyTorch on random inputs, at every
batch size / input size the export promises; exit status 1 if they disagree by more than 1e-4 relative.
"""
from __future__ import annotations

import argparse
import logging
from pathlib import Path

import torch

from darknet_torch.cli.options import add_img_size_argument, inference_settings, int_at_least, positive_int, unit_float
from darknet_torch.detect.build import build_predictor
from darknet_torch.files import prepare_output_file, refuse_overwriting_sources
from darknet_torch.detect.settings import DETECTOR_TEST
from darknet_torch.errors import DarknetError
from darknet_torch.export.onnx import (DEFAULT_OPSET, MAX_OPSET, MIN_OPSET, NmsOptions, compare_with_torch,
                                       export_onnx, onnx_session, run_onnx)
from darknet_torch.model.darknet import Darknet

log = logging.getLogger(__name__)

VERIFY_TOLERANCE = 1e-4  # max |onnx - torch| / max |torch|, as the golden tests allow per layer


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("export", help="export a network (decode included) to ONNX",
                       description="Write an ONNX graph computing Darknet.forward: images Bx3xHxW (RGB, [0,1]) -> "
                                   "detections BxNx(5+C) (cx, cy, w, h in input pixels, objectness, class "
                                   "probabilities); with --nms, Kx7 rows (batch, x1, y1, x2, y2, score, class).")
    p.add_argument("--cfg", required=True, help="Darknet .cfg")
    p.add_argument("--weights", required=True, help="Darknet .weights or darknet_torch .pt")
    p.add_argument("--format", choices=("onnx",), default="onnx", help="output format (default: %(default)s)")
    p.add_argument("--output", "-o", help="output file (default: the weights' name with .onnx)")
    add_img_size_argument(p, "input height [width] to trace at (default: [net] height/width)")
    p.add_argument("--batch-size", type=positive_int, default=1, help="batch size to trace at (default: %(default)s)")
    p.add_argument("--dynamic-batch", action="store_true", help="any batch size at run time")
    p.add_argument("--dynamic-size", action="store_true",
                   help="any input height/width at run time (multiples of the network's stride)")
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
    shapes = [(args.batch_size, 3, h, w)]
    if args.dynamic_batch:
        shapes.append((args.batch_size + 1, 3, h, w))
    if args.dynamic_size:
        stride = model.stride
        shapes.append((args.batch_size, 3, h + stride, w + 2 * stride))
    return shapes


def _verify(path: Path, model: Darknet, size: tuple[int, int], args: argparse.Namespace) -> bool:
    try:
        session = onnx_session(path)
    except DarknetError as exc:
        log.warning("not verified: %s", exc)
        return True
    shapes = _check_shapes(model, size, args)
    if args.nms:
        for shape in shapes:
            rows = run_onnx(session, torch.rand(*shape))
            log.info("onnxruntime check: %s -> %d detections on random input", "x".join(map(str, shape)), len(rows))
        return True
    errors = compare_with_torch(session, model, shapes)
    report = ", ".join(f"{e:.2g} at {'x'.join(map(str, s))}" for s, e in zip(shapes, errors))
    log.info("onnxruntime vs PyTorch, max relative difference: %s", report)
    if max(errors) > VERIFY_TOLERANCE:
        log.error("error: ONNX output differs from PyTorch by more than %g", VERIFY_TOLERANCE)
        return False
    return True


def run(args: argparse.Namespace) -> int:
    settings = inference_settings(args, DETECTOR_TEST, nms=args.nms_thresh)  # --nms is a flag here
    size = settings.input_size
    output = prepare_output_file(args.output or Path(args.weights).with_suffix(".onnx"))
    refuse_overwriting_sources([output], [args.cfg, args.weights])
    predictor = build_predictor(args.cfg, settings, weights=args.weights, device="cpu")
    model = predictor.model
    nms = NmsOptions(settings.nms, settings.thresh, args.max_per_class) if args.nms else None
    if nms is not None and predictor.nms_kind in ("greedynms", "diounms"):
        log.warning("the cfg asks for nms_kind=%s (DIoU-based in Darknet); the ONNX graph uses plain IoU NMS",
                    predictor.nms_kind)
    export_onnx(model, output, img_size=size, batch_size=args.batch_size, dynamic_batch=args.dynamic_batch,
                dynamic_size=args.dynamic_size, opset=args.opset, nms=nms)
    print(f"exported {output}")
    if args.no_verify:
        return 0
    return 0 if _verify(output, model, size or model.input_size, args) else 1
