"""Darknet's ``-mjpeg_port`` and ``-json_port``: the annotated frames and their detections, live over HTTP.

``GET /`` on the MJPEG port is a ``multipart/x-mixed-replace`` stream of JPEG frames (browsers and VLC play it);
on the JSON port it is Darknet's JSON stream: ``[`` then one ``{"frame_id": ..., "objects": [...]}`` per frame,
comma-separated, until the video ends (``]``) or the client leaves.  Each client gets the newest frame when it is
ready for one (a slow client skips frames, it never slows the video down).  The standard library's threading HTTP
server; bound to 127.0.0.1 unless ``host`` says otherwise; at most ``max_clients`` clients at a time (others: 503).
"""
from __future__ import annotations

import logging
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from darknet_torch.errors import DataError

log = logging.getLogger(__name__)

_BOUNDARY = "darknetframe"


class Broadcast:
    """The latest payload and its sequence number; readers wait for a newer one."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._payload: bytes | None = None
        self._seq = 0
        self.closed = False

    def publish(self, payload: bytes) -> None:
        with self._cond:
            self._payload, self._seq = payload, self._seq + 1
            self._cond.notify_all()

    def close(self) -> None:
        with self._cond:
            self.closed = True
            self._cond.notify_all()

    def next_after(self, seq: int, timeout: float = 1.0) -> tuple[int, bytes | None]:
        """(sequence, payload) newer than ``seq``; payload None when closed or when ``timeout`` passes first."""
        with self._cond:
            self._cond.wait_for(lambda: self._seq > seq or self.closed, timeout)
            if self._seq > seq:
                return self._seq, self._payload
            return seq, None


class StreamServer:
    """One HTTP server streaming a :class:`Broadcast` as MJPEG (``kind="mjpeg"``) or a JSON array (``"json"``).

    Raises:
        DataError: the port cannot be bound (in use, or privileged).
    """

    def __init__(self, kind: str, port: int, host: str = "127.0.0.1", max_clients: int = 8) -> None:
        self.kind, self.broadcast = kind, Broadcast()
        self._slots = threading.BoundedSemaphore(max_clients)
        handler = type(f"{kind.title()}Handler", (_StreamHandler,), {"stream": self})
        try:
            self.httpd = ThreadingHTTPServer((host, port), handler)
        except OSError as exc:
            raise DataError(f"-{kind}_port {port}: cannot listen on {host}:{port} ({exc.strerror or exc})") from None
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self._thread = threading.Thread(target=self.httpd.serve_forever, name=f"{kind}-server", daemon=True)
        self._thread.start()
        log.info("%s stream on http://%s:%d/", kind.upper(), host, self.port)

    def publish(self, payload: bytes) -> None:
        self.broadcast.publish(payload)

    def close(self) -> None:
        """End every client's stream and stop listening."""
        self.broadcast.close()
        self.httpd.shutdown()
        self.httpd.server_close()


class _StreamHandler(BaseHTTPRequestHandler):
    stream: StreamServer
    protocol_version = "HTTP/1.0"  # the stream ends when the connection closes

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        if not self.stream._slots.acquire(blocking=False):
            self.send_error(503, "too many clients")
            return
        try:
            self._serve()
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client left
        finally:
            self.stream._slots.release()

    def _serve(self) -> None:
        mjpeg = self.stream.kind == "mjpeg"
        self.send_response(200)
        self.send_header("Content-Type", f"multipart/x-mixed-replace; boundary={_BOUNDARY}" if mjpeg
                         else "application/json")
        self.send_header("Cache-Control", "no-cache")
        self.end_headers()
        broadcast, seq, first = self.stream.broadcast, 0, True
        if not mjpeg:
            self.wfile.write(b"[\n")
        while True:
            seq, payload = broadcast.next_after(seq)
            if payload is None:
                if broadcast.closed:
                    break
                continue
            if mjpeg:
                self.wfile.write(f"--{_BOUNDARY}\r\nContent-Type: image/jpeg\r\nContent-Length: {len(payload)}"
                                 "\r\n\r\n".encode() + payload + b"\r\n")
            else:
                self.wfile.write((b"" if first else b", \n") + payload)
            self.wfile.flush()
            first = False
        if not mjpeg:
            self.wfile.write(b"\n]\n")

    def log_message(self, format: str, *args) -> None:  # noqa: A002 (http.server's signature)
        log.debug("%s: %s", self.address_string(), format % args)
