"""Typed cfg sections with Darknet's defaults.

Every key Darknet's ``parser.c`` reads is listed here with its type and default, so a value is an ``int``, ``float``,
``bool``, ``str`` or list once and for all (no ``bool("0") == True``).  A key that Darknet does not read for that
section is reported once per file with its line, as Darknet's "Unused field" does; a section Darknet does not know is an
error.
"""
from __future__ import annotations

import logging
import math
import re
from dataclasses import dataclass, field
from typing import Any, Callable

from darknet_torch.config.cfg_parser import RawSection
from darknet_torch.errors import CfgError, UnsupportedCfgError, clipped, quoted

log = logging.getLogger(__name__)


class _Refused(ValueError):
    """A value Python would read but Darknet's atoi/atof reads differently; the message says why."""


# Darknet reads numbers with atoi/atof. Python's int()/float() also take "1_0" (atoi: 1), non-ASCII digits (atoi:
# 0) and "nan"/"inf" (atof: the same, then NaN thresholds and infinite sizes): only plain ASCII numbers are accepted.
#: An integer as Darknet's atoi reads one whole (also the .data file's classes=).
INT_TEXT = re.compile(r"[+-]?[0-9]+", re.ASCII)
#: A count, index or id written as ASCII digits only (``str.isdigit`` also takes "²", which ``int()`` refuses).
DIGITS_TEXT = re.compile(r"[0-9]+", re.ASCII)
_FLOAT_TEXT = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?", re.ASCII)


def _number_problem(text: str) -> str | None:
    lowered = text.lower().lstrip("+-")
    if lowered.startswith(("nan", "inf")):
        return "nan and inf are not allowed; leave the key out for Darknet's default"
    if "_" in text:
        return "no '_' separators: Darknet's atoi/atof stops reading at the '_'"
    if not text.isascii():
        return "use ASCII digits"
    return None


def _int(text: str) -> int:
    if not INT_TEXT.fullmatch(text):
        problem = _number_problem(text)
        raise _Refused(problem) if problem else ValueError(text)
    return int(text)


def _float(text: str) -> float:
    if not _FLOAT_TEXT.fullmatch(text):
        problem = _number_problem(text)
        raise _Refused(problem) if problem else ValueError(text)
    value = float(text)
    if not math.isfinite(value):  # e.g. 1e999
        raise _Refused("the value overflows to infinity")
    return value


def _flag(text: str) -> bool:
    if text not in ("0", "1"):
        raise ValueError("expected 0 or 1")
    return text == "1"


def _str(text: str) -> str:
    return text


def _list(convert: Callable[[str], Any]) -> Callable[[str], list]:
    def parse(text: str) -> list:
        # Darknet tolerates a trailing comma ("anchors = 10,14, 23,27,"), so do we.
        items = [item for item in text.split(",")]
        if items and items[-1] == "":
            items.pop()
        return [convert(item) for item in items]

    return parse


INT, FLOAT, FLAG, STR = _int, _float, _flag, _str
INTS, FLOATS = _list(_int), _list(_float)
TYPE_NAMES = {INT: "an integer", FLOAT: "a number", FLAG: "0 or 1", STR: "a word",
              INTS: "a comma-separated list of integers", FLOATS: "a comma-separated list of numbers"}

# Keys parse_network_cfg_custom reads for every layer after the layer's own parser.
COMMON_LAYER_KEYS: dict[str, tuple[Callable, Any]] = {
    "clip": (FLOAT, 0.0), "onlyforward": (FLAG, False), "dont_update": (INT, 0), "burnin_update": (INT, 0),
    "stopbackward": (INT, 0), "train_only_bn": (FLAG, False), "dontload": (FLAG, False),
    "dontloadscales": (FLAG, False), "learning_rate": (FLOAT, 1.0),
}

_STREAM = {"stream": (INT, -1), "wait_stream": (INT, -1)}
_YOLO_COMMON = {
    "classes": (INT, 20), "num": (INT, 1), "mask": (INTS, None), "max": (INT, 200), "max_delta": (FLOAT, math.inf),
    "counters_per_class": (INTS, None), "label_smooth_eps": (FLOAT, 0.0), "scale_x_y": (FLOAT, 1.0),
    "objectness_smooth": (FLAG, False), "iou_normalizer": (FLOAT, 0.75), "obj_normalizer": (FLOAT, 1.0),
    "cls_normalizer": (FLOAT, 1.0), "delta_normalizer": (FLOAT, 1.0), "iou_loss": (STR, "mse"),
    "iou_thresh_kind": (STR, "iou"), "beta_nms": (FLOAT, 0.6), "nms_kind": (STR, "default"), "jitter": (FLOAT, 0.2),
    "resize": (FLOAT, 1.0), "ignore_thresh": (FLOAT, 0.5), "truth_thresh": (FLOAT, 1.0), "iou_thresh": (FLOAT, 1.0),
    "random": (FLOAT, 0.0), "map": (STR, None), "anchors": (FLOATS, None),
}
_POOL = {"stride": (INT, 1), "stride_x": (INT, None), "stride_y": (INT, None), "size": (INT, None),
         "padding": (INT, None)}

# section name -> {key: (parser, default)}; None defaults are resolved by the layer builders (they depend on other keys).
SCHEMAS: dict[str, dict[str, tuple[Callable, Any]]] = {
    "net": {
        "batch": (INT, 1), "subdivisions": (INT, 1), "width": (INT, 0), "height": (INT, 0), "channels": (INT, 0),
        "inputs": (INT, None), "max_batches": (INT, 0), "learning_rate": (FLOAT, 0.001),
        "learning_rate_min": (FLOAT, 0.00001), "sgdr_cycle": (INT, None), "sgdr_mult": (INT, 2),
        "momentum": (FLOAT, 0.9), "decay": (FLOAT, 0.0001), "time_steps": (INT, 1), "track": (INT, 0),
        "augment_speed": (INT, 2), "sequential_subdivisions": (INT, None), "try_fix_nan": (FLAG, False),
        "weights_reject_freq": (INT, 0), "equidistant_point": (INT, 0),
        "badlabels_rejection_percentage": (FLOAT, 0.0), "num_sigmas_reject_badlabels": (FLOAT, 0.0),
        "ema_alpha": (FLOAT, 0.0), "use_cuda_graph": (FLAG, False), "loss_scale": (FLOAT, 1.0),
        "dynamic_minibatch": (FLAG, False), "optimized_memory": (INT, 0), "workspace_size_limit_MB": (FLOAT, 1024.0),
        "adam": (FLAG, False), "B1": (FLOAT, 0.9), "B2": (FLOAT, 0.999), "eps": (FLOAT, 0.000001),
        "max_crop": (INT, None), "min_crop": (INT, None), "flip": (FLAG, True), "blur": (INT, 0),
        "gaussian_noise": (INT, 0), "mixup": (INT, 0), "cutmix": (FLAG, False), "mosaic": (FLAG, False),
        "letter_box": (FLAG, False), "mosaic_bound": (FLAG, False), "contrastive": (FLAG, False),
        "contrastive_jit_flip": (FLAG, False), "contrastive_color": (FLAG, False), "unsupervised": (FLAG, False),
        "label_smooth_eps": (FLOAT, 0.0), "resize_step": (FLOAT, 32.0), "attention": (FLAG, False),
        "adversarial_lr": (FLOAT, 0.0), "max_chart_loss": (FLOAT, 20.0), "angle": (FLOAT, 0.0),
        "aspect": (FLOAT, 1.0), "saturation": (FLOAT, 1.0), "exposure": (FLOAT, 1.0), "hue": (FLOAT, 0.0),
        "power": (FLOAT, 4.0), "policy": (STR, "constant"), "burn_in": (INT, 0), "step": (INT, 1),
        "scale": (FLOAT, 1.0), "steps": (INTS, None), "scales": (FLOATS, None), "seq_scales": (FLOATS, None),
        "gamma": (FLOAT, 1.0), "show_receptive_field": (FLAG, False),
    },
    "convolutional": {
        "filters": (INT, 1), "groups": (INT, 1), "size": (INT, 1), "stride": (INT, 1), "stride_x": (INT, -1),
        "stride_y": (INT, -1), "dilation": (INT, 1), "antialiasing": (INT, 0), "pad": (FLAG, False),
        "padding": (INT, 0), "activation": (STR, "logistic"), "assisted_excitation": (FLOAT, 0.0),
        "share_index": (INT, None), "batch_normalize": (INT, 0), "cbn": (FLAG, False), "binary": (FLAG, False),
        "xnor": (FLAG, False), "bin_output": (FLAG, False), "sway": (FLAG, False), "rotate": (FLAG, False),
        "stretch": (FLAG, False), "stretch_sway": (FLAG, False), "flipped": (FLAG, False), "dot": (FLOAT, 0.0),
        "angle": (FLOAT, 15.0), "grad_centr": (FLAG, False), "reverse": (FLOAT, 0.0), "coordconv": (FLAG, False),
        **_STREAM,
    },
    "yolo": {**_YOLO_COMMON, "show_details": (FLAG, True), "new_coords": (FLAG, False), "focal_loss": (FLAG, False),
             "track_history_size": (INT, 5), "sim_thresh": (FLOAT, 0.8), "dets_for_track": (INT, 1),
             "dets_for_show": (INT, 1), "track_ciou_norm": (FLOAT, 0.01), "embedding_layer": (INT, None)},
    "Gaussian_yolo": {**_YOLO_COMMON, "uc_normalizer": (FLOAT, 1.0), "yolo_point": (STR, "center")},
    "region": {
        "coords": (INT, 4), "classes": (INT, 20), "num": (INT, 1), "max": (INT, 200), "log": (FLAG, False),
        "sqrt": (FLAG, False), "softmax": (FLAG, False), "focal_loss": (FLAG, False), "jitter": (FLOAT, 0.2),
        "resize": (FLOAT, 1.0), "rescore": (FLAG, False), "thresh": (FLOAT, 0.5), "classfix": (INT, 0),
        "absolute": (FLAG, False), "random": (FLOAT, 0.0), "coord_scale": (FLOAT, 1.0), "object_scale": (FLOAT, 1.0),
        "noobject_scale": (FLOAT, 1.0), "mask_scale": (FLOAT, 1.0), "class_scale": (FLOAT, 1.0),
        "bias_match": (FLAG, False), "tree": (STR, None), "map": (STR, None), "anchors": (FLOATS, None),
    },
    "maxpool": {**_POOL, "maxpool_depth": (FLAG, False), "out_channels": (INT, 1), "antialiasing": (INT, 0),
                "maxpool_zero_nonmax": (FLAG, False)},
    "local_avgpool": dict(_POOL),
    "avgpool": {},
    "route": {"layers": (INTS, None), "groups": (INT, 1), "group_id": (INT, 0), **_STREAM},
    "shortcut": {"from": (INTS, None), "activation": (STR, "linear"), "weights_type": (STR, "none"),
                 "weights_normalization": (STR, "none")},
    "upsample": {"stride": (INT, 2), "scale": (FLOAT, 1.0)},
    "reorg": {"stride": (INT, 1), "reverse": (FLAG, False)},
    "reorg3d": {"stride": (INT, 1), "reverse": (FLAG, False)},
    "dropout": {"probability": (FLOAT, 0.2), "dropblock": (FLAG, False), "dropblock_size_rel": (FLOAT, 0.0),
                "dropblock_size_abs": (FLOAT, 0.0)},
    "sam": {"from": (INT, None), "activation": (STR, "linear")},
    "scale_channels": {"from": (INT, None), "scale_wh": (FLAG, False), "activation": (STR, "linear")},
    "softmax": {"groups": (INT, 1), "temperature": (FLOAT, 1.0), "tree": (STR, None), "spatial": (FLAG, False),
                "noloss": (FLAG, False)},
    "connected": {"output": (INT, 1), "activation": (STR, "logistic"), "batch_normalize": (FLAG, False)},
    "batchnorm": {},
    "activation": {"activation": (STR, "linear")},
    "empty": {},
    "local": {"filters": (INT, 1), "size": (INT, 1), "stride": (INT, 1), "pad": (INT, 0),
              "activation": (STR, "logistic")},
    "crop": {"crop_height": (INT, 1), "crop_width": (INT, 1), "flip": (INT, 0), "angle": (FLOAT, 0.0),
             "saturation": (FLOAT, 1.0), "exposure": (FLOAT, 1.0), "noadjust": (INT, 0), "shift": (FLOAT, 0.0)},
    "cost": {"type": (STR, "sse"), "scale": (FLOAT, 1.0), "ratio": (FLOAT, 0.0)},
    "detection": {
        "coords": (INT, 1), "classes": (INT, 1), "rescore": (INT, 0), "num": (INT, 1), "side": (INT, 7),
        "softmax": (INT, 0), "sqrt": (INT, 0), "max": (INT, 200), "coord_scale": (FLOAT, 1.0), "forced": (INT, 0),
        "object_scale": (FLOAT, 1.0), "noobject_scale": (FLOAT, 1.0), "class_scale": (FLOAT, 1.0),
        "jitter": (FLOAT, 0.2), "resize": (FLOAT, 1.0), "random": (FLOAT, 0.0), "reorg": (INT, 0),
    },
    "contrastive": {"classes": (INT, 1000), "yolo_layer": (INT, 0), "temperature": (FLOAT, 1.0),
                    "cls_normalizer": (FLOAT, 1.0), "max_delta": (FLOAT, math.inf),
                    "contrastive_neg_max": (INT, 3)},
}

# Darknet's alternative spellings (string_to_layer_type).
ALIASES = {"network": "net", "conv": "convolutional", "max": "maxpool", "local_avg": "local_avgpool",
           "avg": "avgpool", "soft": "softmax", "conn": "connected", "silence": "empty"}

# Sections Darknet knows but darknet_torch does not build, with the reason given in the refusal.
_RECURRENT = ("recurrent layers are not implemented (they carry a hidden state from one frame or time step to the "
              "next, which darknet_torch's stateless forward does not)")
UNSUPPORTED = {
    "crnn": _RECURRENT, "rnn": _RECURRENT, "gru": _RECURRENT, "lstm": _RECURRENT, "conv_lstm": _RECURRENT,
    "history": _RECURRENT,
    "normalization": "local response normalization is not implemented (no official cfg uses it)",
    "lrn": "local response normalization is not implemented (no official cfg uses it)",
    "implicit": "YOLOR's implicit layers are not implemented (no official cfg uses them)",
}

# Keys that are required (Darknet exits or dereferences NULL without them).
REQUIRED = {"route": ("layers",), "shortcut": ("from",), "sam": ("from",), "scale_channels": ("from",)}


@dataclass
class Section:
    """A cfg section with typed values: ``sec["filters"]`` or ``sec.get("filters")``; defaults filled in."""

    name: str
    line: int
    path: str
    values: dict[str, Any]
    explicit: dict[str, int] = field(default_factory=dict)  # key -> line, for keys written in the file

    def __getitem__(self, key: str) -> Any:
        return self.values[key]

    def get(self, key: str, default: Any = None) -> Any:
        value = self.values.get(key)
        return default if value is None else value

    def has(self, key: str) -> bool:
        return key in self.explicit

    def where(self, key: str | None = None) -> str:
        """``file:line [section]`` (and key) for error messages."""
        line = self.explicit.get(key, self.line) if key else self.line
        text = f"{self.path}:{line} [{self.name}]"
        return f"{text} {key}" if key else text

    def error(self, message: str, key: str | None = None) -> CfgError:
        return CfgError(f"{self.where(key)}: {message}")

    def refusal(self, message: str, key: str, reason: str) -> UnsupportedCfgError:
        """A cfg Darknet accepts but darknet_torch does not build; ``reason`` names the feature for callers/tests."""
        return UnsupportedCfgError(f"{self.where(key)}: {message}", reason=reason)


def type_section(raw: RawSection, reported: set[tuple[str, str]] | None = None) -> Section:
    """Give every value of ``raw`` its Darknet type, add defaults, and report unknown keys.

    ``reported`` collects (section, key) pairs already reported, so a file reports each unknown key once.
    """
    name = ALIASES.get(raw.name, raw.name)
    if name in UNSUPPORTED:
        raise UnsupportedCfgError(f"{raw.where()}: Darknet layer [{name}] is not supported by darknet_torch: "
                                  f"{UNSUPPORTED[name]}", reason=name)
    if name not in SCHEMAS:
        known = ", ".join(sorted(SCHEMAS))
        raise CfgError(f"{raw.where()}: unknown section; known sections: {known}")
    schema = SCHEMAS[name] if name == "net" else {**SCHEMAS[name], **COMMON_LAYER_KEYS}
    values = {key: default for key, (_, default) in schema.items()}
    explicit: dict[str, int] = {}
    reported = set() if reported is None else reported
    for key, option in raw.options.items():
        if key not in schema:
            if (name, key) not in reported:
                reported.add((name, key))
                log.warning("%s: unused field %r (Darknet does not read it in [%s]); it has no effect",
                            raw.where(key), clipped(key), clipped(raw.name))
            continue
        convert = schema[key][0]
        try:
            values[key] = convert(option.value)
        except _Refused as exc:
            raise CfgError(f"{raw.where(key)}: {key}={quoted(option.value)} is not {TYPE_NAMES[convert]} ({exc})") from None
        except ValueError:
            raise CfgError(f"{raw.where(key)}: {key}={quoted(option.value)} is not {TYPE_NAMES[convert]}") from None
        explicit[key] = option.line
    section = Section(name=name, line=raw.line, path=raw.path, values=values, explicit=explicit)
    for key in REQUIRED.get(name, ()):
        if key not in explicit:
            raise section.error(f"missing required key {key}=")
        if not raw.options[key].value:
            raise section.error(f"{key}= is empty; it must name at least one earlier layer (e.g. {key}=-1)", key)
    return section


def type_sections(raws: list[RawSection]) -> list[Section]:
    """Type a whole file; the first section must be [net] as in Darknet."""
    reported: set[tuple[str, str]] = set()
    sections = [type_section(raw, reported) for raw in raws]
    if sections[0].name != "net":
        raise sections[0].error("the first section must be [net] (or [network])")
    for extra in sections[1:]:
        if extra.name == "net":
            raise extra.error("[net] may appear only once, as the first section")
    return sections
