"""Connection handling for uvicorn: a time limit on request heads, and room for real requests at the connection cap.

uvicorn alone (its h11 protocol) waits for a request head forever, and its ``limit_concurrency`` counts every open
connection: ~130 sockets that send nothing, or half a head, make it answer 503 (in plain text) to everyone, for as
long as they stay open.  :func:`guarded_protocol` is uvicorn's h11 protocol with three changes:

* a connection must send a complete request head within ``header_timeout`` seconds of being opened (or of its
  previous response): otherwise it is closed, after a JSON 408 if part of a head had arrived;
* over ``max_connections`` open connections, a new connection closes those that have waited longest for a head
  (idle or half-sent, for at least :data:`EVICTION_GRACE`), and only connections running a request count against
  the cap: idle sockets cannot crowd out real requests; only when ``max_connections`` connections are running
  requests does a new request get a JSON 503 (``Retry-After: 1``);
* a malformed request head gets a JSON 400 instead of uvicorn's plain text.
"""
from __future__ import annotations

import asyncio
import json
from http import HTTPStatus
from typing import TYPE_CHECKING, Any

from starlette.types import Receive, Scope, Send
from uvicorn.protocols.http.h11_impl import H11Protocol

if TYPE_CHECKING:
    from darknet_torch.serve.app import ServeConfig

#: Seconds an idle keep-alive connection is kept after a response (uvicorn's default, stated here).
KEEP_ALIVE_SECONDS = 5
#: Seconds a connection may wait for its request head before it can be closed to make room for a new one.
EVICTION_GRACE = 1.0


def uvicorn_options(config: ServeConfig) -> dict[str, Any]:
    """Keyword arguments for ``uvicorn.run``/``uvicorn.Config`` that apply ``config``'s connection limits."""
    return {"http": guarded_protocol(config.header_timeout, config.max_connections),
            "timeout_keep_alive": KEEP_ALIVE_SECONDS, "limit_concurrency": None}


def _error_body(message: str) -> bytes:
    return json.dumps({"error": message}).encode()


def error_bytes(status: int, message: str) -> bytes:
    """A complete ``Connection: close`` HTTP/1.1 response carrying the service's JSON error body."""
    body = _error_body(message)
    head = (f"HTTP/1.1 {status} {HTTPStatus(status).phrase}\r\ncontent-type: application/json\r\n"
            f"content-length: {len(body)}\r\nconnection: close\r\n\r\n")
    return head.encode() + body


def guarded_protocol(header_timeout: float, max_connections: int) -> type[H11Protocol]:
    """uvicorn's h11 protocol with a request-head timeout and idle-first eviction at ``max_connections``."""
    if header_timeout <= 0 or max_connections < 1:
        raise ValueError("header_timeout must be > 0 and max_connections >= 1")
    busy_message = (f"the service is busy ({max_connections} connections are all running requests); "
                    "retry shortly")

    async def unavailable(scope: Scope, receive: Receive, send: Send) -> None:
        body = _error_body(busy_message)
        await send({"type": "http.response.start", "status": 503,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                                (b"retry-after", b"1"), (b"connection", b"close")]})
        await send({"type": "http.response.body", "body": body})

    class GuardedH11Protocol(H11Protocol):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.head_timer: asyncio.TimerHandle | None = None
            self.waiting_since = 0.0  # loop time since which the connection waits for a request head

        @property
        def busy(self) -> bool:
            """A request is being answered on this connection (its head has arrived, its response is not done)."""
            return self.cycle is not None and not self.cycle.response_complete

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._await_head()
            open_ = [c for c in self.connections if not c.transport.is_closing()]
            excess = len(open_) - max_connections
            if excess > 0:  # those waiting longest for a head make room (not before EVICTION_GRACE: a real
                now = self.loop.time()  # client's head arrives moments after it connects)
                idle = [c for c in open_ if not c.busy and now - c.waiting_since >= EVICTION_GRACE]
                for victim in sorted(idle, key=lambda c: c.waiting_since)[:excess]:
                    victim.transport.close()

        def connection_lost(self, exc: Exception | None) -> None:
            self._stop_head_timer()
            super().connection_lost(exc)

        def data_received(self, data: bytes) -> None:
            if not self.busy:  # this data may start a request: refuse it if every other connection is busy
                others_busy = sum(1 for c in self.connections if c is not self and c.busy)
                self.app = unavailable if others_busy >= max_connections else self.config.loaded_app
            super().data_received(data)
            if self.busy:
                self._stop_head_timer()

        def on_response_complete(self) -> None:
            super().on_response_complete()
            if not self.transport.is_closing() and not self.busy:
                self._await_head()

        def send_400_response(self, msg: str) -> None:
            self.transport.write(error_bytes(400, f"malformed HTTP request: {msg}"))
            self.transport.close()

        def _await_head(self) -> None:
            self._stop_head_timer()
            self.waiting_since = self.loop.time()
            self.head_timer = self.loop.call_later(header_timeout, self._head_timed_out)

        def _stop_head_timer(self) -> None:
            if self.head_timer is not None:
                self.head_timer.cancel()
                self.head_timer = None

        def _head_timed_out(self) -> None:
            self.head_timer = None
            if self.transport.is_closing() or self.busy:
                return
            if self.conn.trailing_data[0]:  # part of a head arrived: say why the connection is closed
                self.transport.write(error_bytes(408, f"the request head did not arrive within {header_timeout:g} s"))
            self.transport.close()

    return GuardedH11Protocol
