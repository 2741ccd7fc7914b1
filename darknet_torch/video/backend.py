"""PyAV, the optional video library: imported on first use so that the rest of darknet_torch works without it.

PyAV (FFmpeg's libraries, bundled in its wheels) decodes and encodes every common container and codec, including
the lossless FFV1 that makes video results testable frame for frame, and opens V4L2/AVFoundation cameras and
RTSP/HTTP streams with the same API.
"""
from __future__ import annotations

from types import ModuleType

from darknet_torch.errors import DarknetError

EXTRA_HINT = "pip install 'darknet_torch[video]'"


def require_av() -> ModuleType:
    """The ``av`` module, or a DarknetError naming the ``video`` extra when PyAV is not installed."""
    try:
        import av
    except ImportError:
        raise DarknetError(f"video needs the optional 'video' extra (PyAV is missing): {EXTRA_HINT}") from None
    av.logging.set_level(av.logging.PANIC)  # FFmpeg's own stderr chatter; errors reach us as exceptions
    return av
