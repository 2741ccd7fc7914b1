"""Darknet's detection training augmentation (``load_data_detection``, OpenCV build, AlexeyAB src/data.c).

Per image Darknet draws a jittered crop window, a flip, HSV factors, a blur mode and noise; applies them (see
``augment_geometry`` and ``augment_color``); then, with probability 1/2 per sample, combines 4 images into a mosaic
(``mosaic=1``) or 2 into a mixup (``mixup=1``), see ``mosaic``. The caller asks ``draw_source_count`` how many
images the next sample needs, loads them, and passes them to ``augment``.

Randomness comes only from the ``numpy.random.Generator`` passed in, so a sample is a pure function of the generator
state and the inputs (training resumes bit-exactly from a saved generator state). The draws have Darknet's
distributions and float32 arithmetic, not its C ``rand()`` sequence.

Not reproduced, deliberately: Darknet decides mosaic/mixup once per loader thread chunk of a batch, here once per
sample; OpenCV's 8-bit rounding of intermediate images (see ``augment_color``); ``track``/``contrastive`` modes.

Conventions: images float32 ``[C, H, W]`` in [0, 1]; labels float32 ``[N, 5]`` rows ``class cx cy w h`` relative to
the image; outputs are ``[C, net_h, net_w]`` and ``[M, 5]`` relative to the network input.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any, Sequence

import numpy as np
import torch

from darknet_torch.config.net import NetSettings, schema_default
from darknet_torch.config.sections import Section
from darknet_torch.data.augment_color import add_gaussian_noise, blur, distort_hsv, rand_scale
from darknet_torch.data.augment_geometry import Crop, crop_resize, flip_horizontal, transform_boxes
from darknet_torch.data.mosaic import draw_cut, mixup, paste_tile, place_tile_boxes, tile_shift
from darknet_torch.errors import CfgError

Sample = tuple[torch.Tensor, torch.Tensor]
# AugmentConfig fields read from the last detection layer, and their cfg keys there; the rest come from [net].
_HEAD_KEYS = {"jitter": "jitter", "resize": "resize", "max_boxes": "max"}


def _head_default(field_name: str) -> Any:
    return schema_default(_HEAD_KEYS[field_name], "yolo")


@dataclass(frozen=True)
class AugmentConfig:
    """Augmentation settings named as their cfg keys, with Darknet's defaults (from the cfg schema).

    ``[net]``: hue, saturation, exposure, flip, blur, gaussian_noise, mosaic, mosaic_bound, mixup, letter_box.
    Last ``[yolo]``/``[region]`` layer: jitter, resize, and ``max`` (here ``max_boxes``: labels kept per image).
    """

    jitter: float = _head_default("jitter")
    resize: float = _head_default("resize")
    max_boxes: int = _head_default("max_boxes")
    hue: float = schema_default("hue")
    saturation: float = schema_default("saturation")
    exposure: float = schema_default("exposure")
    flip: bool = schema_default("flip")
    blur: int = schema_default("blur")
    gaussian_noise: int = schema_default("gaussian_noise")
    mosaic: bool = schema_default("mosaic")
    mosaic_bound: bool = schema_default("mosaic_bound")
    mixup: bool = False  # Darknet's mixup=1 (an int key, see from_cfg)
    letter_box: bool = schema_default("letter_box")

    def __post_init__(self) -> None:
        if not 0 <= self.jitter < 0.5:
            raise CfgError(f"jitter={self.jitter} must be in [0, 0.5) (Darknet's crop window would be empty)")
        if self.resize <= 0:
            raise CfgError(f"resize={self.resize} must be > 0")
        if self.resize > 1 and 2 * self.jitter + (1 - 1 / self.resize) >= 1:
            raise CfgError(f"jitter={self.jitter} with resize={self.resize}: the random crop window can be empty "
                           f"(each side may lose jitter + (1 - 1/resize)/2 of the image, so 2*jitter + 1 - 1/resize "
                           f"must be < 1); lower jitter below {1 / (2 * self.resize):.4g} or resize")
        if self.max_boxes < 1:
            raise CfgError(f"max={self.max_boxes} must be >= 1")

    @classmethod
    def from_cfg(cls, net: NetSettings | Section | Mapping[str, Any],
                 head: Section | Mapping[str, Any]) -> AugmentConfig:
        """From the ``[net]`` settings (``model.net``; a section or mapping is read with :meth:`NetSettings.of`) and
        the last ``[yolo]``/``[region]`` section (or a mapping; a missing or None value is the default).

        Darknet's ``mixup`` is an int: only ``mixup=1`` means image mixup (``mosaic=1`` takes precedence).
        """
        net = NetSettings.of(net)
        values: dict[str, Any] = {}
        for spec in fields(cls):
            head_key = _HEAD_KEYS.get(spec.name)
            if head_key is None:
                values[spec.name] = getattr(net, spec.name)
            elif head.get(head_key) is not None:
                values[spec.name] = head.get(head_key)
        values["mixup"] = net.mixup == 1
        try:
            return cls(**values)
        except CfgError as exc:
            if isinstance(head, Section):  # name the head's file and line
                raise head.error(str(exc)) from None
            raise


@dataclass(frozen=True)
class AugmentDraw:
    """One image's random choices: crop window, flip, HSV factors, blur mode (before the small-object limit), noise."""

    crop: Crop
    flip: bool
    dhue: float
    dsat: float
    dexp: float
    blur: int
    gaussian_noise: int


def _precalc(low: float, high: float, part: np.float32) -> np.float32:
    """Darknet's ``rand_precalc_random`` in float32."""
    low, high = sorted((np.float32(low), np.float32(high)))
    return part * (high - low) + low


def _resize_range(size: int, resize: np.float32) -> tuple[int, int]:
    """Darknet's extra crop range from ``resize``: (min_rd, max_rd) in pixels, min <= 0 <= max."""
    one = np.float32(1)
    down = resize if resize <= 1 else one / resize
    up = resize if resize >= 1 else one / resize
    size, two = np.float32(size), np.float32(2)
    return int(size * (one - one / down) / two), int(size * (one - one / up) / two)


def _letterbox_pads(ow: int, oh: int, net_w: int, net_h: int, pads: list[int]) -> None:
    """Grow the crop window to the network's aspect ratio (Darknet's ``letter_box`` branch), in place."""
    f = np.float32
    net_ar = f(net_w) / f(net_h)
    if (f(ow) / f(oh)) / net_ar > 1:
        delta = (f(ow) / net_ar - f(oh)) / f(2)
        pads[2], pads[3] = int(f(pads[2]) - delta), int(f(pads[3]) - delta)
    else:
        delta = (f(oh) * net_ar - f(ow)) / f(2)
        pads[0], pads[1] = int(f(pads[0]) - delta), int(f(pads[1]) - delta)


def _to_corner(pads: list[int], tile: int, flip: bool) -> None:
    """Mosaic: push the whole crop margin to one side so the tile's content sits next to the cut, in place."""
    pleft, pright, ptop, pbot = pads
    if (tile in (0, 2)) != flip:
        pleft, pright = 0, pright + pleft
    else:
        pleft, pright = pleft + pright, 0
    if tile in (0, 1):
        ptop, pbot = 0, pbot + ptop
    else:
        ptop, pbot = ptop + pbot, 0
    pads[:] = [pleft, pright, ptop, pbot]


def draw_augmentation(cfg: AugmentConfig, orig_w: int, orig_h: int, net_w: int, net_h: int,
                      rng: np.random.Generator, mosaic_tile: int | None = None) -> AugmentDraw:
    """Draw one image's augmentation as ``load_data_detection`` does (``mosaic_tile``: 0..3 inside a mosaic)."""
    f = np.float32
    jitter_w, jitter_h = int(f(orig_w) * f(cfg.jitter)), int(f(orig_h) * f(cfg.jitter))
    resize = f(cfg.resize)
    resize_r1, resize_r2 = f(rng.random()), f(rng.random())
    r1, r2, r3, r4 = (f(v) for v in rng.random(4))
    flip = bool(cfg.flip) and bool(rng.integers(2))
    dhue = float(_precalc(-cfg.hue, cfg.hue, f(rng.random())))
    dsat, dexp = rand_scale(cfg.saturation, rng), rand_scale(cfg.exposure, rng)
    blur_mode = 0
    if cfg.blur:
        blur_mode = (0, 1, cfg.blur)[int(rng.integers(3))]  # none / background only / whole image
    noise = cfg.gaussian_noise if cfg.gaussian_noise and rng.integers(2) else 0

    pads = [int(_precalc(-jitter_w, jitter_w, r1)), int(_precalc(-jitter_w, jitter_w, r2)),
            int(_precalc(-jitter_h, jitter_h, r3)), int(_precalc(-jitter_h, jitter_h, r4))]
    min_rdw, max_rdw = _resize_range(orig_w, resize)
    min_rdh, max_rdh = _resize_range(orig_h, resize)
    if resize < 1:
        max_rdw = max_rdh = 0  # downsize only
    extra = (_precalc(min_rdw, max_rdw, resize_r1), _precalc(min_rdw, max_rdw, resize_r2),
             _precalc(min_rdh, max_rdh, resize_r1), _precalc(min_rdh, max_rdh, resize_r2))
    pads = [int(f(p) + e) for p, e in zip(pads, extra)]
    if cfg.letter_box:
        _letterbox_pads(orig_w, orig_h, net_w, net_h, pads)
    if mosaic_tile is not None and not rng.integers(2):
        _to_corner(pads, mosaic_tile, flip)
    crop = Crop(orig_w, orig_h, pleft=pads[0], pright=pads[1], ptop=pads[2], pbot=pads[3])
    return AugmentDraw(crop, flip, dhue, dsat, dexp, blur_mode, noise)


def _effective_blur(blur_mode: int, labels: torch.Tensor, net_w: int, net_h: int) -> int:
    """Darknet limits a whole-image blur to 1/8 of the smallest object side in pixels (0 without objects)."""
    if blur_mode <= 1:
        return blur_mode
    smallest = 0
    if len(labels):
        smallest = int(min((labels[:, 3] * net_w).min().item(), (labels[:, 4] * net_h).min().item()))
    return min(blur_mode, smallest // 8)


def apply_augmentation(image: torch.Tensor, labels: torch.Tensor, draw: AugmentDraw, net_w: int, net_h: int,
                       max_boxes: int, rng: np.random.Generator) -> Sample:
    """Apply ``draw`` to one image: ``[C, H, W]`` + ``[N, 5]`` -> ``[C, net_h, net_w]`` + ``[M, 5]``.

    Labels are shuffled and cut to ``max_boxes`` first (``randomize_boxes``; Darknet keeps a random subset).
    """
    labels = torch.as_tensor(labels, dtype=torch.float32).reshape(-1, 5)
    labels = labels[torch.from_numpy(rng.permutation(len(labels)))][:max_boxes]
    boxes = transform_boxes(labels, draw.crop, draw.flip, net_w, net_h)
    out = crop_resize(image, draw.crop, net_w, net_h)
    if draw.flip:
        out = flip_horizontal(out)
    out = distort_hsv(out, draw.dhue, draw.dsat, draw.dexp)
    strength = _effective_blur(draw.blur, boxes, net_w, net_h)
    if strength:
        out = blur(out, strength, boxes)
    if draw.gaussian_noise:
        out = add_gaussian_noise(out, draw.gaussian_noise, rng)
    return out, boxes


def draw_source_count(cfg: AugmentConfig, rng: np.random.Generator) -> int:
    """Images the next sample needs: 4 (mosaic) or 2 (mixup) with probability 1/2 when enabled, else 1."""
    if not (cfg.mosaic or cfg.mixup) or not rng.integers(2):
        return 1
    return 4 if cfg.mosaic else 2


def augment(sources: Sequence[Sample], cfg: AugmentConfig, net_w: int, net_h: int,
            rng: np.random.Generator) -> Sample:
    """One training sample from 1, 2 (mixup) or 4 (mosaic) ``(image, labels)`` sources; see the module docstring."""
    def one(index: int, tile: int | None) -> tuple[AugmentDraw, Sample]:
        image, labels = sources[index]
        draw = draw_augmentation(cfg, image.shape[2], image.shape[1], net_w, net_h, rng, tile)
        return draw, apply_augmentation(image, labels, draw, net_w, net_h, cfg.max_boxes, rng)

    if len(sources) == 1:
        return one(0, None)[1]
    if len(sources) == 2:
        return mixup(one(0, None)[1], one(1, None)[1], cfg.max_boxes)
    if len(sources) != 4:
        raise ValueError(f"augment takes 1, 2 (mixup) or 4 (mosaic) sources, got {len(sources)}")
    cut = draw_cut(net_w, net_h, rng)
    canvas = torch.zeros((sources[0][0].shape[0], net_h, net_w), dtype=torch.float32)
    placed: list[torch.Tensor] = []
    count = 0
    for tile in range(4):
        draw, (tile_image, tile_boxes) = one(tile, tile)
        shift = tile_shift(draw.crop, draw.flip, cut, net_w, net_h)
        paste_tile(canvas, tile_image, tile, cut, shift)
        kept = place_tile_boxes(tile_boxes[:cfg.max_boxes - count], tile, cut, shift, net_w, net_h,
                                cfg.mosaic_bound)
        placed.append(kept)
        count += len(kept)
    return canvas, torch.cat(placed)
