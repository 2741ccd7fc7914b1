"""``darknet_torch demo`` end to end (Darknet's spelling, the detector-demo form), bad input, detect on videos."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from PIL import Image

from darknet_torch.cli.main import main
from tests.video.videos import photo_frames, read_video, require_av, write_video


@pytest.fixture()
def model_args(repo_root, real_weights) -> list[str]:
    return ["--cfg", str(repo_root / "cfg" / "yolov3-tiny.cfg"), "--weights", str(real_weights), "--no-progress"]


@pytest.fixture()
def clip(tmp_path) -> Path:
    return write_video(tmp_path / "clip.mkv", photo_frames(6, 160, 120))


def test_detector_demo_form_with_darknet_flags(clip, repo_root, real_weights, tmp_path, capsys, one_thread):
    data = tmp_path / "coco.data"
    data.write_text(f"classes = 80\nnames = {repo_root / 'data' / 'coco.names'}\n")
    out_video, out_json = tmp_path / "out" / "annotated.avi", tmp_path / "out" / "frames.jsonl"
    status = main(["demo", str(clip), "--data", str(data), "--cfg", str(repo_root / "cfg" / "yolov3-tiny.cfg"),
                   "--weights", str(real_weights), "-thresh", "0.2", "-out_filename", str(out_video),
                   "-out", str(out_json), "-ext_output", "-dont_show", "-avgframes", "2", "--no-progress"])
    printed = capsys.readouterr().out
    assert status == 0
    assert printed.count("Frame ") == 6 and "dog: " in printed and "left_x:" in printed
    frames = [json.loads(line) for line in out_json.read_text().splitlines()]
    assert [f["frame_id"] for f in frames] == list(range(1, 7)) and any(f["objects"] for f in frames)
    written, fps = read_video(out_video)
    assert len(written) == 6 and written[0].shape == (120, 160, 3) and fps == 10
    assert f"{clip}: 6 frames in " in printed


def _one_line_error(capsys) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(lines) >= 1
    return lines[0]


@pytest.mark.parametrize("case, status, message", [
    ("missing", 2, "missing.mp4: no such file"),
    ("not-a-video", 2, "notes.mp4: cannot open as a video"),
    ("camera", 2, "camera 97: not present"),
    ("unwritable", 2, "a-file: output path exists and is not a folder"),
    ("truncated", 1, "frames could not be decoded (truncated or corrupt file)"),
])
def test_bad_input_is_one_line_and_an_exit_status(case, status, message, model_args, clip, tmp_path, capsys,
                                                  one_thread):
    require_av()
    (tmp_path / "notes.mp4").write_text("not a video\n")
    (tmp_path / "a-file").write_text("")
    out = tmp_path / "out.mp4"
    source = {"missing": [str(tmp_path / "missing.mp4")], "not-a-video": [str(tmp_path / "notes.mp4")],
              "camera": ["-c", "97"], "unwritable": [str(clip)], "truncated": [str(clip)]}[case]
    if case == "unwritable":
        out = tmp_path / "a-file" / "out.mp4"
    if case == "truncated":
        data = clip.read_bytes()
        clip.write_bytes(data[: len(data) // 2])
    assert main(["demo", *source, *model_args, "--img-size", "128", "-out_filename", str(out)]) == status
    assert message in _one_line_error(capsys)
    if case == "truncated":  # what decoded is in a playable video
        frames, _ = read_video(out)
        assert 0 < len(frames) < 6


def test_missing_video_extra_names_it(clip, model_args, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "av", None)  # import av now raises ImportError
    assert main(["demo", str(clip), *model_args]) == 2
    assert "pip install 'darknet_torch[video]'" in _one_line_error(capsys)


def test_detect_takes_video_files_among_its_sources(clip, model_args, shared_dir, tmp_path, one_thread):
    photo = tmp_path / "dog.jpg"
    Image.open(shared_dir / "images" / "dog.jpg").save(photo)
    out = tmp_path / "out"
    assert main(["detect", str(clip), str(photo), *model_args, "--workers", "0", "--img-size", "160",
                 "--output", str(out)]) == 0
    assert {p.name for p in out.iterdir()} >= {"clip.mkv", "clip.jsonl", "dog.jpg", "results.json"}
    assert len((out / "clip.jsonl").read_text().splitlines()) == 6
    assert len(read_video(out / "clip.mkv")[0]) == 6


@pytest.mark.slow
def test_sigterm_mid_run_leaves_a_playable_video(repo_root, real_weights, tmp_path):
    video = write_video(tmp_path / "long.mkv", photo_frames(400, 64, 48))
    out, lines = tmp_path / "out.mp4", tmp_path / "out.jsonl"
    env = {**os.environ, "PYTHONPATH": str(repo_root), "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen(
        [sys.executable, "-m", "darknet_torch", "demo", str(video), "--cfg", str(repo_root / "cfg" / "yolov3-tiny.cfg"),
         "--weights", str(real_weights), "--img-size", "128", "-out_filename", str(out), "-out", str(lines),
         "--no-progress"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and (not lines.exists() or len(lines.read_text().splitlines()) < 5):
            assert process.poll() is None, process.communicate()
            time.sleep(0.2)
        process.send_signal(signal.SIGTERM)
        _, err = process.communicate(timeout=60)
    finally:
        process.kill()
    assert process.returncode == 130 and "interrupted" in err and "Traceback" not in err
    frames, _ = read_video(out)
    assert 5 <= len(frames) < 400 and len(frames) == len(lines.read_text().splitlines())



@pytest.mark.parametrize("source, argv, output", [
    ("clip.mp4", ["--output", "."], "clip.mp4"),  # demo's default video is OUTPUT/<stem>.mp4
    ("link.mp4", ["-out_filename", "clip.mp4"], "clip.mp4"),  # through a symlink
    ("clip.mp4", ["--json", "./clip.mp4"], "clip.mp4"),
])
def test_demo_refuses_to_write_over_its_source_before_loading_the_model(source, argv, output, tmp_path, monkeypatch,
                                                                        capsys):
    monkeypatch.chdir(tmp_path)
    clip = write_video(tmp_path / "clip.mp4", photo_frames(2, 64, 48), codec="libx264", pix_fmt="yuv420p")
    (tmp_path / "link.mp4").symlink_to(clip)
    before = clip.read_bytes()
    assert main(["demo", source, "--cfg", "missing.cfg", "--weights", "missing.weights", *argv]) == 2
    assert capsys.readouterr().err == (f"error: {output}: this output would overwrite the source {source}; choose "
                                       "another output\n")
    assert clip.read_bytes() == before


def test_demo_json_dash_writes_the_lines_to_stdout_and_the_rest_to_stderr(clip, model_args, tmp_path, monkeypatch,
                                                                           capsys, one_thread):
    monkeypatch.chdir(tmp_path)  # where a file named '-' would appear
    assert main(["demo", str(clip), *model_args, "--img-size", "128", "--json", "-", "--no-save-video",
                 "-ext_output"]) == 0
    out, err = capsys.readouterr()
    assert [json.loads(line)["frame_id"] for line in out.splitlines()] == list(range(1, 7))
    assert "Frame 1: Objects:" in err and f"{clip}: 6 frames in " in err
    assert not (tmp_path / "-").exists()


def test_detect_gives_videos_with_the_same_name_their_own_outputs(model_args, tmp_path, one_thread):
    a = write_video((tmp_path / "a").mkdir() or tmp_path / "a" / "clip.mkv", photo_frames(2, 64, 48))
    b = write_video((tmp_path / "b").mkdir() or tmp_path / "b" / "clip.mkv", photo_frames(3, 64, 48))
    out = tmp_path / "out"
    assert main(["detect", str(a), str(b), *model_args, "--img-size", "128", "--output", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["clip.jsonl", "clip.mkv", "clip_2.jsonl", "clip_2.mkv"]
    assert [len(read_video(out / name)[0]) for name in ("clip.mkv", "clip_2.mkv")] == [2, 3]
    assert {json.loads(line)["filename"] for line in (out / "clip_2.jsonl").read_text().splitlines()} == {str(b)}
