"""The ASGI middleware around the whole app: the request body cap (413), one structured access-log
line per request, and the last line of defence (500 with a one-line reason, never a traceback or an
exception's message, which could quote a secret).

Pure ASGI rather than Starlette's BaseHTTPMiddleware: an exception Starlette's own error middleware
sees is re-raised to uvicorn, which logs it with its traceback; here it never gets that far.
"""

from __future__ import annotations

import json
import logging
import os
import time
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from reconciler.core.errors import unexpected_error

BODY_LIMIT = 1024 * 1024  # bytes; the API takes small JSON documents, nothing near this
ACCESS_LOG = "reconciler.server.access"
access_log = logging.getLogger(ACCESS_LOG)
log = logging.getLogger(__name__)


class BodyTooLarge(Exception):
    """A request body went past the cap while it was read."""


async def send_json(send: Send, status: int, document: dict[str, Any]) -> None:
    body = json.dumps(document).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


class Guard:
    """Body cap, access log and the catch-all, for every HTTP request."""

    def __init__(self, app: ASGIApp, body_limit: int = BODY_LIMIT) -> None:
        self.app = app
        self.body_limit = body_limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        state: dict[str, Any] = scope.setdefault("state", {})
        status = 500
        response_started = False

        async def sending(message: Message) -> None:
            nonlocal status, response_started
            if message["type"] == "http.response.start":
                status, response_started = message["status"], True
            await send(message)

        received = 0

        async def receiving() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.body_limit:
                    raise BodyTooLarge
            return message

        try:
            if self._declared_length(scope) > self.body_limit:
                await send_json(sending, 413, self._too_large())
            else:
                await self.app(scope, receiving, sending)
        except BodyTooLarge:
            if not response_started:
                await send_json(sending, 413, self._too_large())
        except Exception as exc:
            if os.environ.get("QRM_DEBUG"):
                log.exception("unexpected error")
            else:
                log.error("%s %s: %s", scope["method"], scope["path"], unexpected_error(exc))
            if not response_started:
                await send_json(sending, 500, {"error": unexpected_error(exc)})
        finally:
            access_log.info(json.dumps({
                "method": scope["method"], "path": scope["path"], "status": status,
                "duration_ms": round((time.perf_counter() - started) * 1000, 1), "token": state.get("token_name"),
            }))

    def _too_large(self) -> dict[str, Any]:
        return {"error": f"the request body is larger than the limit of {self.body_limit} bytes"}

    @staticmethod
    def _declared_length(scope: Scope) -> int:
        for name, value in scope["headers"]:
            if name == b"content-length":
                try:
                    return int(value)
                except ValueError:
                    return 0
        return 0
