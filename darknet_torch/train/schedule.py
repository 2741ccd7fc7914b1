"""Darknet's learning-rate schedule (``get_current_rate`` in AlexeyAB src/network.c), as a pure function.

Which ``batch_num`` to pass: Darknet counts ``seen`` images and uses ``batch_num = seen / (batch*subdivisions)``
(the cfg's ``batch``). ``seen`` is incremented for every mini-batch *before* ``update_network`` asks for the rate,
so the weight update that completes the k-th iteration (k = 1, 2, ...) uses ``rate(k)``; the first update uses
``rate(1)``. When training resumes from a ``.weights`` file, ``seen`` comes from its header (``-clear`` zeroes it).

Arithmetic follows the C types: cfg floats are ``float``; ``pow``/``exp``/``cos`` run in double on float operands and
the result is rounded back to ``float`` on return. ``rate`` reproduces those roundings, so its values are the ones
Darknet prints in ``... avg loss, %f rate``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, fields
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Callable

import numpy as np
import torch

from darknet_torch.config.net import NetSettings, schema_default
from darknet_torch.errors import CfgError

if TYPE_CHECKING:
    from darknet_torch.config.sections import Section

POLICIES = ("constant", "step", "steps", "exp", "poly", "random", "sigmoid", "sgdr")

# Darknet's SGDR uses this literal, not M_PI.
_DARKNET_PI = 3.14159265


def _f32(value: float) -> float:
    """Round a double to the nearest C ``float`` (what ``return`` from a ``float`` function does)."""
    return float(np.float32(value))


def _c_pow(base: float, exponent: float) -> float:
    """C ``pow``: NaN for a negative base with a non-integer exponent instead of Python's ValueError."""
    try:
        return math.pow(base, exponent)
    except ValueError:
        return math.nan


@dataclass(frozen=True)
class LrSchedule:
    """The ``[net]`` keys Darknet's rate depends on, named as in the cfg, with ``parse_net_options`` defaults (from
    the cfg schema).

    ``sgdr_cycle=None`` means Darknet's default, ``max_batches``. ``scale`` is the ``step`` policy's factor;
    ``steps``/``scales`` are the ``steps`` policy's lists (``scales`` may be empty for ``sgdr``, which ignores them).
    """

    learning_rate: float = schema_default("learning_rate")
    policy: str = schema_default("policy")
    burn_in: int = schema_default("burn_in")
    power: float = schema_default("power")
    max_batches: int = schema_default("max_batches")
    step: int = schema_default("step")
    scale: float = schema_default("scale")
    steps: tuple[int, ...] = ()
    scales: tuple[float, ...] = ()
    gamma: float = schema_default("gamma")
    learning_rate_min: float = schema_default("learning_rate_min")
    sgdr_cycle: int | None = schema_default("sgdr_cycle")
    sgdr_mult: int = schema_default("sgdr_mult")

    def __post_init__(self) -> None:
        object.__setattr__(self, "steps", tuple(int(s) for s in self.steps))
        object.__setattr__(self, "scales", tuple(float(s) for s in self.scales))
        self._validate()

    @classmethod
    def from_net(cls, net: "NetSettings | Section | Mapping[str, Any]") -> "LrSchedule":
        """From the ``[net]`` settings (a section or mapping is read with :meth:`NetSettings.of`)."""
        net = NetSettings.of(net)
        return cls(**{spec.name: getattr(net, spec.name) for spec in fields(cls)})

    def _validate(self) -> None:
        # Darknet would divide by zero, loop forever or read past the scales list; say so instead.
        if self.policy not in POLICIES:
            raise CfgError(f"[net] policy={self.policy!r} is unknown; Darknet knows {', '.join(POLICIES)}")
        if self.burn_in < 0:
            raise CfgError(f"[net] burn_in={self.burn_in} must be >= 0")
        if self.policy == "step" and self.step < 1:
            raise CfgError(f"[net] step={self.step} must be >= 1 for policy=step")
        if self.policy == "steps":
            if not self.steps or not self.scales:
                raise CfgError("[net] policy=steps needs both steps= and scales=")
            if len(self.scales) < len(self.steps):
                raise CfgError(f"[net] steps= has {len(self.steps)} values but scales= only {len(self.scales)}")
        if self.policy == "poly" and self.max_batches < 1:
            raise CfgError(f"[net] max_batches={self.max_batches} must be >= 1 for policy=poly")
        if self.policy == "sgdr":
            if self.batches_per_cycle < 1:
                raise CfgError(f"[net] sgdr_cycle (default max_batches) is {self.batches_per_cycle}; must be >= 1")
            if self.sgdr_mult < 1:
                raise CfgError(f"[net] sgdr_mult={self.sgdr_mult} must be >= 1")

    @property
    def batches_per_cycle(self) -> int:
        """SGDR's first cycle length: ``sgdr_cycle``, defaulting to ``max_batches`` as in parse_net_options."""
        return self.max_batches if self.sgdr_cycle is None else self.sgdr_cycle

    def rate(self, batch_num: int, rng: np.random.Generator | None = None) -> float:
        """Learning rate for Darknet's ``batch_num`` (see the module docstring for which number that is).

        ``rng`` is required for ``policy=random`` only (Darknet's ``rand_uniform(0,1)``); nothing else is random.
        """
        if batch_num < 0:
            raise ValueError(f"batch_num must be >= 0, got {batch_num}")
        lr = np.float32(self.learning_rate)
        power = float(np.float32(self.power))
        if batch_num < self.burn_in:  # get_current_rate: warm-up applies before every policy
            ratio = np.float32(batch_num) / np.float32(self.burn_in)
            return _f32(float(lr) * _c_pow(float(ratio), power))
        policy = self.policy
        if policy == "constant":
            return float(lr)
        if policy == "step":
            return _f32(float(lr) * _c_pow(float(np.float32(self.scale)), batch_num // self.step))
        if policy == "steps":
            rate = lr
            for step, scale in zip(self.steps, self.scales):
                if step > batch_num:
                    break
                rate = np.float32(rate * np.float32(scale))
            return float(rate)
        if policy == "exp":
            return _f32(float(lr) * _c_pow(float(np.float32(self.gamma)), batch_num))
        if policy == "poly":
            base = np.float32(1) - np.float32(batch_num) / np.float32(self.max_batches)
            return _f32(float(lr) * _c_pow(float(base), power))
        if policy == "random":
            if rng is None:
                raise ValueError("policy=random needs an explicit numpy Generator (rng=...)")
            return _f32(float(lr) * _c_pow(float(np.float32(rng.random())), power))
        if policy == "sigmoid":
            exponent = np.float32(self.gamma) * np.float32(batch_num - self.step)
            return _f32(float(lr) * (1.0 / (1.0 + math.exp(float(exponent)))))
        return self._sgdr_rate(batch_num, lr)

    def _sgdr_rate(self, batch_num: int, lr: np.float32) -> float:
        """Cosine annealing with warm restarts; cycle k has length ``sgdr_cycle * sgdr_mult**k``."""
        cycle_start, cycle = 0, self.batches_per_cycle
        while cycle_start + cycle < batch_num:
            cycle_start += cycle
            cycle *= self.sgdr_mult
        lr_min = np.float32(self.learning_rate_min)
        angle = float(np.float32(batch_num - cycle_start)) * _DARKNET_PI / cycle
        span = float(np.float32(lr - lr_min))
        return _f32(float(lr_min) + 0.5 * span * (1.0 + math.cos(angle)))


def lr_lambda(schedule: LrSchedule, rng: np.random.Generator | None = None) -> Callable[[int], float]:
    """Multiplier for ``torch.optim.lr_scheduler.LambdaLR`` whose base lr is ``schedule.learning_rate``.

    LambdaLR calls it with the number of ``scheduler.step()`` calls so far (0 before the first optimizer step);
    Darknet's first update uses ``batch_num = 1``, hence the ``+ 1``. Call ``scheduler.step()`` after each
    ``optimizer.step()``. ``learning_rate`` must be non-zero (the multiplier divides by it).
    """
    if schedule.learning_rate == 0:
        raise ValueError("LambdaLR needs a non-zero learning_rate; use set_lr with rate() instead")
    base = schedule.learning_rate
    return lambda completed_steps: schedule.rate(completed_steps + 1, rng) / base


def set_lr(optimizer: torch.optim.Optimizer, rate: float) -> None:
    """Set every param group's lr to ``rate`` times the group's optional ``"lr_scale"`` (default 1).

    ``lr_scale`` carries a layer's own ``learning_rate=`` key, which Darknet multiplies into the rate
    (``l.learning_rate_scale``) when it updates that layer.
    """
    for group in optimizer.param_groups:
        group["lr"] = rate * group.get("lr_scale", 1.0)
