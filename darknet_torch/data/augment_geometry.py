"""Darknet's training crop (jitter / letterbox window), resize and flip, with the boxes moved to match.

Pixels follow the OpenCV build's ``image_data_augmentation`` (AlexeyAB src/image_opencv.cpp): the crop window may
reach outside the image, where it is filled with the image's per-channel mean; the window is resized to the network
size with bilinear interpolation on pixel centres (``cv::resize`` INTER_LINEAR); then the result may be mirrored.
Boxes follow ``correct_boxes`` and ``fill_truth_detection`` (src/data.c) in float32, as C computes them.

Conventions: images are float32 ``[C, H, W]`` in [0, 1]; labels are float32 ``[N, 5]`` rows ``class cx cy w h`` in
units of the image width/height.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

_F32 = torch.float32


@dataclass(frozen=True)
class Crop:
    """The window Darknet cuts from an ``orig_w`` x ``orig_h`` image, as pixel offsets from each edge.

    The window spans columns ``[pleft, orig_w - pright)`` and rows ``[ptop, orig_h - pbot)``; a negative offset
    extends it beyond the image (padding), a positive one cuts into it.
    """

    orig_w: int
    orig_h: int
    pleft: int
    pright: int
    ptop: int
    pbot: int

    def __post_init__(self) -> None:
        if self.swidth < 1 or self.sheight < 1:
            raise ValueError(f"empty crop window {self.swidth}x{self.sheight} of a {self.orig_w}x{self.orig_h} image "
                             f"({self}); jitter/resize are too large")

    @property
    def swidth(self) -> int:
        return self.orig_w - self.pleft - self.pright

    @property
    def sheight(self) -> int:
        return self.orig_h - self.ptop - self.pbot

    @property
    def is_identity(self) -> bool:
        return self.pleft == self.pright == self.ptop == self.pbot == 0


def crop_resize(image: torch.Tensor, crop: Crop, net_w: int, net_h: int) -> torch.Tensor:
    """Cut ``crop`` from ``image`` ``[C, H, W]`` (mean-filled outside), then resize to ``[C, net_h, net_w]``."""
    channels, height, width = image.shape
    if (width, height) != (crop.orig_w, crop.orig_h):
        raise ValueError(f"crop was drawn for {crop.orig_w}x{crop.orig_h}, image is {width}x{height}")
    if crop.is_identity:
        window = image
    else:
        mean = image.to(torch.float64).mean(dim=(1, 2)).to(image.dtype)  # cv::mean of the whole source image
        window = mean[:, None, None].repeat(1, crop.sheight, crop.swidth)
        x0, x1 = max(crop.pleft, 0), min(crop.pleft + crop.swidth, width)
        y0, y1 = max(crop.ptop, 0), min(crop.ptop + crop.sheight, height)
        if x0 < x1 and y0 < y1:
            window[:, y0 - crop.ptop:y1 - crop.ptop, x0 - crop.pleft:x1 - crop.pleft] = image[:, y0:y1, x0:x1]
    if window.shape[1:] == (net_h, net_w):
        return window.clone()
    # Half-pixel bilinear without antialiasing is cv::resize INTER_LINEAR's sampling rule.
    return F.interpolate(window[None], size=(net_h, net_w), mode="bilinear", align_corners=False)[0]


def flip_horizontal(image: torch.Tensor) -> torch.Tensor:
    """Mirror left-right (``cv::flip(..., 1)``)."""
    return image.flip(-1)


def transform_boxes(labels: torch.Tensor, crop: Crop, flip: bool, net_w: int, net_h: int) -> torch.Tensor:
    """Move ``labels`` into the cropped, resized (and flipped) image; drop the ones Darknet drops.

    Matches ``correct_boxes`` + ``fill_truth_detection``: box edges are mapped, clipped to [0, 1] and turned back into
    ``cx cy w h``; a box narrower or shorter than one network pixel (``1/net_w``, ``1/net_h``) is dropped, and so are
    rows Darknet rejects as wrong annotations (``cx == cy == 0``, or lying entirely outside the original image).
    Returns float32 ``[M, 5]`` in input order (M <= N).
    """
    f32 = np.float32
    labels = labels.to(_F32)
    x, y, w, h = labels[:, 1], labels[:, 2], labels[:, 3], labels[:, 4]
    left, right, top, bottom = x - w / 2, x + w / 2, y - h / 2, y + h / 2  # read_boxes, float32
    wrong = ((x == 0) & (y == 0)) | (right < 0) | (bottom < 0) | (left > 1) | (top > 1)

    sx = f32(crop.swidth) / f32(crop.orig_w)
    sy = f32(crop.sheight) / f32(crop.orig_h)
    dx = (f32(crop.pleft) / f32(crop.orig_w)) / sx
    dy = (f32(crop.ptop) / f32(crop.orig_h)) / sy
    scale_x, scale_y = f32(1.0 / float(sx)), f32(1.0 / float(sy))  # passed as `1. / sx` into a float parameter
    left, right = left * float(scale_x) - float(dx), right * float(scale_x) - float(dx)
    top, bottom = top * float(scale_y) - float(dy), bottom * float(scale_y) - float(dy)
    if flip:
        left, right = 1 - right, 1 - left
    left, right, top, bottom = (edge.clamp(0, 1) for edge in (left, right, top, bottom))
    cx, cy = (left + right) / 2, (top + bottom) / 2
    bw, bh = (right - left).clamp(0, 1), (bottom - top).clamp(0, 1)

    lowest_w, lowest_h = float(f32(1) / f32(net_w)), float(f32(1) / f32(net_h))
    keep = (bw >= lowest_w) & (bh >= lowest_h) & ~wrong & (cx > 0) & (cx <= 1) & (cy > 0) & (cy <= 1)
    return torch.stack([labels[:, 0], cx, cy, bw, bh], dim=1)[keep]
