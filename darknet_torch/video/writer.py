"""Annotated video out: the codec follows the file extension, same frame size and rate as the source.

The file is written in place and finalised by :meth:`VideoWriter.close` (encoder flushed, container trailer written:
an MP4 without its trailer does not play).  The pipeline closes it on every exit path, Ctrl-C and SIGTERM included,
so whatever was written stays playable.  Odd frame sizes use full-resolution chroma (yuv444p) where 4:2:0 would
need even sizes, so the size is never changed.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from darknet_torch.errors import DataError
from darknet_torch.video.backend import require_av

# x264's fastest preset: a third less encoding time than "veryfast" for files about twice as large; encoding shares
# the CPU with the network, so speed wins.
_X264 = {"preset": "ultrafast", "crf": "23"}
# extension -> (codec, pixel format for even sizes, for odd sizes, codec options)
_CODECS: dict[str, tuple[str, str, str, dict[str, str]]] = {
    ".mp4": ("libx264", "yuv420p", "yuv444p", _X264),
    ".m4v": ("libx264", "yuv420p", "yuv444p", _X264),
    ".mov": ("libx264", "yuv420p", "yuv444p", _X264),
    ".mkv": ("libx264", "yuv420p", "yuv444p", _X264),
    ".avi": ("mjpeg", "yuvj420p", "yuvj444p", {"q:v": "3"}),
    ".webm": ("libvpx-vp9", "yuv420p", "yuv444p", {"deadline": "realtime", "cpu-used": "8", "crf": "32",
                                                   "b:v": "0"}),
    ".nut": ("ffv1", "bgr0", "bgr0", {}),  # lossless RGB (FFV1), for archiving and exact comparisons
}
#: Extensions :class:`VideoWriter` can write.
OUTPUT_EXTENSIONS = tuple(_CODECS)


class VideoWriter:
    """Encodes RGB frames to ``path``; opened on the first frame (its size fixes the video's size).

    ``path`` is created (truncated) at once: callers that read a source check first that it is not the source
    (:func:`darknet_torch.video.pipeline.refuse_overwriting_source`).

    Raises:
        DataError: unsupported extension, or the file cannot be created (both before any frame is encoded).
    """

    def __init__(self, path: str | os.PathLike[str], fps: float) -> None:
        self.path = Path(path)
        suffix = self.path.suffix.lower()
        if suffix not in _CODECS:
            raise DataError(f"{self.path}: cannot write this video format; use one of {', '.join(_CODECS)}")
        self.codec, self.even_format, self.odd_format, self.options = _CODECS[suffix]
        self.fps = fps
        self.frames = 0
        av = require_av()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.path, "wb"):  # FFmpeg would only fail at the first frame
                pass
            self.container = av.open(str(self.path), "w")
        except (av.error.FFmpegError, OSError) as exc:
            raise DataError(f"{self.path}: cannot write the video ({getattr(exc, 'strerror', None) or exc})") from None
        self.stream = None

    def write(self, image: np.ndarray) -> None:
        """Encode one uint8 RGB ``H x W x 3`` frame."""
        av = require_av()
        height, width = image.shape[:2]
        if self.stream is None:
            self.stream = self._add_stream(width, height)
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24")
        frame.pts = self.frames
        for packet in self.stream.encode(frame):
            self.container.mux(packet)
        self.frames += 1

    def _add_stream(self, width: int, height: int):
        from fractions import Fraction

        rate = Fraction(self.fps).limit_denominator(1001)
        stream = self.container.add_stream(self.codec, rate=rate, options=dict(self.options))
        stream.width, stream.height = width, height
        stream.pix_fmt = self.even_format if width % 2 == 0 and height % 2 == 0 else self.odd_format
        stream.time_base = 1 / rate
        stream.thread_count = 1  # the encoder gets one core; the other serves the network
        return stream

    def close(self) -> None:
        """Flush the encoder and write the trailer; the file is then complete and playable (safe to call twice)."""
        if self.container is None:
            return
        try:
            if self.stream is not None:
                for packet in self.stream.encode():
                    self.container.mux(packet)
        finally:
            self.container.close()
            self.container = None
