"""Read Darknet ``.cfg`` files into sections that remember where every value came from.

Darknet's ``read_cfg`` (parser.c) strips *all* whitespace from a line, skips lines starting with ``#`` or ``;`` and
splits options at the first ``=``; the first occurrence of a key wins (``option_find``).  We do the same, but keep the
file and line of every section and key so that later errors can point at them, and we refuse lines Darknet would only
complain about.  Inline ``#`` comments are removed (Darknet would keep them glued to the value).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

from darknet_torch.errors import CfgError, clipped, quoted

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RawOption:
    """One ``key=value`` line of a cfg file, value still text."""

    key: str
    value: str
    line: int


@dataclass
class RawSection:
    """One ``[section]`` of a cfg file with its untyped options, in file order."""

    name: str
    line: int
    path: str
    options: dict[str, RawOption] = field(default_factory=dict)

    def where(self, key: str | None = None) -> str:
        """``file:line [section]`` (and ``key``) for error messages."""
        line = self.options[key].line if key is not None and key in self.options else self.line
        text = f"{self.path}:{line} [{clipped(self.name)}]"
        return f"{text} {clipped(key)}" if key else text


def parse_cfg_text(text: str, path: str = "<string>") -> list[RawSection]:
    """Split cfg text into sections; ``path`` is used only in messages.  A leading UTF-8 byte-order mark (Windows
    editors write one) is skipped."""
    sections: list[RawSection] = []
    for number, original in enumerate(text.removeprefix("\ufeff").splitlines(), start=1):
        line = "".join(original.split())
        if not line or line[0] in "#;":
            continue
        if "#" in line:
            line = line[: line.index("#")]
        if line[0] == "[":
            if not line.endswith("]") or len(line) < 3:
                raise CfgError(f"{path}:{number}: malformed section header {quoted(original.strip())}; expected e.g. [convolutional]")
            sections.append(RawSection(name=line[1:-1], line=number, path=path))
            continue
        if "=" not in line:
            raise CfgError(f"{path}:{number}: cannot parse {quoted(original.strip())}; expected key=value")
        if not sections:
            raise CfgError(f"{path}:{number}: option {quoted(original.strip())} appears before the first [section]")
        key, value = line.split("=", 1)
        section = sections[-1]
        if not key:
            raise CfgError(f"{path}:{number}: empty key in {quoted(original.strip())}")
        if key in section.options:
            first = section.options[key].line
            log.warning("%s:%d [%s] %s is repeated (first at line %d); Darknet uses the first, so do we",
                        path, number, section.name, key, first)
            continue
        section.options[key] = RawOption(key=key, value=value, line=number)
    if not sections:
        raise CfgError(f"{path}: no [sections] found; is this a Darknet .cfg file?")
    return sections


def read_cfg(path: str | Path) -> list[RawSection]:
    """Read a cfg file from disk (see :func:`parse_cfg_text`)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig", errors="replace")
    except OSError as exc:
        raise CfgError(f"cannot read cfg file {path}: {exc.strerror or exc}") from exc
    return parse_cfg_text(text, str(path))
