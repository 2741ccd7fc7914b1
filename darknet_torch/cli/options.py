"""Options shared by the commands that run the network on images (``detect``, ``map``, ``serve``, ``export``), and
the one place that turns them into :class:`~darknet_torch.detect.settings.InferenceSettings`."""
from __future__ import annotations

import argparse

from darknet_torch.detect.settings import InferenceSettings
from darknet_torch.errors import CfgError
from darknet_torch.model.fast import FAST_MODES
from darknet_torch.ops.nms import NMS_KINDS


def add_detection_options(p: argparse.ArgumentParser, preset: InferenceSettings) -> None:
    """--thresh, --nms, --nms-kind and --img-size with the defaults of ``preset``."""
    p.add_argument("--thresh", "--conf-thres", type=float, default=preset.thresh,
                   help="report (box, class) pairs with probability > THRESH (default: %(default)s)")
    p.add_argument("--nms", "--iou-thres", type=float, default=preset.nms,
                   help="NMS IoU threshold (default: %(default)s)")
    p.add_argument("--nms-kind", choices=NMS_KINDS, help="NMS: the cfg's nms_kind by default (Darknet's rule); "
                   "'plain' is a class-wise greedy NMS")
    p.add_argument("--img-size", type=int, nargs="+", metavar=("H", "W"),
                   help="network input height [width] (default: [net] height/width)")


def add_fast_argument(p: argparse.ArgumentParser) -> None:
    p.add_argument("--fast", choices=FAST_MODES, metavar="MODE",
                   help="inference speed mode: exact (same results, channels-last + fused activations), or the "
                        "approximate bf16, int8 (calibrated on the first images) or compile (torch.compile; the "
                        "first batch compiles for about a minute); see benchmarks/README.md for the speed and mAP "
                        "of each (default: the plain model)")


def add_inference_options(p: argparse.ArgumentParser, batch_size: int, workers: int | None,
                          letter_box_help: str) -> None:
    """--letter-box, --batch-size, --workers, --decoder, --device and --fast, with per-command defaults (``workers``
    None: the library's device-dependent default, runtime.loader_workers)."""
    p.add_argument("--letter-box", action=argparse.BooleanOptionalAction, default=None,
                   help=letter_box_help)
    p.add_argument("--batch-size", type=int, default=batch_size, help="images per forward pass (default: %(default)s)")
    p.add_argument("--workers", type=int, default=workers,
                   help="image decoding processes (default: %(default)s)" if workers is not None else
                   "image decoding processes (default: 2 with CUDA; 0 on the CPU, where they would only take cores "
                   "from the network)")
    p.add_argument("--decoder", choices=("auto", "pil", "stb"), default="auto",
                   help="JPEG decoder: stb = Darknet's own (needs libstb), pil = Pillow; auto: stb if installed")
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or N (default: cuda if available)")
    add_fast_argument(p)


def parse_img_size(values: list[int] | None) -> tuple[int, int] | None:
    """(h, w) from ``--img-size H [W]`` (one value: square)."""
    if not values:
        return None
    if len(values) > 2 or min(values) <= 0:
        raise CfgError(f"--img-size takes one or two positive sizes (H [W]), got {' '.join(map(str, values))}")
    return values[0], values[-1]


def inference_settings(args: argparse.Namespace, preset: InferenceSettings, **overrides) -> InferenceSettings:
    """``preset`` changed by whichever of the options above ``args`` has (and ``overrides``), validated: a bad
    threshold is a usage error (exit 2) before any model is loaded."""
    given = {"thresh": getattr(args, "thresh", None), "nms": getattr(args, "nms", None),
             "nms_kind": getattr(args, "nms_kind", None), "letterbox": getattr(args, "letter_box", None),
             "input_size": parse_img_size(getattr(args, "img_size", None)), "fast": getattr(args, "fast", None)}
    changes = {k: v for k, v in given.items() if v is not None}
    changes.update(overrides)
    try:
        return preset.replace(**changes)
    except CfgError as exc:
        raise CfgError(f"--{exc}") from None
