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


def test_the_thread_check_runs_the_network_without_the_averaging():
    """The video pipeline's first-batch check (outputs on other thread counts) runs frames again: through
    -avgframes they would enter the history twice and the means would differ on any count."""
    from darknet_torch.video.averaging import without_averaging
    from darknet_torch.video.pipeline import _keep_count_if_outputs_depend_on_it
    from darknet_torch.video.tuning import ForwardThreads

    class EchoPredictor:
        """What the check uses of a Predictor: ``model``, and ``forward_batch`` running it."""

        def __init__(self, model: nn.Module) -> None:
            self.model = model

        def forward_batch(self, batch: torch.Tensor) -> torch.Tensor:
            return self.model(batch)

    model = FrameAveraging(Echo(), frames=3)
    assert without_averaging(model) is model.model and without_averaging(model.model) is model.model
    predictor = EchoPredictor(model)
    batch = torch.tensor([[0.2, 0.4, 4.0, 1.0, 0.5, 0.9], [0.4, 0.6, 1.0, 4.0, 0.7, 0.1]]).view(2, 1, 6)
    output = model(batch)
    threads = ForwardThreads([2, 1])
    _keep_count_if_outputs_depend_on_it(predictor, threads, 2, batch, output)
    assert threads.chosen is None and threads.candidates == [2, 1]  # same bits on every count: the trial goes on
    assert len(model._history) == 2  # the check added nothing to the history
