"""``detect`` scaled out: two CPU processes (gloo) write exactly what one process writes."""
from __future__ import annotations

import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from darknet_torch.cli.detect import _detect
from darknet_torch.cli.main import build_parser, main
from darknet_torch.detect.build import build_predictor
from darknet_torch.detect.pipeline import detect_images
from darknet_torch.detect.settings import DETECTOR_TEST
from darknet_torch.distributed import DistContext
from darknet_torch.errors import CfgError
from tests.multiprocess import in_forked_ranks, torchrun

# Per-image timings differ from run to run; everything else must be identical.
TIMING = re.compile(r"Predicted in [0-9.]+ milli-seconds|in [0-9.]+ s \([0-9.]+ images/s\)")


def _files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.usefixtures("one_thread")
def test_ranks_detect_their_batches_and_rank_0_reports_all(golden_dir, tmp_path):
    folder = golden_dir / "mini" / "yolov3-tiny"
    predictor = build_predictor(folder / "yolov3-tiny.cfg", DETECTOR_TEST.replace(thresh=0.05),
                                weights=folder / "yolov3-tiny.weights", device="cpu")
    rng = np.random.default_rng(0)
    paths = []
    for i, stem in enumerate("abacb"):  # batches of 2: rank 0 gets 0, 1, 4, 5; rank 1 gets 2 (a_2) and 3 (empty)
        paths.append(tmp_path / "images" / str(i) / f"{stem}.png")
        paths[-1].parent.mkdir(parents=True)
        Image.fromarray(rng.integers(0, 256, (90 + 10 * i, 120, 3), dtype=np.uint8)).save(paths[-1])
    paths.insert(3, tmp_path / "images" / "empty.png")
    paths[3].write_bytes(b"")
    options = dict(batch_size=2, workers=0, save_labels=True, progress=False)

    one = detect_images(predictor, paths, tmp_path / "one", **options)
    shown = []
    rank0, rank1 = in_forked_ranks(lambda ctx: (detect_images(predictor, paths, tmp_path / "two", ctx=ctx,
                                                              on_result=shown.append, **options), shown),
                                   tmp_path / "store")

    assert sum(len(r.detections) for r in one.results) > 10 and not one.results[3].ok
    strip = [(r.path, r.width, r.height, r.detections, r.error) for r in one.results]
    assert [(r.path, r.width, r.height, r.detections, r.error) for r in rank0[0].results] == strip
    assert [r.path for r in rank0[1]] == paths  # on_result: rank 0, every image, input order
    assert [r.path for r in rank1[0].results] == paths[2:4] and rank1[1] == []
    files = _files(tmp_path / "one")
    assert {"a_2.png", "labels/a_2.txt", "b_2.png", "results.json"} <= set(files)
    assert _files(tmp_path / "two") == files


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


@pytest.mark.slow
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
    # both processes exit 1, though only rank 1 had the bad image; torchrun may stop the second before it exits
    assert two.stderr.count("exitcode  : 1") >= 1 and "exitcode  : 0" not in two.stderr
    expected = one_out.replace(str(tmp_path / "one"), str(tmp_path / "two"))
    assert TIMING.sub("", two.stdout) == TIMING.sub("", expected)  # every line once, in input order
    assert "6 of 7 images detected" in one_out and one_out.count("Predicted in") == 6

    one_files, two_files = _files(tmp_path / "one"), _files(tmp_path / "two")
    assert {"results.json", "coco_results.json", "000000000009_2.jpg", "labels/000000000009_2.txt"} <= set(one_files)
    assert sorted(two_files) == sorted(one_files)
    for name, content in one_files.items():
        assert two_files[name] == content, f"{name} differs from the one-process run"


def test_paths_from_standard_input_are_refused_under_torchrun():
    args = build_parser().parse_args(["detect", "cfg/yolov4-tiny.cfg", "weights/yolov4-tiny.weights"])
    with pytest.raises(CfgError, match="every process would read standard input"):
        _detect(args, DistContext(rank=0, world_size=2))
