"""Bad input and odd output targets, one table per command: each row sets files up, runs the command in-process and
expects an exit status and a one-line message (never a traceback).

The network is the "mini" yolov3-tiny of ../shared/golden (128x128, 4 classes, Darknet-saved weights), so each row
takes a fraction of a second.
"""
from __future__ import annotations

import json
import os
import shutil
import stat
import threading
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from darknet_torch.cli.main import main

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


@pytest.fixture()
def mini(golden_dir: Path, tmp_path: Path) -> dict[str, Path]:
    """Writable copies of the mini cfg and weights, a names file and two small images in ``tmp_path``."""
    source = golden_dir / "mini" / "yolov3-tiny"
    files = {"cfg": tmp_path / "mini.cfg", "weights": tmp_path / "mini.weights", "names": tmp_path / "mini.names",
             "images": tmp_path / "images"}
    shutil.copy(source / "yolov3-tiny.cfg", files["cfg"])
    shutil.copy(source / "yolov3-tiny.weights", files["weights"])
    files["names"].write_text("w\nx\ny\nz\n")
    files["images"].mkdir()
    rng = np.random.default_rng(0)
    for name in ("a", "b"):
        Image.fromarray(rng.integers(0, 256, (96, 120, 3), dtype=np.uint8)).save(files["images"] / f"{name}.jpg")
    return files


def detect(files: dict[str, Path], *extra: object) -> int:
    return main(["detect", str(files["images"]), "--cfg", str(files["cfg"]), "--weights", str(files["weights"]),
                 "--names", str(files["names"]), "--workers", "0", "--no-progress", "--thresh", "0.01",
                 *map(str, extra)])


# ---- detect: output targets (issue 17 item 1) -----------------------------------------------------------------------

def test_detect_json_dash_prints_only_json_on_stdout(mini, tmp_path, capsys):
    assert detect(mini, "--output", tmp_path / "out", "--json", "-", "--no-save-img") == 0
    out, err = capsys.readouterr()
    frames = json.loads(out)
    assert [Path(f["filename"]).name for f in frames] == ["a.jpg", "b.jpg"]
    assert "2 of 2 images detected" in err
    assert not (tmp_path / "out" / "results.json").exists() and not Path("-").exists()


def test_detect_json_to_a_device_keeps_the_device(mini, tmp_path, capsys):
    if os.geteuid() == 0:
        device = tmp_path / "null"
        try:
            os.mknod(device, stat.S_IFCHR | 0o666, os.makedev(1, 3))
        except PermissionError:
            pytest.skip("cannot create a device node here (no CAP_MKNOD)")
    else:
        device = Path("/dev/null")  # unprivileged: the old rename could not replace it, it failed instead
    inode = device.lstat().st_ino
    assert detect(mini, "--output", tmp_path / "out", "--json", device) == 0
    assert stat.S_ISCHR(device.lstat().st_mode) and device.lstat().st_ino == inode
    assert (tmp_path / "out" / "a.jpg").is_file()


def test_detect_json_to_a_fifo_and_through_a_symlink(mini, tmp_path, capsys):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    received: list[bytes] = []
    reader = threading.Thread(target=lambda: received.append(fifo.read_bytes()))
    reader.start()
    assert detect(mini, "--output", tmp_path / "out", "--json", fifo, "--no-save-img") == 0
    reader.join(timeout=10)
    assert len(json.loads(received[0])) == 2 and stat.S_ISFIFO(fifo.lstat().st_mode)

    kept = tmp_path / "kept" / "results.json"
    kept.parent.mkdir()
    kept.write_text("[]")
    link = tmp_path / "latest.json"
    link.symlink_to(kept)
    assert detect(mini, "--output", tmp_path / "out", "--json", link, "--no-save-img") == 0
    assert link.is_symlink() and len(json.loads(kept.read_text())) == 2


def test_detect_json_to_a_folder_is_a_write_error(mini, tmp_path, capsys):
    folder = tmp_path / "results.json"
    folder.mkdir()
    assert detect(mini, "--output", tmp_path / "out", "--json", folder, "--no-save-img") == 1
    err = capsys.readouterr().err
    assert f"{folder}: cannot write: is a folder, not a file" in err and "Traceback" not in err
