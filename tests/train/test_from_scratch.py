"""From scratch: a tiny detector learns synthetic coloured rectangles to mAP@0.5 >= 0.9 on CPU in well under a minute.

Real pieces end to end: ``train()`` with Darknet's random initialisation, the training data pipeline, Darknet's YOLO
loss and SGD, ``--map`` every 50 iterations through ``darknet_torch.evaluate.runner`` (Darknet's ``detector map``),
``<cfg>_best.weights``, then the final weights scored again from the file.
"""
from __future__ import annotations

import numpy as np
import pytest

from darknet_torch.config.data_files import read_image_list
from darknet_torch.evaluate.runner import evaluate
from darknet_torch.model.loading import load_model
from darknet_torch.train.checkpoint import load_state
from darknet_torch.train.run import TrainOptions, train

NET = {"batch": 16, "subdivisions": 2, "learning_rate": 0.01, "burn_in": 50, "max_batches": 250, "policy": "steps",
       "steps": "200", "scales": ".1", "flip": 1}
NAMES = ["red", "green", "blue"]


def map50(cfg, weights, image_list) -> float:
    model = load_model(cfg, weights)
    return evaluate(model, read_image_list(image_list), NAMES, 3, workers=0, progress=False).map


@pytest.mark.slow
@pytest.mark.usefixtures("one_thread")
def test_tiny_detector_learns_rectangles(synthetic_data, cfg_factory):
    cfg = cfg_factory(net=NET, yolo={"jitter": 0})
    images = synthetic_data.parent / "train.txt"
    backup = synthetic_data.parent / "backup"
    result = train(TrainOptions(data=synthetic_data, cfg=cfg, workers=1, seed=0, progress=False, calc_map=True,
                                map_every=50))
    assert result.iteration == 250
    assert np.isfinite(result.avg_loss) and result.avg_loss < 0.5
    history = load_state(backup / "tiny_last.pt")["history"]
    assert history["map_iterations"] == [50, 100, 150, 200, 250]  # burn_in 50, then every 50, and at the end
    assert history["map"][0] < 0.5 <= max(history["map"])
    assert result.best_map == max(history["map"]) >= 0.9
    assert map50(cfg, backup / "tiny_best.weights", images) == pytest.approx(result.best_map, abs=1e-6)
    final = map50(cfg, backup / "tiny_final.weights", images)
    assert final >= 0.9, f"mAP@0.5 {final:.3f} after 250 iterations (history {history['map']})"
    assert (backup / "chart_tiny.png").stat().st_size > 10_000
