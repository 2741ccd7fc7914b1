"""One inference path for detect, map, serve and demo: pre-process, forward, Darknet's boxes and NMS.

Settings come from :mod:`darknet_torch.detect.settings` (Darknet's ``detector test`` and ``detector map`` presets);
NMS uses the last head's ``nms_kind``/``beta_nms`` and images are stretched unless ``[net] letter_box=1`` (or asked).
"""
from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
from torch import Tensor

from darknet_torch.data.images import LetterboxInfo, Preprocessor
from darknet_torch.detect.postprocess import Detections, darknet_detections_batch
from darknet_torch.detect.settings import DETECTOR_TEST, InferenceSettings
from darknet_torch.errors import CfgError
from darknet_torch.model.darknet import Darknet
from darknet_torch.model.heads import RegionLayer, YOLOLayer
from darknet_torch.ops.nms import darknet_nms
from darknet_torch.runtime import model_device


@dataclass(frozen=True)
class Detection:
    """One (box, class) detection in plain numbers: centre and size relative to the original image."""

    class_id: int
    name: str
    score: float
    x: float
    y: float
    w: float
    h: float

    def xyxy(self, width: int, height: int) -> tuple[float, float, float, float]:
        """Left, top, right, bottom in original-image pixels (not clipped, as Darknet prints them)."""
        return ((self.x - self.w / 2) * width, (self.y - self.h / 2) * height,
                (self.x + self.w / 2) * width, (self.y + self.h / 2) * height)


def nms_settings(model: Darknet) -> tuple[str, float]:
    """Darknet's ``detector test``/``map`` take the NMS kind from the *last* head."""
    last = model.heads[-1] if model.heads else None
    if isinstance(last, YOLOLayer):
        return last.config.nms_kind, last.config.beta_nms
    return "default", 0.6


def resolve_settings(model: Darknet, settings: InferenceSettings) -> InferenceSettings:
    """``settings`` with its cfg-dependent ``None`` fields filled from ``model``: ``nms_kind`` (the last head's),
    ``letterbox`` (``[net] letter_box``) and ``input_size`` (``[net] height/width``)."""
    return settings.replace(
        nms_kind=settings.nms_kind or nms_settings(model)[0],
        letterbox=model.net.letter_box if settings.letterbox is None else settings.letterbox,
        input_size=settings.input_size or model.input_size)


def make_preparer(settings: InferenceSettings) -> Preprocessor:
    """A small picklable function image -> (network input, fit info) for resolved ``settings``, for DataLoader
    workers; its ``pixels`` method takes the uint8 image instead."""
    h, w = settings.input_size
    return Preprocessor(w, h, settings.letterbox)


class Predictor:
    """Runs a :class:`Darknet` model on images the way Darknet's detector does, with :class:`InferenceSettings`.

    The settings' ``None`` fields are resolved from the model (:func:`resolve_settings`); ``thresh``, ``nms_thresh``,
    ``nms_kind``, ``letterbox`` and ``input_size`` read them.  Build one with :func:`darknet_torch.detect.build.build_predictor`, which also applies
    ``settings.fast``.
    """

    def __init__(self, model: Darknet, names: Sequence[str] | None = None,
                 settings: InferenceSettings = DETECTOR_TEST) -> None:
        if not model.head_indices:
            last = model.module_defs[-1].name
            why = ("YOLOv1's [detection] layer is not decoded by detect (DetectionLayer.boxes gives its boxes)"
                   if last == "detection" else "this cfg is a classifier; use 'darknet_torch classify'")
            raise CfgError(f"{model.cfg_path}: no [yolo]/[region] head, so nothing to detect: {why}")
        self.model = model
        self.names = list(names) if names is not None else [str(i) for i in range(model.num_classes)]
        self.keep_all_heads = [isinstance(h, RegionLayer) for h in model.heads]
        self.device = model_device(model)
        self.beta_nms = nms_settings(model)[1]
        self._use(settings)

    def _use(self, settings: InferenceSettings) -> None:
        self.settings = resolve_settings(self.model, settings)

    @property
    def thresh(self) -> float:
        return self.settings.thresh

    @property
    def nms_thresh(self) -> float:
        return self.settings.nms

    @property
    def nms_kind(self) -> str:
        return self.settings.nms_kind

    @property
    def letterbox(self) -> bool:
        return self.settings.letterbox

    @property
    def input_size(self) -> tuple[int, int]:
        return self.settings.input_size

    def with_settings(self, **changes) -> Predictor:
        """A shallow copy (same model, no weights copied) whose settings differ by ``changes`` (not ``fast``:
        that needs another model, see ``build_predictor``)."""
        if "fast" in changes:
            raise ValueError("with_settings cannot change the fast mode; build another predictor")
        tuned = copy.copy(self)
        tuned._use(self.settings.replace(**changes))
        return tuned

    @property
    def preparer(self) -> Preprocessor:
        """A small picklable function image -> (network input, fit info), for DataLoader workers."""
        return make_preparer(self.settings)

    def prepare(self, image: Tensor) -> tuple[Tensor, LetterboxInfo]:
        """Network input (3, H, W) for one float CHW image in [0, 1], and how it was fitted."""
        return self.preparer(image)

    def prepare_u8(self, pixels: np.ndarray) -> tuple[Tensor, LetterboxInfo]:
        """:meth:`prepare` of ``u8_hwc_to_unit_chw(pixels)`` (uint8 ``[H, W, 3]`` RGB), bit for bit, for less
        CPU: for video frames and images still in their decoded uint8."""
        return self.preparer.pixels(pixels)

    def detect_batch(self, batch: Tensor, infos: Sequence[LetterboxInfo]) -> list[Detections]:
        """Darknet detections after NMS for a prepared batch ``(B, 3, H, W)``: suppressed probabilities are zero and
        rows are in the array order Darknet's NMS leaves (what ``detector test`` prints from and ``map`` scores)."""
        return self.detections_from_output(self.forward_batch(batch), (batch.shape[2], batch.shape[3]), infos)

    @torch.inference_mode()
    def forward_batch(self, batch: Tensor) -> Tensor:
        """The network's decoded output for a prepared batch, float32 on the CPU: the first half of
        :meth:`detect_batch` (the video pipeline runs the second half in another thread)."""
        return self.model(batch.to(self.device, non_blocking=True)).float().cpu()

    @torch.inference_mode()
    def detections_from_output(self, decoded: Tensor, input_hw: tuple[int, int],
                               infos: Sequence[LetterboxInfo]) -> list[Detections]:
        """:meth:`detect_batch`'s detections from :meth:`forward_batch`'s output of a batch of ``input_hw`` inputs."""
        grids = self.model.head_grids(input_hw)
        results = []
        for dets in darknet_detections_batch(decoded, grids, self.keep_all_heads, infos, self.thresh):
            if len(dets):
                order, dets.probs = darknet_nms(dets.boxes, dets.objectness, dets.probs, self.nms_thresh,
                                                self.nms_kind, self.beta_nms)
                dets = dets.select(order)
            results.append(dets)
        return results

    def to_detections(self, dets: Detections) -> list[Detection]:
        """One :class:`Detection` per (box, class) with non-zero probability, in Darknet's array then class order."""
        rows, classes = torch.nonzero(dets.probs > 0, as_tuple=True)
        boxes = dets.boxes[rows].tolist()
        scores = dets.probs[rows, classes].tolist()
        return [Detection(c, self.names[c] if c < len(self.names) else str(c), s, *b)
                for c, s, b in zip(classes.tolist(), scores, boxes)]

    def predict(self, images: Sequence[Tensor]) -> list[list[Detection]]:
        """Detections for float CHW images in [0, 1] (any sizes)."""
        prepared = [self.prepare(image) for image in images]
        batch = torch.stack([p[0] for p in prepared])
        dets = self.detect_batch(batch, [p[1] for p in prepared])
        return [self.to_detections(d) for d in dets]
