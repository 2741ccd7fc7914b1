"""``detect`` scaled out: two CPU processes under torchrun (gloo) write exactly what one process writes."""
from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from darknet_torch.cli.main import main
from tests.torchrun import torchrun

# Per-image timings differ from run to run; everything else must be identical.
TIMING = re.compile(r"Predicted in [0-9.]+ milli-seconds|in [0-9.]+ s \([0-9.]+ images/s\)")


def _files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture()
def image_list(tmp_path: Path, coco128_dir: Path) -> Path:
    """7 images in batches of 2 -> rank 0 gets 0,1,4,5 and rank 1 gets 2,3,6: a stem shared across ranks (needs the
    run-wide ``_2`` name) and an empty file on rank 1 (its failure must fail the job)."""
    coco = sorted((coco128_dir / "images" / "train2017").glob("*.jpg"))[:5]
    other = tmp_path / "other"
    other.mkdir()
    shutil.copy(coco[0], other / coco[0].name)
    (other / "000000000777.jpg").write_bytes(b"")
    paths = [coco[0], coco[1], other / coco[0].name, *coco[2:5], other / "000000000777.jpg"]
    listing = tmp_path / "images.txt"
    listing.write_text("".join(f"{p}\n" for p in paths))
    return listing


@pytest.mark.usefixtures("one_thread")  # the in-process reference; the torchrun processes run one thread each
def test_two_processes_write_the_one_process_outputs(image_list, tmp_path, repo_root, real_weights, capsys):
    args = [str(image_list), "--cfg", str(repo_root / "cfg" / "yolov3-tiny.cfg"), "--weights", str(real_weights),
            "--names", str(repo_root / "data" / "coco.names"), "--batch-size", "2", "--workers", "0",
            "--save-labels", "--ext-output", "--no-progress", "--thresh", "0.1"]
    one_status = main(["detect", *args, "--output", str(tmp_path / "one")])
    one_out, one_err = capsys.readouterr()
    two = torchrun(["detect", *args, "--output", str(tmp_path / "two")], timeout=300)

    assert one_status == 1 and two.returncode != 0, two.stderr[-3000:]  # torchrun reports a failed process as 1
    assert two.stderr.count("000000000777.jpg: empty file") == 1  # rank 0 reports every image once
    assert two.stderr.count("exitcode  : 1") == 2  # both processes exit 1, though only rank 1 had the bad image
    expected = one_out.replace(str(tmp_path / "one"), str(tmp_path / "two"))
    assert TIMING.sub("", two.stdout) == TIMING.sub("", expected)  # every line once, in input order
    assert "6 of 7 images detected" in one_out and one_out.count("Predicted in") == 6

    one_files, two_files = _files(tmp_path / "one"), _files(tmp_path / "two")
    assert {"results.json", "coco_results.json", "000000000009_2.jpg", "labels/000000000009_2.txt"} <= set(one_files)
    assert sorted(two_files) == sorted(one_files)
    for name, content in one_files.items():
        assert two_files[name] == content, f"{name} differs from the one-process run"
