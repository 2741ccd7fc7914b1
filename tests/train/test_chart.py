"""The training chart: avg loss, mAP and the loss parts; histories of older training states still load."""
from __future__ import annotations

import io
import math

from PIL import Image

from darknet_torch.train.chart import TrainingHistory, render_chart, smoothed


def test_smoothed_is_darknets_running_average():
    assert smoothed([10.0, math.nan, 0.0, 5.0]) == [10.0, 10.0, 9.0, 9.0 * 0.9 + 0.5]


def test_parts_are_kept_aligned_with_the_iterations():
    history = TrainingHistory()
    history.add_loss(1, 5.0, {"box": 1.0, "obj": 2.0})
    history.add_loss(2, 4.0)
    history.add_loss(3, 3.0, {"box": 0.5, "obj": 1.5, "cls": 0.25})
    # NaN where a part was not given (iteration 2) or before it first appeared (cls)
    assert {name: [v if math.isfinite(v) else None for v in values] for name, values in history.parts.items()} == {
        "box": [1.0, None, 0.5], "obj": [2.0, None, 1.5], "cls": [None, None, 0.25]}
    again = TrainingHistory.from_state_dict(history.state_dict())
    assert again.parts.keys() == history.parts.keys() and again.loss_iterations == [1, 2, 3]


def test_chart_with_parts_and_an_old_state_without_them():
    old = {"loss_iterations": [1, 2], "avg_loss": [3.0, 2.5], "map_iterations": [2], "map": [0.3]}
    history = TrainingHistory.from_state_dict(old)
    assert history.parts == {}
    history.add_loss(3, 2.0, {"box": 1.0, "obj": 0.7, "cls": 0.3})
    for png in (render_chart(history, 10, 20.0, "x"), render_chart(TrainingHistory.from_state_dict(old), 10, 20.0,
                                                                      "x")):
        with Image.open(io.BytesIO(png)) as image:
            assert image.format == "PNG" and image.size == (1000, 800)
