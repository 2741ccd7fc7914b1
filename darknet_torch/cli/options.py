"""Options shared by the commands that run the network on images (``detect``, ``map``, ``serve``, ``export``), the
one place that turns them into :class:`~darknet_torch.detect.settings.InferenceSettings`, and the argument types
every command uses for ranged numbers, so an out-of-range value is a usage error (exit 2, one line) from argparse
before anything runs."""
from __future__ import annotations

import argparse
import math
from typing import Callable

from darknet_torch.detect.settings import InferenceSettings
from darknet_torch.errors import CfgError
from darknet_torch.model.fast import AUTO, FAST_CHOICES, NONE
from darknet_torch.ops.nms import NMS_KINDS


def int_at_least(low: int, high: int | None = None) -> Callable[[str], int]:
    """An argparse type: an integer from ``low`` (to ``high``, inclusive)."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if value < low or (high is not None and value > high):
            raise argparse.ArgumentTypeError(f"must be {'>= ' + str(low) if high is None else f'from {low} to {high}'}"
                                             f", got {value}")
        return value
    return parse


def float_in(low: float, high: float = math.inf, *, low_open: bool = False, high_open: bool = False,
             ) -> Callable[[str], float]:
    """An argparse type: a finite number in the interval from ``low`` to ``high`` (closed unless ``*_open``)."""
    interval = f"{'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        if (not math.isfinite(value) or value < low or value > high or (low_open and value == low)
                or (high_open and value == high)):
            raise argparse.ArgumentTypeError(f"must be in {interval}, got {text}")
        return value
    return parse


positive_int = int_at_least(1)
non_negative_int = int_at_least(0)
port_number = int_at_least(1, 65535)
unit_float = float_in(0.0, 1.0)  # thresholds: a probability or an IoU
positive_float = float_in(0.0, low_open=True)
non_negative_float = float_in(0.0)


def add_detection_options(p: argparse.ArgumentParser, preset: InferenceSettings) -> None:
    """--thresh, --nms, --nms-kind and --img-size with the defaults of ``preset``."""
    # the help names the preset's value, not %(default)s: detect defaults it to None (to tell when it is given)
    p.add_argument("--thresh", "--conf-thres", type=unit_float, default=preset.thresh,
                   help=f"report (box, class) pairs with probability > THRESH (default: {preset.thresh})")
    p.add_argument("--nms", "--iou-thres", type=unit_float, default=preset.nms,
                   help="NMS IoU threshold (default: %(default)s)")
    p.add_argument("--nms-kind", choices=NMS_KINDS, help="NMS: the cfg's nms_kind by default (Darknet's rule); "
                   "'plain' is a class-wise greedy NMS")
    add_img_size_argument(p, "network input height [width] (default: [net] height/width)")


class _HeightWidth(argparse.Action):
    """``H [W]`` -> (H, W); one value is a square, more than two are a usage error."""

    def __call__(self, parser, namespace, values, option_string=None) -> None:
        if len(values) > 2:
            parser.error(f"argument {option_string}: takes H or H W, got {len(values)} values: "
                         f"{' '.join(map(str, values))}")
        setattr(namespace, self.dest, (values[0], values[-1]))


def add_img_size_argument(p: argparse.ArgumentParser, help: str) -> None:
    """``--img-size H [W]``, stored as (height, width) (None when not given); the network's stride and size limit
    are checked with the model (detect.build.check_input_size)."""
    p.add_argument("--img-size", type=positive_int, nargs="+", action=_HeightWidth, metavar=("H", "W"), help=help)


def add_fast_argument(p: argparse.ArgumentParser, default: str = AUTO, why: str = "") -> None:
    """``--fast MODE`` with a per-command ``default`` (and ``why``, for the help); :func:`inference_settings` turns
    ``none`` into None (the plain model)."""
    p.add_argument("--fast", choices=FAST_CHOICES, default=default, metavar="MODE",
                   help="inference speed mode: auto (exact on an x86 CPU with oneDNN, else the plain model), exact "
                        "(folded channels-last convolutions with fused activations: the plain model's values "
                        "within float32 summation order, ~1e-6), none (the plain model), or the approximate bf16 "
                        "(CPUs with AVX-512/AMX or Ampere+ GPUs; refused elsewhere), int8 (calibrated on the first "
                        "images) or compile (torch.compile; the first batch compiles for about a minute); see "
                        f"benchmarks/README.md for the speed and mAP of each (default: %(default)s{why})")


def add_inference_options(p: argparse.ArgumentParser, batch_size: int, workers: int | None,
                          letter_box_help: str, fast: str = AUTO, fast_why: str = "") -> None:
    """--letter-box, --batch-size, --workers, --decoder, --device and --fast, with per-command defaults (``workers``
    None: the library's device-dependent default, runtime.loader_workers)."""
    p.add_argument("--letter-box", action=argparse.BooleanOptionalAction, default=None,
                   help=letter_box_help)
    p.add_argument("--batch-size", type=positive_int, default=batch_size,
                   help="images per forward pass (default: %(default)s)")
    p.add_argument("--workers", type=non_negative_int, default=workers,
                   help="image decoding processes (default: %(default)s)" if workers is not None else
                   "image decoding processes (default: 2 with CUDA; 0 on the CPU, where they would only take cores "
                   "from the network)")
    p.add_argument("--decoder", choices=("auto", "pil", "stb"), default="auto",
                   help="JPEG decoder: stb = Darknet's own (needs libstb), pil = Pillow; auto: stb if installed")
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or N (default: cuda if available)")
    add_fast_argument(p, fast, fast_why)


def inference_settings(args: argparse.Namespace, preset: InferenceSettings, **overrides) -> InferenceSettings:
    """``preset`` changed by whichever of the options above ``args`` has (and ``overrides``), validated: a bad
    threshold is a usage error (exit 2) before any model is loaded."""
    given = {"thresh": getattr(args, "thresh", None), "nms": getattr(args, "nms", None),
             "nms_kind": getattr(args, "nms_kind", None), "letterbox": getattr(args, "letter_box", None),
             "input_size": getattr(args, "img_size", None), "fast": getattr(args, "fast", None)}
    changes = {k: v for k, v in given.items() if v is not None}
    if given["fast"] == NONE:
        changes["fast"] = None
    changes.update(overrides)
    try:
        return preset.replace(**changes)
    except CfgError as exc:
        raise CfgError(f"--{exc}") from None
