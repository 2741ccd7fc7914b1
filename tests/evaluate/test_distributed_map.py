"""``map`` scaled out: two CPU processes under torchrun (gloo) print exactly the one-process report."""
from __future__ import annotations

from pathlib import Path

import pytest

from darknet_torch.cli.main import main
from tests.torchrun import torchrun

IMAGES = 14  # batches of 4: rank 0 detects 0-3 and 8-11, rank 1 4-7 and the short last batch 12-13


@pytest.fixture()
def coco_subset(tmp_path: Path, coco128_dir: Path) -> Path:
    """A .data file whose valid= list is the first coco128 images (with their label files)."""
    listed = (coco128_dir / "train.txt").read_text().split()[:IMAGES]
    (tmp_path / "valid.txt").write_text("".join(f"{coco128_dir / line}\n" for line in listed))
    data = tmp_path / "subset.data"
    data.write_text(f"classes = 80\nvalid = {tmp_path / 'valid.txt'}\nnames = {coco128_dir / 'coco.names'}\n")
    return data


@pytest.mark.usefixtures("one_thread")  # the in-process reference; the torchrun processes run one thread each
def test_two_processes_print_the_one_process_report(coco_subset, repo_root, real_weights, capsys):
    args = ["map", "--data", str(coco_subset), "--cfg", str(repo_root / "cfg" / "yolov3-tiny.cfg"), "--weights",
            str(real_weights), "--batch-size", "4", "--workers", "0", "--no-progress"]
    assert main(args) == 0
    one_out, _ = capsys.readouterr()
    two = torchrun(args, timeout=300)

    assert two.returncode == 0, two.stderr[-3000:]
    assert f"labels found for {IMAGES} of {IMAGES} images" in one_out
    assert " mean average precision (mAP@0.50) = " in one_out
    assert two.stdout == one_out  # every digit, printed once
