"""Real receivers on 127.0.0.1 for the notification tests, each an event loop in a thread of its own (the code
under test runs asyncio.run() itself, a delivery pass, so a receiver cannot share its loop); arrival times are
the receiver's own clock (time.monotonic() in the handler), so a pacing test asserts what a receiver would see.

- `receiver()`: a webhook endpoint (aiohttp.web). Every delivery is verified with the `standardwebhooks`
  package (an implementation independent of qrm's) and recorded in `Receiver.received`; `answers` scripts what
  the next requests get (status, headers), then 200. `down()` and `up()` stop and start the server on the same
  port (a receiver that is down, then comes back).
- `black_hole()`: accepts connections and never answers, counting them.
- `http_receiver()`: an HTTP endpoint (aiohttp.web) that answers as Slack's incoming webhooks document, or as
  any JSON endpoint apprise posts to.
- `smtp_server()`: an SMTP server (aiosmtpd) with STARTTLS under a test CA (trustme) and AUTH, that keeps the
  messages it accepts.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import ssl
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import trustme
from aiohttp import web
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session
from standardwebhooks.webhooks import Webhook

# re-exported: the notify tests take a port nothing listens on from here (rx.free_port())
from tests.support.api_server import free_port as free_port

Answer = tuple[int, str, dict[str, str]]  # status, body, headers

# Slack's documented answers of an incoming webhook (https://api.slack.com/messaging/webhooks#handling_errors)
SLACK_OK: Answer = (200, "ok", {})
SLACK_RATE_LIMITED: Answer = (429, "rate_limited", {"Retry-After": "7"})
SLACK_INVALID_PAYLOAD: Answer = (400, "invalid_payload", {})
SLACK_NO_SERVICE: Answer = (404, "no_service", {})
SLACK_CHANNEL_ARCHIVED: Answer = (410, "channel_is_archived", {})
SLACK_INVALID_TOKEN: Answer = (403, "invalid_token", {})
SLACK_ACTION_PROHIBITED: Answer = (403, "action_prohibited", {})
SLACK_SERVER_ERROR: Answer = (500, "", {})

TEXT_TYPES = {"plain_text", "mrkdwn"}


@contextlib.contextmanager
def _loop_thread() -> Iterator[asyncio.AbstractEventLoop]:
    """An event loop running in a daemon thread until the block ends; then stopped and closed."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        yield loop
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


async def _serve(handle: Callable[[web.Request], Awaitable[web.Response]], method: str, port: int = 0
                 ) -> tuple[web.AppRunner, int]:
    """`handle` for every path of `method` on 127.0.0.1:`port` (0: a free one); the runner and its port."""
    app = web.Application()
    app.router.add_route(method, "/{tail:.*}", handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port, reuse_address=True).start()
    return runner, int(runner.addresses[0][1])

@dataclass(frozen=True)
class Delivery:
    path: str
    query: str
    headers: dict[str, str]
    body: bytes
    verified: bool  # the standardwebhooks package accepted the signature
    answered: int
    arrived: float  # time.monotonic() when it arrived
    connection: int  # id of the transport: deliveries on one keep-alive connection share it

    @property
    def payload(self) -> dict[str, Any]:
        return dict(json.loads(self.body))


@dataclass
class Receiver:
    secret: str
    port: int = 0
    answers: list[tuple[int, dict[str, str]]] = field(default_factory=list)
    received: list[Delivery] = field(default_factory=list)
    _loop: asyncio.AbstractEventLoop | None = None
    _runner: web.AppRunner | None = None

    def url(self, path: str = "/hook") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    @property
    def verified(self) -> list[Delivery]:
        return [d for d in self.received if d.verified and d.answered == 200]

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        headers = {k.lower(): v for k, v in request.headers.items()}
        try:
            Webhook(self.secret).verify(body, headers)
            verified = True
        except Exception:  # the package's WebhookVerificationError, or a header missing
            verified = False
        status, extra = self.answers.pop(0) if self.answers else (200, {})
        self.received.append(Delivery(request.path, request.query_string, headers, body, verified, status,
                                      time.monotonic(), id(request.transport)))
        return web.Response(status=status, headers=extra, text="ok" if status == 200 else "no")

    async def _start(self) -> None:
        self._runner, self.port = await _serve(self._handle, "POST", self.port)

    async def _stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def up(self) -> None:
        assert self._loop is not None
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(10)

    def down(self) -> None:
        assert self._loop is not None
        asyncio.run_coroutine_threadsafe(self._stop(), self._loop).result(10)


@contextlib.contextmanager
def receiver(secret: str) -> Iterator[Receiver]:
    """A receiver verifying with `secret` (whsec_...), up on a free port of 127.0.0.1."""
    found = Receiver(secret)
    with _loop_thread() as loop:
        found._loop = loop
        found.up()
        try:
            yield found
        finally:
            found.down()


@dataclass
class BlackHole:
    port: int = 0
    connections: int = 0


@contextlib.contextmanager
def black_hole() -> Iterator[BlackHole]:
    """A TCP server on 127.0.0.1 that accepts every connection, reads, and never answers."""
    hole = BlackHole()
    held: list[asyncio.StreamWriter] = []

    async def swallow(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        hole.connections += 1
        held.append(writer)
        with contextlib.suppress(Exception):
            while await reader.read(65536):
                pass

    async def start() -> asyncio.Server:
        server = await asyncio.start_server(swallow, "127.0.0.1", 0)
        hole.port = server.sockets[0].getsockname()[1]
        return server

    with _loop_thread() as loop:
        server = asyncio.run_coroutine_threadsafe(start(), loop).result(10)

        async def stop() -> None:
            server.close()
            for writer in held:
                writer.close()

        try:
            yield hole
        finally:
            asyncio.run_coroutine_threadsafe(stop(), loop).result(10)


def _text_object(obj: Any, where: str, types: set[str] = TEXT_TYPES, limit: int = 3000) -> list[str]:
    if not isinstance(obj, dict) or obj.get("type") not in types:
        return [f"{where}: not a text object of type {sorted(types)}"]
    value = obj.get("text")
    if not isinstance(value, str) or not value:
        return [f"{where}: text missing"]
    return [f"{where}: text longer than {limit}"] if len(value) > limit else []


def block_kit_problems(payload: Any) -> list[str]:
    """What Slack would reject in a message (the Block Kit shapes of the blocks qrm uses): an empty list when
    valid. https://api.slack.com/reference/block-kit/blocks"""
    if not isinstance(payload, dict):
        return ["the body is not a JSON object"]
    problems: list[str] = []
    if not isinstance(payload.get("text"), str) or not payload["text"]:
        problems.append("text: missing (the notification fallback)")
    blocks = payload.get("blocks", [])
    if not isinstance(blocks, list) or len(blocks) > 50:
        return [*problems, "blocks: not a list of at most 50"]
    for index, block in enumerate(blocks):
        where = f"blocks[{index}]"
        kind = block.get("type") if isinstance(block, dict) else None
        if kind == "header":
            problems += _text_object(block.get("text"), f"{where}.text", {"plain_text"}, 150)
        elif kind == "section":
            if "text" not in block and "fields" not in block:
                problems.append(f"{where}: a section needs text or fields")
            if "text" in block:
                problems += _text_object(block["text"], f"{where}.text")
            fields = block.get("fields", [])
            if not isinstance(fields, list) or len(fields) > 10:
                problems.append(f"{where}.fields: at most 10")
            for number, item in enumerate(fields):
                problems += _text_object(item, f"{where}.fields[{number}]", limit=2000)
        elif kind == "context":
            elements = block.get("elements")
            if not isinstance(elements, list) or not 1 <= len(elements) <= 10:
                problems.append(f"{where}.elements: 1 to 10")
            for number, item in enumerate(elements or []):
                problems += _text_object(item, f"{where}.elements[{number}]")
        elif kind == "actions":
            for number, item in enumerate(block.get("elements") or []):
                if item.get("type") != "button" or not str(item.get("url", "")).startswith(("http://", "https://")):
                    problems.append(f"{where}.elements[{number}]: not a link button")
                problems += _text_object(item.get("text"), f"{where}.elements[{number}].text", {"plain_text"}, 75)
        else:
            problems.append(f"{where}: unknown block type {kind!r}")
    return problems


@dataclass
class Received:
    path: str
    query: str
    headers: dict[str, str]
    body: bytes
    at: float  # time.monotonic() when the receiver read it

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class HttpReceiver:
    """An HTTP endpoint that records every request and answers from `answers` (first to last, then `default`).
    `slack=True` answers like Slack to a body that is not a valid message (400 invalid_payload/invalid_blocks)."""

    port: int = 0
    slack: bool = False
    answers: list[Answer] = field(default_factory=list)
    default: Answer = SLACK_OK
    seen: list[Received] = field(default_factory=list)

    def url(self, path: str = "/services/T000/B000/XXXX") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        self.seen.append(Received(request.path, request.query_string, dict(request.headers), body, time.monotonic()))
        answer = self.answers.pop(0) if self.answers else self.default
        if self.slack and answer[0] == 200:
            try:
                problems = block_kit_problems(json.loads(body))
            except ValueError:
                return web.Response(status=400, text="invalid_payload")
            if problems:
                return web.Response(status=400, text="invalid_blocks")
        status, text, headers = answer
        return web.Response(status=status, text=text, headers=headers)


@contextlib.contextmanager
def http_receiver(*, slack: bool = False, answers: list[Answer] | None = None,
                  default: Answer = SLACK_OK) -> Iterator[HttpReceiver]:
    """An HttpReceiver listening on a free port of 127.0.0.1 until the block ends."""
    receiver = HttpReceiver(slack=slack, answers=list(answers or []), default=default)
    with _loop_thread() as loop:
        runner, receiver.port = asyncio.run_coroutine_threadsafe(_serve(receiver.handle, "*"), loop).result(10)
        try:
            yield receiver
        finally:
            asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(10)


@dataclass
class Mailbox:
    """What the SMTP server accepted, and the AUTH logins it was given."""

    messages: list[EmailMessage] = field(default_factory=list)
    envelopes: list[tuple[str, list[str]]] = field(default_factory=list)
    logins: list[tuple[str, str]] = field(default_factory=list)
    tls_on_data: list[bool] = field(default_factory=list)  # whether each message came over TLS


@dataclass
class SmtpServer:
    host: str
    port: int
    ca_file: Path
    mailbox: Mailbox


class _Handler:
    def __init__(self, mailbox: Mailbox, replies: list[str]):
        self.mailbox = mailbox
        self.replies = replies

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        if self.replies:
            return self.replies.pop(0)
        content = envelope.content if isinstance(envelope.content, bytes) else str(envelope.content).encode()
        parsed = message_from_bytes(content, policy=policy.default)
        assert isinstance(parsed, EmailMessage)
        self.mailbox.messages.append(parsed)
        self.mailbox.envelopes.append((str(envelope.mail_from), list(envelope.rcpt_tos)))
        self.mailbox.tls_on_data.append(session.ssl is not None)
        return "250 OK queued"


class _Authenticator:
    def __init__(self, mailbox: Mailbox, username: str, password: str):
        self.mailbox = mailbox
        self.username = username
        self.password = password

    def __call__(self, server: SMTP, session: Session, envelope: Envelope, mechanism: str,
                 auth_data: Any) -> AuthResult:
        if not isinstance(auth_data, LoginPassword):
            return AuthResult(success=False, handled=False)
        login = (auth_data.login.decode(), auth_data.password.decode())
        self.mailbox.logins.append(login)
        return AuthResult(success=login == (self.username, self.password), handled=False)  # aiosmtpd answers 235 or 535


@contextlib.contextmanager
def smtp_server(folder: Path, *, starttls: bool = True, username: str = "", password: str = "",
                data_replies: tuple[str, ...] = ()) -> Iterator[SmtpServer]:
    """An aiosmtpd server on 127.0.0.1: with `starttls` it offers STARTTLS with a certificate for 127.0.0.1
    issued by a test CA (its PEM in `folder`, for the client to trust) and requires it before AUTH and MAIL;
    with `username` it requires AUTH (PLAIN/LOGIN) with that password. `data_replies` ("451 ...", "550 ...")
    are its answers to the first DATA commands instead of accepting the message (then it accepts)."""
    ca = trustme.CA()
    ca_file = folder / "smtp-test-ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    context: ssl.SSLContext | None = None
    if starttls:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ca.issue_cert("127.0.0.1", "localhost").configure_cert(context)
    mailbox = Mailbox()
    kwargs: dict[str, Any] = {}
    if username:
        kwargs.update(authenticator=_Authenticator(mailbox, username, password), auth_required=True,
                      auth_require_tls=starttls)
    port = free_port()
    controller = Controller(_Handler(mailbox, list(data_replies)), hostname="127.0.0.1", port=port, tls_context=context,
                            require_starttls=starttls, server_hostname="127.0.0.1", **kwargs)
    controller.start()
    try:
        yield SmtpServer("127.0.0.1", port, ca_file, mailbox)
    finally:
        controller.stop()
