"""A small client for ``darknet_torch serve``, standard library only (works without the ``serve`` extra).

    from darknet_torch.client import predict
    for det in predict("http://127.0.0.1:8000", "dog.jpg", thresh=0.5):
        print(det["name"], det["score"], det["box"])
"""
from __future__ import annotations

import json
import os
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

from darknet_torch.errors import DarknetError, DataError


class ServiceError(DarknetError):
    """The service refused a request or could not be reached; ``status`` is the HTTP status (None: no answer)."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


def predict(url: str, image: str | os.PathLike[str] | bytes, thresh: float | None = None, nms: float | None = None,
            letter_box: bool | None = None, timeout: float = 60.0) -> list[dict[str, Any]]:
    """Detections for one image: ``[{class_id, name, score, box: {left, top, right, bottom}}]``, box in pixels.

    ``url`` is the service's base address (``http://127.0.0.1:8000``); ``image`` a file path or the encoded bytes.
    Settings left as None use the service's defaults.  Raises :class:`ServiceError` for an error answer (its
    message is the service's) or no answer, :class:`DataError` for an image path that cannot be read.
    """
    return predict_response(url, image, thresh, nms, letter_box, timeout)["detections"]


def predict_response(url: str, image: str | os.PathLike[str] | bytes, thresh: float | None = None,
                     nms: float | None = None, letter_box: bool | None = None,
                     timeout: float = 60.0) -> dict[str, Any]:
    """The whole ``POST /predict`` answer: ``{width, height, detections, settings, seconds}``."""
    data = image if isinstance(image, bytes) else _read(Path(image))
    settings = {"thresh": thresh, "nms": nms, "letter_box": None if letter_box is None else int(letter_box)}
    query = urllib.parse.urlencode({k: v for k, v in settings.items() if v is not None})
    endpoint = _endpoint(url, "predict") + (f"?{query}" if query else "")
    request = urllib.request.Request(endpoint, data=data, method="POST",
                                     headers={"Content-Type": "application/octet-stream"})
    return _call(request, timeout)


def health(url: str, timeout: float = 10.0) -> dict[str, Any]:
    """``GET /health``: status, model, classes, input size, default settings and queue state."""
    return _call(urllib.request.Request(_endpoint(url, "health")), timeout)


def _endpoint(url: str, path: str) -> str:
    base = url.rstrip("/")
    return base if base.endswith(f"/{path}") else f"{base}/{path}"


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise DataError(f"{path}: cannot read image file: {exc.strerror or exc}") from None


def _call(request: urllib.request.Request, timeout: float) -> dict[str, Any]:
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return json.loads(response.read())
    except urllib.error.HTTPError as exc:
        with exc:
            body = exc.read()
        try:
            message = json.loads(body)["error"]
        except (ValueError, KeyError, TypeError):
            message = body[:200].decode("utf-8", "replace") or exc.reason
        raise ServiceError(f"{request.full_url}: HTTP {exc.code}: {message}", exc.code) from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise ServiceError(f"{request.full_url}: no answer: {reason}") from None
