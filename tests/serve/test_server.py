"""The real ``darknet_torch serve`` (subprocess, loopback port, real yolov3-tiny weights) answering real HTTP requests:
detections equal the library's, every bad input gets its status and JSON message, and the service keeps serving."""
from __future__ import annotations

import struct
import zlib
from pathlib import Path

import pytest

from darknet_torch.client import ServiceError, health, predict, predict_response
from darknet_torch.config.data_files import read_names
from darknet_torch.data.images import decode_image_bytes
from darknet_torch.detect.predictor import Predictor
from darknet_torch.model.loading import load_model
from tests.serve.serving import UPLOAD_CAP_MB, Reply, http_request, multipart, raw_exchange, require_serve_extra

require_serve_extra()

# The server and the library run the same code on the same bytes; only torch's thread count may differ between the
# two processes, which can change float sums in their last bits.
SCORE_TOL = 1e-5
BOX_TOL_PX = 1e-3


@pytest.fixture(scope="module")
def library(repo_root: Path, yolo_cfg: Path, real_weights: Path) -> Predictor:
    return Predictor(load_model(yolo_cfg, real_weights), read_names(repo_root / "data" / "coco.names"))


def library_json(library: Predictor, data: bytes, thresh=0.25, nms=0.45, letter_box=False) -> list[dict]:
    """The library's detections for ``data`` (Pillow decoder, as the server's default) in the service's JSON form."""
    image = decode_image_bytes(data, decoder="pil")
    tuned = library.with_settings(thresh=thresh, nms=nms, letterbox=letter_box)
    height, width = image.shape[1:]
    out = []
    for det in tuned.predict([image])[0]:
        left, top, right, bottom = det.xyxy(width, height)
        out.append({"class_id": det.class_id, "name": det.name, "score": det.score,
                    "box": {"left": left, "top": top, "right": right, "bottom": bottom}})
    return out


def assert_same_detections(served: list[dict], expected: list[dict]) -> None:
    assert [(d["class_id"], d["name"]) for d in served] == [(d["class_id"], d["name"]) for d in expected]
    for got, want in zip(served, expected):
        assert got["score"] == pytest.approx(want["score"], abs=SCORE_TOL)
        for side in ("left", "top", "right", "bottom"):
            assert got["box"][side] == pytest.approx(want["box"][side], abs=BOX_TOL_PX)


def test_health_and_page(cli_server: str) -> None:
    info = health(cli_server)
    assert info["status"] == "ok" and info["classes"] == 80 and info["input_size"] == [416, 416]
    assert info["defaults"] == {"thresh": 0.25, "nms": 0.45, "letter_box": False}
    page = http_request(cli_server, "GET", "/")
    assert page.status == 200 and page.headers["content-type"].startswith("text/html")
    assert b'<input id="image" name="image" type="file"' in page.body and b'fetch("predict"' in page.body
    assert "default-src 'none'" in page.headers["content-security-policy"]


def test_multipart_upload_equals_library(cli_server: str, dog_jpg: Path, library: Predictor) -> None:
    data = dog_jpg.read_bytes()
    body, headers = multipart({}, {"image": ("dog.jpg", data)})
    reply = http_request(cli_server, "POST", "/predict", body, headers)
    assert reply.status == 200, reply.body
    result = reply.json
    assert (result["width"], result["height"]) == (768, 576)
    expected = library_json(library, data)
    assert {d["name"] for d in expected} >= {"dog", "bicycle", "car"}  # the photo's known content
    assert_same_detections(result["detections"], expected)


@pytest.mark.parametrize("via", ["multipart fields", "query string", "client"])
def test_request_settings_equal_library(cli_server: str, dog_jpg: Path, library: Predictor, via: str) -> None:
    data = dog_jpg.read_bytes()
    settings = {"thresh": "0.5", "nms": "0.3", "letter_box": "1"}
    if via == "multipart fields":
        body, headers = multipart(settings, {"image": ("dog.jpg", data)})
        result = http_request(cli_server, "POST", "/predict", body, headers).json
    elif via == "query string":
        result = http_request(cli_server, "POST", "/predict?thresh=0.5&nms=0.3&letter_box=1", data,
                              {"Content-Type": "image/jpeg"}).json
    else:
        result = predict_response(cli_server, dog_jpg, thresh=0.5, nms=0.3, letter_box=True)
    assert result["settings"] == {"thresh": 0.5, "nms": 0.3, "letter_box": True}
    expected = library_json(library, data, thresh=0.5, nms=0.3, letter_box=True)
    assert expected != library_json(library, data)  # the settings change the answer, so they were applied
    assert_same_detections(result["detections"], expected)


def png_bomb(width: int, height: int) -> bytes:
    """A valid 1-bit PNG of ``width`` x ``height`` black pixels: ~10 KB compressed, width*height pixels decoded."""
    def chunk(kind: bytes, payload: bytes) -> bytes:
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))
    packer = zlib.compressobj(9)
    row = b"\0" * (1 + (width + 7) // 8)  # filter byte + packed bits
    pixels = b"".join(packer.compress(row) for _ in range(height)) + packer.flush()
    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")


def _bad_inputs(dog: bytes) -> dict[str, tuple[int, str, callable]]:
    """name -> (expected status, expected words in the JSON error, function base -> Reply)."""
    cap = UPLOAD_CAP_MB * 2**20
    jpeg = {"Content-Type": "image/jpeg"}

    def post(body: bytes, headers: dict[str, str], path: str = "/predict"):
        return lambda base: http_request(base, "POST", path, body, headers)

    def post_form(fields: dict[str, str], files: dict[str, tuple[str, bytes]]):
        return post(*multipart(fields, files))

    def too_large(send_body: bool):
        def send(base: str) -> Reply:  # without the body: refused on Content-Length alone, before any byte
            head = f"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: image/jpeg\r\nContent-Length: {cap + 1}\r\n\r\n"
            return raw_exchange(base, head.encode(), [b"\0" * 65536] * (cap // 65536 + 1) if send_body else [])
        return send

    def chunked_too_large(base: str) -> Reply:  # no Content-Length: refused once the running total passes the cap
        head = b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: image/jpeg\r\nTransfer-Encoding: chunked\r\n\r\n"
        piece = b"\xff" * 65536
        chunks = [b"%x\r\n" % len(piece) + piece + b"\r\n"] * (cap // len(piece) + 2) + [b"0\r\n\r\n"]
        return raw_exchange(base, head, chunks)

    return {
        "not an image (raw)": (400, "not a recognised image format", post(b"plain text, not pixels", jpeg)),
        "not an image (multipart)": (400, "not a recognised image format",
                                     post_form({}, {"image": ("notes.jpg", b"plain text, not pixels")})),
        "truncated image": (400, "corrupt or truncated image", post(dog[: len(dog) // 2], jpeg)),
        "zero-byte upload (raw)": (400, "empty (0 bytes)", post(b"", jpeg)),
        "zero-byte upload (multipart)": (400, "empty (0 bytes)", post_form({}, {"image": ("empty.jpg", b"")})),
        "oversized upload": (413, f"larger than the limit of {cap} bytes", too_large(send_body=True)),
        "oversized upload (head only)": (413, f"larger than the limit of {cap} bytes", too_large(send_body=False)),
        "oversized upload (chunked)": (413, f"larger than the limit of {cap} bytes", chunked_too_large),
        "decompression bomb": (400, "more than max_pixels=50000000", post(png_bomb(10_000, 10_000),
                                                                          {"Content-Type": "image/png"})),
        "wrong content type": (415, "unsupported content type 'application/json'",
                               post(b'{"image": "dog.jpg"}', {"Content-Type": "application/json"})),
        "no content type": (415, "unsupported content type '(none)'", post(dog, {})),
        "missing field": (400, "missing field 'image'", post_form({}, {"file": ("dog.jpg", dog)})),
        "image field not a file": (400, "field 'image' must be a file", post_form({"image": "dog.jpg"}, {})),
        "two files": (400, "Too many files", post_form({}, {"image": ("a.jpg", dog), "other": ("b.jpg", dog)})),
        "broken multipart": (400, "Missing boundary", post(b"--x\r\n", {"Content-Type": "multipart/form-data"})),
        "threshold not a number": (400, "thresh='high': expected a number from 0 to 1",
                                   post(dog, jpeg, "/predict?thresh=high")),
        "threshold out of range": (400, "nms='1.5': expected a number from 0 to 1",
                                   post_form({"nms": "1.5"}, {"image": ("dog.jpg", dog)})),
        "bad letter_box": (400, "letter_box='maybe'", post(dog, jpeg, "/predict?letter_box=maybe")),
        "unknown field": (400, "unknown field(s) 'threshold'", post(dog, jpeg, "/predict?threshold=0.5")),
        # a repeated setting silently took its last value
        "setting given twice": (400, "'thresh' given twice in the query string ('0.5', '0.9'): give it once",
                                post(dog, jpeg, "/predict?thresh=0.5&thresh=0.9")),
        "wrong method": (405, "Method Not Allowed", lambda base: http_request(base, "GET", "/predict")),
        "unknown path": (404, "Not Found", lambda base: http_request(base, "POST", "/detect", dog, jpeg)),
    }


BAD_INPUTS = list(_bad_inputs(b"").keys())


@pytest.mark.parametrize("case", BAD_INPUTS)
def test_bad_input_gets_its_status_and_message(cli_server: str, dog_jpg: Path, case: str) -> None:
    status, words, send = _bad_inputs(dog_jpg.read_bytes())[case]
    reply = send(cli_server)
    assert reply.status == status, reply.body
    assert reply.headers["content-type"] == "application/json"
    assert words in reply.json["error"]


def test_after_every_bad_input_a_good_request_works(cli_server: str, dog_jpg: Path, library: Predictor) -> None:
    data = dog_jpg.read_bytes()
    statuses = {case: send(cli_server).status for case, (_, _, send) in _bad_inputs(data).items()}
    assert all(400 <= s < 500 for s in statuses.values()), statuses
    assert health(cli_server)["status"] == "ok"
    assert_same_detections(predict(cli_server, data), library_json(library, data))


def test_client_reports_service_errors(cli_server: str, tmp_path: Path) -> None:
    with pytest.raises(ServiceError, match="HTTP 400: upload: not a recognised image format") as caught:
        predict(cli_server, b"not an image")
    assert caught.value.status == 400
    with pytest.raises(ServiceError, match="HTTP 400: thresh="):
        predict(cli_server, b"x", thresh=2)
    with pytest.raises(ServiceError, match="no answer") as caught:
        predict("http://127.0.0.1:9", b"x", timeout=5)  # discard port: nothing listens there
    assert caught.value.status is None
    with pytest.raises(Exception, match="missing.jpg: cannot read image file"):
        predict(cli_server, tmp_path / "missing.jpg")


@pytest.mark.parametrize("option", [["--queue-size", "0"], ["--max-batch", "0"], ["--timeout", "0"],
                                    ["--thresh", "1.5"], ["--weights", "missing/yolov3-tiny.weights"],
                                    ["--max-detections", "0"], ["--header-timeout", "0"], ["--max-response-kb", "1"]])
def test_cli_refuses_bad_options_before_serving(option: list[str], yolo_cfg: Path, real_weights: Path,
                                                capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    import uvicorn

    from darknet_torch.cli.main import main

    monkeypatch.setattr(uvicorn.Server, "run", lambda *a, **k: pytest.fail("served despite a bad option"))
    args = ["serve", "--cfg", str(yolo_cfg), "--weights", str(real_weights), *option]
    try:
        status = main(args)
    except SystemExit as exc:  # an out-of-range number: argparse's usage error
        status = exc.code
    err = capsys.readouterr().err
    assert status == 2 and "error: " in err.splitlines()[-1] and "Traceback" not in err


@pytest.mark.parametrize("host", ["127.0.0.1", "999.0.0.1"])
def test_cli_refuses_an_address_it_cannot_listen_on_before_loading_the_model(host, capsys):
    import socket

    from darknet_torch.cli.main import main

    with socket.socket() as taken:  # was: uvicorn's "ERROR: [Errno 98] ..." and exit 3 after the model loaded
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert main(["serve", "--cfg", "missing.cfg", "--weights", "missing.weights", "--host", host,
                     "--port", str(port)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: --host {host} --port {port}: cannot listen there (") and err.count("\n") == 1
    assert host != "127.0.0.1" or "Address already in use" in err


def test_fast_exact_serves_the_optimized_model_with_the_same_detections(yolo_cfg: Path, real_weights: Path,
                                                                        dog_jpg: Path, library: Predictor,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """``serve --fast exact`` hands the app the channels-last fused model; its detections are the plain model's
    (same classes in the same order, scores within 1e-4, boxes within 0.05 px)."""
    import uvicorn

    import darknet_torch.serve.app as app_module
    from darknet_torch.cli.main import main
    from darknet_torch.model.fast import FastConv

    served = {}
    create_app = app_module.create_app
    monkeypatch.setattr(app_module, "create_app",
                        lambda predictor, *a, **k: served.setdefault("predictor", predictor) and create_app(
                            predictor, *a, **k))
    monkeypatch.setattr(uvicorn.Server, "run", lambda server, sockets: setattr(server, "started", True))
    assert main(["serve", "--cfg", str(yolo_cfg), "--weights", str(real_weights), "--fast", "exact"]) == 0
    predictor = served["predictor"]
    assert any(isinstance(m, FastConv) for m in predictor.model.modules())
    image = decode_image_bytes(dog_jpg.read_bytes(), decoder="pil")
    got, want = predictor.predict([image])[0], library.predict([image])[0]
    assert [(d.class_id, d.name) for d in got] == [(d.class_id, d.name) for d in want] and want
    for a, b in zip(got, want):
        assert a.score == pytest.approx(b.score, abs=1e-4)
        assert a.xyxy(768, 576) == pytest.approx(b.xyxy(768, 576), abs=0.05)
