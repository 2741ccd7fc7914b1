"""Every activation of Darknet's ``activations.c``, by its cfg name.

Formulas follow ``activations.h``/``activations.c``; where Darknet uses an unusual constant (leaky slope 0.1, mish's
softplus threshold 20, gelu's tanh approximation) we use the same one.
"""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def _mish(x: Tensor) -> Tensor:
    # Darknet's softplus: x if x > 20, exp(x) if x < -20, else log1p(exp(x)); F.softplus(threshold=20) matches.
    return x * torch.tanh(F.softplus(x, beta=1.0, threshold=20.0))


def _hard_mish(x: Tensor) -> Tensor:
    return torch.where(x > 0, x, torch.where(x > -2, x * x / 2 + x, torch.zeros_like(x)))


def _stair(x: Tensor) -> Tensor:
    n = torch.floor(x)
    half = torch.floor(x / 2)
    return torch.where(torch.remainder(n, 2) == 0, half, (x - n) + half)


def _plse(x: Tensor) -> Tensor:
    return torch.where(x < -4, 0.01 * (x + 4), torch.where(x > 4, 0.01 * (x - 4) + 1, 0.125 * x + 0.5))


def _lhtan(x: Tensor) -> Tensor:
    return torch.where(x < 0, 0.001 * x, torch.where(x > 1, 0.001 * (x - 1) + 1, x))


def _normalize_channels(x: Tensor) -> Tensor:
    """Positive part divided by its sum over channels (eps 1e-4), per pixel."""
    positive = x.clamp_min(0)
    return positive / (positive.sum(dim=1, keepdim=True) + 1e-4)


def _normalize_channels_softmax(x: Tensor, subtract_max: bool) -> Tensor:
    shift = x.amax(dim=1, keepdim=True) if subtract_max else torch.zeros_like(x[:, :1])
    e = torch.exp(x - shift)
    return e / (e.sum(dim=1, keepdim=True) + 1e-4)


ACTIVATIONS: dict[str, Callable[[Tensor], Tensor]] = {
    "linear": lambda x: x,
    "logistic": torch.sigmoid,
    "loggy": lambda x: 2 * torch.sigmoid(x) - 1,
    "relu": F.relu,
    "relu6": lambda x: x.clamp(0, 6),
    "elu": F.elu,
    "selu": lambda x: torch.where(x >= 0, 1.0507 * x, 1.0507 * 1.6732 * (torch.exp(x) - 1)),
    "gelu": lambda x: 0.5 * x * (1 + torch.tanh(0.797885 * x + 0.035677 * x * x * x)),
    "relie": lambda x: torch.where(x > 0, x, 0.01 * x),
    "ramp": lambda x: F.relu(x) + 0.1 * x,
    "leaky": lambda x: F.leaky_relu(x, 0.1),
    "revleaky": lambda x: F.leaky_relu(x, 0.1),  # Darknet maps REVLEAKY to the leaky forward
    "tanh": torch.tanh,
    "plse": _plse,
    "stair": _stair,
    "hardtan": lambda x: x.clamp(-1, 1),
    "lhtan": _lhtan,
    "mish": _mish,
    "hard_mish": _hard_mish,
    "swish": F.silu,
    "normalize_channels": _normalize_channels,
    "normalize_channels_softmax": lambda x: _normalize_channels_softmax(x, subtract_max=False),
    "normalize_channels_softmax_maxval": lambda x: _normalize_channels_softmax(x, subtract_max=True),
}


class Activation(nn.Module):
    """A Darknet activation as a module, so it shows in ``print(model)`` and can be fused or exported."""

    def __init__(self, name: str) -> None:
        super().__init__()
        if name not in ACTIVATIONS:
            raise KeyError(name)
        self.name = name
        self.fn = ACTIVATIONS[name]

    def forward(self, x: Tensor) -> Tensor:
        return self.fn(x)

    def extra_repr(self) -> str:
        return self.name
