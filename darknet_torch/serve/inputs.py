"""What a ``POST /predict`` carries: the image bytes (multipart field or raw body) and optional settings.

Every problem is an ``HTTPException`` with a status a client can act on and a message saying what to change:
415 for a content type that is neither multipart nor an image, 400 for a missing/empty upload or a bad setting,
408 when the body does not arrive within the request timeout.  Size limits are enforced while the body arrives
(:mod:`darknet_torch.serve.limits`); image decoding happens later, on the model thread.
"""
from __future__ import annotations

import asyncio
import math
from typing import Mapping

from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException
from starlette.requests import Request

from darknet_torch.serve.inference import ImageJob, RequestSettings

#: The multipart field holding the image.
IMAGE_FIELD = "image"
#: Fields a request may set (query string, or multipart text fields, which take precedence).
SETTING_FIELDS = ("thresh", "nms", "letter_box")
_TRUE, _FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off")


async def read_job(request: Request, defaults: RequestSettings, timeout: float) -> ImageJob:
    """The image bytes and settings of one predict request, reading the body within ``timeout`` seconds."""
    media_type = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    try:
        if media_type == "multipart/form-data":
            data, fields = await asyncio.wait_for(_read_multipart(request), timeout)
        elif media_type.startswith("image/") or media_type == "application/octet-stream":
            data, fields = await asyncio.wait_for(request.body(), timeout), {}
        else:
            raise HTTPException(415, f"unsupported content type {media_type or '(none)'!r}: send multipart/form-data "
                                     f"with a file field {IMAGE_FIELD!r}, or the raw image bytes as image/* or "
                                     "application/octet-stream")
    except TimeoutError:
        # close the connection: the rest of a slow body must not hold it, nor be read as a next request
        raise HTTPException(408, f"the request body did not arrive within {timeout:g} s",
                            headers={"Connection": "close"}) from None
    if not data:
        raise HTTPException(400, "the uploaded image is empty (0 bytes)")
    query = _once(request.query_params.multi_items(), "in the query string")
    return ImageJob(data, parse_settings({**query, **fields}, defaults))


def _once(pairs: list[tuple[str, str]], where: str) -> dict[str, str]:
    """``pairs`` as a dict; 400 for a key given twice (``?thresh=0.5&thresh=0.9`` silently took the last)."""
    fields: dict[str, str] = {}
    for key, value in pairs:
        if key in fields:
            raise HTTPException(400, f"{key!r} given twice {where} ({fields[key]!r}, {value!r}): give it once")
        fields[key] = value
    return fields


#: Size cap of a multipart text (non-file) field: settings are a few characters.
TEXT_FIELD_BYTES = 1024


async def _read_multipart(request: Request) -> tuple[bytes, dict[str, str]]:
    try:
        return await _read_form(request)
    except HTTPException as exc:
        if exc.status_code == 400 and "exceeded maximum size" in str(exc.detail):
            # python-multipart reads a part without a filename as text: almost always the image sent without one
            raise HTTPException(400, f"a multipart text field is over {TEXT_FIELD_BYTES // 1024} KB: send the image "
                                     f"as a file part (a Content-Disposition with a filename, e.g. curl -F "
                                     f"{IMAGE_FIELD}=@photo.jpg); only the settings are text fields") from None
        raise


async def _read_form(request: Request) -> tuple[bytes, dict[str, str]]:
    async with request.form(max_files=1, max_fields=len(SETTING_FIELDS) + 1, max_part_size=TEXT_FIELD_BYTES) as form:
        upload = form.get(IMAGE_FIELD)
        if upload is None:
            raise HTTPException(400, f"missing field {IMAGE_FIELD!r}: send the image as a multipart file field "
                                     f"named {IMAGE_FIELD!r}")
        if not isinstance(upload, UploadFile):
            raise HTTPException(400, f"field {IMAGE_FIELD!r} must be a file, not a text value")
        pairs = [(key, value) for key, value in form.multi_items() if key != IMAGE_FIELD]
        if any(isinstance(value, UploadFile) for _, value in pairs):
            raise HTTPException(400, f"only one file is accepted, in the field {IMAGE_FIELD!r}")
        fields = _once(pairs, "in the form")
        return await upload.read(), fields


def parse_settings(fields: Mapping[str, str], defaults: RequestSettings) -> RequestSettings:
    """Settings from text fields (absent ones keep ``defaults``); 400 for an unknown field or a bad value."""
    unknown = sorted(set(fields) - set(SETTING_FIELDS))
    if unknown:
        raise HTTPException(400, f"unknown field(s) {', '.join(map(repr, unknown))}: expected {IMAGE_FIELD!r} and "
                                 f"optionally {', '.join(map(repr, SETTING_FIELDS))}")
    thresh = _fraction(fields, "thresh", defaults.thresh)
    nms = _fraction(fields, "nms", defaults.nms)
    letter_box = defaults.letter_box
    if "letter_box" in fields:
        value = fields["letter_box"].strip().lower()
        if value not in _TRUE + _FALSE:
            raise HTTPException(400, f"letter_box={fields['letter_box']!r}: expected 1/0 (or true/false)")
        letter_box = value in _TRUE
    return RequestSettings(thresh, nms, letter_box)


def _fraction(fields: Mapping[str, str], key: str, default: float) -> float:
    if key not in fields:
        return default
    try:
        value = float(fields[key])
    except ValueError:
        value = math.nan
    if not 0.0 <= value <= 1.0:
        raise HTTPException(400, f"{key}={fields[key]!r}: expected a number from 0 to 1")
    return value
