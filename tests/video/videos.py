"""Short test videos made on the fly: a real photo sliding across a small frame, so real weights find objects."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.conftest import SHARED_DIR


def require_av():
    """The av module, or skip with the reason (the 'video' extra is not installed)."""
    return pytest.importorskip("av", reason="PyAV (the 'video' extra) is not installed")


def photo_frames(count: int, width: int = 160, height: int = 120, photo: str = "dog") -> list[np.ndarray]:
    """``count`` uint8 RGB frames: the photo at ``width x height`` moving 2 px right per frame."""
    path = SHARED_DIR / "images" / f"{photo}.jpg"
    if not path.is_file():
        pytest.skip(f"reference photo not found at {path} (expected ../shared beside the checkout)")
    image = np.asarray(Image.open(path).convert("RGB").resize((width, height)))
    return [np.ascontiguousarray(np.roll(image, 2 * i, axis=1)) for i in range(count)]


def write_video(path: Path, frames: list[np.ndarray], fps: int = 10, codec: str = "ffv1",
                pix_fmt: str = "bgr0") -> Path:
    """Encode ``frames`` (default: lossless FFV1 in RGB, so decoding gives the frames back exactly)."""
    av = require_av()
    height, width = frames[0].shape[:2]
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, pix_fmt
        for image in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def read_video(path: Path) -> tuple[list[np.ndarray], float]:
    """Every frame of a video file as uint8 RGB, and its frame rate."""
    av = require_av()
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        return [f.to_ndarray(format="rgb24") for f in container.decode(stream)], float(stream.average_rate)
