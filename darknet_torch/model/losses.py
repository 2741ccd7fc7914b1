"""Training losses by head type: the table ``Darknet.compute_loss`` looks up, beside ``builder.BUILDERS``.

Heads only activate and decode (``model/heads``); a loss lives in its own module and imports the head class it trains,
never the other way round, so adding a loss is one module and one row here.
"""
from __future__ import annotations

from typing import Callable

from torch import Tensor, nn

from darknet_torch.errors import DarknetError
from darknet_torch.model.heads import YOLOLayer
from darknet_torch.model.heads.yolo_loss import yolo_loss

#: ``loss(head, out, targets, net_hw, head_input) -> (summed loss, detached logging parts)``.
HeadLoss = Callable[[nn.Module, Tensor, Tensor, tuple[int, int], "Tensor | None"], tuple[Tensor, dict[str, Tensor]]]

#: Exact head type -> its Darknet loss; a type not listed (``[region]``, ``[Gaussian_yolo]``) cannot be trained.
LOSSES: dict[type[nn.Module], HeadLoss] = {YOLOLayer: yolo_loss}


def trainable(head: nn.Module) -> bool:
    return type(head) in LOSSES


def head_loss(head: nn.Module, where: str) -> HeadLoss:
    """The loss of ``head``; ``where`` (``cfg:line [section]``) names it when there is none."""
    loss = LOSSES.get(type(head))
    if loss is None:
        raise DarknetError(f"{where}: training loss is not implemented for this head; only [yolo] heads can be "
                           f"trained")
    return loss
