"""``map`` scaled out: two CPU processes (gloo) give exactly the one-process detections and report."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from darknet_torch.cli.main import main
from darknet_torch.evaluate.runner import collect_detections, evaluate
from darknet_torch.model.loading import load_model
from tests.multiprocess import in_forked_ranks, torchrun

IMAGES = 14  # batches of 4: rank 0 detects 0-3 and 8-11, rank 1 4-7 and the short last batch 12-13


@pytest.mark.usefixtures("one_thread")
def test_ranks_detect_their_batches_and_rank_0_scores_all(golden_dir, tmp_path):
    folder = golden_dir / "mini" / "yolov3-tiny"
    model = load_model(folder / "yolov3-tiny.cfg", folder / "yolov3-tiny.weights")
    rng = np.random.default_rng(3)
    (tmp_path / "images").mkdir()
    (tmp_path / "labels").mkdir()
    paths = []
    for i in range(7):  # batches of 2: rank 0 gets 0, 1, 4, 5; rank 1 gets 2, 3 (unreadable) and 6
        paths.append(tmp_path / "images" / f"{i}.jpg")
        if i == 3:
            paths[-1].write_bytes(b"")
            continue
        Image.fromarray(rng.integers(0, 256, (100, 80 + 20 * i, 3), dtype=np.uint8)).save(paths[-1])
        (tmp_path / "labels" / f"{i}.txt").write_text(f"{i % 4} 0.5 0.5 0.4 0.3\n{(i + 1) % 4} 0.3 0.6 0.2 0.2\n")
    names = ["w", "x", "y", "z"]
    options = dict(batch_size=2, workers=0, progress=False)

    one = collect_detections(model, paths, 4, **options)
    rank0, rank1 = in_forked_ranks(lambda ctx: (collect_detections(model, paths, 4, ctx=ctx, **options),
                                                evaluate(model, paths, names, 4, ctx=ctx, **options)),
                                   tmp_path / "store")

    data = rank0[0]
    assert sum(len(rows) for rows in one.detections) > 100 and one.failed[0][0] == paths[3]
    assert len(data.detections) == len(paths)
    for got, want in zip(data.detections, one.detections):
        np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(data.image_sizes, one.image_sizes)
    assert (data.failed, data.labels, data.paths) == (one.failed, one.labels, one.paths)
    assert rank0[1].format(names) == evaluate(model, paths, names, 4, **options).format(names)
    assert rank1 == (None, None)


@pytest.fixture()
def coco_subset(tmp_path: Path, coco128_dir: Path) -> Path:
    """A .data file whose valid= list is the first coco128 images (with their label files)."""
    listed = (coco128_dir / "train.txt").read_text().split()[:IMAGES]
    (tmp_path / "valid.txt").write_text("".join(f"{coco128_dir / line}\n" for line in listed))
    data = tmp_path / "subset.data"
    data.write_text(f"classes = 80\nvalid = {tmp_path / 'valid.txt'}\nnames = {coco128_dir / 'coco.names'}\n")
    return data


@pytest.mark.slow
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
