"""Issue 17's serve cases as one table (each row: a request -> status and message or content), against the real app
(uvicorn with the service's connection handling, real yolov3-tiny on a loopback port), then the model-thread rules
behind them: one upload that cannot be prepared fails alone in its micro-batch; detections and responses are capped.
"""
from __future__ import annotations

import contextlib
import io
import json
import math
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import pytest
import torch
from PIL import Image

from darknet_torch.config.data_files import read_names
from darknet_torch.data.images import decode_image_bytes, stb_available
from darknet_torch.detect.predictor import Predictor
from darknet_torch.errors import DataError
from darknet_torch.model.loading import load_model
from tests.serve.serving import Reply, http_request, multipart, raw_exchange, require_serve_extra, thread_server

require_serve_extra()

from darknet_torch.serve.app import ServeConfig, create_app  # noqa: E402
from darknet_torch.serve.connections import uvicorn_options  # noqa: E402
from darknet_torch.serve.inference import ImageJob, Prediction, RequestSettings, run_jobs  # noqa: E402

HEADER_TIMEOUT = 1.0
MAX_DETECTIONS = 1000  # the service's default


@pytest.fixture(scope="module")
def predictor(repo_root: Path, yolo_cfg: Path, real_weights: Path) -> Predictor:
    return Predictor(load_model(yolo_cfg, real_weights), read_names(repo_root / "data" / "coco.names"))


@contextlib.contextmanager
def _server(predictor: Predictor, **limits) -> Iterator[str]:
    config = ServeConfig(header_timeout=HEADER_TIMEOUT, **limits)
    with thread_server(create_app(predictor, config), **uvicorn_options(config)) as base:
        yield base


@pytest.fixture(scope="module")
def servers(predictor: Predictor) -> Iterator[dict[str, str]]:
    """The default (Pillow) service and, when libstb is installed, one decoding with stb_image as Darknet does."""
    with contextlib.ExitStack() as stack:
        found = {"pil": stack.enter_context(_server(predictor))}
        if stb_available():
            found["stb"] = stack.enter_context(_server(predictor, decoder="stb"))
        yield found


def encoded(width: int, height: int, fmt: str, seed: int = 0) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, fmt)
    return buffer.getvalue()


def _post(data: bytes, content_type: str, query: str = "") -> Callable[[str], Reply]:
    return lambda base: http_request(base, "POST", f"/predict{query}", data, {"Content-Type": content_type})


def _post_form(files: dict[str, tuple[str | None, bytes]]) -> Callable[[str], Reply]:
    body, headers = multipart({}, files)
    return lambda base: http_request(base, "POST", "/predict", body, headers)


def _raw(head: bytes) -> Callable[[str], Reply]:
    return lambda base: raw_exchange(base, head, [])


def _finite_boxes(reply: Reply) -> bool:
    return all(math.isfinite(v) for d in reply.json["detections"] for v in d["box"].values())


def _capped(reply: Reply) -> bool:
    result = reply.json
    return len(result["detections"]) == MAX_DETECTIONS and result["dropped"] > 100_000 and len(reply.body) < 2**20


def _truncation_warned(reply: Reply) -> bool:
    return reply.json["warnings"] == ["upload: truncated JPEG (no end-of-image marker): decoded as Darknet does, "
                                      "the missing part grey (the pil decoder refuses such files)"]


def _cases(dog: bytes) -> dict[str, tuple[str, Callable[[str], Reply], int, str | Callable[[Reply], bool]]]:
    """name -> (server, send, status, words of the JSON error, or a check of the 200 answer)."""
    png, jpeg = "image/png", "image/jpeg"
    return {
        # item 2: extreme aspect ratios letterbox to at least one pixel per side, finite boxes
        "5000x1 letterboxed": ("pil", _post(encoded(5000, 1, "PNG"), png, "?letter_box=1"), 200,
                               lambda r: (r.json["width"], r.json["height"]) == (5000, 1) and _finite_boxes(r)),
        "1x5000 letterboxed": ("pil", _post(encoded(1, 5000, "PNG"), png, "?letter_box=1"), 200,
                               lambda r: (r.json["width"], r.json["height"]) == (1, 5000) and _finite_boxes(r)),
        "5000x1 stretched": ("pil", _post(encoded(5000, 1, "PNG"), png), 200, _finite_boxes),
        # item 5: every (box, class) pair kept by thresh=0, nms=1 is capped
        "thresh=0 nms=1": ("pil", _post(dog, jpeg, "?thresh=0&nms=1"), 200, _capped),
        # item 11: stb grey-fills a truncated JPEG and says so; formats stb cannot read fall back to Pillow
        "truncated JPEG (stb)": ("stb", _post(dog[: len(dog) // 2], jpeg), 200, _truncation_warned),
        "truncated JPEG (pil)": ("pil", _post(dog[: len(dog) // 2], jpeg), 400, "corrupt or truncated image"),
        "webp (stb)": ("stb", _post(encoded(64, 48, "WEBP"), "image/webp"), 200,
                       lambda r: (r.json["width"], r.json["height"]) == (64, 48)),
        "tiff (stb)": ("stb", _post(encoded(64, 48, "TIFF"), "image/tiff"), 200,
                       lambda r: (r.json["width"], r.json["height"]) == (64, 48)),
        # item 13: an image part without a filename is a text field
        "image without filename": ("pil", _post_form({"image": (None, dog)}), 400,
                                   "send the image as a file part (a Content-Disposition with a filename"),
        "small image without filename": ("pil", _post_form({"image": (None, b"GIF89a")}), 400,
                                         "field 'image' must be a file"),
        # item 3: request heads that are malformed or never complete get JSON, not plain text or silence
        "malformed request head": ("pil", _raw(b"NOT HTTP AT ALL\r\n\r\n"), 400, "malformed HTTP request"),
        "oversized request head": ("pil", _raw(b"GET /health HTTP/1.1\r\nX-Filler: " + b"x" * 20_000 + b"\r\n\r\n"),
                                   400, "malformed HTTP request"),
        "half-sent request head": ("pil", _raw(b"POST /predict HTTP/1.1\r\nHost: x\r\n"), 408,
                                   f"the request head did not arrive within {HEADER_TIMEOUT:g} s"),
    }


CASES = list(_cases(b"").keys())


@pytest.mark.parametrize("case", CASES)
def test_bad_input_gets_its_status_and_answer(servers: dict[str, str], dog_jpg: Path, case: str) -> None:
    server, send, status, expected = _cases(dog_jpg.read_bytes())[case]
    if server not in servers:
        pytest.skip("optional package libstb (stb_image) not installed: pip install libstb")
    reply = send(servers[server])
    assert reply.status == status, reply.body[:300]
    assert reply.headers["content-type"] == "application/json"
    if isinstance(expected, str):
        assert expected in reply.json["error"]
    else:
        assert expected(reply), reply.body[:300]
    assert http_request(servers[server], "GET", "/health").status == 200  # and the service goes on


def test_capped_detections_are_the_highest_scores(servers: dict[str, str], dog_jpg: Path,
                                                  predictor: Predictor) -> None:
    data = dog_jpg.read_bytes()
    reply = _post(data, "image/jpeg", "?thresh=0&nms=1")(servers["pil"])
    everything = predictor.with_settings(thresh=0.0, nms=1.0)
    scores = sorted((d.score for d in everything.predict([decode_image_bytes(data)])[0]), reverse=True)
    served = sorted((d["score"] for d in reply.json["detections"]), reverse=True)
    assert len(scores) > 150_000 and reply.json["dropped"] == len(scores) - MAX_DETECTIONS
    assert served == pytest.approx(scores[:MAX_DETECTIONS], abs=1e-5)  # other process: last-bit float differences


# ----------------------------------------------------------------------------- the model thread's rules


def test_an_upload_that_cannot_be_prepared_fails_alone_in_its_batch(predictor: Predictor, dog_jpg: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """Whatever goes wrong fitting one upload to the network, the other requests of the micro-batch get answers."""
    prepare_u8 = Predictor.prepare_u8

    def fragile(self: Predictor, pixels: np.ndarray):
        if pixels.shape[1] == 7:
            raise ValueError("cannot fit this one")
        return prepare_u8(self, pixels)

    monkeypatch.setattr(Predictor, "prepare_u8", fragile)
    settings = RequestSettings(0.25, 0.45, True)
    jobs = [ImageJob(encoded(7, 5, "PNG"), settings), ImageJob(dog_jpg.read_bytes(), settings),
            ImageJob(b"not an image", settings)]
    bad, good, undecodable = run_jobs(predictor, jobs, max_pixels=10**8, decoder="pil")
    assert isinstance(bad, DataError)
    assert str(bad) == "upload: cannot prepare the 7x5 image for the network: cannot fit this one"
    assert isinstance(good, Prediction) and {d.name for d in good.detections} >= {"dog", "bicycle"}
    assert isinstance(undecodable, DataError) and "not a recognised image format" in str(undecodable)


def test_detections_per_image_are_capped_with_the_highest_scores(predictor: Predictor, dog_jpg: Path) -> None:
    everything = run_jobs(predictor, [ImageJob(dog_jpg.read_bytes(), RequestSettings(0.0, 1.0, False))],
                          max_pixels=10**8, decoder="pil", max_detections=10**9)[0]
    capped = run_jobs(predictor, [ImageJob(dog_jpg.read_bytes(), RequestSettings(0.0, 1.0, False))],
                      max_pixels=10**8, decoder="pil", max_detections=25)[0]
    assert everything.dropped == 0 and capped.dropped == len(everything.detections) - 25
    best = sorted(everything.detections, key=lambda d: -d.score)[:25]
    assert sorted(capped.detections, key=lambda d: -d.score) == best
    kept = set(capped.detections)
    assert capped.detections == [d for d in everything.detections if d in kept]  # Darknet's order is kept


def test_response_size_cap_leaves_out_the_lowest_scores(predictor: Predictor, dog_jpg: Path) -> None:
    result = run_jobs(predictor, [ImageJob(dog_jpg.read_bytes(), RequestSettings(0.01, 0.45, False))],
                      max_pixels=10**8, decoder="pil")[0]
    full = result.to_json()
    assert len(full["detections"]) > 20 and full["dropped"] == 0
    capped = result.to_json(max_bytes=2000)
    size = len(json.dumps(capped, ensure_ascii=False, separators=(",", ":")).encode())
    assert size <= 2000 and 0 < len(capped["detections"]) < len(full["detections"])
    assert capped["dropped"] == len(full["detections"]) - len(capped["detections"])
    lowest_kept = min(d["score"] for d in capped["detections"])
    assert all(d["score"] <= lowest_kept for d in full["detections"] if d not in capped["detections"])
