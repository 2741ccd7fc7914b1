"""DarknetEma's resume: the saved average comes back, the schedule and alpha are the cfg's."""
from __future__ import annotations

import logging

import torch

from darknet_torch.model.darknet import Darknet
from darknet_torch.train.ema import DarknetEma


def test_resume_keeps_the_average_and_takes_alpha_and_points_from_the_cfg(tiny_cfg, caplog):
    model = Darknet(tiny_cfg)
    saved = DarknetEma(model, 0.9998, max_batches=6000)  # starts at 3000, applied at 5000
    saved.step(3000)
    with torch.no_grad():
        saved.shadow[0].add_(1.0)  # an average that differs from the live weights
    resumed = DarknetEma(model, 0.99, max_batches=10000)  # cfg edited: ema_alpha and max_batches changed
    with caplog.at_level(logging.WARNING, logger="darknet_torch.train.ema"):
        resumed.load_state_dict(saved.state_dict(), "tiny_last.pt")
    assert (resumed.alpha, resumed.start, resumed.apply_at) == (0.99, 5000, 9000)
    assert all(torch.equal(a, b) for a, b in zip(resumed.shadow, saved.shadow))
    assert "tiny_last.pt: the EMA was saved with alpha=0.9998, start 3000, applied at 5000" in caplog.text
    assert "alpha=0.99, start 5000, applied at 9000" in caplog.text


def test_resume_with_the_same_cfg_is_silent(tiny_cfg, caplog):
    model = Darknet(tiny_cfg)
    saved = DarknetEma(model, 0.9, max_batches=30)
    with caplog.at_level(logging.WARNING, logger="darknet_torch.train.ema"):
        DarknetEma(model, 0.9, max_batches=30).load_state_dict(saved.state_dict())
    assert caplog.text == ""
