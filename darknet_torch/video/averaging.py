"""Darknet's ``-avgframes N``: detections from the mean of the network's outputs over the last N frames.

Darknet's ``demo`` averages the YOLO layers' raw outputs before decoding them: the activated x, y, objectness and
class probabilities, and the *logarithmic* width/height (``tw``, ``th``; the box size is ``anchor * exp(t)``).  The
model here outputs decoded boxes, so the same mean is taken as the arithmetic mean of centres, objectness and
probabilities and the geometric mean of widths and heights.  The first frames average over the frames seen so far.
"""
from __future__ import annotations

from collections import deque

import torch
from torch import Tensor, nn


class FrameAveraging(nn.Module):
    """Wraps a detection model; each output row (one frame, in frame order) becomes the mean of the last
    ``frames`` rows.  Other attributes (``heads``, ``head_grids``, ``num_classes``...) are the wrapped model's."""

    def __init__(self, model: nn.Module, frames: int) -> None:
        super().__init__()
        self.model, self.frames = model, frames
        self._history: deque[Tensor] = deque(maxlen=frames)

    def __getattr__(self, name: str):
        try:
            return super().__getattr__(name)
        except AttributeError:
            return getattr(self._modules["model"], name)

    def forward(self, x: Tensor) -> Tensor:
        out = self.model(x)
        rows = []
        for row in out:
            logged = row.clone()
            logged[:, 2:4] = row[:, 2:4].clamp_min(1e-12).log()
            self._history.append(logged)
            mean = torch.stack(tuple(self._history)).mean(0)
            mean[:, 2:4] = mean[:, 2:4].exp()
            rows.append(mean)
        return torch.stack(rows)


def without_averaging(model: nn.Module) -> nn.Module:
    """The network inside :class:`FrameAveraging` (else ``model``): what to run when a frame is run again, which
    must not enter the averaging history twice."""
    return model.model if isinstance(model, FrameAveraging) else model
