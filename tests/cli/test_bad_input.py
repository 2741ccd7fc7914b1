"""Bad input and odd output targets, one table per command: each row sets files up, runs the command in-process and
expects an exit status and a one-line message (never a traceback).

The network is the "mini" yolov3-tiny of ../shared/golden (128x128, 4 classes, Darknet-saved weights), so each row
takes a fraction of a second.
"""
from __future__ import annotations

import json
import math
import os
import shutil
import stat
import tempfile
import threading
import time
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
import torch
from PIL import Image

from darknet_torch.cli.main import main
from darknet_torch.model.darknet import Darknet
from darknet_torch.model.layers.conv import ConvBlock
from darknet_torch.model.heads import YOLOLayer
from tests.train.conftest import write_synthetic_set, write_tiny_cfg

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


def run(capsys, caplog, argv: list[str]) -> tuple[int, str]:
    """Exit status and everything the user sees (stderr and log lines; stdout too)."""
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out + err + caplog.text


# ---- setups: each edits the files of one row and may return extra arguments -----------------------------------------

Files = dict[str, Path]
Setup = Callable[[Files, pytest.MonkeyPatch], list[str]]
BOM = b"\xef\xbb\xbf"


def edit_cfg(old: str, new: str) -> Setup:
    """Replace the first ``old`` in the cfg."""
    def setup(files: Files, monkeypatch: pytest.MonkeyPatch) -> list[str]:
        text = files["cfg"].read_text()
        assert old in text
        files["cfg"].write_text(text.replace(old, new, 1))
        return []
    return setup


def bom(key: str) -> Setup:
    def setup(files: Files, monkeypatch: pytest.MonkeyPatch) -> list[str]:
        files[key].write_bytes(BOM + files[key].read_bytes())
        return []
    return setup


def image_list_with_bom(files: Files, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The images are given as a Darknet list file written by a Windows editor."""
    listing = files["images"].with_name("list.txt")
    listing.write_bytes(BOM + "".join(f"{p}\n" for p in sorted(files["images"].glob("*.jpg"))).encode())
    files["images"] = listing
    return []


def pt_file(make: Callable[[Files, Path], object] | bytes) -> Setup:
    """--weights becomes a .pt holding ``make(files, folder)`` (saved with torch.save) or the given raw bytes."""
    def setup(files: Files, monkeypatch: pytest.MonkeyPatch) -> list[str]:
        path = files["weights"].with_name("bad.pt")
        if isinstance(make, bytes):
            path.write_bytes(make)
        else:
            torch.save(make(files, path.parent), path)
        files["weights"] = path
        return []
    return setup


class _OpensAFile:
    """A pickle that would create ``pwned`` when unpickled without weights_only."""

    def __init__(self, folder: Path) -> None:
        self.target = str(folder / "pwned")

    def __reduce__(self):
        return open, (self.target, "w")


def _another_cfgs_state(files: Files, folder: Path) -> dict:
    return Darknet(write_tiny_cfg(folder / "other.cfg")).state_dict()


def edit_weights(change: Callable[[Darknet], None]) -> Setup:
    """--weights becomes the mini weights with ``change`` applied (same size, valid header)."""
    def setup(files: Files, monkeypatch: pytest.MonkeyPatch) -> list[str]:
        model = Darknet(files["cfg"]).load_darknet_weights(files["weights"])
        with torch.no_grad():
            change(model)
        files["weights"] = files["weights"].with_name("edited.weights")
        model.save_darknet_weights(files["weights"])
        return []
    return setup


def _nan_kernel(model: Darknet) -> None:
    model.module_list[0].conv.weight[0, 0, 0, 0] = math.nan


def _negative_variance(model: Darknet) -> None:
    model.module_list[2].bn.running_var[1] = -4.0


def _diverged_heads(model: Darknet) -> None:
    """Every anchor of every head: objectness ~1 and tw = 1000, so w = exp(1000) * anchor = inf."""
    for index in model.head_indices:
        conv: ConvBlock = model.module_list[index - 1]
        head: YOLOLayer = model.module_list[index]
        entries = conv.conv.bias.numel() // len(head.anchors)
        for a in range(len(head.anchors)):
            conv.conv.bias[a * entries + 2] = 1000.0
            conv.conv.bias[a * entries + 4] = 50.0


def output_is_a_file(files: Files, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    blocker = files["cfg"].with_name("blocker")
    blocker.write_text("")
    return ["--output", str(blocker)]


# ---- detect ----------------------------------------------------------------------------------------------------------

DETECT: list[tuple[str, Setup, int, str]] = [
    # id, setup, exit status, fragment of what the user sees
    ("cfg_with_bom", bom("cfg"), 0, "2 of 2 images detected"),
    ("names_with_bom", bom("names"), 0, "2 of 2 images detected"),
    ("image_list_with_bom", image_list_with_bom, 0, "2 of 2 images detected"),
    ("huge_net_size", edit_cfg("width=128", "width=100000"), 2, "width: width=100000 is larger than 8192"),
    ("huge_img_size", lambda files, monkeypatch: ["--img-size", "100032"], 2, "larger than 8192"),
    ("odd_anchor_count", edit_cfg("344,319\n", "344\n"), 2,
     "anchors: 11 values make 5 width,height pairs but num=6 and anchor(s) [5] are used"),
    ("unused_unpaired_anchor_value", edit_cfg("344,319\n", "344,319, 400\n"), 0, "an odd number of values (13)"),
    ("pt_empty", pt_file(b""), 2, "bad.pt: not a darknet_torch checkpoint ("),
    ("pt_random_bytes", pt_file(bytes(np.random.default_rng(3).integers(0, 256, 4096, dtype=np.uint8))), 2,
     "bad.pt: not a darknet_torch checkpoint ("),
    ("pt_bare_tensor", pt_file(lambda files, folder: torch.zeros(3)), 2, "it holds a Tensor, not a state dict"),
    ("pt_list", pt_file(lambda files, folder: [1, 2, 3]), 2, "it holds a list, not a state dict"),
    ("pt_code_pickle", pt_file(lambda files, folder: _OpensAFile(folder)), 2, "refused to unpickle"),
    ("pt_another_cfg", pt_file(_another_cfgs_state), 2, "does not match"),
    ("pt_good_state_dict", pt_file(lambda files, folder: {"model": Darknet(files["cfg"]).state_dict()}), 0,
     "2 of 2 images detected"),
    ("weights_with_nan", edit_weights(_nan_kernel), 0, "suspicious weights: layer 0 ("),
    ("weights_negative_variance", edit_weights(_negative_variance), 0, "negative batch-norm variance"),
    ("diverged_weights_inf_boxes", edit_weights(_diverged_heads), 0, "with NaN/inf values"),
    ("output_is_a_file", output_is_a_file, 2, "output path exists and is not a folder"),
    ("missing_weights", lambda files, _: files.update(weights=files["weights"].with_name("gone.weights")) or [], 2,
     "weights file not found"),
]


@pytest.mark.parametrize("setup, code, fragment", [row[1:] for row in DETECT], ids=[row[0] for row in DETECT])
def test_detect_bad_input(setup, code, fragment, mini, tmp_path, capsys, caplog, monkeypatch):
    extra = setup(mini, monkeypatch)
    status, seen = run(capsys, caplog, ["detect", str(mini["images"]), "--cfg", str(mini["cfg"]), "--weights",
                                        str(mini["weights"]), "--names", str(mini["names"]), "--workers", "0",
                                        "--no-progress", "--thresh", "0.01", "--save-labels", "--output",
                                        str(tmp_path / "out"), *extra])
    assert (status, fragment in seen) == (code, True), seen
    assert "Traceback" not in seen and "ufeff" not in seen and not (tmp_path / "pwned").exists()
    if status == 0:  # every file written and finite
        frames = json.loads((tmp_path / "out" / "results.json").read_text())
        objects = [o for f in frames for o in f["objects"]]
        assert len(frames) == 2 and all(o["name"] in ("w", "x", "y", "z") for o in objects)
        assert all(math.isfinite(v) for o in objects for v in o["relative_coordinates"].values())
        assert objects or "NaN/inf" in seen or "negative batch-norm" in seen  # so the checks above saw boxes
        labels = (tmp_path / "out" / "labels").glob("*.txt")
        assert all("inf" not in p.read_text() and "nan" not in p.read_text() for p in labels)
        assert len(list((tmp_path / "out").glob("*.jpg"))) == 2


# ---- map -------------------------------------------------------------------------------------------------------------

@pytest.fixture()
def mini_data(mini: Files, tmp_path: Path) -> Files:
    """``mini`` plus a .data file whose valid list is the two images (one with a label file)."""
    (mini["images"] / "a.txt").write_text("0 0.5 0.5 0.4 0.4\n")
    (tmp_path / "valid.txt").write_text("".join(f"{mini['images'] / n}.jpg\n" for n in ("a", "b")))
    mini["data"] = tmp_path / "mini.data"
    mini["data"].write_text(f"classes = 4\nvalid = {tmp_path / 'valid.txt'}\nnames = {mini['names']}\n")
    return mini


MAP: list[tuple[str, Setup, int, str]] = [
    ("data_with_bom", bom("data"), 0, "mean average precision (mAP@0.50)"),
    ("cfg_with_bom", bom("cfg"), 0, "mean average precision (mAP@0.50)"),
    ("huge_net_size", edit_cfg("height=128", "height=100000"), 2, "height: height=100000 is larger than 8192"),
    ("odd_anchor_count", edit_cfg("344,319\n", "344\n"), 2, "anchor(s) [5] are used"),
    ("pt_code_pickle", pt_file(lambda files, folder: _OpensAFile(folder)), 2, "refused to unpickle"),
    ("pt_another_cfg", pt_file(_another_cfgs_state), 2, "does not match"),
    ("diverged_weights_inf_boxes", edit_weights(_diverged_heads), 0, "with NaN/inf values"),
]


@pytest.mark.parametrize("setup, code, fragment", [row[1:] for row in MAP], ids=[row[0] for row in MAP])
def test_map_bad_input(setup, code, fragment, mini_data, tmp_path, capsys, caplog, monkeypatch):
    extra = setup(mini_data, monkeypatch)
    status, seen = run(capsys, caplog, ["map", "--data", str(mini_data["data"]), "--cfg", str(mini_data["cfg"]),
                                        "--weights", str(mini_data["weights"]), "--workers", "0", "--no-progress",
                                        *extra])
    assert (status, fragment in seen) == (code, True), seen
    assert "Traceback" not in seen and "ufeff" not in seen and not (tmp_path / "pwned").exists()


# ---- train -----------------------------------------------------------------------------------------------------------

@pytest.fixture()
def tiny_set(tmp_path: Path) -> Files:
    """A 3-image synthetic set and a 64x64 cfg that trains 2 iterations (tests/train/conftest.py)."""
    return {"data": write_synthetic_set(tmp_path / "set", count=3),
            "cfg": write_tiny_cfg(tmp_path / "tiny.cfg", net={"max_batches": 2, "batch": 2, "subdivisions": 1}),
            "backup": tmp_path / "set" / "backup"}


def stale_temp(files: Files, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    files["backup"].mkdir(parents=True)
    stale = files["backup"] / ".tiny_last.pt.k2j9xq1a.tmp"
    stale.write_bytes(b"\0" * 1024)  # a save killed mid-write, two hours ago (a younger one may be a live save)
    os.utime(stale, (time.time() - 7200,) * 2)
    return []


def disk_full_at_save(files: Files, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """A checkpoint from an earlier run is in backup; every new write fails as on a full disk."""
    files["backup"].mkdir(parents=True)
    (files["backup"] / "tiny_final.weights").write_bytes(b"the previous checkpoint")

    def full(path, data, mode):
        raise OSError(28, "No space left on device")
    monkeypatch.setattr("darknet_torch.files._replace", full)
    return []


def chart_unwritable(files: Files, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    (files["backup"] / "chart_tiny.png").mkdir(parents=True)  # the chart path is taken by a folder
    return []


def backup_is_a_file(files: Files, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    files["backup"].parent.mkdir(parents=True, exist_ok=True)
    files["backup"].write_text("")
    return []


def refuse_new_files(folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Make ``folder`` read-only; for root, who ignores permission bits, creating a file there fails instead."""
    folder.chmod(0o555)  # left so: the command must fail before it writes anything there
    if not os.access(folder, os.W_OK):
        return
    real = tempfile.mkstemp

    def refuse(*args, dir=None, **kwargs):
        if dir is not None and Path(dir) == folder:
            raise PermissionError(13, "Permission denied")
        return real(*args, dir=dir, **kwargs)
    monkeypatch.setattr(tempfile, "mkstemp", refuse)


def backup_read_only(files: Files, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    files["backup"].mkdir(parents=True)
    refuse_new_files(files["backup"], monkeypatch)
    return []


TRAIN: list[tuple[str, Setup, int, str]] = [
    ("cfg_with_bom", bom("cfg"), 0, "trained to iteration 2"),
    ("stale_temp_removed", stale_temp, 0, "left by an interrupted save"),
    ("huge_net_size", edit_cfg("width=64", "width=100000"), 2, "width: width=100000 is larger than 8192"),
    ("odd_anchor_count", edit_cfg("anchors=14,14, 22,22, 30,30", "anchors=14,14, 22,22, 30"), 2,
     "anchors: 5 values make 2 width,height pairs but num=3 and anchor(s) [2] are used"),
    ("chart_unwritable", chart_unwritable, 0, "cannot write the chart (is a folder, not a file); training goes on"),
    ("backup_is_a_file", backup_is_a_file, 2, "backup: output path exists and is not a folder"),  # was a traceback
    ("backup_read_only", backup_read_only, 2, "backup: cannot write to the output folder (Permission denied)"),
    ("disk_full_at_save", disk_full_at_save, 2, "tiny_final.weights: cannot write (No space left on device); "
                                                "training stopped at iteration 2"),
]


@pytest.mark.parametrize("setup, code, fragment", [row[1:] for row in TRAIN], ids=[row[0] for row in TRAIN])
def test_train_bad_input(setup, code, fragment, tiny_set, capsys, caplog, monkeypatch):
    caplog.set_level("INFO")
    backup = tiny_set["backup"]
    extra = setup(tiny_set, monkeypatch)
    before = {p.name: p.read_bytes() for p in backup.glob("*") if p.is_file() and not p.name.endswith(".tmp")}
    status, seen = run(capsys, caplog, ["train", "--data", str(tiny_set["data"]), "--cfg", str(tiny_set["cfg"]),
                                        "--workers", "0", "--quiet", *extra])
    monkeypatch.undo()
    assert (status, fragment in seen) == (code, True), seen
    assert "Traceback" not in seen and "ufeff" not in seen
    assert not [p.name for p in backup.glob("*.tmp")] + [p.name for p in backup.glob(".*")]  # no temp left
    if status != 0:  # what an earlier run saved is untouched
        assert {name: (backup / name).read_bytes() for name in before} == before


# ---- detect: output targets (issue 17 item 1) -----------------------------------------------------------------------

def test_detect_json_dash_prints_only_json_on_stdout(mini, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)  # where a file named '-' would appear
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
    reader = threading.Thread(target=lambda: received.append(fifo.read_bytes()), daemon=True)
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


def test_detect_json_to_a_folder_is_refused_before_any_image(mini, tmp_path, capsys):
    folder = tmp_path / "results.json"
    folder.mkdir()
    assert detect(mini, "--output", tmp_path / "out", "--json", folder) == 2
    assert capsys.readouterr().err == f"error: {folder}: the output file is a folder\n"
    assert not list((tmp_path / "out").glob("*.jpg"))
