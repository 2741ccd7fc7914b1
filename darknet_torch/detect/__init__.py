"""Detection: Darknet's exact pre-processing, boxes and NMS, over single images or whole folders.

``detect(sources, cfg, weights, names)`` runs everything and returns a :class:`DetectReport` of per-image
:class:`ImageResult` (plain data: path, size, :class:`Detection` list); :func:`detect_images` does the same with a
:class:`Predictor` you built; :mod:`darknet_torch.detect.outputs_format` holds Darknet's text/JSON forms.
"""
from darknet_torch.detect.pipeline import DetectReport, ImageResult, detect, detect_images
from darknet_torch.detect.predictor import Detection, Predictor
from darknet_torch.detect.sources import expand_sources

__all__ = ["Detection", "DetectReport", "ImageResult", "Predictor", "detect", "detect_images", "expand_sources"]
