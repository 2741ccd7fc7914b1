"""Frame sources: files (every frame, damaged ones as far as they decode), image sequences, cameras, reconnection."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from darknet_torch.errors import DataError
from darknet_torch.video.sources import (Frame, FrameSource, ImageSequenceSource, ReconnectingSource, is_stream_url,
                                         is_video_file, open_source)
from tests.video.videos import photo_frames, require_av, write_video


def test_lossless_file_gives_every_frame_exactly(tmp_path):
    frames = photo_frames(6, 65, 48)  # odd width on purpose
    source = open_source(str(write_video(tmp_path / "clip.mkv", frames, fps=12)))
    got = list(source.frames())
    source.close()
    assert source.fps == 12 and not source.live and source.expected_frames == 6 and not source.errors
    assert [f.index for f in got] == list(range(6))
    assert all(np.array_equal(f.image, g) for f, g in zip(got, frames))
    assert got[3].size == (65, 48)


def test_truncated_file_gives_what_decodes_and_reports_the_rest(tmp_path):
    video = write_video(tmp_path / "clip.mkv", photo_frames(10, 64, 48))
    data = video.read_bytes()
    video.write_bytes(data[: len(data) * 6 // 10])
    source = open_source(str(video))
    decoded = len(list(source.frames()))
    assert 0 < decoded < 10
    assert source.errors and "of 10 frames could not be decoded" in source.errors[-1]
    assert str(video) in source.errors[-1]


@pytest.mark.parametrize("content, message", [(None, "no such file"), (b"hello, not a video\n", "cannot open as a "
                                              "video"), (b"", "cannot open as a video")])
def test_missing_or_not_a_video_is_a_one_line_error(tmp_path, content, message):
    require_av()
    path = tmp_path / "clip.mp4"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(DataError, match=message) as info:
        open_source(str(path))
    assert str(path) in str(info.value) and "\n" not in str(info.value)


def test_a_digit_that_is_no_ascii_digit_is_a_path_not_a_camera(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(DataError, match="no such file"):
        open_source("\u00b2")


def test_camera_not_present():
    with pytest.raises(DataError, match="camera 97: not present"):
        open_source("97")


def test_image_sequence_in_name_order_with_bad_images_reported(tmp_path):
    frames = photo_frames(3, 32, 24)
    for i, image in enumerate(frames):
        Image.fromarray(image).save(tmp_path / f"f{i:03d}.png")
    (tmp_path / "f001b.png").write_bytes(b"not a png")
    source = open_source(str(tmp_path), fps=5)
    assert isinstance(source, ImageSequenceSource) and source.fps == 5
    got = list(source.frames())
    assert [f.index for f in got] == [0, 1, 3] and np.array_equal(got[2].image, frames[2])
    assert len(source.errors) == 1 and "f001b.png" in source.errors[0]
    pil = ImageSequenceSource("pil", sorted(tmp_path.glob("f00?.png")), decoder="pil")
    assert all(f.image.flags.writeable and f.image.dtype == np.uint8 for f in pil.frames())  # boxes are drawn on it


def test_kinds_of_sources():
    assert is_stream_url("rtsp://127.0.0.1:8554/cam") and is_stream_url("HTTP://host/x.mjpg")
    assert not is_stream_url("file.mp4") and not is_stream_url("C://videos/x.mp4")
    assert not is_video_file(Path("missing.mp4"))


class FlakyStream(FrameSource):
    """A live source that yields ``per_connection`` frames, then drops; connections listed in ``refused`` fail."""

    opened = 0

    def __init__(self, per_connection: int, refused: set[int]) -> None:
        FlakyStream.opened += 1
        if FlakyStream.opened in refused:
            raise DataError("stream: connection refused")
        super().__init__("stream", live=True)
        self.per_connection = per_connection

    def frames(self):
        for i in range(self.per_connection):
            yield Frame(i, np.zeros((2, 2, 3), np.uint8))


def test_stream_reconnects_with_back_off_then_gives_up_with_a_clear_error():
    FlakyStream.opened = 0
    delays: list[float] = []
    source = ReconnectingSource("rtsp://127.0.0.1/cam", lambda: FlakyStream(3, refused={3, 4, 6, 7, 8}), retries=3,
                                backoff=0.5, max_backoff=1.5, sleep=delays.append)
    frames = list(source.frames())
    # connections 1, 2, 5 deliver 3 frames each; 3 and 4 are refused, then 6, 7, 8: three failures in a row
    assert [f.index for f in frames] == list(range(9))
    assert source.reconnects == 2
    assert delays == [0.5, 0.5, 1.0, 1.5, 0.5, 1.0, 1.5]
    assert source.errors == ["rtsp://127.0.0.1/cam: connection lost and 3 reconnection attempts failed "
                             "(last: stream: connection refused)"]


def test_files_name_what_outputs_must_not_replace(tmp_path):
    video = write_video(tmp_path / "clip.mkv", photo_frames(2, 32, 24))
    assert open_source(str(video)).files() == [video]
    Image.fromarray(photo_frames(1, 32, 24)[0]).save(tmp_path / "f.png")
    (tmp_path / "list.txt").write_text(f"{tmp_path / 'f.png'}\n")
    assert open_source(str(tmp_path / "list.txt")).files() == [tmp_path / "f.png", tmp_path / "list.txt"]
    assert FlakyStream(1, set()).files() == []  # live: nothing on disk
