"""Issue 17's detect cases: extreme aspect ratios are detected, a truncated JPEG decoded by stb is a named warning,
WebP/TIFF files picked up from a folder decode, and an image that cannot be prepared fails alone (real yolov3-tiny)."""
from __future__ import annotations

import io
import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from darknet_torch.cli.main import main
from darknet_torch.data.images import preprocess, stb_available
from darknet_torch.detect.outputs import annotated_image_path, output_names
from darknet_torch.detect.pipeline import detect_images
from darknet_torch.detect.predictor import Predictor
from darknet_torch.detect.settings import DETECTOR_TEST
from darknet_torch.model.loading import load_model

needs_stb = pytest.mark.skipif(not stb_available(),
                               reason="optional package libstb (stb_image) not installed: pip install libstb")


def write_image(path: Path, width: int, height: int, fmt: str) -> Path:
    pixels = np.random.default_rng(width * 7 + height).integers(0, 256, (height, width, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, fmt)
    path.write_bytes(buffer.getvalue())
    return path


def write_dog_cut_wide(folder: Path, shared_dir: Path) -> list[Path]:
    """``folder``/dog.jpg (the real photo), cut.jpg (its first half) and wide.png (5000x1); the folder is created."""
    folder.mkdir()
    dog = (shared_dir / "images" / "dog.jpg").read_bytes()
    shutil.copy(shared_dir / "images" / "dog.jpg", folder / "dog.jpg")
    (folder / "cut.jpg").write_bytes(dog[: len(dog) // 2])
    return [folder / "dog.jpg", folder / "cut.jpg", write_image(folder / "wide.png", 5000, 1, "PNG")]


@pytest.fixture()
def odd_folder(tmp_path: Path, shared_dir: Path) -> Path:
    """A real photo, the same photo cut in half, a 5000x1 and a 1x5000 PNG, a WebP and a TIFF."""
    folder = tmp_path / "odd"
    write_dog_cut_wide(folder, shared_dir)
    write_image(folder / "tall.png", 1, 5000, "PNG")
    write_image(folder / "photo.webp", 64, 48, "WEBP")
    write_image(folder / "photo.tif", 48, 64, "TIFF")
    return folder


#: file of ``odd_folder`` -> (size detect reports, the stderr line it gets: a warning naming it, or none).
ODD_IMAGES = {
    "dog.jpg": ((768, 576), None),
    "cut.jpg": ((768, 576), "warning: {path}: truncated JPEG (no end-of-image marker): decoded as Darknet does, the "
                            "missing part grey (the pil decoder refuses such files)"),
    "wide.png": ((5000, 1), None),
    "tall.png": ((1, 5000), None),
    "photo.webp": ((64, 48), None),
    "photo.tif": ((48, 64), None),
}


@needs_stb
def test_detect_handles_every_odd_image_and_warns_about_the_truncated_one(
        odd_folder: Path, repo_root: Path, real_weights: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """One ``detect`` run over the folder (as Darknet: stb decoding, letterbox), then the table row by row: every
    file is detected (exit 0), boxes are finite, and only the truncated JPEG gets a line on stderr, naming it."""
    output = tmp_path / "out"
    status = main(["detect", str(odd_folder), "--cfg", str(repo_root / "cfg" / "yolov3-tiny.cfg"), "--weights",
                   str(real_weights), "--letter-box", "--decoder", "stb", "--workers", "0", "--output", str(output),
                   "--ext-output", "--no-progress"])
    captured = capsys.readouterr()
    assert status == 0, captured.err
    assert sorted(p.name for p in odd_folder.iterdir()) == sorted(ODD_IMAGES)  # folder scan picks up all six
    frames = {Path(f["filename"]).name: f for f in json.loads((output / "results.json").read_text())}
    paths = sorted(odd_folder.iterdir())
    annotated = {p.name: annotated_image_path(output, n, p) for p, n in zip(paths, output_names(paths))}
    err_lines = captured.err.splitlines()
    for name, (size, line) in ODD_IMAGES.items():
        path = odd_folder / name
        assert name in frames and annotated[name].exists(), name
        assert all(math.isfinite(v) for o in frames[name]["objects"] for v in o["relative_coordinates"].values())
        assert f"{path}: Predicted in" in captured.out
        assert [x for x in err_lines if str(path) in x] == ([line.format(path=path)] if line else []), name
        assert Image.open(annotated[name]).size == size  # the annotated copy has the original's size
    assert {o["name"] for o in frames["dog.jpg"]["objects"]} >= {"dog", "bicycle"}


class FragilePredictor(Predictor):
    """The real predictor, but fitting a 5000x1 image fails (a stand-in for any preparation error)."""

    @property
    def preparer(self):
        h, w = self.input_size

        def prepare(image: torch.Tensor):
            if image.shape[-1] == 5000:
                raise RuntimeError("out of memory (simulated)")
            return preprocess(image, w, h, self.letterbox)
        return prepare


def test_an_image_that_cannot_be_prepared_fails_alone(odd_folder: Path, repo_root: Path, real_weights: Path) -> None:
    predictor = FragilePredictor(load_model(repo_root / "cfg" / "yolov3-tiny.cfg", real_weights),
                                 settings=DETECTOR_TEST.replace(letterbox=True))
    paths = sorted(odd_folder.glob("*.png")) + [odd_folder / "dog.jpg"]  # tall, wide, dog: one batch
    report = detect_images(predictor, paths, batch_size=3, workers=0, decoder="pil")
    assert [r.ok for r in report.results] == [True, False, True]
    assert report.results[1].error == (f"{odd_folder / 'wide.png'}: cannot prepare the 5000x1 image for the "
                                       "network: out of memory (simulated)")
    assert {d.class_id for d in report.results[2].detections} >= {16}  # the dog is still found
