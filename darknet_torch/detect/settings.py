"""How a network is run on images: thresholds, NMS, fitting, input size and speed mode, validated once.

Every command that runs a network on images (detect, map, serve, demo, export's optional NMS) takes an
:class:`InferenceSettings`; Darknet's two detector modes are the presets :data:`DETECTOR_TEST` and
:data:`DETECTOR_MAP`, so their numbers are written down here and nowhere else.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

from darknet_torch.errors import CfgError
from darknet_torch.model.fast import AUTO, FAST_MODES
from darknet_torch.ops.nms import NMS_KINDS

SETTINGS_FAST_MODES = (AUTO, *FAST_MODES)
"""What ``InferenceSettings.fast`` takes besides None (the plain model)."""


@dataclass(frozen=True)
class InferenceSettings:
    """Settings of one inference run.

    Attributes:
        thresh: keep (box, class) pairs whose probability is above this (Darknet's ``-thresh``).
        nms: NMS IoU threshold (Darknet's ``-nms``, hard-coded 0.45 in ``detector test``/``map``).
        nms_kind: None = the cfg's (the *last* head's ``nms_kind``, Darknet's rule); ``"plain"`` = class-wise greedy.
        letterbox: None = the cfg's ``[net] letter_box``; True keeps the aspect ratio, False stretches.
        input_size: (height, width) of the network input; None = ``[net] height/width``.
        fast: None = the plain model, a mode of :data:`~darknet_torch.model.fast.FAST_MODES`, or ``"auto"``
            (the default of detect, demo and serve: ``exact`` on an x86 CPU with oneDNN, else the plain model;
            :func:`~darknet_torch.model.fast.auto_mode`, resolved by ``build_predictor``).
    """

    thresh: float = 0.25
    nms: float = 0.45
    nms_kind: str | None = None
    letterbox: bool | None = None
    input_size: tuple[int, int] | None = None
    fast: str | None = None

    def __post_init__(self) -> None:
        for name in ("thresh", "nms"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not math.isfinite(value) or not 0 <= value <= 1:
                raise CfgError(f"{name}={value!r}: expected a number from 0 to 1")
        if self.nms_kind is not None and self.nms_kind not in NMS_KINDS:
            raise CfgError(f"nms_kind={self.nms_kind!r}: choose one of {', '.join(NMS_KINDS)}")
        if self.fast is not None and self.fast not in SETTINGS_FAST_MODES:
            raise CfgError(f"fast={self.fast!r}: choose one of {', '.join(SETTINGS_FAST_MODES)} (or None)")
        if self.input_size is not None:
            size = tuple(self.input_size)
            if len(size) != 2 or not all(isinstance(v, int) and v > 0 for v in size):
                raise CfgError(f"input_size={self.input_size!r}: expected (height, width), positive integers")
            object.__setattr__(self, "input_size", size)

    def replace(self, **changes) -> InferenceSettings:
        """A copy with ``changes`` (validated again)."""
        return dataclasses.replace(self, **changes)


DETECTOR_TEST = InferenceSettings()
"""``darknet detector test``: threshold 0.25, NMS 0.45."""

DETECTOR_MAP = InferenceSettings(thresh=0.005)
"""``darknet detector map``: every detection above 0.005 is scored (NMS 0.45)."""
