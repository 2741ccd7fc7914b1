"""Where frames come from: video files, cameras, network streams and image sequences, as one iterator of frames.

Every source yields :class:`Frame` (uint8 RGB ``H x W x 3``, the 0-based frame index, the time in seconds) and
records what went wrong in ``errors`` instead of stopping at the first bad packet, so a damaged file gives every
frame that decodes.  A source that cannot be opened at all raises :class:`~darknet_torch.errors.DataError` with a
one-line reason (missing file, not a video, camera not present, stream unreachable).

``live`` sources (cameras, streams) are read by the pipeline in latest-frame mode: frames that arrive while the
network is busy are dropped rather than queued, so the output never falls behind the scene.  Files and image
sequences are processed frame by frame.
"""
from __future__ import annotations

import logging
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator, Sequence

import numpy as np

from darknet_torch.config.sections import DIGITS_TEXT
from darknet_torch.data.images import DEFAULT_MAX_PIXELS, Decoder, load_pixels
from darknet_torch.detect.sources import IMAGE_EXTENSIONS, expand_sources
from darknet_torch.errors import DarknetError, DataError
from darknet_torch.video.backend import require_av

log = logging.getLogger(__name__)

#: Container extensions taken as video files (by ``detect``, and to pick an output codec).
VIDEO_EXTENSIONS = frozenset({".mp4", ".m4v", ".mov", ".avi", ".mkv", ".webm", ".mpg", ".mpeg", ".ts", ".flv",
                              ".wmv", ".ogv", ".3gp", ".mjpeg", ".mjpg", ".nut"})
#: URL schemes opened as network streams (FFmpeg's protocols).
STREAM_SCHEMES = ("rtsp", "rtsps", "rtmp", "rtmps", "http", "https", "udp", "tcp", "srt", "rtp")
#: Frames per second assumed for image sequences and streams that do not say.
DEFAULT_FPS = 25.0


@dataclass(frozen=True)
class Frame:
    """One decoded frame: ``image`` uint8 RGB ``H x W x 3``; ``index`` counts from 0 in the source's order."""

    index: int
    image: np.ndarray
    time: float | None = None

    @property
    def size(self) -> tuple[int, int]:
        """(width, height)."""
        return self.image.shape[1], self.image.shape[0]


@dataclass
class FrameSource:
    """Base of all sources: a name for messages, the frame rate, whether it is live, what failed."""

    name: str
    fps: float = DEFAULT_FPS
    live: bool = False
    #: Frames the container announces (None: unknown); fewer decoded frames are reported as lost.
    expected_frames: int | None = None
    errors: list[str] = field(default_factory=list)

    def frames(self) -> Iterator[Frame]:
        raise NotImplementedError

    def close(self) -> None:
        """Release the device or connection (safe to call twice)."""

    def files(self) -> list[Path]:
        """The local files the frames are read from (none for cameras and streams): outputs must not replace them."""
        return []


class AVSource(FrameSource):
    """Anything FFmpeg opens: a file, a camera device, a network stream (PyAV container, first video stream)."""

    def __init__(self, name: str, target: str, *, live: bool = False, format: str | None = None,
                 options: dict[str, str] | None = None, timeout: float | None = None,
                 max_pixels: int = DEFAULT_MAX_PIXELS) -> None:
        super().__init__(name, live=live)
        self.target = target
        av = require_av()
        try:
            self.container = av.open(target, format=format, options=options or {}, timeout=timeout)
        except av.error.FileNotFoundError:
            raise DataError(f"{name}: no such file or device") from None
        except av.error.PermissionError:
            raise DataError(f"{name}: permission denied") from None
        except (av.error.FFmpegError, OSError) as exc:
            raise DataError(f"{name}: cannot open as a video ({_reason(exc)})") from None
        if not self.container.streams.video:
            self.container.close()
            raise DataError(f"{name}: no video stream in this file")
        self.stream = self.container.streams.video[0]
        self.stream.thread_type = "AUTO"  # frame + slice threads in the decoder
        # One converter to RGB for every frame: VideoFrame.to_ndarray(format=...) sets up a new FFmpeg scaler
        # context per frame, which costs as much as the conversion itself (0.6 ms at 640x480).
        self._to_rgb = require_av().video.reformatter.VideoReformatter()
        width, height = self.stream.codec_context.width, self.stream.codec_context.height
        if width * height > max_pixels:
            self.container.close()
            raise DataError(f"{name}: frames of {width}x{height} pixels exceed the limit of {max_pixels}")
        rate = self.stream.average_rate or self.stream.guessed_rate
        self.fps = float(rate) if rate else DEFAULT_FPS
        self.expected_frames = None if live else _announced_frames(self.container, self.stream, self.fps)

    def frames(self) -> Iterator[Frame]:
        av = require_av()
        index = 0
        try:
            for packet in self.container.demux(self.stream):
                try:
                    decoded = packet.decode()
                except av.error.FFmpegError as exc:
                    self.errors.append(f"{self.name}: frame {index + 1}: cannot decode ({_reason(exc)})")
                    continue
                for frame in decoded:
                    yield Frame(index, self._to_rgb.reformat(frame, format="rgb24").to_ndarray(), frame.time)
                    index += 1
        except av.error.FFmpegError as exc:
            self.errors.append(f"{self.name}: reading stopped after frame {index} ({_reason(exc)})")
        if self.expected_frames is not None and index < self.expected_frames:
            self.errors.append(f"{self.name}: {self.expected_frames - index} of {self.expected_frames} frames "
                               f"could not be decoded (truncated or corrupt file)")

    def close(self) -> None:
        self.container.close()

    def files(self) -> list[Path]:
        return [] if self.live else [Path(self.target)]


def _announced_frames(container, stream, fps: float) -> int | None:
    """Frame count from the header, or from the duration (containers that only store a duration, e.g. MKV)."""
    if stream.frames:
        return int(stream.frames)
    if container.duration and fps:
        return int(round(container.duration / 1_000_000 * fps))
    return None


def _reason(exc: BaseException) -> str:
    return getattr(exc, "strerror", None) or str(exc)


class ImageSequenceSource(FrameSource):
    """Still images as frames, in the order :func:`expand_sources` gives (folder/glob sorted by name, .txt list)."""

    def __init__(self, name: str, paths: Sequence[Path], fps: float = DEFAULT_FPS, decoder: Decoder = "auto",
                 max_pixels: int = DEFAULT_MAX_PIXELS) -> None:
        super().__init__(name, fps=fps, expected_frames=len(paths))
        self.paths, self.decoder, self.max_pixels = list(paths), decoder, max_pixels

    def frames(self) -> Iterator[Frame]:
        for index, path in enumerate(self.paths):
            try:
                pixels = load_pixels(path, self.max_pixels, self.decoder)
            except DarknetError as exc:
                self.errors.append(str(exc))
                continue
            yield Frame(index, np.require(pixels, requirements="W"), index / self.fps)  # drawn on in place

    def files(self) -> list[Path]:
        listing = Path(self.name)  # a .txt list is a source too
        return [*self.paths, listing] if listing.suffix.lower() == ".txt" else self.paths


class ReconnectingSource(FrameSource):
    """A live source that reopens itself when it disconnects: waits ``backoff`` seconds, doubling up to
    ``max_backoff``, at most ``retries`` times in a row; then the loss is recorded as an error and frames end."""

    def __init__(self, name: str, open_source: Callable[[], FrameSource], retries: int = 5, backoff: float = 0.5,
                 max_backoff: float = 8.0, sleep: Callable[[float], None] = time.sleep) -> None:
        super().__init__(name, live=True)
        self.open_source, self.retries, self.backoff, self.max_backoff = open_source, retries, backoff, max_backoff
        self.sleep = sleep
        self.current: FrameSource | None = open_source()  # the first failure is the caller's (exit 2)
        self.fps = self.current.fps
        self.reconnects = 0

    def frames(self) -> Iterator[Frame]:
        index = 0
        while self.current is not None:
            for frame in self.current.frames():
                yield Frame(index, frame.image, frame.time)
                index += 1
            self.current.close()
            self.current = self._reopen()

    def _reopen(self) -> FrameSource | None:
        delay = self.backoff
        reason = "stream ended"
        for attempt in range(1, self.retries + 1):
            log.warning("%s: disconnected (%s); reconnecting in %.1f s (attempt %d of %d)", self.name, reason, delay,
                        attempt, self.retries)
            self.sleep(delay)
            try:
                source = self.open_source()
            except DataError as exc:
                reason = str(exc)
                delay = min(2 * delay, self.max_backoff)
                continue
            self.reconnects += 1
            return source
        self.errors.append(f"{self.name}: connection lost and {self.retries} reconnection attempts failed "
                           f"(last: {reason})")
        return None

    def close(self) -> None:
        if self.current is not None:
            self.current.close()


def is_video_file(path: str | os.PathLike[str]) -> bool:
    """True for an existing file whose extension (any case) is in :data:`VIDEO_EXTENSIONS`."""
    path = Path(path)
    return path.suffix.lower() in VIDEO_EXTENSIONS and path.is_file()


def is_stream_url(spec: str) -> bool:
    scheme, sep, _ = spec.partition("://")
    return bool(sep) and scheme.lower() in STREAM_SCHEMES


def open_camera(index: int, max_pixels: int = DEFAULT_MAX_PIXELS) -> FrameSource:
    """Camera ``index`` through the platform's capture API (V4L2 ``/dev/videoN`` on Linux, AVFoundation on macOS).

    Raises:
        DataError: no such camera, or it cannot be opened.
    """
    if sys.platform.startswith("linux"):
        device = f"/dev/video{index}"
        if not os.path.exists(device):
            raise DataError(f"camera {index}: not present ({device} does not exist)")
        return AVSource(f"camera {index} ({device})", device, live=True, format="v4l2", max_pixels=max_pixels)
    if sys.platform == "darwin":
        return AVSource(f"camera {index}", str(index), live=True, format="avfoundation", max_pixels=max_pixels)
    raise DataError(f"camera {index}: cameras by index are supported on Linux and macOS; on this system pass the "
                    "device as an FFmpeg URL or file")


def open_stream(url: str, timeout: float = 10.0, retries: int = 5,
                max_pixels: int = DEFAULT_MAX_PIXELS) -> FrameSource:
    """A network stream (RTSP over TCP, HTTP, ...) that reconnects with back-off when it drops."""
    options = {"rtsp_transport": "tcp"} if url.lower().startswith("rtsp") else {}

    def connect() -> FrameSource:
        return AVSource(url, url, live=True, options=options, timeout=timeout, max_pixels=max_pixels)

    return ReconnectingSource(url, connect, retries=retries)


def open_source(spec: str, *, fps: float | None = None, decoder: Decoder = "auto", retries: int = 5,
                max_pixels: int = DEFAULT_MAX_PIXELS) -> FrameSource:
    """The source ``spec`` names: a camera index (``0``), a stream URL, an image folder, glob or ``.txt`` list,
    a single image, or a video file.  ``fps`` overrides the frame rate (image sequences have none of their own).

    Raises:
        DataError: the source does not exist or cannot be opened (the message names it).
    """
    if DIGITS_TEXT.fullmatch(spec):
        source = open_camera(int(spec), max_pixels)
    elif is_stream_url(spec):
        source = open_stream(spec, retries=retries, max_pixels=max_pixels)
    elif Path(spec).is_dir() or Path(spec).suffix.lower() in (*IMAGE_EXTENSIONS, ".txt") or set("*?[") & set(spec):
        source = ImageSequenceSource(spec, expand_sources([spec]), decoder=decoder, max_pixels=max_pixels)
    elif not Path(spec).exists():
        raise DataError(f"{spec}: no such file")
    elif not Path(spec).is_file():
        raise DataError(f"{spec}: not a regular file")
    else:
        source = AVSource(spec, spec, max_pixels=max_pixels)
    if fps is not None:
        source.fps = fps
    return source
