"""Layers that move values without learning: ``[upsample]``, ``[reorg3d]``, Darknet's old ``[reorg]``."""
from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn


class Upsample(nn.Module):
    """Nearest-neighbour upsampling times ``scale``; a negative cfg stride means Darknet's sum-downsampling."""

    def __init__(self, stride: int, scale: float) -> None:
        super().__init__()
        self.stride, self.scale = stride, scale

    def forward(self, x: Tensor) -> Tensor:
        if self.stride < 0:  # upsample_cpu(forward=0): each output sums a stride x stride block, times scale
            s = -self.stride
            out = F.avg_pool2d(x, s, s, divisor_override=1)
        else:
            out = F.interpolate(x, scale_factor=self.stride, mode="nearest")
        return out if self.scale == 1 else out * self.scale


class Reorg3d(nn.Module):
    """``[reorg3d]``: space-to-depth; output channel ``(dy*s+dx)*C + c`` holds ``x[c, y*s+dy, x*s+dx]``."""

    def __init__(self, stride: int) -> None:
        super().__init__()
        self.stride = stride

    def forward(self, x: Tensor) -> Tensor:
        b, c, h, w = x.shape
        s = self.stride
        x = x.reshape(b, c, h // s, s, w // s, s)              # b c y dy x dx
        return x.permute(0, 3, 5, 1, 2, 4).reshape(b, c * s * s, h // s, w // s)


class ReorgOld(nn.Module):
    """Darknet's old ``[reorg]`` (yolov2): ``reorg_cpu(forward=0)`` on the input dims, which is *not* space-to-depth.

    The input buffer is read as ``X[c/s²][h*s][w*s]`` and ``T[k][j][i] = X[k % (c/s²)][j*s + (k/(c/s²))/s]
    [i*s + (k/(c/s²))%s]`` is written flat and re-read as ``[c*s²][h/s][w/s]`` (golden/README.md 6.4).
    """

    def __init__(self, stride: int) -> None:
        super().__init__()
        self.stride = stride

    def forward(self, x: Tensor) -> Tensor:
        b, c, h, w = x.shape
        s = self.stride
        x = x.reshape(b, c // (s * s), h, s, w, s)              # b c2 j dy i dx
        t = x.permute(0, 3, 5, 1, 2, 4)                          # b dy dx c2 j i  == T[k=(dy*s+dx)*c2n + c2][j][i]
        return t.reshape(b, c * s * s, h // s, w // s)
