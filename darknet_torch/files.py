"""Writing output files so that a reader never sees a torn file and nothing but the named file is replaced.

:func:`write_atomic` decides by what is at the path (``lstat``), never by its name:

* a regular file or a new path: a temporary file in the same folder (``.<name>.<random>.tmp``), fsync, then
  ``os.replace`` — a reader sees the old file or the whole new one; an existing file keeps its permission bits, a new
  one gets what ``open()`` would give it (``0o666 & ~umask``);
* a symlink: followed, like a shell's ``>``; the rule above applies to its final target, the link itself is kept;
* a FIFO, character or block device (``/dev/null``, ``/dev/stdout``, a named pipe): written straight through, no
  temporary file and no rename (renaming over one would destroy the device node or pipe);
* ``-``: standard output;
* a folder (or anything else, e.g. a socket): refused with an ``OSError`` naming the path.

:func:`prepare_output_dir` and :func:`prepare_output_file` check outputs before a command does any work, and
:func:`refuse_overwriting_sources` refuses a run whose outputs would replace its own inputs.

:func:`remove_stale_temps` deletes the temporary files a killed writer left behind: only names of that form, for the
caller's own output names, and only when old enough that no live writer (e.g. a concurrent run sharing the folder)
can still be renaming them.
"""
from __future__ import annotations

import errno
import os
import re
import stat
import sys
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path
from typing import TextIO

from darknet_torch.errors import DataError

STDOUT = "-"
_TEMP_SUFFIX = ".tmp"
# ``.<name>.<mkstemp's 8 random characters>.tmp``: what write_atomic leaves behind when killed mid-write.
_TEMP_NAME = re.compile(r"^\.(?P<target>.+)\.[A-Za-z0-9_]{8}\.tmp$")
# A temporary file younger than this may still belong to a live write_atomic (a save takes seconds, not an hour).
STALE_TEMP_AGE = 3600.0


def _read_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK = _read_umask()  # read once at import: changing the process umask later, from threads, would race


def write_atomic(path: str | os.PathLike[str], data: bytes) -> None:
    """Write ``data`` to ``path``: atomically for regular files, straight through for pipes/devices/``-``.

    Raises:
        OSError: the folder or file cannot be written, or ``path`` is a folder or a socket (``IsADirectoryError``,
            errno ``EISDIR`` / ``EINVAL``); the message names the path.
    """
    if os.fspath(path) == STDOUT:
        _write_stdout(data)
        return
    target, mode = _resolve(path)
    if mode is None or stat.S_ISREG(mode):
        _replace(target, data, None if mode is None else stat.S_IMODE(mode))
    elif _is_stream_mode(mode):
        with open(target, "wb", buffering=0) as handle:
            handle.write(data)
    elif stat.S_ISDIR(mode):
        raise IsADirectoryError(errno.EISDIR, "is a folder, not a file", str(path))
    else:
        raise OSError(errno.EINVAL, "not a regular file, pipe or device", str(path))


def human_stream(output: str | os.PathLike[str] | None) -> TextIO:
    """Where a command's human-readable lines go: standard output, or standard error when its output file is
    standard output (``-``), so that a pipe receives nothing but that file (JSON, ONNX, weights)."""
    return sys.stderr if output is not None and os.fspath(output) == STDOUT else sys.stdout


def is_stream(path: str | os.PathLike[str]) -> bool:
    """True for ``-`` and (links to) FIFOs and devices: written straight through, no file to put siblings beside."""
    if os.fspath(path) == STDOUT:
        return True
    mode = _resolve(path)[1]
    return mode is not None and _is_stream_mode(mode)


def _resolve(path: str | os.PathLike[str]) -> tuple[Path, int | None]:
    """The path to write (a symlink's final target) and its ``st_mode`` (None: nothing there yet)."""
    target = Path(os.path.realpath(path)) if Path(path).is_symlink() else Path(path)
    try:
        return target, target.lstat().st_mode
    except (FileNotFoundError, NotADirectoryError):  # nothing there (NotADirectory: a parent is a file)
        return target, None


def _is_stream_mode(mode: int) -> bool:
    return stat.S_ISFIFO(mode) or stat.S_ISCHR(mode) or stat.S_ISBLK(mode)


def _write_stdout(data: bytes) -> None:
    sys.stdout.flush()  # keep the order with text already printed
    binary = getattr(sys.stdout, "buffer", None)
    if binary is None:  # a text-only stream put in place of stdout (e.g. io.StringIO)
        sys.stdout.write(data.decode("utf-8", "replace"))
        sys.stdout.flush()
    else:
        binary.write(data)
        binary.flush()


def _replace(path: Path, data: bytes, mode: int | None) -> None:
    """Temporary file beside ``path``, fsync, rename over it: ``path`` is the old file or the new one, never torn."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=_TEMP_SUFFIX)
    try:
        os.fchmod(fd, 0o666 & ~_UMASK if mode is None else mode)  # mkstemp makes 0600
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _temp_target(path: Path) -> str | None:
    """The file name a :func:`write_atomic` temporary file (``.<name>.XXXXXXXX.tmp``) was for, else None."""
    match = _TEMP_NAME.match(path.name)
    return match["target"] if match else None


def remove_stale_temps(folder: str | os.PathLike[str], prefixes: Iterable[str],
                       older_than: float = STALE_TEMP_AGE) -> list[Path]:
    """Delete the temporary files a killed :func:`write_atomic` left in ``folder`` (not recursive); returns them.

    Only regular files named like ours, for a target name starting with one of ``prefixes`` (the caller's own
    outputs), and last modified at least ``older_than`` seconds ago: another process writing to the same folder keeps
    its in-flight temporary files.  A missing folder is no error.
    """
    prefixes = tuple(prefixes)
    removed = []
    try:
        entries = list(Path(folder).iterdir())
    except (FileNotFoundError, NotADirectoryError):
        return removed
    now = time.time()
    for entry in entries:
        target = _temp_target(entry)
        if target is None or not target.startswith(prefixes):
            continue
        try:
            info = entry.lstat()
        except FileNotFoundError:  # renamed or removed by its writer meanwhile
            continue
        if stat.S_ISREG(info.st_mode) and now - info.st_mtime >= older_than:
            entry.unlink(missing_ok=True)
            removed.append(entry)
    return removed


def prepare_output_dir(path: str | os.PathLike[str]) -> Path:
    """Create ``path`` (and parents) and check that files can be created in it.

    Raises:
        DataError: it exists as a file, cannot be created, or is not writable (the message names the path).
    """
    folder = Path(path)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=folder, prefix=".write-test-")
        os.close(fd)
        os.unlink(probe)
    except FileExistsError:
        raise DataError(f"{folder}: output path exists and is not a folder") from None
    except OSError as exc:
        raise DataError(f"{folder}: cannot write to the output folder ({exc.strerror or exc})") from None
    return folder


def prepare_output_file(path: str | os.PathLike[str], sources: Iterable[str | os.PathLike[str]] = ()) -> Path:
    """Check, before any work, that :func:`~darknet_torch.files.write_atomic` can write ``path``: ``-``, pipes and
    devices pass; otherwise it must not be a folder, and its folder is created (if missing) and probed as
    :func:`prepare_output_dir` does.  ``sources``: the command's input files, which ``path`` must not be
    (:func:`refuse_overwriting_sources`).

    Raises:
        DataError: ``path`` is a folder, or one of ``sources``, or its folder cannot be created or written (the
            message names the path).
    """
    refuse_overwriting_sources([path], sources)
    if is_stream(path):
        return Path(path)
    target = Path(os.path.realpath(path))  # a symlink is written through to its target
    if target.is_dir():
        raise DataError(f"{path}: the output file is a folder")
    prepare_output_dir(target.parent)
    return Path(path)


def _identities(path: str | os.PathLike[str]) -> set[object]:
    """What makes two paths one file: the resolved path (symlinks followed, case folded where the OS does) and,
    when it exists, the (device, inode) pair, which also catches hard links and case-insensitive file systems."""
    keys: set[object] = {os.path.normcase(os.path.realpath(path))}
    try:
        status = os.stat(path)
    except (OSError, ValueError):
        return keys
    keys.add((status.st_dev, status.st_ino))
    return keys


def refuse_overwriting_sources(outputs: Iterable[str | os.PathLike[str]], sources: Iterable[str | os.PathLike[str]],
                               folders: Iterable[str | os.PathLike[str]] = ()) -> None:
    """Refuse, before any work, a run that would write over one of its own inputs (``detect photos --output
    photos``, ``demo clip.mp4 --output .``): an output file that is a source (the same inode when both exist, else
    the same resolved path; symlinks followed), or a source inside one of ``folders`` (outputs whose names are only
    known later, e.g. crops).  ``-`` (standard output) is never a source's file.

    Raises:
        DataError: naming the output and the source, so the user can choose another output.
    """
    source_of: dict[object, str] = {}
    for source in sources:
        for key in _identities(source):
            source_of.setdefault(key, os.fspath(source))
    for output in outputs:
        if os.fspath(output) != STDOUT:
            clash = next((source_of[key] for key in _identities(output) if key in source_of), None)
            if clash is not None:
                raise DataError(f"{output}: this output would overwrite the source {clash}; choose another output")
    for folder in folders:
        inside = Path(os.path.normcase(os.path.realpath(folder)))
        for key, source in source_of.items():
            if isinstance(key, str) and Path(key).is_relative_to(inside):
                raise DataError(f"{folder}: outputs are written into this folder, which holds the source {source}; "
                                "choose another output folder")
