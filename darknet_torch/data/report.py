"""The one-screen data report shown before training, and the decision whether training may start.

Everything wrong with a training set is found here, up front, instead of hours into a run: images that do not exist,
images whose label file Darknet could not name, missing and empty label files, every malformed label line
(``path:line: reason``, from ``read_labels``) and the boxes per class. The label rows are kept, flattened, so the
training dataset does not read the files a second time.

Policy (``DataReport.check``): training refuses to start when *any* listed image is missing or has an extension
Darknet does not know (0 % tolerance: Darknet would train on a blank 10x10 image or read the image as its own label
file), or when the whole set has no usable box. Missing label files (negative images, as in Darknet), empty label
files and bad label lines do not stop training: bad lines are skipped (wrong syntax, class out of range) or kept
(coordinates outside [0, 1], which augmentation clips or drops as Darknet does), and all of them are listed here.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
from terminaltables import AsciiTable

from darknet_torch.data.labels import LabelIssue, issue_files, label_file_for, label_path_for, read_labels
from darknet_torch.errors import DataError

#: Problems listed individually in the report; the rest are counted.
SHOWN_PROBLEMS = 20
#: Missing label files listed individually (they are often all missing for one reason).
SHOWN_MISSING_LABELS = 5
#: Column groups of the boxes-per-class table, so 80 classes fit on one screen.
CLASS_TABLE_GROUPS = 4


def _listing(lines: Sequence[str], limit: int, indent: str = "  ") -> list[str]:
    """The first ``limit`` lines, then ``... and N more``."""
    shown = [f"{indent}{line}" for line in lines[:limit]]
    if len(lines) > limit:
        shown.append(f"{indent}... and {len(lines) - limit} more")
    return shown


@dataclass(frozen=True)
class DataReport:
    """What ``data_report`` found; ``format()`` renders it, ``check()`` decides whether training may start."""

    image_paths: tuple[Path, ...]
    #: None: every class was kept (``calc_anchors``).
    num_classes: int | None
    names: tuple[str, ...] | None
    #: ``path: reason(s)`` for each image training cannot use (missing file, unknown extension), one per image, in
    #: list order.
    image_errors: tuple[str, ...]
    #: Label file Darknet reads for each image (None when it cannot be named).
    label_paths: tuple[Path | None, ...]
    #: Label files that do not exist (images with no objects, as in Darknet).
    missing_labels: tuple[Path, ...]
    #: Label files that exist but give no box.
    empty_labels: tuple[Path, ...]
    #: Every malformed or suspect label line (``str(issue)`` is ``path:line: reason``), file by file.
    issues: tuple[LabelIssue, ...]
    #: (T, 5) float32 ``class cx cy w h`` of all usable rows, image after image.
    boxes: np.ndarray
    #: (N + 1,) int64: the rows of image ``i`` are ``boxes[offsets[i]:offsets[i + 1]]``.
    offsets: np.ndarray
    #: Other things the user should see (names/classes mismatch, unused ``.data`` keys).
    warnings: tuple[str, ...] = ()

    @property
    def images_found(self) -> int:
        return len(self.image_paths) - len(self.image_errors)

    @property
    def labels_found(self) -> int:
        return sum(path is not None for path in self.label_paths) - len(self.missing_labels)

    @property
    def skipped_lines(self) -> int:
        return sum(issue.skipped for issue in self.issues)

    @property
    def class_counts(self) -> np.ndarray:
        """(num_classes,) int64 usable boxes per class."""
        return np.bincount(self.boxes[:, 0].astype(np.int64), minlength=self.num_classes or 0)

    def labels_of(self, index: int) -> np.ndarray:
        """(N, 5) float32 usable rows of image ``index``."""
        return self.boxes[self.offsets[index]:self.offsets[index + 1]]

    def refusal(self) -> str | None:
        """Why training must not start with this data (see the module's policy), or None."""
        if self.image_errors:
            return (f"{len(self.image_errors)} of {len(self.image_paths)} training images cannot be used; "
                    f"fix or remove them from the list")
        if not len(self.boxes):
            first = self.label_paths[0] if self.label_paths else None
            return (f"no usable box in any label file (Darknet looks for the labels of "
                    f"{self.image_paths[0] if self.image_paths else '?'} in {first})")
        return None

    def check(self) -> None:
        """Raise DataError (with the whole report) if training must not start."""
        reason = self.refusal()
        if reason is not None:
            raise DataError(f"{reason}\n{self.format()}")

    def check_label_paths(self) -> None:
        """Raise DataError if an image's label file cannot be named (an unknown extension): it cannot be scored."""
        for image, label in zip(self.image_paths, self.label_paths):
            if label is None:
                label_path_for(image)  # raises with Darknet's reason

    def _class_table(self) -> str:
        counts = self.class_counts
        classes = len(counts)
        names = self.names if self.names and len(self.names) == classes else None
        cells = [(str(class_id), (names[class_id] if names else "")[:16], str(int(counts[class_id])))
                 for class_id in range(classes)]
        groups = max(1, min(CLASS_TABLE_GROUPS, classes))
        rows_per_group = math.ceil(classes / groups)
        rows = [["id", "class", "boxes"] * groups]
        for row in range(rows_per_group):
            line: list[str] = []
            for group in range(groups):
                index = group * rows_per_group + row
                line.extend(cells[index] if index < len(cells) else ("", "", ""))
            rows.append(line)
        table = AsciiTable(rows)
        for column in range(0, 3 * groups, 3):
            table.justify_columns[column] = table.justify_columns[column + 2] = "right"
        return table.table

    def format(self) -> str:
        """The one-screen report: counts, errors, label problems (first 20), boxes per class."""
        listed = len(self.image_paths)
        kept = len(self.issues) - self.skipped_lines
        counts = self.class_counts
        lines = [
            f"Training data: {listed} images listed, {self.images_found} found, "
            f"{len(self.image_errors)} unusable",
            f"  label files: {self.labels_found} found, {len(self.missing_labels)} missing "
            f"(their images count as having no objects), {len(self.empty_labels)} empty",
            f"  boxes: {len(self.boxes)} usable in {int((counts > 0).sum())} of {len(counts)} classes; "
            f" label lines: {self.skipped_lines} skipped, {kept} kept with a warning",
        ]
        if self.image_errors:
            lines.append("ERRORS (training refuses to start):")
            lines += _listing(self.image_errors, SHOWN_PROBLEMS)
        lines += [f"warning: {warning}" for warning in self.warnings]
        if self.issues:
            lines.append("Label problems (path:line: reason):")
            lines += _listing([str(issue) for issue in self.issues], SHOWN_PROBLEMS)
            if len(self.issues) > SHOWN_PROBLEMS:
                lines[-1] += f", in {issue_files(self.issues[SHOWN_PROBLEMS:], SHOWN_PROBLEMS)}"
        if self.missing_labels:
            lines.append("Missing label files:")
            lines += _listing([str(path) for path in self.missing_labels], SHOWN_MISSING_LABELS)
        lines.append(self._class_table())
        return "\n".join(lines)


def data_report(image_paths: Sequence[str | os.PathLike[str]], num_classes: int | None,
                names: Sequence[str] | None = None, warnings: Sequence[str] = ()) -> DataReport:
    """Check every image and label file of a training list (see the module docstring).

    Args:
        image_paths: the images, as ``read_image_list`` returns them.
        num_classes: the network's classes; label rows with ``class >= num_classes`` are skipped and reported
            (None: every class is kept, as Darknet's ``calc_anchors`` reads them).
        names: class names for the per-class table (a count that differs from ``num_classes`` is a warning).
        warnings: extra lines to show (e.g. ``DataConfig.warnings``).

    Raises:
        DataError: a label path exists but cannot be read (e.g. it is a folder).
    """
    if num_classes is not None and num_classes < 1:
        raise ValueError(f"num_classes must be >= 1, got {num_classes}")
    images = tuple(Path(path) for path in image_paths)
    image_errors: list[str] = []
    label_paths: list[Path | None] = []
    missing: list[Path] = []
    empty: list[Path] = []
    issues: list[LabelIssue] = []
    per_image: list[np.ndarray] = []
    for image in images:
        found = image.is_file()
        if not found:
            image_errors.append(f"{image}: image file not found")
        try:
            label_path = label_file_for(image)
        except DataError as exc:
            if found:
                image_errors.append(str(exc))
            else:  # one entry per image: images_found and "N of M cannot be used" count images, not reasons
                image_errors[-1] += f"; and {str(exc).removeprefix(f'{image}: ')}"
            label_paths.append(None)
            per_image.append(np.zeros((0, 5), np.float32))
            continue
        labels = read_labels(label_path, num_classes)
        label_paths.append(label_path)
        per_image.append(labels.boxes)
        if labels.missing:
            missing.append(label_path)
            continue
        if not len(labels.boxes):
            empty.append(label_path)
        issues.extend(labels.issues)
    all_warnings = list(warnings)
    if names is not None and num_classes is not None and len(names) != num_classes:
        all_warnings.append(f"{len(names)} class names for classes={num_classes}")
    counts = np.array([0] + [len(rows) for rows in per_image], dtype=np.int64)
    return DataReport(
        image_paths=images, num_classes=num_classes, names=tuple(names) if names is not None else None,
        image_errors=tuple(image_errors), label_paths=tuple(label_paths), missing_labels=tuple(missing),
        empty_labels=tuple(empty), issues=tuple(issues),
        boxes=np.concatenate(per_image) if per_image else np.zeros((0, 5), np.float32),
        offsets=np.cumsum(counts), warnings=tuple(all_warnings),
    )
