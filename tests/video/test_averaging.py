"""-avgframes: the mean of the last N frames' outputs, widths and heights in log space as Darknet averages them."""
from __future__ import annotations

import math

import torch
from torch import nn

from darknet_torch.video.averaging import FrameAveraging


class Echo(nn.Module):
    """A stand-in model whose output rows are its inputs (one 1 x 6 box row per frame) and that has attributes."""

    num_classes = 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


def test_mean_over_the_last_frames_across_batches():
    model = FrameAveraging(Echo(), frames=2)
    assert model.num_classes == 1  # the wrapped model's attributes show through
    rows = [[0.2, 0.4, 4.0, 1.0, 0.5, 0.9], [0.4, 0.6, 1.0, 4.0, 0.7, 0.1], [0.6, 0.8, 9.0, 9.0, 0.9, 0.5]]
    first = model(torch.tensor([rows[0]]).view(1, 1, 6))
    assert torch.equal(first[0, 0], torch.tensor(rows[0]))  # one frame seen: itself
    rest = model(torch.tensor(rows[1:]).view(2, 1, 6))
    expected = [[0.3, 0.5, 2.0, 2.0, 0.6, 0.5], [0.5, 0.7, 3.0, 6.0, 0.8, 0.3]]  # sqrt(4*1), sqrt(1*9)...
    assert torch.allclose(rest[:, 0], torch.tensor(expected), atol=1e-6)
    assert math.isclose(rest[1, 0, 3].item(), math.sqrt(4 * 9), rel_tol=1e-6)
