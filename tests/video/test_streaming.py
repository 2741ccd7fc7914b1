"""MJPEG and JSON streams over HTTP on 127.0.0.1: what a client receives, the client limit and timeout."""
from __future__ import annotations

import http.client
import socket
import threading
import time

import pytest

from darknet_torch.errors import DataError
from darknet_torch.video.streaming import StreamServer


def _read_stream(port: int, out: list, ready: threading.Event) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.request("GET", "/")
    response = conn.getresponse()
    ready.set()
    out.append((response.status, response.getheader("Content-Type"), response.read()))
    conn.close()


@pytest.mark.parametrize("kind", ["mjpeg", "json"])
def test_client_receives_the_published_frames_until_the_end(kind):
    server = StreamServer(kind, 0)
    try:
        got: list = []
        ready = threading.Event()
        client = threading.Thread(target=_read_stream, args=(server.port, got, ready))
        client.start()
        assert ready.wait(10)
        for payload in (b'{"frame_id": 1}', b'{"frame_id": 2}'):
            server.publish(payload)
            threading.Event().wait(0.2)  # let the client take each one (a slow client would skip frames)
    finally:
        server.close()
    client.join(10)
    status, content_type, body = got[0]
    assert status == 200
    if kind == "json":
        assert content_type == "application/json"
        assert body == b'[\n{"frame_id": 1}, \n{"frame_id": 2}\n]\n'
    else:
        assert content_type.startswith("multipart/x-mixed-replace; boundary=")
        assert body.count(b"Content-Type: image/jpeg") == 2 and b'{"frame_id": 2}' in body


def test_too_many_clients_get_503_and_a_busy_port_is_a_clear_error():
    server = StreamServer("json", 0, max_clients=1)
    try:
        ready = threading.Event()
        first: list = []
        client = threading.Thread(target=_read_stream, args=(server.port, first, ready))
        client.start()
        assert ready.wait(10)
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
        conn.request("GET", "/")
        assert conn.getresponse().status == 503
        conn.close()
        with pytest.raises(DataError, match=f"-json_port {server.port}: cannot listen on 127.0.0.1"):
            StreamServer("json", server.port)
    finally:
        server.close()
    client.join(10)


def _idle_connection(port: int) -> socket.socket:
    """A client that connects and never sends its request."""
    return socket.create_connection(("127.0.0.1", port), timeout=10)


def _status(port: int) -> int:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.request("GET", "/")
    status = conn.getresponse().status
    conn.close()
    return status


def test_idle_connections_count_against_the_limit_and_are_dropped_after_the_timeout():
    server = StreamServer("mjpeg", 0, max_clients=2, client_timeout=0.5)
    try:
        idle = [_idle_connection(server.port) for _ in range(2)]
        time.sleep(0.1)  # both accepted
        assert _status(server.port) == 503  # the limit holds at accept, before any request is read
        for sock in idle:  # each is closed by the server once its timeout passes
            assert sock.recv(1024) == b""
            sock.close()
        ready, got = threading.Event(), []
        client = threading.Thread(target=_read_stream, args=(server.port, got, ready))
        client.start()
        assert ready.wait(10)  # the slots are free again
    finally:
        server.close()
    client.join(10)
    assert got[0][0] == 200
