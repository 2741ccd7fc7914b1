"""``[maxpool]``, ``[local_avgpool]`` and ``[avgpool]`` with Darknet's padding rules.

Darknet pads maxpool by ``padding`` pixels in total (default ``size-1``), starting the window at ``-padding/2``; taps
outside the image are ignored (padding with the lowest finite value, never zeros).  Size 2 / stride 1 therefore pads
only right/bottom.  A window wholly in the padding gives -FLT_MAX, Darknet's initial max, not -inf.
Proven by tests/model/test_golden_layers.py on the mini yolov3-tiny (maxpool_s1_k2) and the SPP nets.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def lowest(dtype: torch.dtype) -> float:
    """Darknet's ``-FLT_MAX`` (the max before any tap) in ``dtype``: finite, so a following conv stays finite."""
    return -torch.finfo(dtype).max


class MaxPool(nn.Module):
    """Darknet max pooling; ``out = (in + padding - size) // stride + 1``."""

    def __init__(self, size: int, stride: tuple[int, int], padding: int) -> None:
        super().__init__()
        self.size, self.stride = size, stride
        self.before = padding // 2
        self.after = padding - self.before

    def forward(self, x: Tensor) -> Tensor:
        separable = _separable_applies(x)
        # Extra right/bottom padding beyond what the last window needs is dropped by floor mode, so fixed pads are exact.
        if not separable and self.before == self.after and self.before <= self.size // 2:
            return F.max_pool2d(x, self.size, self.stride, padding=self.before)
        # e.g. size 2 stride 2 on even sizes: no copy, no fill.  A traced graph (ONNX) keeps the padding, which is
        # right at every input size, since whether the padding is read depends on the size.
        if not (self.before == 0 and not torch.jit.is_tracing() and self._pad_unread(x.shape[2], x.shape[3])):
            x = F.pad(x, (self.before, self.after, self.before, self.after), value=lowest(x.dtype))
        if separable:
            return separable_max_pool2d(x, self.size, self.stride)
        return F.max_pool2d(x, self.size, self.stride)

    def _pad_unread(self, h: int, w: int) -> bool:
        """True when no window reaches the right/bottom padding: the unpadded pooling has as many windows."""
        (sy, sx), pad = self.stride, self.after
        return ((h - self.size) // sy == (h + pad - self.size) // sy
                and (w - self.size) // sx == (w + pad - self.size) // sx)

    def extra_repr(self) -> str:
        return f"size={self.size}, stride={self.stride}, pad=({self.before},{self.after})"


def _separable_applies(x: Tensor) -> bool:
    """Inference on the CPU, outside a traced graph: the separable form is bit-identical there and 3-17x faster
    than ``F.max_pool2d`` (whose NCHW kernel took a third of yolov3-tiny's forward).  With gradients the
    ``F.max_pool2d`` path stays: its backward routes each gradient to one arg-max tap, as Darknet's does."""
    return (x.device.type == "cpu" and x.dim() == 4 and not (torch.is_grad_enabled() and x.requires_grad)
            and not torch.jit.is_tracing() and not torch.onnx.is_in_onnx_export())


def separable_max_pool2d(x: Tensor, size: int, stride: tuple[int, int]) -> Tensor:
    """Unpadded ``size x size`` max pooling (floor mode) as a max over ``size`` strided column views, then over
    ``size`` row views of that: the maximum of the same taps, so the result equals ``F.max_pool2d`` bit for bit."""
    (sy, sx), height, width = stride, x.shape[2], x.shape[3]
    out_h, out_w = (height - size) // sy + 1, (width - size) // sx + 1
    if size == 1:
        return x[:, :, : sy * (out_h - 1) + 1 : sy, : sx * (out_w - 1) + 1 : sx].clone()

    def columns(j: int) -> Tensor:
        return x[..., j : j + sx * (out_w - 1) + 1 : sx]

    rows_max = torch.maximum(columns(0), columns(1))
    for j in range(2, size):
        torch.maximum(rows_max, columns(j), out=rows_max)

    def rows(i: int) -> Tensor:
        return rows_max[:, :, i : i + sy * (out_h - 1) + 1 : sy]

    out = torch.maximum(rows(0), rows(1))
    for i in range(2, size):
        torch.maximum(out, rows(i), out=out)
    return out


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
            x = F.pad(x, (0, 0, 0, 0, 0, missing), value=lowest(x.dtype))
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
