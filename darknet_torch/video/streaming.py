"""Darknet's ``-mjpeg_port`` and ``-json_port``: the annotated frames and their detections, live over HTTP.

``GET /`` on the MJPEG port is a ``multipart/x-mixed-replace`` stream of JPEG frames (browsers and VLC play it);
on the JSON port it is Darknet's JSON stream: ``[`` then one ``{"frame_id": ..., "objects": [...]}`` per frame,
comma-separated, until the video ends (``]``) or the client leaves.  Each client gets the newest frame when it is
ready for one (a slow client skips frames, it never slows the video down).  The standard library's threading HTTP
server; bound to 127.0.0.1 unless ``host`` says otherwise.  At most ``max_clients`` connections at a time, counted
when they are accepted (the others get a 503 and are closed, without a thread of their own for their lifetime), and
a client that sends no request or takes no data for ``client_timeout`` seconds is dropped, so idle or stalled
connections cannot pile up threads and sockets.
"""
from __future__ import annotations

import logging
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from darknet_torch.errors import DataError

log = logging.getLogger(__name__)

_BOUNDARY = "darknetframe"
#: Seconds a client may take to send its request or to take the next chunk before it is dropped.
CLIENT_TIMEOUT = 10.0
_BUSY = (b"HTTP/1.0 503 Service Unavailable\r\nContent-Type: text/plain\r\nContent-Length: 17\r\n"
         b"Connection: close\r\n\r\ntoo many clients\n")


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

    def __init__(self, kind: str, port: int, host: str = "127.0.0.1", max_clients: int = 8,
                 client_timeout: float = CLIENT_TIMEOUT) -> None:
        self.kind, self.broadcast = kind, Broadcast()
        handler = type(f"{kind.title()}Handler", (_StreamHandler,), {"stream": self, "timeout": client_timeout})
        try:
            self.httpd = _LimitedHTTPServer((host, port), handler, max_clients)
        except OSError as exc:
            raise DataError(f"-{kind}_port {port}: cannot listen on {host}:{port} ({exc.strerror or exc})") from None
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


class _LimitedHTTPServer(ThreadingHTTPServer):
    """A threading HTTP server that serves at most ``max_clients`` connections at a time: a connection beyond the
    limit is answered 503 and closed by a short-lived thread (the accept loop never waits on a client)."""

    daemon_threads = True

    def __init__(self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler], max_clients: int) -> None:
        self._slots = threading.BoundedSemaphore(max_clients)
        super().__init__(address, handler)

    def process_request(self, request: socket.socket, client_address) -> None:
        if self._slots.acquire(blocking=False):
            try:
                super().process_request(request, client_address)
            except BaseException:
                self._slots.release()
                raise
        else:
            threading.Thread(target=self._refuse, args=(request,), name="stream-busy", daemon=True).start()

    def process_request_thread(self, request: socket.socket, client_address) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()

    def _refuse(self, request: socket.socket) -> None:
        """503 to a connection beyond the limit; its request is read first (best effort, one second at most), as
        closing with unread data would reset the connection before the client reads the answer."""
        try:
            request.settimeout(1.0)
            request.recv(65536)
            request.sendall(_BUSY)
        except OSError:
            pass
        finally:
            self.shutdown_request(request)


class _StreamHandler(BaseHTTPRequestHandler):
    stream: StreamServer
    protocol_version = "HTTP/1.0"  # the stream ends when the connection closes

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        try:
            self._serve()
        except (BrokenPipeError, ConnectionResetError, TimeoutError):
            pass  # the client left, or took no data for the timeout

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
