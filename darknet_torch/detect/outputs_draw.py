"""Annotated images: Darknet's boxes and class colours, with labels that stay readable at any image size.

What is drawn follows Darknet's ``draw_detections_v3``: one rectangle per box in its best class's colour (Darknet's
``get_color`` rule), boxes drawn in increasing probability so the most confident ends on top, the box clipped to the
image.  The label differs on purpose: instead of Darknet's fixed bitmap alphabet it is a TrueType text
``name score%`` (plus the box's other classes) on a filled box, sized with the image.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from typing import Mapping, Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from darknet_torch.detect.outputs_format import BoxDetection, select_boxes
from darknet_torch.detect.predictor import Detection
from darknet_torch.detect.settings import DETECTOR_TEST

# image.c ``colors``: the corners of Darknet's colour ramp (R, G, B).
_RAMP = ((1, 0, 1), (0, 0, 1), (0, 1, 1), (0, 1, 0), (1, 1, 0), (1, 0, 0))


def class_color(class_id: int, num_classes: int) -> tuple[int, int, int]:
    """Darknet's colour for a class (image.c ``get_color`` with offset ``class*123457 % classes``), as 0..255 RGB."""
    num_classes = max(num_classes, class_id + 1, 1)
    offset = class_id * 123457 % num_classes
    ratio = offset / num_classes * 5
    low, high = math.floor(ratio), math.ceil(ratio)
    frac = ratio - low
    # Darknet's red uses ramp column 2, green column 1, blue column 0.
    return tuple(round(255 * ((1 - frac) * _RAMP[low][c] + frac * _RAMP[high][c])) for c in (2, 1, 0))


def line_width(width: int, height: int) -> int:
    """Box outline width in pixels: about 0.3 % of the image's size, at least 1."""
    return max(1, round(0.003 * (width + height)))


def font_size(width: int, height: int) -> int:
    """Label text height in pixels: about 1.5 % of the image's size, at least 10 (readable on thumbnails)."""
    return max(10, round(0.015 * (width + height)))


@lru_cache(maxsize=16)
def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, OSError, ImportError):  # Pillow < 10.1 or built without FreeType: fixed-size bitmap font
        return ImageFont.load_default()


def _label_text(box: BoxDetection, show_scores: bool = True, track_id: int | None = None) -> str:
    text = ", ".join(f"{d.name} {100 * d.score:.0f}%" if show_scores else d.name for d in box.classes)
    return text if track_id is None else f"{text} (id: {track_id})"


def _text_colour(fill: tuple[int, int, int]) -> tuple[int, int, int]:
    luminance = 0.299 * fill[0] + 0.587 * fill[1] + 0.114 * fill[2]
    return (0, 0, 0) if luminance > 140 else (255, 255, 255)


def draw_detections(image: Image.Image, detections: Sequence[Detection], num_classes: int,
                    thresh: float = DETECTOR_TEST.thresh, show_scores: bool = True,
                    track_ids: Mapping[tuple[float, float, float, float], int] | None = None) -> Image.Image:
    """A copy of ``image`` (RGB, the original the boxes refer to) with the boxes Darknet would draw.

    ``detections``: :meth:`Predictor.to_detections` output for this image (relative boxes); ``show_scores=False``
    labels with the class names only (ground-truth boxes).  ``track_ids``: a tracker's id per box, keyed by the box's
    ``(x, y, w, h)``; shown as ``(id: N)`` after the label, as Darknet's demo does.
    """
    out = image.convert("RGB") if image.mode != "RGB" else image.copy()
    shapes = _layout(out.size, detections, num_classes, thresh, show_scores, track_ids)
    _render(ImageDraw.Draw(out), shapes, 0, 0)
    return out


def draw_detections_on_array(pixels: np.ndarray, detections: Sequence[Detection], num_classes: int,
                             thresh: float = DETECTOR_TEST.thresh,
                             track_ids: Mapping[tuple[float, float, float, float], int] | None = None) -> bool:
    """:func:`draw_detections` in place on a writable uint8 RGB ``H x W x 3`` array, the same pixels; returns whether
    anything was drawn.  For video frames: only the region the boxes and labels cover goes through Pillow (a 640x480
    frame's round trip through a Pillow image, 3 copies, cost more than drawing a few boxes)."""
    height, width = pixels.shape[:2]
    shapes = _layout((width, height), detections, num_classes, thresh, True, track_ids)
    if not shapes:
        return False
    left, top = max(0, min(s.bounds[0] for s in shapes)), max(0, min(s.bounds[1] for s in shapes))
    right = min(width, max(s.bounds[2] for s in shapes) + 1)
    bottom = min(height, max(s.bounds[3] for s in shapes) + 1)
    region = Image.fromarray(pixels[top:bottom, left:right])
    _render(ImageDraw.Draw(region), shapes, left, top)
    pixels[top:bottom, left:right] = np.asarray(region)
    return True


@dataclass(frozen=True)
class _Shape:
    """One thing to draw in image coordinates: a box outline (``text`` None) or a label."""

    bounds: tuple[int, int, int, int]  # inclusive corners of every pixel it may touch
    colour: tuple[int, int, int]
    stroke: int = 0
    text: str | None = None
    font: object = None
    text_at: tuple[int, int] = (0, 0)


def _layout(size: tuple[int, int], detections: Sequence[Detection], num_classes: int, thresh: float,
            show_scores: bool, track_ids: Mapping[tuple[float, float, float, float], int] | None) -> list[_Shape]:
    """Darknet's drawing order: the outlines in increasing probability (the most confident on top), then the labels,
    so no outline crosses a label."""
    W, H = size
    stroke, font = line_width(W, H), _font(font_size(W, H))
    boxes = sorted(select_boxes(detections, thresh), key=lambda b: b.best.score)
    corners = [_pixel_box(box.best, W, H) for box in boxes]
    colours = [class_color(box.best.class_id, num_classes) for box in boxes]
    shapes = [_Shape(corner, colour, stroke) for corner, colour in zip(corners, colours)]
    for box, (left, top, _, _), colour in zip(boxes, corners, colours):
        best = box.best
        track_id = track_ids.get((best.x, best.y, best.w, best.h)) if track_ids else None
        shapes.append(_label(_label_text(box, show_scores, track_id), font, colour, left, top, W))
    return shapes


def _render(draw: ImageDraw.ImageDraw, shapes: Sequence[_Shape], left: int, top: int) -> None:
    """Draw ``shapes`` on ``draw``, whose image starts at (``left``, ``top``) of the picture."""
    for shape in shapes:
        x0, y0, x1, y1 = shape.bounds
        if shape.text is None:
            draw.rectangle((x0 - left, y0 - top, x1 - left, y1 - top), outline=shape.colour, width=shape.stroke)
        else:
            draw.rectangle((x0 - left, y0 - top, x1 - left, y1 - top), fill=shape.colour)
            draw.text((shape.text_at[0] - left, shape.text_at[1] - top), shape.text, fill=_text_colour(shape.colour),
                      font=shape.font)


def _pixel_box(det: Detection, width: int, height: int) -> tuple[int, int, int, int]:
    """Darknet's drawn corners: truncated toward zero, then clipped to the image."""
    left = min(max(int((det.x - det.w / 2) * width), 0), width - 1)
    right = min(max(int((det.x + det.w / 2) * width), 0), width - 1)
    top = min(max(int((det.y - det.h / 2) * height), 0), height - 1)
    bottom = min(max(int((det.y + det.h / 2) * height), 0), height - 1)
    return left, top, max(left, right), max(top, bottom)


def _label(text: str, font, colour: tuple[int, int, int], left: int, top: int, image_width: int) -> _Shape:
    """Text on a filled box above the box's top-left corner, or just inside it when there is no room above."""
    x0, y0, x1, y1 = _text_box(text, font)
    pad = max(1, (y1 - y0) // 5)
    w, h = x1 - x0 + 2 * pad, y1 - y0 + 2 * pad
    x = max(0, min(left, image_width - w))
    y = top - h if top - h >= 0 else top
    return _Shape((x, y, x + w, y + h), colour, text=text, font=font, text_at=(x + pad - x0, y + pad - y0))


def _text_box(text: str, font) -> tuple[int, int, int, int]:
    """The text's bounding box drawn at (0, 0) (what ``ImageDraw.textbbox`` measures)."""
    return _MEASURE.textbbox((0, 0), text, font=font)


_MEASURE = ImageDraw.Draw(Image.new("RGB", (1, 1)))
