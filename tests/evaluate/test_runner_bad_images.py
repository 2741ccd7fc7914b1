"""Issue 17's map cases: a 5000x1 image is evaluated, a truncated JPEG decoded by stb is a named warning (in the report
and on the command line), and an image that cannot be prepared fails alone, its objects counted as missed."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from darknet_torch.cli.main import main
from darknet_torch.data.images import preprocess, stb_available
from darknet_torch.data.loaders import inference_loader
from darknet_torch.evaluate.runner import collect_detections, score_detections
from darknet_torch.model.loading import load_model
from tests.detect.test_pipeline_bad_images import write_dog_cut_wide

TRUNCATION = "truncated JPEG (no end-of-image marker)"


@pytest.fixture()
def validation(tmp_path: Path, shared_dir: Path) -> list[Path]:
    """dog.jpg with its objects, the same photo cut in half, and a 5000x1 PNG, each with a label file."""
    paths = write_dog_cut_wide(tmp_path / "valid", shared_dir)
    truth = "16 0.33 0.64 0.34 0.52\n1 0.51 0.56 0.43 0.43\n"  # dog, bicycle (by eye, roughly)
    for path in paths:
        path.with_suffix(".txt").write_text(truth if path.suffix == ".jpg" else "")
    return paths


@pytest.mark.skipif(not stb_available(), reason="optional package libstb (stb_image) not installed: pip install libstb")
def test_map_warns_about_a_truncated_jpeg_and_evaluates_a_5000x1_image(
        validation: list[Path], repo_root: Path, real_weights: Path, tmp_path: Path,
        capsys: pytest.CaptureFixture) -> None:
    model = load_model(repo_root / "cfg" / "yolov3-tiny.cfg", real_weights)
    data = collect_detections(model, validation, 80, letterbox=True, decoder="stb", workers=0, progress=False)
    assert data.failed == () and len(data.warnings) == 1
    assert data.warnings[0].startswith(f"{validation[1]}: {TRUNCATION}")
    assert np.isfinite(data.detections[2]).all() and tuple(data.image_sizes[2]) == (5000, 1)
    assert score_detections(data).warnings == data.warnings

    listing = tmp_path / "valid.txt"
    listing.write_text("".join(f"{p}\n" for p in validation))
    data_file = tmp_path / "odd.data"
    data_file.write_text(f"classes = 80\nvalid = {listing}\nnames = {repo_root / 'data' / 'coco.names'}\n")
    status = main(["map", "--data", str(data_file), "--cfg", str(repo_root / "cfg" / "yolov3-tiny.cfg"),
                   "--weights", str(real_weights), "--letter-box", "--decoder", "stb", "--workers", "0",
                   "--no-progress"])
    err = capsys.readouterr().err
    assert status == 0, err
    assert f"warning: {validation[1]}: {TRUNCATION}" in err


def test_an_image_that_cannot_be_prepared_fails_alone(validation: list[Path], repo_root: Path,
                                                      real_weights: Path) -> None:
    model = load_model(repo_root / "cfg" / "yolov3-tiny.cfg", real_weights)

    def fragile(image: torch.Tensor):
        if image.shape[-1] == 5000:
            raise RuntimeError("out of memory (simulated)")
        return preprocess(image, 416, 416, letterbox=True)

    paths = [validation[0], validation[2]]  # dog.jpg, wide.png: one batch
    batches = inference_loader(paths, fragile, batch_size=2, workers=0, decoder="pil")
    data = collect_detections(model, paths, 80, letterbox=True, progress=False, batches=batches)
    assert data.failed == ((paths[1], f"{paths[1]}: cannot prepare the 5000x1 image for the network: "
                                      "out of memory (simulated)"),)
    assert {int(c) for c in data.detections[0][:, 4]} >= {16, 1}  # dog.jpg is still scored
    assert score_detections(data).darknet.map > 0
