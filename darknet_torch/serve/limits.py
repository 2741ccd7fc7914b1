"""A cap on request bodies, enforced while they arrive, so an oversized upload is never held in memory whole."""
from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send


class BodyTooLarge(Exception):
    """The request body is larger than the configured cap; the app answers 413."""


class BodyLimitMiddleware:
    """ASGI middleware: reading more than ``max_bytes`` of a request body raises :class:`BodyTooLarge`.

    A ``Content-Length`` above the cap fails on the first read, before any byte is received; a chunked upload
    fails as soon as its running total passes the cap.  The exception is raised inside the endpoint's body read,
    so the app's exception handlers turn it into a response.
    """

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
                raise BodyTooLarge(f"request body of {int(declared)} bytes is larger than the limit of "
                                   f"{self.max_bytes} bytes")
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise BodyTooLarge(f"request body is larger than the limit of {self.max_bytes} bytes")
            return message

        await self.app(scope, limited_receive, send)
