"""Make a custom-class variant of a cfg file the way Darknet's README says to, editing lines in place.

For every detection head the ``classes=`` line of the head and the ``filters=`` line of the ``[convolutional]`` that
feeds it (the section before it, or before layers that keep the channels such as ``[dropout]``) are rewritten
(Darknet's parse_yolo / parse_gaussian_yolo / parse_region refuse an input that does not match); optionally ``max_batches`` and ``steps`` get the README's schedule.  Every other byte of the file, comments and
layout included, is kept, so the result diffs cleanly against its source.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from darknet_torch.config.cfg_parser import RawSection, parse_cfg_text
from darknet_torch.config.sections import ALIASES, Section, type_section
from darknet_torch.errors import CfgError

HEAD_SECTIONS = ("yolo", "Gaussian_yolo", "region")
#: Sections whose output has their input's channels: a head's conv may be before them (maxpool without maxpool_depth).
CHANNEL_KEEPING = ("dropout", "activation", "batchnorm", "empty", "maxpool", "local_avgpool", "avgpool", "upsample")
# Darknet README ("How to train to detect your custom objects"): max_batches = classes*2000, at least 6000.
BATCHES_PER_CLASS = 2000
MIN_MAX_BATCHES = 6000

_VALUE = re.compile(r"^(?P<lead>[^=]*=[ \t]*)(?P<value>[^#]*?)(?P<tail>[ \t]*(?:#.*)?)$")


@dataclass(frozen=True)
class CfgEdit:
    """One change: ``line`` is 1-based in the source (an inserted key goes right after it, its section's header)."""

    line: int
    where: str  # "file:line [section] key", or "file:line [section]" for an inserted key
    key: str
    old: str | None  # None when the key was inserted
    new: str

    def describe(self) -> str:
        return f"{self.where}: added {self.key}={self.new}" if self.old is None else \
            f"{self.where}: {self.old} -> {self.new}"


def head_filters(head: Section, classes: int) -> int:
    """Filters the conv before ``head`` needs for ``classes`` classes, by Darknet's rule for that head type.

    [yolo]: (classes+5)*anchors, [Gaussian_yolo]: (classes+9)*anchors (anchors = len(mask), or num without a mask),
    [region]: (coords+1+classes)*num.
    """
    if head.name == "region":
        return (head["coords"] + 1 + classes) * head["num"]
    anchors = len(head["mask"]) if head.get("mask") else head["num"]
    per_anchor = {"yolo": 5, "Gaussian_yolo": 9}[head.name]
    return (classes + per_anchor) * anchors


def recommended_schedule(classes: int) -> tuple[int, list[int]]:
    """Darknet README's schedule: (max_batches = max(classes*2000, 6000), steps = 80% and 90% of it)."""
    max_batches = max(classes * BATCHES_PER_CLASS, MIN_MAX_BATCHES)
    return max_batches, [max_batches * 8 // 10, max_batches * 9 // 10]


class CfgLineEditor:
    """Replaces values and inserts ``key=value`` lines of a cfg text, keeping every other byte (custom-cfg, prune)."""

    def __init__(self, text: str) -> None:
        self.lines = text.splitlines(keepends=True)  # same numbering as parse_cfg_text
        self.replaced: dict[int, str] = {}
        self.inserted: dict[int, list[str]] = {}

    def replace_value(self, line: int, value: str) -> None:
        body = self.lines[line - 1].rstrip("\r\n")
        ending = self.lines[line - 1][len(body):]
        match = _VALUE.match(body)
        self.replaced[line] = f"{match['lead']}{value}{match['tail']}{ending}"

    def insert_after(self, line: int, key: str, value: str) -> None:
        header = self.lines[line - 1]
        ending = header[len(header.rstrip("\r\n")):] or "\n"
        if line == len(self.lines) and not header.endswith(("\n", "\r")):
            self.replaced[line] = header + "\n"
        self.inserted.setdefault(line, []).append(f"{key}={value}{ending}")

    def text(self) -> str:
        out = []
        for number, line in enumerate(self.lines, start=1):
            out.append(self.replaced.get(number, line))
            out.extend(self.inserted.get(number, ()))
        return "".join(out)


def _set(editor: CfgLineEditor, raw: RawSection, key: str, value: int | str, edits: list[CfgEdit]) -> None:
    option = raw.options.get(key)
    if option is None:
        editor.insert_after(raw.line, key, str(value))
        edits.append(CfgEdit(raw.line, raw.where(), key, None, str(value)))
    elif option.value != str(value):
        editor.replace_value(option.line, str(value))
        edits.append(CfgEdit(option.line, raw.where(key), key, option.value, str(value)))


def customize_cfg_text(text: str, classes: int, path: str = "<string>",
                       darknet_schedule: bool = False) -> tuple[str, list[CfgEdit]]:
    """Return ``text`` rewritten for ``classes`` classes, and the edits made (per head: conv, head; then [net]).

    Raises:
        ValueError: ``classes`` < 1.
        CfgError: no detection head, a head not fed by a [convolutional] (directly or through CHANNEL_KEEPING
            layers), a head whose class count is fixed
            by other keys (``tree=``, ``map=``, ``counters_per_class=``), or ``darknet_schedule`` without
            ``policy=steps`` and two ``scales``.
    """
    if classes < 1:
        raise ValueError(f"classes must be at least 1, got {classes}")
    raws = parse_cfg_text(text, path)
    editor = CfgLineEditor(text)
    edits: list[CfgEdit] = []
    heads = [i for i, raw in enumerate(raws) if ALIASES.get(raw.name, raw.name) in HEAD_SECTIONS]
    if not heads:
        raise CfgError(f"{path}: no [yolo], [Gaussian_yolo] or [region] head to change the classes of")
    for index in heads:
        raw = raws[index]
        head = type_section(raw)
        for fixed in ("tree", "map", "counters_per_class"):
            if head.has(fixed):
                raise CfgError(f"{head.where(fixed)}: {fixed}= ties this head to its original classes; "
                               f"edit it by hand")
        conv = _predicting_conv(raws, index)
        _set(editor, conv, "filters", head_filters(head, classes), edits)
        _set(editor, raw, "classes", classes, edits)
    if darknet_schedule:
        _set_schedule(editor, raws[0], classes, edits)
    return editor.text(), edits


def _predicting_conv(raws: list[RawSection], head: int) -> RawSection:
    """The [convolutional] whose filters a head reads: the section before it, looking back through layers that keep
    the channel count (Darknet checks the head against its input, whatever layer makes it)."""
    index = head - 1
    while index > 0:
        raw = raws[index]
        name = ALIASES.get(raw.name, raw.name)
        if name == "convolutional":
            return raw
        depth = raw.options.get("maxpool_depth")
        if name not in CHANNEL_KEEPING or (depth is not None and depth.value != "0"):
            break
        index -= 1
    found = raws[index] if index > 0 else None
    what = f"found [{found.name}] at {found.where()}" if found else "found none"
    raise CfgError(f"{raws[head].where()}: the [{raws[head].name}] must be fed by the [convolutional] that predicts "
                   f"it (directly or through {', '.join(f'[{n}]' for n in CHANNEL_KEEPING)}); {what}")


def _set_schedule(editor: CfgLineEditor, raw_net: RawSection, classes: int, edits: list[CfgEdit]) -> None:
    net = type_section(raw_net)
    if net["policy"] != "steps":
        raise CfgError(f"{net.where('policy')}: the README schedule sets steps=, which needs policy=steps "
                       f"(this file has policy={net['policy']})")
    if net.get("scales") is None:  # parse_net_options: "STEPS policy must have steps and scales in cfg file"
        raise CfgError(f"{net.where()}: the README schedule sets steps=, and policy=steps also needs scales= (one "
                       f"per step, e.g. scales=.1,.1); add it")
    if len(net["scales"]) != 2:
        raise CfgError(f"{net.where('scales')}: the README schedule has two steps but scales= has "
                       f"{len(net['scales'])} values")
    max_batches, steps = recommended_schedule(classes)
    _set(editor, raw_net, "max_batches", max_batches, edits)
    _set(editor, raw_net, "steps", ",".join(map(str, steps)), edits)


def customize_cfg_file(path: str | os.PathLike[str], classes: int,
                       darknet_schedule: bool = False) -> tuple[bytes, list[CfgEdit]]:
    """Read ``path`` and return the customised file as bytes (undecodable bytes survive unchanged) and the edits."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise CfgError(f"cannot read cfg file {path}: {exc.strerror or exc}") from exc
    text, edits = customize_cfg_text(data.decode("utf-8", "surrogateescape"), classes, str(path), darknet_schedule)
    return text.encode("utf-8", "surrogateescape"), edits
