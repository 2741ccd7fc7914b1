"""detect_images checks its outputs before any image: a run that would write over its own sources, or a JSON file it
cannot write, is refused while nothing has been read or written."""
from __future__ import annotations

from pathlib import Path

import pytest

from darknet_torch.detect.pipeline import detect_images, planned_outputs
from darknet_torch.errors import DataError


class Untouchable:
    """A predictor that fails the test if the run gets as far as using it."""

    def __getattr__(self, name: str):
        raise AssertionError(f"the predictor was used ({name}) before the outputs were checked")


@pytest.fixture()
def photos(tmp_path: Path) -> list[Path]:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    paths = [tmp_path / "a" / "dog.jpg", tmp_path / "b" / "dog.jpg", tmp_path / "a" / "cat.png"]
    for path in paths:
        path.write_bytes(b"image bytes")
    return paths


def test_planned_outputs_name_every_file_the_run_writes(photos, tmp_path):
    out = tmp_path / "out"
    files, folders = planned_outputs(photos, out, save_labels=True, save_crops=True)
    assert files == [out / "dog.jpg", out / "dog_2.jpg", out / "cat.png", out / "labels" / "dog.txt",
                     out / "labels" / "dog_2.txt", out / "labels" / "cat.txt", out / "results.json",
                     out / "coco_results.json"]
    assert folders == [out / "crops"]
    files, _ = planned_outputs(photos, out, save_images=False, json_path="-")
    assert files == [Path("-"), out / "coco_results.json"]  # JSON to stdout: the COCO file stays in the folder


@pytest.mark.parametrize("options", [{}, {"save_images": False, "json_path": "a/cat.png"}])
def test_a_run_that_would_write_over_a_source_is_refused_before_any_image(options, photos, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(DataError, match="this output would overwrite the source"):
        detect_images(Untouchable(), photos, photos[0].parent, **options)
    assert all(p.read_bytes() == b"image bytes" for p in photos)


def test_an_unwritable_json_file_is_refused_before_any_image(photos, tmp_path):
    (tmp_path / "results.json").mkdir()
    with pytest.raises(DataError, match="the output file is a folder"):
        detect_images(Untouchable(), photos, tmp_path / "out", json_path=tmp_path / "results.json")
