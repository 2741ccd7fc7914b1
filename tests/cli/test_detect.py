"""``darknet_torch detect`` (cli/detect.py): outputs checked before the model loads, standard output kept pure JSON
when the JSON goes there, Darknet's short form ``detect CFG WEIGHTS IMAGE``."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from darknet_torch.cli import detect as cli_detect
from darknet_torch.cli.main import main
from tests.cli.test_bad_input import detect, mini  # noqa: F401 (mini is a fixture)

MISSING_MODEL = ["--cfg", "missing.cfg", "--weights", "missing.weights"]


def _contents(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_output_folder_holding_the_images_is_refused_before_the_model_loads(mini, capsys):  # noqa: F811
    images = mini["images"]
    before = _contents(images)
    assert main(["detect", str(images), "--output", str(images), *MISSING_MODEL]) == 2
    out, err = capsys.readouterr()
    clash = images / "a.jpg"
    assert err == f"error: {clash}: this output would overwrite the source {clash}; choose another output\n"
    assert _contents(images) == before and not out


def test_json_file_that_is_an_image_is_refused(mini, tmp_path, capsys):  # noqa: F811
    image = mini["images"] / "b.jpg"
    before = image.read_bytes()
    assert main(["detect", str(mini["images"]), "--output", str(tmp_path / "out"), "--json", str(image),
                 *MISSING_MODEL]) == 2
    assert capsys.readouterr().err == (f"error: {image}: this output would overwrite the source {image}; choose "
                                       "another output\n")
    assert image.read_bytes() == before


def test_crops_folder_holding_the_images_is_refused(mini, tmp_path, capsys):  # noqa: F811
    crops = tmp_path / "out" / "crops"
    crops.mkdir(parents=True)
    shutil.move(mini["images"], crops / "w")  # e.g. detecting again on an earlier run's crops
    assert main(["detect", str(crops / "w"), "--output", str(tmp_path / "out"), "--crop", *MISSING_MODEL]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {crops}: outputs are written into this folder, which holds the source {crops}/w/")
    assert sorted(p.name for p in (crops / "w").iterdir()) == ["a.jpg", "b.jpg"]


def test_unwritable_json_file_is_refused_before_the_model_loads(mini, tmp_path, capsys):  # noqa: F811
    (tmp_path / "a_file").write_text("")
    folder = tmp_path / "results.json"
    folder.mkdir()
    for json_path, message in ((tmp_path / "a_file" / "r.json", f"{tmp_path / 'a_file'}: output path exists and "
                                "is not a folder"), (folder, f"{folder}: the output file is a folder")):
        assert main(["detect", str(mini["images"]), "--output", str(tmp_path / "out"), "--json", str(json_path),
                     *MISSING_MODEL]) == 2
        assert capsys.readouterr().err == f"error: {message}\n"


@pytest.mark.parametrize("lines", [["--print"], ["--ext-output"]])
def test_json_on_stdout_sends_the_printed_lines_to_stderr(lines, mini, tmp_path, capsys):  # noqa: F811
    assert detect(mini, "--output", tmp_path / "out", "--json", "-", "--no-save-img", *lines) == 0
    out, err = capsys.readouterr()
    assert [Path(f["filename"]).name for f in json.loads(out)] == ["a.jpg", "b.jpg"]
    assert f"{mini['images'] / 'a.jpg'}: Predicted in " in err and "2 of 2 images detected" in err


def test_detector_test_with_out_dash_keeps_stdout_pure_json(mini, tmp_path, capsys):  # noqa: F811
    data = tmp_path / "mini.data"
    data.write_text(f"classes = 4\nnames = {mini['names']}\n")
    image = mini["images"] / "a.jpg"
    assert main(["detector", "test", str(data), str(mini["cfg"]), str(mini["weights"]), str(image), "-out", "-",
                 "-ext_output", "--output", str(tmp_path / "out"), "--workers", "0", "--no-progress"]) == 0
    out, err = capsys.readouterr()
    assert [f["filename"] for f in json.loads(out)] == [str(image)]
    assert f"{image}: Predicted in " in err


@pytest.mark.parametrize("argv, thresh, printed", [
    (["{cfg}", "{weights}", "{image}"], 0.24, True),  # darknet.c's detect: test_detector with -thresh .24
    (["{cfg}", "{weights}", "{image}", "-thresh", "0.3"], 0.3, True),
    (["{image}", "--cfg", "{cfg}", "--weights", "{weights}"], 0.25, False),  # our form: detector test's .25
])
def test_darknets_short_form_prints_its_lines_at_its_threshold(argv, thresh, printed, mini, tmp_path, capsys,
                                                               monkeypatch):  # noqa: F811
    seen = []
    build = cli_detect.build_predictor
    monkeypatch.setattr(cli_detect, "build_predictor",
                        lambda model, settings, **kw: seen.append(settings.thresh) or build(model, settings, **kw))
    image = mini["images"] / "a.jpg"
    words = [w.format(cfg=mini["cfg"], weights=mini["weights"], image=image) for w in argv]
    assert main(["detect", *words, "--output", str(tmp_path / "out"), "--workers", "0", "--no-progress"]) == 0
    assert seen == [thresh]
    assert (f"{image}: Predicted in " in capsys.readouterr().out) is printed
