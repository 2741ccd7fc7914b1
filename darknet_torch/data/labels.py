"""YOLO label files (``class cx cy w h`` per line, relative units) and where Darknet looks for them.

Policy per problem, compared with Darknet (``read_boxes`` in src/data.c reads labels for
``detector map``; ``fill_truth_detection`` filters them for training, after augmentation):

==================================  =====================================  =======================
problem                             Darknet                                here
==================================  =====================================  =======================
missing label file                  "Can't open label file", no objects    ``missing=True``, issue
wrong field count / non-number      ``fscanf`` stream desyncs or stops     line skipped, issue
class not an integer (``1.0``)      ``%d`` reads ``1``, then desyncs       line skipped, issue
value overflows float32 (``1e39``)  ``%f`` stores inf, row kept            line skipped, issue
class < 0 or >= num_classes         map: out-of-bounds write; training:    line skipped, issue
                                    skipped ("Wrong annotation")
w or h <= 0, w or h > 1,            map: kept as ground truth;             row kept, issue
cx or cy outside [0, 1]             training: clipped / dropped later
cx == 0 and cy == 0                 map: kept as ground truth;             row kept, issue
                                    training: dropped ("Wrong annotation")
==================================  =====================================  =======================

Rows with suspect geometry are kept because ``detector map`` counts them as objects (they
change recall), and training's clip-and-drop depends on the augmentation, so it belongs to the
training target builder. Blank lines are ignored, as ``fscanf`` skips whitespace. A UTF-8
byte-order mark is dropped (Darknet's ``%d`` stops at it: no box of that file is read).
"""
from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from darknet_torch.errors import DataError

# replace_image_to_label (src/utils.c): folder substitutions, each applied to the first occurrence
# only, in this order. Darknet has "/images/" and "/raw/" commented out, so they are not here.
_FOLDER_REPLACEMENTS = (
    ("/images/train2017/", "/labels/train2017/"),
    ("/images/val2017/", "/labels/val2017/"),
    ("/JPEGImages/", "/labels/"),
    ("\\images\\train2017\\", "\\labels\\train2017\\"),
    ("\\images\\val2017\\", "\\labels\\val2017\\"),
    ("\\images\\train2014\\", "\\labels\\train2014\\"),
    ("\\images\\val2014\\", "\\labels\\val2014\\"),
    ("/images/train2014/", "/labels/train2014/"),
    ("/images/val2014/", "/labels/val2014/"),
    ("\\JPEGImages\\", "\\labels\\"),
)
# Extensions replaced by ".txt" when they end the path (case-sensitive, in Darknet's order).
_IMAGE_EXTENSIONS = (
    ".jpg", ".JPG", ".jpeg", ".JPEG", ".png", ".PNG",
    ".bmp", ".BMP", ".ppm", ".PPM", ".tiff", ".TIFF",
)

_CLASS = r"[+-]?\d+"
_FLOAT = r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?"
_CLASS_RE = re.compile(_CLASS, re.ASCII)
_FLOAT_RE = re.compile(_FLOAT, re.ASCII)
_ROW_RE = re.compile(rf"\s*{_CLASS}(?:\s+{_FLOAT}){{4}}\s*", re.ASCII)
_KEPT = "kept, as Darknet's read_boxes keeps it"


def label_path_for(image_path: str | os.PathLike[str]) -> Path:
    """The label file Darknet reads for an image (``replace_image_to_label``, src/utils.c).

    Works on the path string as given: the folder substitutions above, then leading/trailing
    spaces and tabs trimmed, then the image extension replaced by ``.txt``.

    Raises:
        DataError: the extension is not one Darknet knows (Darknet only warns, then would read
            the image itself as a label file).
    """
    label = os.fspath(image_path)
    for old, new in _FOLDER_REPLACEMENTS:
        label = label.replace(old, new, 1)
    label = label.strip(" \t")
    for extension in _IMAGE_EXTENSIONS:
        if label.endswith(extension):
            label = label[: -len(extension)] + ".txt"
    if len(label) <= 4 or not label.endswith(".txt"):
        raise DataError(
            f"{os.fspath(image_path)}: cannot infer the label file name; Darknet knows only "
            f"the extensions {' '.join(_IMAGE_EXTENSIONS)}"
        )
    return Path(label)


def label_file_for(image_path: str | os.PathLike[str]) -> Path:
    """The label file Darknet reads for an image of a list file, whose relative entries were made absolute.

    Darknet substitutes folders in the entry as written: ``images/train2017/a.jpg`` (relative to the cwd) has no
    leading ``/``, so it keeps ``images/`` where the absolute form gets ``labels/``.  So for an image under the cwd, the
    label of its cwd-relative form is taken when that differs and exists; otherwise :func:`label_path_for` of the
    path as given.  (An entry written absolute whose relative form's label also exists is read from the latter: the
    list's text is no longer known here.)

    Raises:
        DataError: the extension is not one Darknet knows (see :func:`label_path_for`).
    """
    image = Path(image_path)
    label = label_path_for(image)
    cwd = Path.cwd()
    if image.is_absolute() and image.is_relative_to(cwd) and image != cwd:
        as_written = cwd / label_path_for(image.relative_to(cwd))
        if as_written != label and as_written.is_file():
            return as_written
    return label


@dataclass(frozen=True)
class LabelIssue:
    """One problem found in a label file; ``line`` is 1-based, ``None`` for the whole file."""

    path: Path
    line: int | None
    reason: str
    #: True if the row was dropped, False if it was kept (see the module's policy table).
    skipped: bool

    def __str__(self) -> str:
        where = self.path if self.line is None else f"{self.path}:{self.line}"
        return f"{where}: {self.reason}"


@dataclass(frozen=True)
class LabelFile:
    """The usable rows of one label file and what was wrong with the rest."""

    path: Path
    #: (N, 5) float32 ``class, cx, cy, w, h`` (relative units), in file order.
    boxes: np.ndarray
    #: (N,) 1-based line of each row, to name it in later messages.
    lines: np.ndarray
    issues: tuple[LabelIssue, ...] = ()
    #: The file does not exist; Darknet then treats the image as having no objects.
    missing: bool = False

    @property
    def class_ids(self) -> np.ndarray:
        """(N,) int64 class of each row."""
        return self.boxes[:, 0].astype(np.int64)


def missing_label_issue(label_path: Path) -> LabelIssue:
    """The issue of a label file that does not exist (Darknet: "Can't open label file", no objects)."""
    return LabelIssue(label_path, None, "label file not found; the image counts as having no objects, as in Darknet",
                      skipped=False)


def issue_files(issues: Sequence[LabelIssue], limit: int) -> str:
    """Where ``issues`` are, for the line closing a cut list: ``a.txt (3), b.txt (2), 4 more files`` (at most
    ``limit`` files, in order, each with its count), so no file with a problem goes unnamed."""
    per_file: dict[Path, int] = {}
    for issue in issues:
        per_file[issue.path] = per_file.get(issue.path, 0) + 1
    files = [f"{path} ({count})" for path, count in list(per_file.items())[:limit]]
    if len(per_file) > limit:
        files.append(f"{len(per_file) - limit} more files")
    return ", ".join(files)


def _syntax_problem(fields: list[str]) -> str:
    """Why a line that failed the row pattern is not ``class cx cy w h``."""
    if len(fields) != 5:
        return f"{len(fields)} fields, expected 5 (class cx cy w h)"
    if not _CLASS_RE.fullmatch(fields[0]):
        kind = "not an integer" if _FLOAT_RE.fullmatch(fields[0]) else "not a number"
        return f"class {fields[0]!r} is {kind}"
    for name, value in zip(("cx", "cy", "w", "h"), fields[1:]):
        if not _FLOAT_RE.fullmatch(value):
            return f"{name} {value!r} is not a number"
    return "fields must be separated by spaces or tabs"


def _geometry_problems(rows: np.ndarray) -> list[str | None]:
    """Per row, the suspect-geometry description (None if fine); rows are (N, 5) float32."""
    cx, cy, w, h = rows[:, 1], rows[:, 2], rows[:, 3], rows[:, 4]
    checks = (
        (w <= 0, "w = {w:g} is not > 0"),
        (h <= 0, "h = {h:g} is not > 0"),
        (w > 1, "w = {w:g} is > 1"),
        (h > 1, "h = {h:g} is > 1"),
        ((cx < 0) | (cx > 1), "cx = {cx:g} is outside [0, 1]"),
        ((cy < 0) | (cy > 1), "cy = {cy:g} is outside [0, 1]"),
        # correct_boxes marks such a row and fill_truth_detection drops it; validate_detector_map keeps it
        ((cx == 0) & (cy == 0), "cx = cy = 0, dropped in training as Darknet does (\"Wrong annotation\")"),
    )
    flagged = np.zeros(len(rows), dtype=bool)
    for mask, _ in checks:
        flagged |= mask
    problems: list[str | None] = [None] * len(rows)
    for index in np.flatnonzero(flagged):  # only the (rare) bad rows
        values = {"cx": cx[index], "cy": cy[index], "w": w[index], "h": h[index]}
        problems[index] = ", ".join(
            template.format(**values) for mask, template in checks if mask[index]
        )
    return problems


def read_labels(path: str | os.PathLike[str], num_classes: int | None = None) -> LabelFile:
    """Read one YOLO label file, reporting every malformed line with its line number.

    Args:
        path: the label file (see ``label_file_for``).
        num_classes: if given, rows with ``class >= num_classes`` are skipped and reported.

    Returns:
        A ``LabelFile``; a missing file gives ``missing=True``, no rows and one issue.
        Values are float32, as Darknet's ``fscanf("%f")`` stores them.

    Raises:
        DataError: the path exists but cannot be read (e.g. a directory).
    """
    label_path = Path(path)
    try:
        # utf-8-sig: a file saved with a byte-order mark (Windows editors) reads as without it; Darknet's
        # fscanf("%d") fails on the mark and reads no box of the file, this read lost its first line
        text = label_path.read_bytes().decode("utf-8-sig", errors="replace")
    except FileNotFoundError:
        return LabelFile(label_path, np.zeros((0, 5), np.float32), np.zeros(0, np.int64),
                         (missing_label_issue(label_path),), missing=True)
    except OSError as exc:
        raise DataError(f"{label_path}: cannot read label file ({exc.strerror or exc})") from exc

    issues: list[LabelIssue] = []
    good_lines: list[int] = []
    good_text: list[str] = []
    for number, line in enumerate(text.split("\n"), start=1):
        if _ROW_RE.fullmatch(line):
            good_lines.append(number)
            good_text.append(line)
        elif line.strip():
            reason = f"{_syntax_problem(line.split())}; line skipped"
            issues.append(LabelIssue(label_path, number, reason, skipped=True))

    rows = np.array(" ".join(good_text).split(), dtype=np.float64).reshape(-1, 5)
    lines = np.array(good_lines, dtype=np.int64)
    classes = rows[:, 0]
    if num_classes is None:
        bad_class, allowed = classes < 0, "must be >= 0"
    else:
        bad_class = (classes < 0) | (classes >= num_classes)
        allowed = f"must be in [0, {num_classes - 1}]"
    for index in np.flatnonzero(bad_class):
        issues.append(LabelIssue(
            label_path, int(lines[index]),
            f"class {int(classes[index])} {allowed}; line skipped", skipped=True,
        ))
    # "1e39" or "1e999" is valid number syntax but not a finite float32 (Darknet's %f stores inf,
    # as for the literal "inf" skipped above): such a row cannot be a box, so it is skipped too.
    with np.errstate(over="ignore"):
        as_float32 = rows.astype(np.float32)
    finite = np.isfinite(as_float32)
    not_finite = ~finite.all(axis=1) & ~bad_class
    for index in np.flatnonzero(not_finite):
        values = ", ".join(f"{name} = {value:g}" for name, value, value_finite in
                           zip(("class", "cx", "cy", "w", "h"), rows[index], finite[index]) if not value_finite)
        issues.append(LabelIssue(
            label_path, int(lines[index]),
            f"{values} is not a finite 32-bit float; line skipped", skipped=True,
        ))
    keep = ~bad_class & ~not_finite
    rows, lines = as_float32[keep], lines[keep]
    for line, problem in zip(lines, _geometry_problems(rows)):
        if problem is not None:
            issues.append(LabelIssue(label_path, int(line), f"{problem}; {_KEPT}", skipped=False))
    issues.sort(key=lambda issue: issue.line or 0)
    return LabelFile(label_path, rows, lines, tuple(issues))
