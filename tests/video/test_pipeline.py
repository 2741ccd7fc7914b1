"""The video pipeline: every frame's detections equal ``detect`` on the same decoded frames; outputs; live mode."""
from __future__ import annotations

import http.client
import json
import socket
import threading
import time
from dataclasses import astuple
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from darknet_torch.data.images import u8_hwc_to_unit_chw
from darknet_torch.detect.outputs_format import darknet_json_frame
from darknet_torch.detect.pipeline import detect_images
from darknet_torch.detect.build import build_predictor
from darknet_torch.detect.predictor import Predictor
from darknet_torch.detect.settings import DETECTOR_TEST
from darknet_torch.errors import DataError
from darknet_torch.model.loading import load_model
from darknet_torch.video import pipeline
from darknet_torch.video.pipeline import VideoOutputs, run_video
from darknet_torch.video.sources import Frame, FrameSource, open_source
from tests.video.videos import photo_frames, read_video, write_video


@pytest.fixture(scope="module")
def predictor(repo_root, real_weights) -> Predictor:
    model = load_model(repo_root / "cfg" / "yolov3-tiny.cfg", real_weights, "cpu")
    names = (repo_root / "data" / "coco.names").read_text().splitlines()
    return build_predictor(model, DETECTOR_TEST.replace(thresh=0.2), names=names)


def test_every_frame_equals_detect_on_the_decoded_frames(predictor, tmp_path, one_thread):
    frames = photo_frames(10, 160, 120)
    video = write_video(tmp_path / "clip.mkv", frames)
    decoded, _ = read_video(video)
    assert all(np.array_equal(a, b) for a, b in zip(decoded, frames))  # FFV1 in RGB: lossless
    outputs = VideoOutputs(json_lines=tmp_path / "out" / "clip.jsonl", video=tmp_path / "out" / "clip.mp4")
    report = run_video(predictor, open_source(str(video)), outputs, batch_size=3, keep_results=True,
                       progress=False)
    assert report.ok and report.frames == 10 and report.dropped == 0

    # detect on the same frames saved as PNG files (lossless), batches of 4 (the video ran batches of up to 3)
    for i, image in enumerate(decoded):
        Image.fromarray(image).save(tmp_path / f"frame{i:02d}.png")
    expected = detect_images(predictor, sorted(tmp_path.glob("frame*.png")), batch_size=4, workers=0).results
    assert sum(len(r.detections) for r in expected) >= 10  # the photo's objects are found: the test can fail
    for result, want in zip(report.results, expected):
        assert (result.width, result.height) == (want.width, want.height)
        assert result.detections == want.detections

    lines = [json.loads(line) for line in outputs.json_lines.read_text().splitlines()]
    assert [line["frame_id"] for line in lines] == list(range(1, 11))
    for line, result, want in zip(lines, report.results, expected):
        plain = [{k: v for k, v in obj.items() if k != "track_id"} for obj in line["objects"]]
        assert plain == darknet_json_frame(result.frame_id, video, want.detections)["objects"]
        assert all(obj["track_id"] >= 1 for obj in line["objects"])
    # the dog moves 2 px per frame: one id all along
    dog_ids = {obj["track_id"] for line in lines for obj in line["objects"] if obj["name"] == "dog"}
    assert len(dog_ids) == 1

    written, fps = read_video(outputs.video)
    assert len(written) == 10 and written[0].shape == (120, 160, 3) and fps == 10


class StillFrames(FrameSource):
    """A file-like source of the given images."""

    def __init__(self, images: list[np.ndarray]) -> None:
        super().__init__("stills")
        self.images = images

    def frames(self):
        yield from (Frame(i, image) for i, image in enumerate(self.images))


def test_the_reader_fits_frames_from_their_uint8_pixels(predictor, monkeypatch, one_thread):
    """The reader feeds the network ``prepare_u8``'s inputs (the float path's, bit for bit) and skips the float
    conversion of whole frames."""
    images = photo_frames(3, 160, 120)
    prepared, float_calls = [], []
    prepare_u8 = Predictor.prepare_u8

    def spy(self, pixels):
        fitted = prepare_u8(self, pixels)
        prepared.append((pixels, fitted[0]))
        return fitted

    monkeypatch.setattr(Predictor, "prepare_u8", spy)
    monkeypatch.setattr(Predictor, "prepare", lambda self, image: float_calls.append(image))
    report = run_video(predictor, StillFrames(images), batch_size=2, progress=False)
    assert report.ok and report.frames == 3 and not float_calls
    assert [pixels is image for (pixels, _), image in zip(prepared, images)] == [True, True, True]
    for pixels, network_input in prepared:
        assert torch.equal(network_input, predictor.preparer(u8_hwc_to_unit_chw(pixels))[0])


class SlowCamera(FrameSource):
    """A live source producing frames faster than the network takes them."""

    def __init__(self, count: int) -> None:
        super().__init__("camera 0", fps=100.0, live=True)
        self.count = count

    def frames(self):
        image = photo_frames(1, 64, 48)[0]
        for i in range(self.count):
            time.sleep(0.005)
            yield Frame(i, image)


def test_live_source_drops_frames_instead_of_falling_behind(predictor, one_thread):
    seen: list[int] = []
    report = run_video(predictor, SlowCamera(60), batch_size=4, progress=False,
                       on_frame=lambda r: seen.append(r.frame_id))
    assert report.ok and report.frames + report.dropped == 60 and report.dropped > 0
    assert seen == sorted(seen) and seen[-1] == 60  # frames go out in order, and the newest is never dropped


class GatedSource(FrameSource):
    """A file-like source that starts once ``gate`` is set (when the test's stream clients are connected)."""

    def __init__(self, frames: list[np.ndarray], gate) -> None:
        super().__init__("gated.mp4", fps=10.0)
        self.images, self.gate = frames, gate

    def frames(self):
        assert self.gate.wait(20)
        for i, image in enumerate(self.images):
            yield Frame(i, image)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _client(port: int, connected: threading.Event, out: dict, key: str) -> None:
    for _ in range(100):  # the server starts with the pipeline
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            conn.request("GET", "/")
            break
        except ConnectionRefusedError:
            time.sleep(0.05)
    response = conn.getresponse()
    connected.set()
    out[key] = response.read()


def test_streams_serve_every_frame_to_a_connected_client(predictor, one_thread):
    json_port, mjpeg_port = _free_port(), _free_port()
    got: dict = {}
    ready = [threading.Event(), threading.Event()]
    gate = threading.Event()
    clients = [threading.Thread(target=_client, args=(port, event, got, key)) for port, event, key in
               ((json_port, ready[0], "json"), (mjpeg_port, ready[1], "mjpeg"))]
    for client in clients:
        client.start()
    threading.Thread(target=lambda: (ready[0].wait(20), ready[1].wait(20), gate.set()), daemon=True).start()
    report = run_video(predictor, GatedSource(photo_frames(3, 64, 48), gate),
                       VideoOutputs(json_port=json_port, mjpeg_port=mjpeg_port), batch_size=1, progress=False)
    for client in clients:
        client.join(30)
    assert report.ok and report.frames == 3
    frames = json.loads(got["json"])  # a slow client may skip frames; the last one always arrives
    assert frames[-1]["frame_id"] == 3 and frames[-1]["filename"] == "gated.mp4"
    assert got["mjpeg"].count(b"Content-Type: image/jpeg") >= 1


def _counting_forward(predictor, seen: list[int], shift_per_thread: float = 0.0):
    """``predictor.forward_batch`` that records torch's thread count and computes on one thread (the same output
    on every count), plus ``shift_per_thread`` times the count (an output that depends on it)."""
    forward = predictor.forward_batch

    def counted(batch: torch.Tensor) -> torch.Tensor:
        count = torch.get_num_threads()
        seen.append(count)
        torch.set_num_threads(1)
        try:
            return forward(batch) + shift_per_thread * count
        finally:
            torch.set_num_threads(count)
    return counted


@pytest.fixture
def three_threads():
    """torch on 3 threads for the test (the caller's count the pipeline must restore), then the previous count."""
    threads = torch.get_num_threads()
    torch.set_num_threads(3)
    yield
    torch.set_num_threads(threads)


def test_the_forward_threads_are_tried_then_the_callers_threads_come_back(predictor, tmp_path, monkeypatch,
                                                                          three_threads):
    seen = []
    monkeypatch.setattr(predictor, "forward_batch", _counting_forward(predictor, seen))
    video = write_video(tmp_path / "clip.mkv", photo_frames(12, 64, 48))
    report = run_video(predictor, open_source(str(video)), VideoOutputs(), batch_size=1, progress=False)
    assert report.ok and report.frames == 12 and torch.get_num_threads() == 3
    # a warm-up batch and its check on the other count (same outputs), then alternating
    assert seen[:6] == [3, 2, 3, 2, 3, 2] and report.forward_threads in (2, 3)
    seen.clear()
    report = run_video(predictor, open_source(str(video)), VideoOutputs(), forward_threads=1, progress=False)
    assert report.ok and set(seen) == {1} and report.forward_threads == 1 and torch.get_num_threads() == 3


def test_no_thread_trial_when_the_count_changes_the_outputs(predictor, tmp_path, monkeypatch, three_threads):
    """On some CPUs the summation order depends on the thread count; a trial chosen by timing would then make the
    detections differ from run to run, so the first batch's check turns it off."""
    seen = []
    monkeypatch.setattr(predictor, "forward_batch", _counting_forward(predictor, seen, shift_per_thread=1e-3))
    video = write_video(tmp_path / "clip.mkv", photo_frames(8, 64, 48))
    report = run_video(predictor, open_source(str(video)), VideoOutputs(), batch_size=1, progress=False)
    assert report.ok and report.frames == 8 and torch.get_num_threads() == 3
    assert seen == [3, 2, 3, 3, 3, 3, 3, 3, 3] and report.forward_threads == 3  # 8 frames and one check
    seen.clear()  # batches of 2: the check runs the first frame alone on each count
    report = run_video(predictor, open_source(str(video)), VideoOutputs(), batch_size=2, progress=False)
    assert report.ok and report.frames == 8 and report.forward_threads == 3
    assert seen[:3] == [3, 3, 2] and set(seen[3:]) == {3} and len(seen) >= 4 + 2


def test_a_forward_on_every_core_takes_turns_with_the_side_work(predictor, tmp_path, monkeypatch):
    """On every core the forward waits for full batches and never runs while a frame is prepared or its outputs are
    made; with a core left to the side work they overlap freely.  The detections are the same either way (up to
    float32 rounding: the plain forward's sums depend on the batch size and thread count)."""
    monkeypatch.setattr(pipeline, "available_cores", lambda: 2)
    intervals: dict[str, list[tuple[float, float]]] = {"forward": [], "side": []}
    sizes = []

    def timed(kind, work):
        def run(*args, **kwargs):
            start = time.perf_counter()
            try:
                return work(*args, **kwargs)
            finally:
                intervals[kind].append((start, time.perf_counter()))
        return run

    forward = predictor.forward_batch
    monkeypatch.setattr(predictor, "forward_batch", timed("forward", lambda batch: (sizes.append(len(batch)),
                                                                                    forward(batch))[1]))
    monkeypatch.setattr(predictor, "prepare_u8", timed("side", predictor.prepare_u8))
    monkeypatch.setattr(predictor, "detections_from_output", timed("side", predictor.detections_from_output))
    monkeypatch.setattr(pipeline._OutputStage, "_handle", timed("side", pipeline._OutputStage._handle))
    video = write_video(tmp_path / "clip.mkv", photo_frames(10, 160, 120))
    outputs = VideoOutputs(video=tmp_path / "out.mp4", json_lines=tmp_path / "out.jsonl")
    runs = {}
    for threads in (2, 1):
        intervals["forward"].clear(), intervals["side"].clear(), sizes.clear()
        runs[threads] = run_video(predictor, open_source(str(video)), outputs, batch_size=3, keep_results=True,
                                  progress=False, forward_threads=threads)
        assert runs[threads].ok and runs[threads].frames == 10
        overlaps = sum(a < d and c < b for a, b in intervals["forward"] for c, d in intervals["side"])
        if threads == 2:
            assert overlaps == 0 and sizes == [3, 3, 3, 1]
        assert len(intervals["side"]) == 10 + len(sizes) + 10  # prepare and output per frame, boxes per batch
    for on_all, on_one in zip(runs[2].results, runs[1].results):
        assert [d.class_id for d in on_all.detections] == [d.class_id for d in on_one.detections]
        assert np.allclose([astuple(d)[2:] for d in on_all.detections], [astuple(d)[2:] for d in on_one.detections],
                           rtol=0, atol=1e-5)
    assert sum(len(r.detections) for r in runs[2].results) >= 10


def test_an_output_that_is_the_source_is_refused_before_the_source_is_touched(predictor, tmp_path):
    video = write_video(tmp_path / "clip.mkv", photo_frames(3, 64, 48))
    before = video.read_bytes()
    source = open_source(str(video))
    for outputs in (VideoOutputs(video=tmp_path / "clip.mkv"), VideoOutputs(json_lines=video)):
        with pytest.raises(DataError, match=f"{video}: this output would overwrite the source {video}"):
            run_video(predictor, source, outputs, progress=False)
    assert video.read_bytes() == before


def test_json_lines_to_dash_go_to_standard_output(predictor, tmp_path, monkeypatch, capsys, one_thread):
    monkeypatch.chdir(tmp_path)  # where a file named '-' would appear
    report = run_video(predictor, StillFrames(photo_frames(2, 64, 48)), VideoOutputs(json_lines=Path("-")),
                       progress=False)
    assert report.ok
    assert [json.loads(line)["frame_id"] for line in capsys.readouterr().out.splitlines()] == [1, 2]
    assert not (tmp_path / "-").exists()
