"""Helpers for the serving tests: real HTTP requests on fresh connections, multipart bodies, loopback servers."""
from __future__ import annotations

import contextlib
import http.client
import json
import socket
import subprocess
import threading
import time
from dataclasses import dataclass
from typing import Iterator

#: The CLI server's request body cap in the tests (MiB), small so the 413 cases stay cheap.
UPLOAD_CAP_MB = 1


def require_serve_extra() -> None:
    """Skip (the calling test module, or fixture) when the optional 'serve' extra is not installed."""
    import pytest

    for module in ("starlette", "uvicorn", "multipart"):
        pytest.importorskip(module, reason="the 'serve' extra (starlette, uvicorn, python-multipart) is not "
                                           "installed: pip install -e '.[serve]'")


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes

    @property
    def json(self) -> dict:
        return json.loads(self.body)


def http_request(base: str, method: str, path: str, body: bytes | None = None,
                 headers: dict[str, str] | None = None, timeout: float = 60.0) -> Reply:
    """One real HTTP request on a fresh connection (``base`` is ``http://127.0.0.1:PORT``)."""
    host, port = base.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=timeout)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        response = conn.getresponse()
        return Reply(response.status, {k.lower(): v for k, v in response.getheaders()}, response.read())
    finally:
        conn.close()


def multipart(fields: dict[str, str], files: dict[str, tuple[str | None, bytes]]) -> tuple[bytes, dict[str, str]]:
    """A multipart/form-data body (text ``fields``, ``files`` name -> (filename, bytes)) and its headers; a None
    filename leaves it out of the part's Content-Disposition (which makes the part a text field)."""
    boundary = "----darknet-torch-test-boundary"
    parts = []
    for name, value in fields.items():
        parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode())
    for name, (filename, data) in files.items():
        disposition = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename is not None else "")
        parts.append(f"--{boundary}\r\nContent-Disposition: {disposition}\r\n"
                     f"Content-Type: application/octet-stream\r\n\r\n".encode() + data + b"\r\n")
    body = b"".join(parts) + f"--{boundary}--\r\n".encode()
    return body, {"Content-Type": f"multipart/form-data; boundary={boundary}"}


def raw_exchange(base: str, head: bytes, chunks: list[bytes]) -> Reply:
    """Send a request head and body pieces on a raw socket, tolerating the server closing early; read the answer."""
    host, port = base.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        sock.sendall(head)
        try:
            for piece in chunks:
                sock.sendall(piece)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server answered and closed before taking everything: that is the point
        data = b""
        while b"\r\n\r\n" not in data or len(data) < _expected_length(data):
            more = sock.recv(65536)
            if not more:
                break
            data += more
    head_text, _, body = data.partition(b"\r\n\r\n")
    lines = head_text.decode("latin-1").split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines[1:])
    return Reply(int(lines[0].split()[1]), {k.lower(): v for k, v in headers.items()}, body)


def _expected_length(data: bytes) -> int:
    head, _, _ = data.partition(b"\r\n\r\n")
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            return len(head) + 4 + int(line.split(b":")[1])
    return 1 << 62


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_healthy(base: str, seconds: float, process: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"server exited with status {process.returncode}")
        with contextlib.suppress(OSError):
            if http_request(base, "GET", "/health", timeout=2).status == 200:
                return
        time.sleep(0.1)
    raise RuntimeError(f"server at {base} not healthy after {seconds} s")


@contextlib.contextmanager
def thread_server(app, **options) -> Iterator[str]:
    """Serve ``app`` with uvicorn in a thread, on a loopback socket bound here (no port race); yields its URL.
    ``options`` go to ``uvicorn.Config`` (e.g. :func:`darknet_torch.serve.connections.uvicorn_options`)."""
    import uvicorn

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on", **options))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{sock.getsockname()[1]}"
    try:
        wait_healthy(base, 60)
        yield base
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        sock.close()
