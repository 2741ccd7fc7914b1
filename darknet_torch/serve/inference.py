"""The model side of the service: decode uploads, run one forward pass per batch, and give JSON-ready results.

Everything here runs on the single model thread, so it may be slow and blocking; nothing here knows about HTTP.
Per-request settings (threshold, NMS, letterbox) are applied to a shallow copy of the shared :class:`Predictor`:
the model and its weights are shared, only the few plain settings differ.
"""
from __future__ import annotations

import json
import time
from dataclasses import astuple, dataclass
from itertools import groupby
from typing import Sequence

import torch

from darknet_torch.data.images import Decoder, LetterboxInfo, decode_pixels
from darknet_torch.detect.predictor import Detection, Predictor
from darknet_torch.errors import DataError


@dataclass(frozen=True)
class RequestSettings:
    """The per-request detection settings: keep (box, class) pairs with probability > ``thresh``; NMS IoU ``nms``;
    ``letter_box`` keeps the aspect ratio."""

    thresh: float
    nms: float
    letter_box: bool


@dataclass(frozen=True)
class ImageJob:
    """One uploaded image (still encoded) and the settings to detect it with."""

    data: bytes
    settings: RequestSettings


@dataclass(frozen=True)
class Prediction:
    """Detections for one image, with its size in pixels (the frame the boxes refer to) and the model thread's time
    per image of its batch (decode, pre-process, forward, NMS).  ``dropped``: (box, class) pairs over the service's
    cap, lowest scores first; ``warnings``: problems that did not stop detection (a truncated JPEG grey-filled)."""

    width: int
    height: int
    detections: list[Detection]
    settings: RequestSettings
    seconds: float
    dropped: int = 0
    warnings: tuple[str, ...] = ()

    def to_json(self, max_bytes: int | None = None) -> dict:
        """The service's response body: sizes, settings and one entry per (box, class), box in image pixels.

        ``max_bytes`` caps the serialised body: the lowest-scored detections are left out (and counted in
        ``dropped``) until it fits."""
        entries = [detection_json(d, self.width, self.height) for d in self.detections]
        body = {
            "width": self.width,
            "height": self.height,
            "detections": [],
            "dropped": self.dropped,
            "warnings": list(self.warnings),
            "settings": {"thresh": self.settings.thresh, "nms": self.settings.nms,
                         "letter_box": self.settings.letter_box},
            "seconds": round(self.seconds, 6),
        }
        if max_bytes is not None:
            entries = _fit(entries, max_bytes - _json_size(body) - 16)  # 16: room for the larger dropped count
            body["dropped"] += len(self.detections) - len(entries)
        body["detections"] = entries
        return body


def _json_size(value: object) -> int:
    """Bytes of ``value`` as Starlette's JSONResponse writes it."""
    return len(json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode())


def _fit(entries: list[dict], budget: int) -> list[dict]:
    """The highest-scored ``entries`` whose JSON fits in ``budget`` bytes (with separating commas), in their order."""
    # one serialisation in the usual case (the list's JSON is the entries' plus a comma each, plus 1), per entry when over
    if not entries or _json_size(entries) - 1 <= budget:
        return entries
    sizes = [_json_size(e) + 1 for e in entries]
    kept, used = set(), 0
    for index in sorted(range(len(entries)), key=lambda i: -entries[i]["score"]):
        if used + sizes[index] > budget:
            break
        kept.add(index)
        used += sizes[index]
    return [e for i, e in enumerate(entries) if i in kept]


def detection_json(det: Detection, width: int, height: int) -> dict:
    """``{class_id, name, score, box: {left, top, right, bottom}}``; the box in original-image pixels, not clipped
    (as Darknet prints it), so it may reach a little outside the image."""
    left, top, right, bottom = det.xyxy(width, height)
    return {"class_id": det.class_id, "name": det.name, "score": det.score,
            "box": {"left": left, "top": top, "right": right, "bottom": bottom}}


def default_settings(predictor: Predictor) -> RequestSettings:
    """The settings a request gets when it names none: the predictor's own."""
    return RequestSettings(predictor.thresh, predictor.nms_thresh, predictor.letterbox)


def warm_up(predictor: Predictor) -> None:
    """One forward pass on a blank image, so the first request does not pay for lazy initialisation."""
    h, w = predictor.input_size
    net_input, info = predictor.prepare(torch.zeros(3, h, w))
    predictor.detect_batch(net_input[None], [info])


def run_jobs(predictor: Predictor, jobs: Sequence[ImageJob], max_pixels: int, decoder: Decoder = "auto",
             max_detections: int = 1000) -> list[Prediction | DataError]:
    """Detect every job's image, one forward pass per group of jobs sharing settings; results in job order.

    An upload that cannot be used (empty, not an image, truncated, more than ``max_pixels`` pixels, or one that
    cannot be fitted to the network) gives its :class:`DataError` in its place; the other jobs of the batch are not
    affected.  Each image keeps at most ``max_detections`` (box, class) pairs, the highest scores.
    """
    results: list[Prediction | DataError | None] = [None] * len(jobs)
    order = sorted(range(len(jobs)), key=lambda i: astuple(jobs[i].settings))
    for settings, group in groupby(order, key=lambda i: jobs[i].settings):
        tuned = predictor.with_settings(thresh=settings.thresh, nms=settings.nms, letterbox=settings.letter_box)
        start = time.perf_counter()
        inputs, infos, kept, notes = [], [], [], []
        for index in group:
            try:
                net_input, info, warnings = _prepare_upload(tuned, jobs[index].data, max_pixels, decoder)
            except DataError as exc:
                results[index] = exc
                continue
            inputs.append(net_input)
            infos.append(info)
            kept.append(index)
            notes.append(warnings)
        if not kept:
            continue
        found = tuned.detect_batch(torch.stack(inputs), infos)
        seconds = (time.perf_counter() - start) / len(kept)
        for index, info, dets, warnings in zip(kept, infos, found, notes):
            capped, dropped = dets.strongest(max_detections)
            results[index] = Prediction(info.orig_w, info.orig_h, tuned.to_detections(capped), settings, seconds,
                                        dropped, warnings)
    return results


def _prepare_upload(predictor: Predictor, data: bytes, max_pixels: int,
                    decoder: Decoder) -> tuple[torch.Tensor, LetterboxInfo, tuple[str, ...]]:
    """Network input, fit and decoding warnings of one upload; any failure is a :class:`DataError` for it alone."""
    warnings: list[str] = []
    pixels = decode_pixels(data, max_pixels, decoder, source="upload", warn=warnings.append)
    try:
        net_input, info = predictor.prepare_u8(pixels)  # the float path's input, for less CPU
    except Exception as exc:  # one upload that cannot be fitted must fail alone, not its whole batch
        raise DataError(f"upload: cannot prepare the {pixels.shape[1]}x{pixels.shape[0]} image for the network: "
                        f"{exc}") from None
    return net_input, info, tuple(warnings)
