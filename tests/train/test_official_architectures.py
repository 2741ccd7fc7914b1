"""Every official architecture in ../shared/golden/mini trains: Darknet's loss on the mini network (its cfg and saved
weights) is finite, assigns the targets and sends a finite gradient into every trainable parameter, down to the first
convolution; architectures whose head loss is not implemented are refused by name."""
from __future__ import annotations

import pytest
import torch

from darknet_torch.errors import DarknetError
from darknet_torch.model.darknet import Darknet
from darknet_torch.model.heads import YOLOLayer
from darknet_torch.train.loop import DetectionLoss
from tests.golden import golden_runs, load_run

MINI = golden_runs("mini")
# [batch_index, class, cx, cy, w, h]: a large, a medium and a small box (class ids below every mini net's classes)
TARGETS = torch.tensor([[0, 0, 0.5, 0.5, 0.6, 0.7], [0, 1, 0.3, 0.6, 0.2, 0.25], [1, 0, 0.7, 0.3, 0.08, 0.1]])


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def test_golden_minis_are_present(golden_dir):
    assert len(MINI) >= 19, f"expected the 19 mini networks in {golden_dir / 'mini'}"


@pytest.mark.parametrize("folder", MINI, ids=[p.name for p in MINI])
def test_darknet_loss_trains_every_layer(folder):
    run = load_run(folder)
    model = Darknet(run.cfg).load_darknet_weights(run.weights).train()
    untrainable = [type(head).__name__ for head in model.heads if type(head) is not YOLOLayer]
    if untrainable:
        with pytest.raises(DarknetError, match=r"\[(region|Gaussian_yolo)\].*not implemented"):
            DetectionLoss(model)
        return
    image = run.input()
    images = torch.cat([image, image.flip(-1)])  # two images: batch norm in training mode needs more than one value
    loss, parts = DetectionLoss(model)(images, TARGETS)
    loss.backward()
    assert torch.isfinite(loss) and loss > 0
    assert parts["count"] >= len(TARGETS)  # every target is assigned to at least one prediction
    trainable = [(name, p) for name, p in model.named_parameters() if p.requires_grad]
    assert trainable
    for name, param in trainable:
        assert param.grad is not None and torch.isfinite(param.grad).all(), name
    first_conv = next(p for name, p in trainable if name.endswith("conv.weight"))
    assert first_conv.grad.abs().sum() > 0
