"""Darknet's photometric training augmentation: HSV distortion, Gaussian blur and Gaussian noise.

Semantics are those of the OpenCV build's ``image_data_augmentation`` (AlexeyAB src/image_opencv.cpp), which works on
8-bit HSV (hue in [0, 180), saturation and value in [0, 255]). Here the image stays float32 ``[C, H, W]`` in [0, 1],
so the 8-bit rounding of each intermediate is not reproduced, but every clamp is: saturation and value saturate at
1 before converting back, and the hue shift saturates at 0 and 255 (in 8-bit units) before wrapping modulo 180, so a
negative shift does not wrap reds round to purple as a true rotation would.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

# cv::getGaussianKernel's fixed kernels for odd sizes <= 7 when sigma <= 0.
_SMALL_GAUSSIAN = {
    1: (1.0,),
    3: (0.25, 0.5, 0.25),
    5: (0.0625, 0.25, 0.375, 0.25, 0.0625),
    7: (0.03125, 0.109375, 0.21875, 0.28125, 0.21875, 0.109375, 0.03125),
}
_HUE_UNITS = 180.0  # OpenCV's 8-bit hue range (2 degrees per unit)


def rgb_to_hsv(rgb: torch.Tensor) -> torch.Tensor:
    """``[3, H, W]`` RGB in [0, 1] -> HSV with hue in OpenCV 8-bit units [0, 180) and s, v in [0, 1]."""
    r, g, b = rgb
    value = rgb.max(dim=0).values
    spread = value - rgb.min(dim=0).values
    saturation = torch.where(value > 0, spread / value.clamp_min(1e-12), torch.zeros_like(value))
    safe = spread.clamp_min(1e-12)
    # cv::cvtColor RGB2HSV: the max channel decides the sector, red first, then green.
    degrees = torch.where(value == r, 60 * (g - b) / safe,
                          torch.where(value == g, 120 + 60 * (b - r) / safe, 240 + 60 * (r - g) / safe))
    degrees = torch.where(spread > 0, degrees, torch.zeros_like(degrees))
    degrees = torch.where(degrees < 0, degrees + 360, degrees)
    return torch.stack([degrees / 2, saturation, value])


def hsv_to_rgb(hsv: torch.Tensor) -> torch.Tensor:
    """Inverse of ``rgb_to_hsv``; hue in 8-bit units is taken modulo 180 (as cv::cvtColor HSV2RGB does)."""
    hue, saturation, value = hsv
    sector = torch.remainder(hue * (6 / _HUE_UNITS), 6)
    channels = []
    for offset in (5.0, 3.0, 1.0):  # red, green, blue
        k = torch.remainder(offset + sector, 6)
        ramp = torch.minimum(k, 4 - k).clamp(0, 1)
        channels.append(value - value * saturation * ramp)
    return torch.stack(channels)


def distort_hsv(image: torch.Tensor, dhue: float, dsat: float, dexp: float) -> torch.Tensor:
    """Shift hue by ``dhue`` turns (x179 units), scale saturation by ``dsat`` and value by ``dexp``.

    Identity (same values, new tensor) when ``dhue == 0`` and ``dsat == dexp == 1``, as Darknet skips the conversion.
    Images with fewer than 3 channels only get ``value * dexp`` (clamped); more than 3 channels are rejected, since
    Darknet's HSV path only handles RGB.
    """
    if dsat == 1 and dexp == 1 and dhue == 0:
        return image.clone()
    channels = image.shape[0]
    if channels < 3:
        return (image * dexp).clamp(0, 1)
    if channels > 3:
        raise ValueError(f"HSV distortion needs 1 to 3 channels, got {channels}")
    hue, saturation, value = rgb_to_hsv(image)
    hue = (hue + 179 * dhue).clamp(0, 255)  # 8-bit saturating add of 179*dhue
    hsv = torch.stack([hue, (saturation * dsat).clamp(0, 1), (value * dexp).clamp(0, 1)])
    return hsv_to_rgb(hsv).to(image.dtype)


def gaussian_kernel(ksize: int) -> torch.Tensor:
    """1-D kernel of ``cv::getGaussianKernel(ksize, 0)``: fixed taps up to 7, else sigma from the size."""
    if ksize < 1 or ksize % 2 == 0:
        raise ValueError(f"Gaussian kernel size must be odd and positive, got {ksize}")
    if ksize in _SMALL_GAUSSIAN:
        return torch.tensor(_SMALL_GAUSSIAN[ksize], dtype=torch.float32)
    sigma = ((ksize - 1) * 0.5 - 1) * 0.3 + 0.8
    offsets = torch.arange(ksize, dtype=torch.float64) - (ksize - 1) / 2
    taps = torch.exp(-(offsets ** 2) / (2 * sigma * sigma))
    return (taps / taps.sum()).to(torch.float32)


def _reflect101(size: int, pad: int) -> torch.Tensor:
    """Source index of each padded position under OpenCV's default BORDER_REFLECT_101 (any pad, any size)."""
    positions = torch.arange(-pad, size + pad)
    if size == 1:
        return torch.zeros_like(positions)
    period = 2 * size - 2
    folded = torch.remainder(positions, period)
    return torch.where(folded >= size, period - folded, folded)


def gaussian_blur(image: torch.Tensor, ksize: int) -> torch.Tensor:
    """``cv::GaussianBlur(src, dst, Size(ksize, ksize), 0)`` on ``[C, H, W]``: separable, reflect-101 borders."""
    kernel = gaussian_kernel(ksize).to(image.dtype)
    pad = ksize // 2
    channels, height, width = image.shape
    padded = image[:, _reflect101(height, pad)][:, :, _reflect101(width, pad)]
    rows = F.conv2d(padded[None], kernel.view(1, 1, ksize, 1).repeat(channels, 1, 1, 1), groups=channels)
    return F.conv2d(rows, kernel.view(1, 1, 1, ksize).repeat(channels, 1, 1, 1), groups=channels)[0]


def box_mask(labels: torch.Tensor, width: int, height: int) -> torch.Tensor:
    """``[H, W]`` bool: pixels inside any box's integer rectangle as image_data_augmentation builds it.

    ``left = (int)((x - w/2.) * W)``, ``width = (int)(w * W)`` (truncation), intersected with the image.
    """
    x, y, w, h = (labels[:, i].to(torch.float64) for i in range(1, 5))
    left = ((x - w / 2) * width).trunc()
    top = ((y - h / 2) * height).trunc()
    box_w = (labels[:, 3] * width).trunc().to(torch.float64)  # float32 product, then (int)
    box_h = (labels[:, 4] * height).trunc().to(torch.float64)
    cols = torch.arange(width, dtype=torch.float64)
    rows = torch.arange(height, dtype=torch.float64)
    in_x = (cols[None] >= left[:, None]) & (cols[None] < (left + box_w)[:, None])  # [N, W]
    in_y = (rows[None] >= top[:, None]) & (rows[None] < (top + box_h)[:, None])  # [N, H]
    return (in_y.T.to(torch.float32) @ in_x.to(torch.float32)) > 0


def blur(image: torch.Tensor, strength: int, labels: torch.Tensor) -> torch.Tensor:
    """Darknet's ``blur`` augmentation on a ``[C, H, W]`` image whose boxes are ``labels`` (``[N, 5]``).

    ``strength == 1`` blurs the background only (17x17 kernel, boxes keep their sharp pixels);
    ``strength > 1`` blurs everything with a ``(strength // 2) * 2 + 1`` kernel.
    """
    if strength <= 0:
        return image.clone()
    if strength > 1:
        return gaussian_blur(image, (strength // 2) * 2 + 1)
    blurred = gaussian_blur(image, 17)
    keep_sharp = box_mask(labels, image.shape[2], image.shape[1])
    return torch.where(keep_sharp, image, blurred)


def add_gaussian_noise(image: torch.Tensor, stddev: int, rng: np.random.Generator) -> torch.Tensor:
    """Darknet's ``gaussian_noise``: ``cv::randn`` into an 8-bit image, so negative noise saturates to 0.

    Noise is N(0, stddev) in 8-bit levels (stddev clamped to [0, 127]), rounded, clipped to [0, 255], then added
    with saturation.
    """
    stddev = min(max(stddev, 0), 127)
    noise = np.clip(np.rint(rng.normal(0.0, stddev, size=image.shape)), 0, 255) / 255.0
    return (image + torch.from_numpy(noise).to(image.dtype)).clamp(0, 1)


def rand_scale(limit: float, rng: np.random.Generator) -> float:
    """Darknet's ``rand_scale``: uniform in [1, limit] (either order), inverted with probability 1/2; float32.

    ``limit == 0`` counts as 1, as Darknet's ``load_thread`` resets a zero saturation/exposure to 1.
    """
    low, high = sorted((np.float32(1), np.float32(limit if limit != 0 else 1)))
    scale = np.float32(rng.random()) * (high - low) + low
    return float(scale) if rng.integers(2) else float(np.float32(1.0 / float(scale)))
