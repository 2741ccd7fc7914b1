"""``[maxpool]``, ``[local_avgpool]`` and ``[avgpool]`` with Darknet's padding rules.

Darknet pads maxpool by ``padding`` pixels in total (default ``size-1``), starting the window at ``-padding/2``; taps
outside the image are ignored (i.e. -inf padding, never zeros).  Size 2 / stride 1 therefore pads only right/bottom.
Proven by tests/model/test_golden_layers.py on the mini yolov3-tiny (maxpool_s1_k2) and the SPP nets.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class MaxPool(nn.Module):
    """Darknet max pooling; ``out = (in + padding - size) // stride + 1``."""

    def __init__(self, size: int, stride: tuple[int, int], padding: int) -> None:
        super().__init__()
        self.size, self.stride = size, stride
        self.before = padding // 2
        self.after = padding - self.before

    def forward(self, x: Tensor) -> Tensor:
        # Extra right/bottom padding beyond what the last window needs is dropped by floor mode, so fixed pads are exact.
        if self.before == self.after and self.before <= self.size // 2:
            return F.max_pool2d(x, self.size, self.stride, padding=self.before)
        # e.g. size 2 stride 2 on even sizes: no copy, no fill.  A traced graph (ONNX) keeps the padding, which is
        # right at every input size, since whether the padding is read depends on the size.
        if self.before == 0 and not torch.jit.is_tracing() and self._pad_unread(x.shape[2], x.shape[3]):
            return F.max_pool2d(x, self.size, self.stride)
        pads = (self.before, self.after, self.before, self.after)
        return F.max_pool2d(F.pad(x, pads, value=float("-inf")), self.size, self.stride)

    def _pad_unread(self, h: int, w: int) -> bool:
        """True when no window reaches the right/bottom padding: the unpadded pooling has as many windows."""
        (sy, sx), pad = self.stride, self.after
        return ((h - self.size) // sy == (h + pad - self.size) // sy
                and (w - self.size) // sx == (w + pad - self.size) // sx)

    def extra_repr(self) -> str:
        return f"size={self.size}, stride={self.stride}, pad=({self.before},{self.after})"


class MaxPoolDepth(nn.Module):
    """``maxpool_depth=1``: max over channels ``g, g+out_c, g+2*out_c, ...`` for each output channel g."""

    def __init__(self, out_channels: int) -> None:
        super().__init__()
        self.out_channels = out_channels

    def forward(self, x: Tensor) -> Tensor:
        b, c, h, w = x.shape
        groups = -(-c // self.out_channels)
        missing = groups * self.out_channels - c
        if missing:
            x = F.pad(x, (0, 0, 0, 0, 0, missing), value=float("-inf"))
        return x.reshape(b, groups, self.out_channels, h, w).amax(dim=1)


class LocalAvgPool(nn.Module):
    """``[local_avgpool]``: like maxpool's geometry, averaging only the taps inside the image."""

    def __init__(self, size: int, stride: tuple[int, int], padding: int) -> None:
        super().__init__()
        self.size, self.stride = size, stride
        self.pads = (padding // 2, padding - padding // 2) * 2

    def forward(self, x: Tensor) -> Tensor:
        total = F.avg_pool2d(F.pad(x, self.pads), self.size, self.stride, divisor_override=1)
        ones = F.pad(torch.ones_like(x[:1, :1]), self.pads)
        count = F.avg_pool2d(ones, self.size, self.stride, divisor_override=1)
        return total / count


class GlobalAvgPool(nn.Module):
    """``[avgpool]``: mean over the whole feature map, giving ``C x 1 x 1``."""

    def forward(self, x: Tensor) -> Tensor:
        return x.mean(dim=(2, 3), keepdim=True)
