"""``[maxpool]`` against a loop transcription of Darknet's forward_maxpool_layer, windows wholly in the padding too."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from darknet_torch.model.layers.pooling import MaxPool, MaxPoolDepth

FLT_MAX = float(np.finfo(np.float32).max)


def _maxpool_loops(x: np.ndarray, size: int, stride: int, pad: int) -> np.ndarray:
    """forward_maxpool_layer for one image: the max starts at -FLT_MAX, taps outside the image are skipped."""
    c, h, w = x.shape
    out_h, out_w = (h + pad - size) // stride + 1, (w + pad - size) // stride + 1
    out = np.full((c, out_h, out_w), -FLT_MAX, np.float32)
    for i in range(out_h):
        for j in range(out_w):
            for n in range(size):
                for m in range(size):
                    y, x_ = -(pad // 2) + i * stride + n, -(pad // 2) + j * stride + m
                    if 0 <= y < h and 0 <= x_ < w:
                        out[:, i, j] = np.maximum(out[:, i, j], x[:, y, x_])
    return out


@pytest.mark.parametrize("grad", [False, True])
@pytest.mark.parametrize("size,stride,pad", [(1, 1, 2), (1, 1, 4), (2, 2, 4), (3, 1, 6), (2, 1, 1)])
def test_windows_in_the_padding_are_minus_flt_max_not_inf(size, stride, pad, grad):
    """-inf used to reach the next conv as inf/NaN where Darknet computes with the finite -FLT_MAX."""
    x = torch.randn(1, 2, 5, 6, requires_grad=grad)
    out = MaxPool(size, (stride, stride), pad)(x)
    expected = _maxpool_loops(x.detach()[0].numpy(), size, stride, pad)
    np.testing.assert_array_equal(out.detach()[0].numpy(), expected)
    if grad:
        out.sum().backward()
        assert torch.isfinite(x.grad).all()


def test_depth_channels_beyond_the_input_are_minus_flt_max():
    out = MaxPoolDepth(4)(torch.randn(1, 3, 2, 2))
    assert (out[:, 3] == -FLT_MAX).all()
