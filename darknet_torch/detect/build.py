"""One way from files (or a loaded model) to a ready :class:`Predictor`, for every command that runs a network."""
from __future__ import annotations

import logging
import os
from collections.abc import Sequence

import torch
from torch import nn

from darknet_torch.data.images import load_pixels
from darknet_torch.detect.predictor import Predictor, make_preparer, resolve_settings
from darknet_torch.detect.settings import DETECTOR_TEST, InferenceSettings
from darknet_torch.errors import CfgError, DarknetError
from darknet_torch.model.builder import MAX_INPUT_SIDE
from darknet_torch.model.darknet import Darknet
from darknet_torch.model.fast import AUTO, auto_mode, optimize_for_inference
from darknet_torch.model.loading import load_model
from darknet_torch.runtime import model_device, select_device

log = logging.getLogger(__name__)

CALIBRATION_IMAGES = 8
"""int8 calibrates on this many of the user's images (the first readable ones)."""

PathLike = str | os.PathLike[str]


def build_predictor(model: Darknet | PathLike, settings: InferenceSettings = DETECTOR_TEST, *,
                    weights: PathLike | None = None, names: Sequence[str] | None = None, device: str | None = None,
                    calibration: Sequence[PathLike] = ()) -> Predictor:
    """A :class:`Predictor` running ``model`` (a loaded network, or a cfg path loaded with ``weights`` on
    ``device``) with ``settings``: the input size is checked against the network's stride and ``settings.fast``
    is applied (``int8`` calibrates on the first :data:`CALIBRATION_IMAGES` readable images of ``calibration``;
    ``"auto"`` becomes the mode :func:`~darknet_torch.model.fast.auto_mode` picks for the model's device, and the
    Predictor's settings name that mode).

    Raises:
        CfgError: an input size the network cannot take.
        DarknetError: bad cfg/weights, or ``int8`` without a readable calibration image.
    """
    if not isinstance(model, nn.Module):
        model, settings = load_for_inference(model, weights, select_device(device), settings)
    model.check_rgb_input("inference")
    check_input_size(model, settings.input_size)
    settings = resolve_fast_mode(settings, model_device(model))
    return Predictor(optimize(model, settings, calibration), names, settings)


def load_for_inference(cfg: PathLike, weights: PathLike | None, device: torch.device,
                       settings: InferenceSettings) -> tuple[Darknet, InferenceSettings]:
    """The network from ``cfg`` and ``weights`` on ``device``, and ``settings`` with ``"auto"`` resolved for that
    device.  Batch norm is folded into the loaded network only when it runs as it is: a fast mode makes its own
    kernels from the layers, and a folded copy kept beside them would only raise the start-up peak."""
    resolved = resolve_fast_mode(settings, device)
    if settings.fast == AUTO:
        log.info("--fast auto on %s: %s", device, f"fast mode {resolved.fast} (--fast none for the plain model)"
                 if resolved.fast else "the plain model")
    return load_model(cfg, weights, device, fuse=resolved.fast is None), resolved


def resolve_fast_mode(settings: InferenceSettings, device: torch.device) -> InferenceSettings:
    """``settings`` with ``fast="auto"`` replaced by the mode :func:`~darknet_torch.model.fast.auto_mode` picks for
    ``device`` (unchanged otherwise)."""
    return settings.replace(fast=auto_mode(device)) if settings.fast == AUTO else settings


def check_input_size(model: Darknet, size: tuple[int, int] | None) -> None:
    """Refuse an input size that is not a multiple of the network's stride (its heads' grids would not fit), or
    larger than the largest ``[net]`` size we build (before anything is allocated)."""
    if size is None:
        return
    if max(size) > MAX_INPUT_SIDE:
        raise CfgError(f"input size {size[0]}x{size[1]}: larger than {MAX_INPUT_SIDE}, the largest input "
                       "darknet_torch builds")
    stride = model.stride
    if any(v % stride for v in size):
        raise CfgError(f"input size {size[0]}x{size[1]}: height and width must be multiples of {stride} "
                       "(this network's stride)")


def optimize(model: Darknet, settings: InferenceSettings, calibration: Sequence[PathLike] = ()) -> nn.Module:
    """``model`` itself without ``settings.fast``, else its copy from
    :func:`~darknet_torch.model.fast.optimize_for_inference`; int8 calibrates on images prepared as the Predictor
    will prepare them.  ``"auto"`` is resolved here too (:func:`resolve_fast_mode`), so this runs alone as well as
    from :func:`build_predictor`, which resolves it first to name the mode in the Predictor's settings."""
    settings = resolve_fast_mode(settings, model_device(model))
    if settings.fast is None:
        return model
    batches = None
    if settings.fast == "int8":
        prepare = make_preparer(resolve_settings(model, settings))
        inputs = []
        for path in calibration:
            try:
                inputs.append(prepare.pixels(load_pixels(path))[0])
            except DarknetError as exc:
                log.warning("int8 calibration skips %s", exc)
            if len(inputs) == CALIBRATION_IMAGES:
                break
        if not inputs:
            raise DarknetError("--fast int8: no readable image to calibrate on")
        batches = [torch.stack(inputs)]
    return optimize_for_inference(model, settings.fast, batches)
