"""The ``--fast MODE`` option shared by ``detect``, ``map`` and ``serve``: run the network through
:func:`darknet_torch.model.fast.optimize_for_inference` (int8 calibrated on a few of the user's images)."""
from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

from darknet_torch.data.images import load_image
from darknet_torch.detect.predictor import Predictor
from darknet_torch.errors import DarknetError
from darknet_torch.model.darknet import Darknet
from darknet_torch.model.fast import FAST_MODES, optimize_for_inference

log = logging.getLogger(__name__)

CALIBRATION_IMAGES = 8


def add_fast_argument(p: argparse.ArgumentParser) -> None:
    p.add_argument("--fast", choices=FAST_MODES, metavar="MODE",
                   help="inference speed mode: exact (same results, channels-last + fused activations), or the "
                        "approximate bf16, int8 (calibrated on the first images) or compile (torch.compile; the "
                        "first batch compiles for about a minute); see benchmarks/README.md for the speed and mAP "
                        "of each (default: the plain model)")


def apply_fast_mode(model: Darknet, mode: str | None, calibration_paths: Sequence[str | Path],
                    letterbox: bool | None = None, input_size: tuple[int, int] | None = None) -> nn.Module:
    """``model`` itself without ``mode``, else its optimized copy; int8 is calibrated on the first
    :data:`CALIBRATION_IMAGES` readable images of ``calibration_paths``, prepared as the Predictor will."""
    if mode is None:
        return model
    calibration = None
    if mode == "int8":
        prepare = Predictor(model, letterbox=letterbox, input_size=input_size).preparer
        inputs = []
        for path in calibration_paths:
            try:
                inputs.append(prepare(load_image(path))[0])
            except DarknetError as exc:
                log.warning("int8 calibration skips %s", exc)
            if len(inputs) == CALIBRATION_IMAGES:
                break
        if not inputs:
            raise DarknetError("--fast int8: no readable image to calibrate on")
        calibration = [torch.stack(inputs)]
    return optimize_for_inference(model, mode, calibration)
