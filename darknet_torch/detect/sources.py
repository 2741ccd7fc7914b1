"""What to detect on: expand the user's sources (files, folders, ``.txt`` lists, globs, ``-`` for standard input)
into image paths.

Folders and globs keep only files with an image extension (so a README beside the photos is not an error); a file
named explicitly, or listed in a ``.txt`` list, is taken as is, and a bad one is reported when it is decoded.  A
``.txt`` list whose entries do not exist is refused before any work (``read_image_list`` names up to 10 of them: a
stale list is caught before a long run); a missing path read from standard input fails alone, as it arrives.
The order is the sources' order, each folder and glob sorted by path, so runs are reproducible.
"""
from __future__ import annotations

import glob
import io
import os
import stat
import sys
from pathlib import Path
from typing import Iterable, Sequence, TextIO

from darknet_torch.config.data_files import read_image_list
from darknet_torch.errors import DataError, quoted

#: Extensions picked up from folders and globs (the formats stb_image and Pillow both read, plus Pillow's usual).
IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tga", ".psd", ".pgm", ".ppm", ".pnm",
                              ".tif", ".tiff", ".webp"})

_GLOB_CHARS = frozenset("*?[")
#: The source that means: image paths from standard input, one per line (Darknet's ``detector test`` without an
#: image, e.g. ``detector test ... < list.txt``).
STDIN_SOURCE = "-"


def is_image_file(path: Path) -> bool:
    """True for a regular file whose extension (any case) is in :data:`IMAGE_EXTENSIONS`."""
    return path.suffix.lower() in IMAGE_EXTENSIONS and path.is_file()


def expand_sources(sources: Sequence[str | os.PathLike[str]], recursive: bool = False) -> list[Path]:
    """Image paths for ``sources``, in order.

    Each source is one of: an image file; a folder (its images, sorted; with ``recursive`` also those of its
    sub-folders); a ``.txt`` list of image paths, one per line (Darknet's ``train.txt`` format, read by
    :func:`darknet_torch.config.data_files.read_image_list`); a glob pattern (``data/*.jpg``, ``imgs/**/*.png``);
    ``-``: the paths read from standard input (:func:`read_path_lines`).

    Raises:
        DataError: no sources, a source that does not exist, a folder without images (with a hint when only its
            sub-folders have some), a glob that matches no image, or a bad list file; the message names the path.
    """
    if not sources:
        raise DataError("no source given: pass image files, folders, .txt lists or glob patterns")
    paths: list[Path] = []
    for source in sources:
        paths.extend(_expand_one(str(source), recursive))
    return paths


def read_path_lines(stream: TextIO, prompt: bool | None = None) -> list[Path]:
    """Image paths from ``stream``, one per line, until its end; blank lines and ``#`` comments are skipped, and a
    UTF-8 byte-order mark at the start of the stream is dropped (as for ``.txt`` lists).

    Each path is taken as is (a bad one is reported when it is decoded, as Darknet does). ``prompt`` (default: when
    the stream is a terminal) prints Darknet's ``Enter Image Path: `` before each line; the images are detected
    once the input ends (Ctrl-D).

    Raises:
        DataError: no path at all.
    """
    interactive = stream.isatty() if prompt is None else prompt
    paths: list[Path] = []
    first = True
    while True:
        if interactive:
            print("Enter Image Path: ", end="", flush=True)
        line = stream.readline()
        if not line:
            break
        if first:  # a list saved with a UTF-8 byte-order mark (`< list.txt`), read as .txt lists are
            line, first = line.removeprefix("\ufeff"), False
        entry = line.strip()
        if entry and not entry.startswith("#"):
            paths.append(Path(entry))
    if not paths:
        raise DataError("no image paths on standard input (source '-': one path per line)")
    return paths


def _expand_one(source: str, recursive: bool) -> list[Path]:
    if source == STDIN_SOURCE:
        stream = _stdin_paths()
        try:
            return read_path_lines(stream)
        finally:
            if stream is not sys.stdin:
                stream.detach()  # leave sys.stdin's buffer open
    path = Path(source)
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        pass
    except (OSError, ValueError) as exc:  # a name too long, a NUL byte: one line, not a traceback
        if not _GLOB_CHARS & set(source):
            raise DataError(f"{quoted(source)}: {getattr(exc, 'strerror', None) or exc}") from None
    else:
        if stat.S_ISDIR(mode):
            return _folder_images(path, recursive)
        if stat.S_ISREG(mode):
            return read_image_list(path) if path.suffix.lower() == ".txt" else [path]
        raise DataError(f"{path}: not a regular file or folder")
    if _GLOB_CHARS & set(source):
        return _glob_images(source)
    raise DataError(f"{path}: no such file or folder")


def _stdin_paths() -> TextIO:
    """Standard input read as file names are: UTF-8, other bytes kept (``surrogateescape``), so a Latin-1 name
    opens its file; a UTF-8 locale's strict stdin raised UnicodeDecodeError.  (A byte-order mark is dropped by
    :func:`read_path_lines`, for every stream.)"""
    buffer = getattr(sys.stdin, "buffer", None)
    if buffer is None:  # already text only (a test's StringIO)
        return sys.stdin
    return io.TextIOWrapper(buffer, encoding="utf-8", errors="surrogateescape")


def _folder_images(folder: Path, recursive: bool) -> list[Path]:
    found = _images_in(folder.rglob("*") if recursive else folder.iterdir())
    if found:
        return found
    if not recursive and _images_in(folder.rglob("*")):
        raise DataError(f"{folder}: no images in this folder, only in its sub-folders (add --recursive)")
    raise DataError(f"{folder}: folder has no images (looked for {', '.join(sorted(IMAGE_EXTENSIONS))}"
                    f"{' in all sub-folders' if recursive else ''})")


def _glob_images(pattern: str) -> list[Path]:
    matches = [Path(p) for p in glob.glob(pattern, recursive=True)]
    found = _images_in(matches)
    if not found:
        what = f"{len(matches)} match(es), none an image file" if matches else "nothing matches"
        raise DataError(f"{pattern}: {what}")
    return found


def _images_in(candidates: Iterable[Path]) -> list[Path]:
    return sorted(p for p in candidates if is_image_file(p))
