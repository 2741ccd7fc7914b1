"""One inference path for detect, map and serve: pre-process, forward, Darknet's boxes and NMS.

Defaults follow Darknet's ``detector test``: threshold 0.25, NMS 0.45 with the last head's ``nms_kind``/``beta_nms``,
stretch resize unless ``[net] letter_box=1`` (or asked).  ``detector map`` is the same with threshold 0.005.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Callable, Sequence

import torch
from torch import Tensor

from darknet_torch.data.images import LetterboxInfo, preprocess
from darknet_torch.detect.postprocess import Detections, darknet_detections_batch
from darknet_torch.model.darknet import Darknet
from darknet_torch.model.heads import RegionLayer, YOLOLayer
from darknet_torch.ops.nms import apply_nms, darknet_array_order


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


class Predictor:
    """Runs a :class:`Darknet` model on images the way Darknet's detector does.

    ``nms_kind=None`` uses the cfg's (last head); ``"plain"`` is a class-wise greedy NMS for users who want it.
    ``letterbox=None`` uses ``[net] letter_box``.  ``input_size`` (h, w) overrides the cfg's network size.
    """

    def __init__(self, model: Darknet, names: Sequence[str] | None = None, thresh: float = 0.25,
                 nms_thresh: float = 0.45, nms_kind: str | None = None, letterbox: bool | None = None,
                 input_size: tuple[int, int] | None = None) -> None:
        self.model = model
        self.names = list(names) if names is not None else [str(i) for i in range(model.num_classes)]
        self.thresh, self.nms_thresh = thresh, nms_thresh
        kind, beta = nms_settings(model)
        self.nms_kind = nms_kind or kind
        self.beta_nms = beta
        self.letterbox = bool(model.hyperparams["letter_box"]) if letterbox is None else letterbox
        self.input_size = input_size or model.input_size
        self.keep_all_heads = [isinstance(h, RegionLayer) for h in model.heads]
        self.device = next(model.parameters()).device

    @property
    def preparer(self) -> Callable[[Tensor], tuple[Tensor, LetterboxInfo]]:
        """A small picklable function image -> (network input, fit info), for DataLoader workers."""
        h, w = self.input_size
        return partial(preprocess, w=w, h=h, letterbox=self.letterbox)

    def prepare(self, image: Tensor) -> tuple[Tensor, LetterboxInfo]:
        """Network input (3, H, W) for one float CHW image in [0, 1], and how it was fitted."""
        return self.preparer(image)

    @torch.inference_mode()
    def detect_batch(self, batch: Tensor, infos: Sequence[LetterboxInfo]) -> list[Detections]:
        """Darknet detections after NMS for a prepared batch ``(B, 3, H, W)``: suppressed probabilities are zero and
        rows are in the array order Darknet's NMS leaves (what ``detector test`` prints from and ``map`` scores)."""
        batch = batch.to(self.device, non_blocking=True)
        decoded = self.model(batch).float().cpu()
        grids = self.model.head_grids((batch.shape[2], batch.shape[3]))
        results = []
        for dets in darknet_detections_batch(decoded, grids, self.keep_all_heads, infos, self.thresh):
            if len(dets):
                order = darknet_array_order(dets.objectness, dets.probs)
                dets.probs = apply_nms(dets.boxes, dets.objectness, dets.probs, self.nms_thresh, self.nms_kind,
                                       self.beta_nms)
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
