"""Darknet's small data files: the ``.data`` file, the ``.names`` file and image list files.

Relative paths. C Darknet simply ``fopen``s every path, i.e. relative to the current working
directory. We try exactly that first, so a setup that works with Darknet resolves identically;
only when that file does not exist do we fall back to the folder of the file that names it
(the ``.data`` file for its entries, the list file for its images), so that e.g.
``coco128/coco128.data`` with ``train = train.txt`` works from any working directory.
When neither exists the cwd-relative path is returned (Darknet's reading) and the consumer's
error names it. Resolved paths are absolute but not symlink-resolved, so ``replace_image_to_label``
sees the folders as written; what it does differently on the relative text of a cwd-relative entry (no leading
``/``, so ``images/train2017/`` is kept) is restored by :func:`darknet_torch.data.labels.label_file_for`.
"""
from __future__ import annotations

import logging
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from darknet_torch.config.sections import INT_TEXT
from darknet_torch.errors import CfgError, DataError, quoted

log = logging.getLogger(__name__)

#: Keys of a ``.data`` file that get a typed field; every other key is kept in ``DataConfig.extra``.
_PATH_KEYS = ("train", "valid", "names", "backup")
_TYPED_KEYS = ("classes", "eval", *_PATH_KEYS)



@dataclass(frozen=True)
class DataConfig:
    """A parsed ``.data`` file. Absent keys are ``None``: Darknet's defaults differ per command
    (AlexeyAB detector.c: ``train_detector`` and ``validate_detector_map`` fall back to
    ``data/train.txt``, ``calc_anchors`` and ``validate_detector`` to ``data/train.list``), so the
    caller, which knows the command, decides."""

    path: Path
    classes: int | None = None
    train: Path | None = None
    valid: Path | None = None
    names: Path | None = None
    backup: Path | None = None
    eval: str | None = None
    #: Keys without a typed field (``difficult``, ``results``, typos...), values as written.
    extra: Mapping[str, str] = field(default_factory=dict)
    #: One ``path:line: ...`` message per key in ``extra``, for the caller to show.
    warnings: tuple[str, ...] = ()


def resolve_relative(value: str | os.PathLike[str], referring_file: Path) -> Path:
    """Resolve a path written in ``referring_file``: as is if absolute, else cwd first, then the
    referring file's folder (see the module docstring). Returns an absolute path."""
    path = Path(value)
    if path.is_absolute():
        return path
    from_cwd = Path.cwd() / path
    if exists_quietly(from_cwd):
        return from_cwd
    beside = referring_file.absolute().parent / path
    return beside if exists_quietly(beside) else from_cwd


def exists_quietly(path: Path, is_file: bool = False) -> bool:
    """``path.exists()`` (or ``is_file()``), False where stat fails: Python raises for a name too long (a binary
    file read as a list) where a missing file gives False."""
    try:
        return path.is_file() if is_file else path.exists()
    except (OSError, ValueError):
        return False


def read_data_file(path: str | os.PathLike[str]) -> DataConfig:
    """Parse a Darknet ``.data`` file (Darknet's ``read_data_cfg``).

    Lines are ``key = value``; blank lines and lines starting with ``#`` or ``;`` are skipped.
    Darknet deletes *all* whitespace of a line, so a value with inner whitespace would silently
    change meaning there: we reject it instead. Darknet keeps a line without ``=`` as a key
    without value and lets the first of duplicate keys win; both are errors here.

    Raises:
        CfgError: unreadable file, malformed line, duplicate key, bad ``classes`` (path:line).
    """
    data_path = Path(path)
    try:
        text = data_path.read_text(encoding="utf-8-sig", errors="replace")
    except OSError as exc:
        raise CfgError(f"{data_path}: cannot read .data file ({exc.strerror or exc})") from exc

    values: dict[str, str] = {}
    lines_of: dict[str, int] = {}
    for number, raw in enumerate(text.split("\n"), start=1):
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        key, sep, value = line.partition("=")
        key, value = key.strip(), value.strip()
        where = f"{data_path}:{number}"
        if not sep:
            raise CfgError(f"{where}: expected 'key = value', got {quoted(line)}")
        if not key:
            raise CfgError(f"{where}: missing key before '=' in {quoted(line)}")
        if not value:
            raise CfgError(f"{where}: key {key!r} has no value")
        if re.search(r"\s", key + value):
            darknet_reading = re.sub(r"\s", "", line)
            raise CfgError(
                f"{where}: whitespace inside {quoted(line)}; Darknet deletes all whitespace "
                f"(it would read {quoted(darknet_reading)}), so write it without"
            )
        if key in values:
            raise CfgError(f"{where}: duplicate key {key!r} (first set on line {lines_of[key]})")
        values[key], lines_of[key] = value, number

    classes = None
    if "classes" in values:
        if not INT_TEXT.fullmatch(values["classes"]) or int(values["classes"]) <= 0:
            raise CfgError(
                f"{data_path}:{lines_of['classes']}: classes must be a positive integer, "
                f"got {quoted(values['classes'])}"
            )
        classes = int(values["classes"])
    paths = {key: resolve_relative(values[key], data_path) for key in _PATH_KEYS if key in values}
    extra = {key: value for key, value in values.items() if key not in _TYPED_KEYS}
    warnings = tuple(
        f"{data_path}:{lines_of[key]}: key {key!r} is not used by darknet_torch "
        f"(kept in DataConfig.extra)"
        for key in extra
    )
    return DataConfig(
        path=data_path, classes=classes, eval=values.get("eval"), extra=extra, warnings=warnings,
        **paths,
    )


def _read_lines(path: Path, what: str, error: type[Exception], errors: str = "replace") -> list[str]:
    """Lines as Darknet's ``fgetl`` returns them: split at LF, one trailing CR removed, no
    empty last line for a final newline. ``errors="surrogateescape"`` keeps bytes that are not
    UTF-8 (a Latin-1 file name), so a path opens the file Darknet's ``fopen`` would."""
    try:
        text = path.read_text(encoding="utf-8-sig", errors=errors)
    except OSError as exc:
        raise error(f"{path}: cannot read {what} ({exc.strerror or exc})") from exc
    lines = text.split("\n")
    if lines[-1] == "":
        lines.pop()
    return [line[:-1] if line.endswith("\r") else line for line in lines]


def read_names(path: str | os.PathLike[str]) -> list[str]:
    """Class names, one per line, as Darknet's ``get_labels_custom`` reads them: every line is a
    name (even a blank one, which Darknet also counts), with or without a final newline.

    A line that is not UTF-8 (a names file saved as Windows-1252/Latin-1, e.g. ``Stra\xdfe``) is read as
    Latin-1, which maps every byte to a character, with a warning naming the file and lines: Darknet prints such
    bytes as they are, and a replacement character would lose the name.

    Raises:
        CfgError: unreadable or empty file.
    """
    names_path = Path(path)
    names = _read_lines(names_path, "names file", CfgError, errors="surrogateescape")
    not_utf8 = [index for index, name in enumerate(names) if _has_undecoded_bytes(name)]
    if not_utf8:
        lines = ", ".join(str(index + 1) for index in not_utf8[:10]) + (" ..." if len(not_utf8) > 10 else "")
        log.warning("%s: line%s %s not UTF-8; read as Latin-1", names_path, "s" * (len(not_utf8) > 1), lines)
        for index in not_utf8:
            names[index] = _latin1(names[index])
    if not names:
        raise CfgError(f"{names_path}: names file is empty")
    return names


def _has_undecoded_bytes(text: str) -> bool:
    """Whether ``surrogateescape`` decoding kept bytes that are not UTF-8 (as U+DC80..U+DCFF)."""
    return any("\udc80" <= char <= "\udcff" for char in text)


def _latin1(text: str) -> str:
    """The line's original bytes read as Latin-1 (its UTF-8 parts are re-read too, as one byte string)."""
    return text.encode("utf-8", errors="surrogateescape").decode("latin-1")


def read_image_list(path: str | os.PathLike[str]) -> list[Path]:
    """Image paths of a list file (``train.txt``/``valid.txt``), one per line.

    Unlike Darknet's ``get_paths`` (which turns every line into a path), blank lines and lines
    starting with ``#`` are skipped and surrounding whitespace is stripped. Relative entries are
    resolved as described in the module docstring; every image must exist.

    Raises:
        DataError: unreadable or empty list, or images not found (path:line for each, up to 10).
    """
    list_path = Path(path)
    images: list[Path] = []
    missing: list[str] = []
    lines = _read_lines(list_path, "image list", DataError, errors="surrogateescape")
    for number, raw in enumerate(lines, start=1):
        entry = raw.strip()
        if not entry or entry.startswith("#"):
            continue
        image = resolve_relative(entry, list_path)
        if not exists_quietly(image, is_file=True):
            missing.append(f"{list_path}:{number}: image not found: {quoted(entry)}")
        images.append(image)
    if missing:
        shown = "\n".join(missing[:10])
        more = f"\n... and {len(missing) - 10} more" if len(missing) > 10 else ""
        raise DataError(
            f"{len(missing)} image(s) of {list_path} not found (relative entries are looked up "
            f"from the working directory, then from the list's folder):\n{shown}{more}"
        )
    if not images:
        raise DataError(f"{list_path}: image list is empty")
    return images
