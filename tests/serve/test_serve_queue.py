"""Concurrency of the real app (uvicorn on a loopback port, real yolov3-tiny) with a model that waits on a gate:
a full queue answers 503 at once, a slow answer 504, queued requests run as one batch with the library's results."""
from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Sequence

import pytest
import torch

from darknet_torch.data.images import LetterboxInfo, decode_image_bytes
from darknet_torch.detect.postprocess import Detections
from darknet_torch.detect.predictor import Predictor
from darknet_torch.model.loading import load_model
from tests.serve.serving import http_request, raw_exchange, require_serve_extra, thread_server

require_serve_extra()

from darknet_torch.serve.app import ServeConfig, create_app  # noqa: E402


class GatedPredictor(Predictor):
    """The real predictor, but each forward pass waits until ``gate`` is open; batch sizes are recorded."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.gate, self.entered = threading.Event(), threading.Event()
        self.gate.set()
        self.batch_sizes: list[int] = []  # shared by the per-request copies, as the events are

    def close_gate(self) -> None:
        """From now on, forward passes wait (call once the server has started: its warm-up passes through here)."""
        self.gate.clear()
        self.entered.clear()
        self.batch_sizes.clear()

    def detect_batch(self, batch: torch.Tensor, infos: Sequence[LetterboxInfo]) -> list[Detections]:
        self.batch_sizes.append(len(infos))
        self.entered.set()
        assert self.gate.wait(30), "test gate never opened"
        return super().detect_batch(batch, infos)


@pytest.fixture(scope="module")
def gated(yolo_cfg: Path, real_weights: Path) -> GatedPredictor:
    return GatedPredictor(load_model(yolo_cfg, real_weights))


@pytest.fixture()
def fresh(gated: GatedPredictor) -> GatedPredictor:
    gated.gate.set()
    return gated


def post_image(base: str, data: bytes, query: str = "") -> tuple[int, dict]:
    reply = http_request(base, "POST", f"/predict{query}", data, {"Content-Type": "image/jpeg"})
    return reply.status, reply.json


def wait_until(condition, seconds: float = 20.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.01)


def queue_state(base: str) -> dict:
    return http_request(base, "GET", "/health").json["queue"]


def test_full_queue_answers_503_at_once_and_the_others_complete(fresh: GatedPredictor, dog_jpg: Path) -> None:
    data = dog_jpg.read_bytes()
    app = create_app(fresh, ServeConfig(queue_size=1, max_batch=1, timeout=60))
    with thread_server(app) as base, ThreadPoolExecutor(2) as pool:
        fresh.close_gate()
        running = pool.submit(post_image, base, data)          # taken by the model thread, held at the gate
        assert fresh.entered.wait(20)
        waiting = pool.submit(post_image, base, data)          # fills the queue of 1
        wait_until(lambda: queue_state(base) == {"waiting": 1, "running": 1, "size": 1})
        start = time.monotonic()
        reply = http_request(base, "POST", "/predict", data, {"Content-Type": "image/jpeg"})
        assert reply.status == 503 and time.monotonic() - start < 5
        assert "1 requests are already waiting" in reply.json["error"] and reply.headers["retry-after"] == "1"
        fresh.gate.set()
        for future in (running, waiting):
            status, body = future.result(timeout=60)
            assert status == 200 and {d["class_id"] for d in body["detections"]} >= {16, 1}  # dog, bicycle
        assert post_image(base, data)[0] == 200  # and it keeps serving
        assert queue_state(base) == {"waiting": 0, "running": 0, "size": 1}


def test_no_answer_within_the_timeout_is_504_and_the_stale_job_is_dropped(fresh: GatedPredictor,
                                                                          dog_jpg: Path) -> None:
    data = dog_jpg.read_bytes()
    app = create_app(fresh, ServeConfig(queue_size=4, max_batch=1, timeout=1.0))
    with thread_server(app) as base, ThreadPoolExecutor(2) as pool:
        fresh.close_gate()
        held = pool.submit(post_image, base, data)     # on the model thread until the gate opens
        assert fresh.entered.wait(20)
        queued = pool.submit(post_image, base, data)   # times out while still queued: must never reach the model
        for future in (held, queued):
            status, body = future.result(timeout=30)
            assert status == 504 and "no answer within the request timeout of 1 s" in body["error"]
        fresh.gate.set()
        wait_until(lambda: queue_state(base)["running"] == 0)
        assert fresh.batch_sizes == [1]
        assert post_image(base, data)[0] == 200
        assert fresh.batch_sizes == [1, 1]


def test_queued_requests_run_as_one_batch_with_the_library_results(fresh: GatedPredictor, dog_jpg: Path,
                                                                   shared_dir: Path) -> None:
    photos = [dog_jpg.read_bytes()] + [(shared_dir / "images" / f"{n}.jpg").read_bytes()
                                       for n in ("eagle", "giraffe", "horses")]
    queries = ["", "", "?thresh=0.6", ""]  # the third request has its own settings: its own forward pass
    app = create_app(fresh, ServeConfig(queue_size=8, max_batch=4, timeout=60))
    with thread_server(app) as base, ThreadPoolExecutor(5) as pool:
        fresh.close_gate()
        first = pool.submit(post_image, base, photos[0])
        assert fresh.entered.wait(20)
        later = [pool.submit(post_image, base, data, q) for data, q in zip(photos, queries)]
        wait_until(lambda: queue_state(base)["waiting"] == 4)
        fresh.gate.set()
        answers = [f.result(timeout=60) for f in [first, *later]]
    assert fresh.batch_sizes == [1, 3, 1]  # the lone first request, then the queued ones grouped by settings
    assert all(status == 200 for status, _ in answers)
    plain = Predictor(fresh.model)
    for (_, body), data, query in zip(answers, [photos[0], *photos], ["", *queries]):
        library = plain.with_settings(thresh=0.6 if query else 0.25)
        image = decode_image_bytes(data, decoder="pil")
        expected = library.predict([image])[0]
        assert [d["class_id"] for d in body["detections"]] == [d.class_id for d in expected]
        # batched and single forward passes may sum floats in another order: last-bit differences only
        assert [d["score"] for d in body["detections"]] == pytest.approx([d.score for d in expected], abs=1e-5)


def test_a_body_that_does_not_arrive_in_time_is_408(fresh: GatedPredictor) -> None:
    app = create_app(fresh, ServeConfig(timeout=1.0))
    with thread_server(app) as base:
        start = time.monotonic()
        head = b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: image/jpeg\r\nContent-Length: 1000\r\n\r\n"
        reply = raw_exchange(base, head + b"\xff" * 10, [])  # the other 990 bytes never come
        assert 0.5 < time.monotonic() - start < 10
        assert reply.status == 408 and reply.headers["connection"] == "close"
        assert reply.json["error"] == "the request body did not arrive within 1 s"
        assert http_request(base, "GET", "/health").status == 200
