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
    pixels = np.array(image if image.mode == "RGB" else image.convert("RGB"))
    _draw(pixels, _layout(image.size, detections, num_classes, thresh, show_scores, track_ids))
    return Image.fromarray(pixels)


def draw_detections_on_array(pixels: np.ndarray, detections: Sequence[Detection], num_classes: int,
                             thresh: float = DETECTOR_TEST.thresh,
                             track_ids: Mapping[tuple[float, float, float, float], int] | None = None) -> bool:
    """:func:`draw_detections` in place on a writable uint8 RGB ``H x W x 3`` array (video frames: no round trip
    through a Pillow image); returns whether anything was drawn."""
    height, width = pixels.shape[:2]
    shapes = _layout((width, height), detections, num_classes, thresh, True, track_ids)
    _draw(pixels, shapes)
    return bool(shapes)


@dataclass(frozen=True)
class _Shape:
    """One thing to draw at (``x``, ``y``) of the image: a box outline ``stroke`` pixels wide, ``x1``/``y1`` its
    inclusive bottom-right corner, or (``label`` set) the pixels of a label saying ``text``."""

    x: int
    y: int
    colour: tuple[int, int, int]
    x1: int = 0
    y1: int = 0
    stroke: int = 0
    label: np.ndarray | None = None
    text: str = ""


def _layout(size: tuple[int, int], detections: Sequence[Detection], num_classes: int, thresh: float,
            show_scores: bool, track_ids: Mapping[tuple[float, float, float, float], int] | None) -> list[_Shape]:
    """Darknet's drawing order: the outlines in increasing probability (the most confident on top), then the labels,
    so no outline crosses a label."""
    W, H = size
    stroke, font = line_width(W, H), _font(font_size(W, H))
    boxes = sorted(select_boxes(detections, thresh), key=lambda b: b.best.score)
    corners = [_pixel_box(box.best, W, H) for box in boxes]
    colours = [class_color(box.best.class_id, num_classes) for box in boxes]
    shapes = [_Shape(x0, y0, colour, x1, y1, stroke) for (x0, y0, x1, y1), colour in zip(corners, colours)]
    for box, (left, top, _, _), colour in zip(boxes, corners, colours):
        best = box.best
        track_id = track_ids.get((best.x, best.y, best.w, best.h)) if track_ids else None
        shapes.append(_label(_label_text(box, show_scores, track_id), font, colour, left, top, W))
    return shapes


def _draw(pixels: np.ndarray, shapes: Sequence[_Shape]) -> None:
    """Draw ``shapes`` in order on ``pixels``, clipped to it, as Pillow's ``ImageDraw`` would."""
    for shape in shapes:
        if shape.label is None:
            _outline(pixels, shape)
        elif inside := _clip(pixels, shape.y, shape.y + shape.label.shape[0] - 1,
                             shape.x, shape.x + shape.label.shape[1] - 1):
            rows, cols = inside
            pixels[rows, cols] = shape.label[rows.start - shape.y:rows.stop - shape.y,
                                             cols.start - shape.x:cols.stop - shape.x]


def _outline(pixels: np.ndarray, box: _Shape) -> None:
    """Pillow's ``rectangle(outline=, width=)`` (``ImagingDrawRectangle``): ``stroke`` full rows at the top and the
    bottom, and ``stroke`` columns at each side over the rows between, where Pillow's vertical line leaves out its
    end pixel; a box thinner than two strokes gets rows and columns outside itself, as Pillow draws them."""
    x0, y0, x1, y1, s = box.x, box.y, box.x1, box.y1, box.stroke
    start, end = y0 + s, y1 - s + 1  # the side columns' line, drawn from start towards end
    first, last = (start, end - 1) if start <= end else (end + 1, start)
    for band in ((y0, y0 + s - 1, x0, x1), (y1 - s + 1, y1, x0, x1),
                 (first, last, x1 - s + 1, x1), (first, last, x0, x0 + s - 1)):
        if inside := _clip(pixels, *band):
            pixels[inside] = box.colour


def _clip(pixels: np.ndarray, top: int, bottom: int, left: int, right: int) -> tuple[slice, slice] | None:
    """The part of an inclusive pixel rectangle inside ``pixels`` as (rows, columns) slices, None if empty."""
    rows = slice(max(top, 0), min(bottom, pixels.shape[0] - 1) + 1)
    cols = slice(max(left, 0), min(right, pixels.shape[1] - 1) + 1)
    return (rows, cols) if rows.start < rows.stop and cols.start < cols.stop else None


def _pixel_box(det: Detection, width: int, height: int) -> tuple[int, int, int, int]:
    """Darknet's drawn corners: truncated toward zero, then clipped to the image."""
    left = min(max(int((det.x - det.w / 2) * width), 0), width - 1)
    right = min(max(int((det.x + det.w / 2) * width), 0), width - 1)
    top = min(max(int((det.y - det.h / 2) * height), 0), height - 1)
    bottom = min(max(int((det.y + det.h / 2) * height), 0), height - 1)
    return left, top, max(left, right), max(top, bottom)


def _label(text: str, font, colour: tuple[int, int, int], left: int, top: int, image_width: int) -> _Shape:
    """Text on a filled box above the box's top-left corner, or just inside it when there is no room above."""
    pixels = _label_pixels(text, font, colour)
    h, w = pixels.shape[0] - 1, pixels.shape[1] - 1
    x, y = max(0, min(left, image_width - w)), top - h if top - h >= 0 else top
    return _Shape(x, y, colour, label=pixels, text=text)


@lru_cache(maxsize=1024)
def _label_pixels(text: str, font, colour: tuple[int, int, int]) -> np.ndarray:
    """A label's pixels (read-only): its box filled with ``colour``, the text on it, drawn by Pillow once per text,
    font and colour.  Video frames repeat their labels, and FreeType's layout and rendering cost ~0.4 ms a label."""
    x0, y0, x1, y1 = _MEASURE.textbbox((0, 0), text, font=font)
    pad = max(1, (y1 - y0) // 5)
    w, h = x1 - x0 + 2 * pad, y1 - y0 + 2 * pad
    mask = Image.new("L", (w + 1, h + 1))
    ImageDraw.Draw(mask).text((pad - x0, pad - y0), text, fill=255, font=font)
    image = Image.new("RGB", (w + 1, h + 1), colour)  # the filled box, corners inclusive
    # The text's blend into the box as draw.text does it on RGB (both run ImagingFill2), at half its cost.
    image.paste(_text_colour(colour), (0, 0), mask)
    pixels = np.asarray(image)
    pixels.flags.writeable = False
    return pixels


_MEASURE = ImageDraw.Draw(Image.new("RGB", (1, 1)))
