"""InferenceSettings (darknet_torch/detect/settings.py): Darknet's presets and validation."""
from __future__ import annotations

import math

import pytest

from darknet_torch.detect.settings import DETECTOR_MAP, DETECTOR_TEST, InferenceSettings
from darknet_torch.errors import CfgError


def test_presets_are_darknets_detector_settings():
    # detector.c: test_detector thresh .25 (command-line default) and nms .45; validate_detector_map thresh .005
    assert (DETECTOR_TEST.thresh, DETECTOR_TEST.nms) == (0.25, 0.45)
    assert (DETECTOR_MAP.thresh, DETECTOR_MAP.nms) == (0.005, 0.45)
    for preset in (DETECTOR_TEST, DETECTOR_MAP):
        assert preset.nms_kind is preset.letterbox is preset.input_size is preset.fast is None


def test_replace_returns_a_new_validated_copy():
    changed = DETECTOR_TEST.replace(thresh=0.5, input_size=[320, 416])
    assert changed.thresh == 0.5 and changed.input_size == (320, 416) and DETECTOR_TEST.thresh == 0.25
    with pytest.raises(CfgError, match="thresh=2"):
        DETECTOR_TEST.replace(thresh=2)


@pytest.mark.parametrize("changes, message", [
    ({"thresh": math.nan}, "thresh=nan: expected a number from 0 to 1"),
    ({"thresh": -1}, "thresh=-1"),
    ({"nms": 5}, "nms=5"),
    ({"nms": math.inf}, "nms=inf"),
    ({"nms_kind": "soft"}, "nms_kind='soft'"),
    ({"fast": "fp8"}, "fast='fp8'"),
    ({"input_size": (416,)}, "input_size"),
    ({"input_size": (0, 416)}, "input_size"),
])
def test_bad_values_are_refused(changes, message):
    with pytest.raises(CfgError, match=message.replace("(", r"\(")):
        InferenceSettings(**changes)
