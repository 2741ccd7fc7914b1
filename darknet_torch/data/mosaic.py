"""Darknet's 4-image mosaic and 2-image mixup for detection (OpenCV path of ``load_data_detection``, src/data.c).

Mosaic: a cut point ``(cut_x, cut_y)`` splits the network-sized canvas into 4 quadrants, tile 0 top-left, 1 top-right,
2 bottom-left, 3 bottom-right. Each tile is a fully augmented network-sized image; the quadrant shows the part of it
next to the cut, shifted towards the image's real content when the crop padded that side (``*_shift``). Boxes move
with their tile (``blend_truth_mosaic``): without ``mosaic_bound`` they are only clipped to the canvas, so a box may
extend past its quadrant over a neighbouring tile, exactly as in Darknet; with ``mosaic_bound`` they are clipped to
their quadrant.

Conventions: images float32 ``[C, H, W]``; labels float32 ``[N, 5]`` rows ``class cx cy w h`` relative to the canvas.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from darknet_torch.data.augment_geometry import Crop

_MIN_OFFSET = np.float32(0.2)  # cut points stay 20 % away from the borders


@dataclass(frozen=True)
class TileShift:
    """How far each tile is pushed into its quadrant, in network pixels (Darknet's left/right/top/bot_shift)."""

    left: int
    right: int
    top: int
    bot: int


def draw_cut(net_w: int, net_h: int, rng: np.random.Generator) -> tuple[int, int]:
    """``cut_x`` in ``[int(0.2 w), int(0.8 w)]`` and ``cut_y`` likewise, inclusive (Darknet's ``rand_int``)."""
    def one(size: int) -> int:
        low = int(np.float32(size) * _MIN_OFFSET)
        high = int(np.float32(size) * (np.float32(1) - _MIN_OFFSET))
        return int(rng.integers(low, high, endpoint=True))

    return one(net_w), one(net_h)


def tile_shift(crop: Crop, flip: bool, cut: tuple[int, int], net_w: int, net_h: int) -> TileShift:
    """Darknet's shifts: the padding on each side, in network pixels, capped by the quadrant size.

    After a flip the left and right paddings trade places.
    """
    cut_x, cut_y = cut
    pleft, pright = (crop.pright, crop.pleft) if flip else (crop.pleft, crop.pright)
    # `-p * w / ow` is C integer division; negative quotients are clamped to 0, so floor division is equivalent.
    return TileShift(
        left=min(cut_x, max(0, -pleft * net_w // crop.orig_w)),
        right=min(net_w - cut_x, max(0, -pright * net_w // crop.orig_w)),
        top=min(cut_y, max(0, -crop.ptop * net_h // crop.orig_h)),
        bot=min(net_h - cut_y, max(0, -crop.pbot * net_h // crop.orig_h)),
    )


def _source_origin(tile: int, cut: tuple[int, int], shift: TileShift, net_w: int, net_h: int) -> tuple[int, int]:
    """Top-left pixel ``(x, y)`` of the tile image that lands at the quadrant's top-left corner."""
    cut_x, cut_y = cut
    x = net_w - cut_x - shift.right if tile in (0, 2) else shift.left
    y = net_h - cut_y - shift.bot if tile in (0, 1) else shift.top
    return x, y


def paste_tile(canvas: torch.Tensor, tile_image: torch.Tensor, tile: int, cut: tuple[int, int],
               shift: TileShift) -> None:
    """Copy the quadrant ``tile`` (0..3) of ``canvas`` ``[C, H, W]`` from ``tile_image`` (same shape), in place."""
    _, net_h, net_w = canvas.shape
    cut_x, cut_y = cut
    x0, x1 = (0, cut_x) if tile in (0, 2) else (cut_x, net_w)
    y0, y1 = (0, cut_y) if tile in (0, 1) else (cut_y, net_h)
    src_x, src_y = _source_origin(tile, cut, shift, net_w, net_h)
    canvas[:, y0:y1, x0:x1] = tile_image[:, src_y:src_y + (y1 - y0), src_x:src_x + (x1 - x0)]


def place_tile_boxes(labels: torch.Tensor, tile: int, cut: tuple[int, int], shift: TileShift, net_w: int,
                     net_h: int, mosaic_bound: bool) -> torch.Tensor:
    """Move a tile's boxes onto the canvas and keep the ones Darknet keeps (``blend_truth_mosaic``), float32."""
    f32 = np.float32
    cut_x, cut_y = cut
    w, h = float(net_w), float(net_h)
    x, y, bw, bh = (labels[:, i].to(torch.float32) for i in range(1, 5))
    if tile in (0, 2):
        x = x - float(f32(net_w - cut_x - shift.right) / f32(net_w))
    else:
        x = x + float(f32(cut_x - shift.left) / f32(net_w))
    if tile in (0, 1):
        y = y - float(f32(net_h - cut_y - shift.bot) / f32(net_h))
    else:
        y = y + float(f32(cut_y - shift.top) / f32(net_h))

    def edges(cx: torch.Tensor, cy: torch.Tensor, ww: torch.Tensor, hh: torch.Tensor) -> tuple[torch.Tensor, ...]:
        # `int left = (xb - wb / 2) * w;` -- float32 expression truncated towards zero
        return (((cx - ww / 2) * w).trunc(), ((cx + ww / 2) * w).trunc(),
                ((cy - hh / 2) * h).trunc(), ((cy + hh / 2) * h).trunc())

    left, right, top, bot = edges(x, y, bw, bh)
    if mosaic_bound:
        x_lo, x_hi = (0.0, float(cut_x)) if tile in (0, 2) else (float(cut_x), w)
        y_lo, y_hi = (0.0, float(cut_y)) if tile in (0, 1) else (float(cut_y), h)
        left, right = left.clamp_min(x_lo), right.clamp_max(x_hi)
        top, bot = top.clamp_min(y_lo), bot.clamp_max(y_hi)
        x, bw = (right + left) / 2 / w, (right - left) / w
        y, bh = (bot + top) / 2 / h, (bot - top) / h
    else:
        # Shrink the box by whatever sticks out of the canvas; the four checks use the edges computed above.
        over_left = torch.where(left < 0, left / w, torch.zeros_like(left))
        x, bw = x - over_left / 2, bw + over_left
        over_right = torch.where(right > w, (right - w) / w, torch.zeros_like(right))
        x, bw = x - over_right / 2, bw - over_right
        over_top = torch.where(top < 0, top / h, torch.zeros_like(top))
        y, bh = y - over_top / 2, bh + over_top
        over_bot = torch.where(bot > h, (bot - h) / h, torch.zeros_like(bot))
        y, bh = y - over_bot / 2, bh - over_bot
        left, right, top, bot = edges(x, y, bw, bh)

    lowest_w, lowest_h = float(f32(1) / f32(net_w)), float(f32(1) / f32(net_h))
    inside = (left >= 0) & (right <= w) & (top >= 0) & (bot <= h)
    sane = (bw > 0) & (bw < 1) & (bh > 0) & (bh < 1) & (x > 0) & (x < 1) & (y > 0) & (y < 1)
    keep = inside & sane & (bw > lowest_w) & (bh > lowest_h)
    return torch.stack([labels[:, 0].to(torch.float32), x, y, bw, bh], dim=1)[keep]


def mixup(first: tuple[torch.Tensor, torch.Tensor], second: tuple[torch.Tensor, torch.Tensor],
          max_boxes: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Darknet's detection mixup: pixels ``0.5*second + 0.5*first``; the first image's boxes, then the second's,
    at most ``max_boxes`` in all (``blend_images_cv`` + ``blend_truth``)."""
    image = second[0] * 0.5 + first[0] * 0.5
    return image, torch.cat([first[1], second[1]])[:max_boxes]
