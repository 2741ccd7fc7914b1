"""Video: Darknet's ``detector demo`` on video files, cameras, network streams and image sequences.

:func:`~darknet_torch.video.sources.open_source` opens a source (PyAV, the optional ``video`` extra);
:func:`~darknet_torch.video.pipeline.run_video` runs a :class:`~darknet_torch.detect.predictor.Predictor` on it with
decoding, inference and output overlapping, and writes the annotated video, JSON lines with track ids (the
:class:`~darknet_torch.video.tracker.IoUTracker`), label files and the HTTP streams.  ``darknet_torch demo`` is the
command.  Importing this package does not import PyAV; opening a source or writer without it raises a clear error.
"""
from darknet_torch.video.pipeline import FrameResult, VideoOutputs, VideoReport, run_video
from darknet_torch.video.sources import open_source
from darknet_torch.video.tracker import IoUTracker

__all__ = ["FrameResult", "IoUTracker", "VideoOutputs", "VideoReport", "open_source", "run_video"]
