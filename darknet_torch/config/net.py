"""``[net]`` interpreted once: the typed, frozen settings that training, augmentation, the loader and inference read.

Every value comes from the typed section (``config/sections.py``), whose schema is the only place Darknet's defaults
are written; the records built from it (``TrainSettings``, ``LrSchedule``, ``AugmentConfig``, ``MultiScale``) take
their field defaults from the schema through :func:`schema_default` too.  ``Darknet`` builds one ``NetSettings`` as
``model.net``.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from darknet_torch.config.sections import SCHEMAS, Section
from darknet_torch.errors import CfgError


def schema_default(key: str, section: str = "net") -> Any:
    """Darknet's default of ``key`` in ``[section]`` (``parse_net_options`` / the layer parsers), from the schema."""
    return SCHEMAS[section][key][1]


@dataclass(frozen=True)
class NetSettings:
    """The ``[net]`` keys darknet_torch uses, typed, named as in the cfg.

    Groups: the input (``width``, ``height``, ``channels``, ``letter_box``); the iteration (``batch``,
    ``subdivisions``, ``max_batches``); the optimizer (``momentum``, ``decay``, ``ema_alpha``); the learning-rate
    schedule (``learning_rate`` .. ``sgdr_mult``, see ``train.schedule``); augmentation (``hue`` .. ``mixup``, see
    ``data.augment``); multi-scale training (``resize_step``, ``dynamic_minibatch``) and the chart
    (``max_chart_loss``).  ``section`` is the typed section it was read from (None for a plain mapping), for error
    locations.  No value is validated here: detection needs none of the training constraints (``TrainSettings``
    checks those).
    """

    width: int
    height: int
    channels: int
    letter_box: bool
    batch: int
    subdivisions: int
    max_batches: int
    momentum: float
    decay: float
    ema_alpha: float
    learning_rate: float
    policy: str
    burn_in: int
    power: float
    step: int
    scale: float
    steps: tuple[int, ...]
    scales: tuple[float, ...]
    gamma: float
    learning_rate_min: float
    sgdr_cycle: int | None
    sgdr_mult: int
    hue: float
    saturation: float
    exposure: float
    flip: bool
    blur: int
    gaussian_noise: int
    mosaic: bool
    mosaic_bound: bool
    mixup: int
    resize_step: int
    dynamic_minibatch: bool
    max_chart_loss: float
    section: Section | None = field(default=None, compare=False, repr=False)

    @classmethod
    def of(cls, net: "NetSettings | Section | Mapping[str, Any]") -> "NetSettings":
        """From the typed ``[net]`` section (or a mapping: a missing or None value is the schema's default)."""
        if isinstance(net, NetSettings):
            return net
        values: dict[str, Any] = {}
        for spec in fields(cls):
            if spec.name != "section":
                value = net.get(spec.name)
                values[spec.name] = schema_default(spec.name) if value is None else value
        values["steps"] = tuple(int(s) for s in values["steps"] or ())
        values["scales"] = tuple(float(s) for s in values["scales"] or ())
        values["resize_step"] = int(values["resize_step"])  # Darknet reads a float, sizes are whole pixels
        return cls(**values, section=net if isinstance(net, Section) else None)

    @property
    def input_size(self) -> tuple[int, int]:
        """(height, width) of the network input."""
        return self.height, self.width

    @property
    def mini_batch(self) -> int:
        """Images per forward pass: Darknet's ``net.batch /= subdivisions`` (integer division; 0 if unusable)."""
        return self.batch // self.subdivisions if self.subdivisions > 0 else 0

    def where(self, key: str | None = None) -> str:
        """``file:line [net] key`` for messages."""
        if self.section is not None:
            return self.section.where(key)
        return f"[net] {key}" if key else "[net]"

    def error(self, message: str, key: str | None = None) -> CfgError:
        return CfgError(f"{self.where(key)}: {message}")
