"""The service's connection handling (real uvicorn on 127.0.0.1, raw sockets): idle and half-sent connections can
neither hold the service nor crowd out real requests; a busy service answers 503 in the documented JSON."""
from __future__ import annotations

import json
import socket
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from darknet_torch.model.loading import load_model
from tests.serve.serving import http_request, require_serve_extra, thread_server
from tests.serve.test_serve_queue import GatedPredictor, post_image, wait_until

require_serve_extra()

from darknet_torch.serve.app import ServeConfig, create_app  # noqa: E402
from darknet_torch.serve.connections import EVICTION_GRACE, uvicorn_options  # noqa: E402


@pytest.fixture(scope="module")
def gated(yolo_cfg: Path, real_weights: Path) -> GatedPredictor:
    return GatedPredictor(load_model(yolo_cfg, real_weights))


def serve(predictor: GatedPredictor, config: ServeConfig, app=None):
    return thread_server(app or create_app(predictor, config), **uvicorn_options(config))


def open_sockets(base: str, count: int, head: bytes) -> list[socket.socket]:
    port = int(base.rsplit(":", 1)[1])
    sockets = []
    for _ in range(count):
        sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        if head:
            sock.sendall(head)
        sockets.append(sock)
    return sockets


def closed_by_server(sock: socket.socket, wait: float) -> bytes | None:
    """What the server sent before closing ``sock`` within ``wait`` seconds, or None if it is still open."""
    sock.settimeout(wait)
    data = b""
    try:
        while more := sock.recv(4096):
            data += more
    except socket.timeout:
        return None
    except ConnectionResetError:
        pass
    return data


def test_idle_and_half_sent_connections_do_not_crowd_out_real_requests(gated: GatedPredictor, dog_jpg: Path) -> None:
    """140 sockets over the cap of 128 (70 silent, 70 with half a request head), a head timeout far away: a real
    request still gets its answer at once (only connections running requests count against the cap), and the
    connections waiting longest for a head are closed to bring the count back to the cap."""
    gated.gate.set()
    config = ServeConfig(max_connections=128, header_timeout=60)
    with serve(gated, config) as base:
        idle = open_sockets(base, 70, b"") + open_sockets(base, 70, b"POST /predict HTTP/1.1\r\nHost: x\r\n")
        time.sleep(EVICTION_GRACE + 0.1)
        try:
            start = time.monotonic()
            assert http_request(base, "GET", "/health", timeout=10).status == 200
            status, body = post_image(base, dog_jpg.read_bytes())
            assert status == 200 and {d["class_id"] for d in body["detections"]} >= {16, 1}  # dog, bicycle
            assert time.monotonic() - start < 10
            # the 12 waiting longest were closed to make room, without a word; the newest are still open
            assert [closed_by_server(s, 2) for s in idle[:12]] == [b""] * 12
            assert [closed_by_server(s, 0.01) for s in idle[-5:]] == [None] * 5
        finally:
            for sock in idle:
                sock.close()


def test_a_head_that_does_not_arrive_in_time_closes_the_connection(gated: GatedPredictor) -> None:
    gated.gate.set()
    with serve(gated, ServeConfig(header_timeout=1.0)) as base:
        silent, half = open_sockets(base, 1, b"") + open_sockets(base, 1, b"GET /health HTTP/1.1\r\n")
        start = time.monotonic()
        assert closed_by_server(silent, 10) == b""
        answer = closed_by_server(half, 10)
        assert 0.5 < time.monotonic() - start < 8
        head, _, body = answer.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 408 ") and b"content-type: application/json" in head
        assert json.loads(body) == {"error": "the request head did not arrive within 1 s"}
        # a keep-alive connection gets the same limit for its next head
        keep = open_sockets(base, 1, b"GET /health HTTP/1.1\r\nHost: x\r\n\r\nGET /health HTTP/1.1\r\n")[0]
        answer = closed_by_server(keep, 10)
        assert answer.startswith(b"HTTP/1.1 200 ") and b"HTTP/1.1 408 " in answer
        for sock in (silent, half, keep):
            sock.close()


def test_when_every_connection_is_busy_a_new_request_gets_json_503(gated: GatedPredictor, dog_jpg: Path) -> None:
    data = dog_jpg.read_bytes()
    config = ServeConfig(max_connections=2, queue_size=4, max_batch=1, timeout=60)
    app = create_app(gated, config)
    with serve(gated, config, app) as base, ThreadPoolExecutor(2) as pool:
        gated.close_gate()
        try:
            running = pool.submit(post_image, base, data)   # held by the model thread
            assert gated.entered.wait(20)
            waiting = pool.submit(post_image, base, data)   # queued: the second busy connection
            wait_until(lambda: app.state.batcher.waiting == 1)  # watched without a request, which would be a third
            assert http_request(base, "GET", "/health").status == 503  # any new request is refused, /health too
            reply = http_request(base, "POST", "/predict", data, {"Content-Type": "image/jpeg"})
        finally:
            gated.gate.set()
        assert reply.status == 503 and reply.headers["content-type"] == "application/json"
        assert reply.json == {"error": "the service is busy (2 connections are all running requests); retry shortly"}
        assert reply.headers["retry-after"] == "1"
        assert [f.result(timeout=60)[0] for f in (running, waiting)] == [200, 200]
        assert post_image(base, data)[0] == 200
