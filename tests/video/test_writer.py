"""The annotated-video writer: codec by extension, same size and frame rate, clear errors before any frame."""
from __future__ import annotations

import numpy as np
import pytest

from darknet_torch.errors import DataError
from darknet_torch.video.writer import VideoWriter
from tests.video.videos import photo_frames, read_video, require_av


@pytest.mark.parametrize("suffix, size", [(".mp4", (64, 48)), (".mp4", (65, 47)), (".avi", (64, 48)),
                                          (".webm", (64, 48)), (".nut", (65, 47))])
def test_writes_a_playable_video_of_the_same_size_and_rate(tmp_path, suffix, size):
    require_av()
    frames = photo_frames(5, *size)
    writer = VideoWriter(tmp_path / f"out{suffix}", fps=12.5)
    for image in frames:
        writer.write(image)
    writer.close()
    writer.close()  # twice is harmless
    got, fps = read_video(tmp_path / f"out{suffix}")
    assert len(got) == 5 and got[0].shape == frames[0].shape and fps == 12.5
    error = np.abs(got[2].astype(int) - frames[2]).mean()
    assert error == 0 if suffix == ".nut" else error < 12  # FFV1 is lossless; the others lossy


def test_unwritable_path_and_unknown_format_fail_before_any_frame(tmp_path):
    require_av()
    (tmp_path / "file").write_text("a file, not a folder")
    with pytest.raises(DataError, match="cannot write the video"):
        VideoWriter(tmp_path / "file" / "out.mp4", fps=10)
    VideoWriter(tmp_path / "new-folder" / "out.mp4", fps=10).close()  # folders are created
    with pytest.raises(DataError, match="cannot write this video format"):
        VideoWriter(tmp_path / "out.gif", fps=10)
