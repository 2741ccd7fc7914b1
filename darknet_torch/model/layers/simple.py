"""Small layers: ``[dropout]``, ``[softmax]``, ``[batchnorm]``, ``[activation]`` and ``[empty]``."""
from __future__ import annotations

import torch
from torch import Tensor, nn

from darknet_torch.model.activations import Activation
from darknet_torch.model.layers.conv import BN_EPS, BN_MOMENTUM


class Identity(nn.Module):
    """``[empty]``/``[silence]``, and ``[dropout]`` at inference when probability is 0."""

    def forward(self, x: Tensor) -> Tensor:
        return x


class ActivationLayer(nn.Module):
    """``[activation]``: an activation on its own."""

    def __init__(self, activation: str) -> None:
        super().__init__()
        self.act = Activation(activation)

    def forward(self, x: Tensor) -> Tensor:
        return self.act(x)


class Softmax(nn.Module):
    """``[softmax]``: over channels per pixel with ``spatial=1``, else over each of ``groups`` flat chunks."""

    def __init__(self, groups: int, temperature: float, spatial: bool) -> None:
        super().__init__()
        self.groups, self.temperature, self.spatial = groups, temperature, spatial

    def forward(self, x: Tensor) -> Tensor:
        x = x / self.temperature
        if self.spatial:
            return torch.softmax(x, dim=1)
        b = x.shape[0]
        return torch.softmax(x.reshape(b, self.groups, -1), dim=2).reshape(x.shape)


class BatchNormLayer(nn.Module):
    """``[batchnorm]`` on its own; ``.weights`` order: biases, scales, rolling mean, rolling variance."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.bn = nn.BatchNorm2d(channels, eps=BN_EPS, momentum=BN_MOMENTUM)

    def forward(self, x: Tensor) -> Tensor:
        return self.bn(x)

    def darknet_params(self) -> list[Tensor]:
        return [self.bn.bias, self.bn.weight, self.bn.running_mean, self.bn.running_var]


def dropout(probability: float) -> nn.Module:
    """``[dropout]``: identity at inference; in training Darknet scales kept values by 1/(1-p) as nn.Dropout does."""
    return nn.Dropout(probability) if probability > 0 else Identity()
