"""write_atomic by what is at the path: regular files replaced atomically, links followed, pipes/devices/'-' written
through (never renamed over), folders refused; stale temporary files cleaned; outputs that are sources refused."""
from __future__ import annotations

import io
import os
import stat
import tempfile
import threading
import time
from pathlib import Path

import pytest

from darknet_torch.errors import DataError
from darknet_torch.files import (is_stream, prepare_output_dir, refuse_overwriting_sources, remove_stale_temps,
                                 write_atomic)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp"))


def test_new_file_gets_open_permissions_and_parents(tmp_path):
    path = tmp_path / "a" / "b" / "out.bin"
    write_atomic(path, b"data")
    assert path.read_bytes() == b"data"
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~_umask()
    assert _leftovers(path.parent) == []


def test_existing_file_is_replaced_keeping_its_permissions(tmp_path):
    path = tmp_path / "out.txt"
    path.write_bytes(b"old old old")
    path.chmod(0o640)
    write_atomic(path, b"new")
    assert path.read_bytes() == b"new"
    assert stat.S_IMODE(path.stat().st_mode) == 0o640
    assert _leftovers(tmp_path) == []


def test_symlink_is_followed_target_updated_and_link_kept(tmp_path):
    target = tmp_path / "real" / "results.json"
    target.parent.mkdir()
    target.write_bytes(b"old")
    link = tmp_path / "latest.json"
    link.symlink_to(target)
    write_atomic(link, b"new")
    assert link.is_symlink() and os.readlink(link) == str(target)
    assert target.read_bytes() == b"new"
    assert _leftovers(tmp_path) == [] and _leftovers(target.parent) == []


def test_dangling_symlink_creates_its_target(tmp_path):
    link = tmp_path / "link"
    link.symlink_to(tmp_path / "made.txt")
    write_atomic(link, b"x")
    assert link.is_symlink() and (tmp_path / "made.txt").read_bytes() == b"x"


def test_fifo_is_written_through_and_stays_a_fifo(tmp_path):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    received: list[bytes] = []
    reader = threading.Thread(target=lambda: received.append(fifo.read_bytes()), daemon=True)
    reader.start()
    write_atomic(fifo, b"through the pipe\n")
    reader.join(timeout=10)
    assert received == [b"through the pipe\n"]
    assert stat.S_ISFIFO(fifo.lstat().st_mode) and is_stream(fifo)
    assert _leftovers(tmp_path) == []


def _null_device(tmp_path: Path) -> Path:
    """A char device that is safe to write: as root a fresh node (1, 3) in tmp; otherwise /dev/null itself, which an
    unprivileged rename could not replace anyway (the old behaviour failed there instead of writing)."""
    if os.geteuid() != 0:
        return Path("/dev/null")
    node = tmp_path / "null"
    try:
        os.mknod(node, stat.S_IFCHR | 0o666, os.makedev(1, 3))
    except PermissionError:
        pytest.skip("cannot create a device node here (no CAP_MKNOD)")
    return node


def test_char_device_is_written_through_and_stays_a_device(tmp_path):
    device = _null_device(tmp_path)
    before = device.lstat()
    write_atomic(device, b"discarded")
    after = device.lstat()
    assert stat.S_ISCHR(after.st_mode) and after.st_rdev == before.st_rdev and after.st_ino == before.st_ino
    assert is_stream(device)


def test_symlink_to_a_device_writes_through(tmp_path):
    device = _null_device(tmp_path)
    link = tmp_path / "out.json"
    link.symlink_to(device)
    write_atomic(link, b"discarded")
    assert link.is_symlink() and stat.S_ISCHR(device.lstat().st_mode)


def test_dash_is_stdout(monkeypatch):
    stdout = io.TextIOWrapper(io.BytesIO(), encoding="utf-8")
    monkeypatch.setattr("sys.stdout", stdout)
    print("before", end="\n")
    write_atomic("-", b"{\"a\": 1}\n")
    assert stdout.buffer.getvalue() == b"before\n{\"a\": 1}\n"
    assert is_stream("-") and not is_stream(Path("new-file.json"))


def test_folder_is_refused_naming_it(tmp_path):
    folder = tmp_path / "results.json"
    folder.mkdir()
    with pytest.raises(IsADirectoryError, match="results.json"):
        write_atomic(folder, b"x")
    assert folder.is_dir() and list(folder.iterdir()) == []


def _aged(path: Path, seconds: float) -> Path:
    os.utime(path, (time.time() - seconds,) * 2)
    return path


def test_remove_stale_temps_only_removes_our_old_temp_names(tmp_path):
    ours = [tmp_path / ".tiny_last.pt.k2j_9xq1.tmp", tmp_path / ".chart_tiny.png.abcdefgh.tmp"]
    theirs = [tmp_path / "notes.tmp", tmp_path / ".tiny_last.pt.short.tmp", tmp_path / "tiny_last.pt",
              tmp_path / ".other_last.weights.abcdefgh.tmp"]  # another cfg's run sharing the folder
    for path in ours + theirs:
        path.write_bytes(b"x")
        _aged(path, 7200)
    (tmp_path / ".tiny_dir.pt.abcdefgh.tmp").mkdir()
    prefixes = ("tiny_", "chart_tiny.png")
    assert sorted(remove_stale_temps(tmp_path, prefixes)) == sorted(ours)
    assert all(p.exists() for p in theirs) and (tmp_path / ".tiny_dir.pt.abcdefgh.tmp").is_dir()
    assert remove_stale_temps(tmp_path / "missing", prefixes) == []


def test_remove_stale_temps_keeps_a_temp_another_writer_is_still_writing(tmp_path):
    """A concurrent run's write_atomic in flight (young temp file) survives, and its rename then succeeds."""
    fd, tmp = tempfile.mkstemp(dir=tmp_path, prefix=".tiny_last.weights.", suffix=".tmp")
    os.write(fd, b"partial")
    os.close(fd)
    assert remove_stale_temps(tmp_path, ("tiny_",)) == []
    os.replace(tmp, tmp_path / "tiny_last.weights")
    assert (tmp_path / "tiny_last.weights").read_bytes() == b"partial"
    fd, tmp = tempfile.mkstemp(dir=tmp_path, prefix=".tiny_last.weights.", suffix=".tmp")
    os.close(fd)
    assert remove_stale_temps(tmp_path, ("tiny_",), older_than=0) == [Path(tmp)]


def test_prepare_output_dir_errors_name_the_path(tmp_path: Path):
    assert prepare_output_dir(tmp_path / "new" / "deep") == tmp_path / "new" / "deep"
    blocker = tmp_path / "file"
    blocker.write_text("x")
    for bad in (blocker, blocker / "sub"):
        with pytest.raises(DataError, match=str(bad)):
            prepare_output_dir(bad)


def _clash(output: Path, source: Path) -> str:
    return f"{output}: this output would overwrite the source {source}"


def test_an_output_that_is_a_source_is_refused_naming_both(tmp_path: Path, monkeypatch):
    source = tmp_path / "photos" / "dog.jpg"
    source.parent.mkdir()
    source.write_bytes(b"jpeg")
    (tmp_path / "link.jpg").symlink_to(source)
    os.link(source, tmp_path / "hard.jpg")
    monkeypatch.chdir(tmp_path)
    for output in (source, Path("photos/../photos/dog.jpg"), tmp_path / "link.jpg", tmp_path / "hard.jpg"):
        with pytest.raises(DataError, match=_clash(output, source)):
            refuse_overwriting_sources([tmp_path / "other.jpg", output], [source])
    with pytest.raises(DataError, match=_clash(source, tmp_path / "link.jpg")):  # a link given as the source
        refuse_overwriting_sources([source], [tmp_path / "link.jpg"])
    assert source.read_bytes() == b"jpeg"


def test_missing_paths_compare_by_resolved_path_and_stdout_is_never_a_source(tmp_path: Path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(DataError, match=_clash(tmp_path / "new.mp4", Path("new.mp4"))):
        refuse_overwriting_sources([tmp_path / "new.mp4"], [Path("new.mp4")])
    refuse_overwriting_sources(["-", tmp_path / "out.mp4"], ["-", tmp_path / "in.mp4"])  # no error


def test_a_source_inside_an_output_folder_is_refused(tmp_path: Path):
    crops = tmp_path / "out" / "crops"
    (crops / "dog").mkdir(parents=True)
    (crops / "dog" / "dog_1.jpg").write_bytes(b"jpeg")
    refuse_overwriting_sources([], [crops / "dog" / "dog_1.jpg"], [tmp_path / "elsewhere"])
    with pytest.raises(DataError, match=f"{crops}: outputs are written into this folder, which holds the source "
                                        f"{crops / 'dog' / 'dog_1.jpg'}"):
        refuse_overwriting_sources([], [crops / "dog" / "dog_1.jpg"], [crops])
