"""A hostile HTTP server on 127.0.0.1 that answers each path with raw bytes no well-behaved framework would send
(aiohttp and Flask refuse to write most of them): a negative Content-Length, a negative chunk size, a chunk-size
line over 64 KiB, a Location with port 99999 or a broken IPv6 host, a body that is not the gzip it claims...

`ANSWERS` maps a path to what is written after the request head is read, and what happens next: `keep` (the
connection stays open for the client's next request, as a keep-alive server's does), `close` (where the close is
part of the answer: a body cut short, bytes with no framing) or a `reset` with RST. Closing right after an answer
the client can frame would leave a closed connection in its pool, and the next case would race the FIN.
The server runs on the asyncio loop of tests/support/healthservers.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import socket
import struct
from collections.abc import Iterator
from dataclasses import dataclass

from tests.support.healthservers import Servers, running


@dataclass(frozen=True)
class Answer:
    data: bytes
    then: str = "keep"  # keep | close | reset


def _head(*lines: str) -> bytes:
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


_BOMB = gzip.compress(b"\0" * 20_000_000)  # ~20 KB on the wire, 20 MB decoded

ANSWERS: dict[str, Answer] = {
    "/content-length-minus-1": Answer(_head("HTTP/1.1 200 OK", "Content-Length: -1") + b"hello"),
    "/chunk-size-minus-1": Answer(_head("HTTP/1.1 200 OK", "Transfer-Encoding: chunked")
                                  + b"-1\r\nhello\r\n0\r\n\r\n"),
    "/chunk-size-line-over-64k": Answer(_head("HTTP/1.1 200 OK", "Transfer-Encoding: chunked")
                                        + b"0" * 70_000 + b"5\r\nhello\r\n0\r\n\r\n"),
    "/location-port-99999": Answer(_head("HTTP/1.1 302 Found", "Location: http://127.0.0.1:99999/x",
                                         "Content-Length: 0")),
    "/location-broken-ipv6": Answer(_head("HTTP/1.1 302 Found", "Location: http://[::1/", "Content-Length: 0")),
    "/location-not-utf8": Answer(b"HTTP/1.1 302 Found\r\nLocation: /caf\xe9\xff\r\nContent-Length: 0\r\n\r\n"),
    "/redirect-loop": Answer(_head("HTTP/1.1 302 Found", "Location: /redirect-loop", "Content-Length: 0")),
    "/garbage-status-line": Answer(_head("HTTP/1.1 abc OK", "Content-Length: 0")),
    "/not-http": Answer(b"hello\r\n", then="close"),
    "/header-without-colon": Answer(_head("HTTP/1.1 200 OK", "NoColonHere", "Content-Length: 5") + b"hello"),
    "/header-over-64k": Answer(_head("HTTP/1.1 200 OK", "X-Big: " + "a" * 70_000, "Content-Length: 5") + b"hello"),
    "/twenty-thousand-headers": Answer(_head("HTTP/1.1 200 OK", *["X-A: b"] * 20_000, "Content-Length: 5")
                                       + b"hello"),
    "/content-length-overflow": Answer(_head("HTTP/1.1 200 OK", "Content-Length: " + "9" * 30) + b"hello",
                                      then="close"),
    "/two-content-lengths": Answer(_head("HTTP/1.1 200 OK", "Content-Length: 5", "Content-Length: 7") + b"hello"),
    "/body-longer-than-content-length": Answer(_head("HTTP/1.1 200 OK", "Content-Length: 5")
                                                     + b"hello world", then="close"),
    "/body-shorter-then-closed": Answer(_head("HTTP/1.1 200 OK", "Content-Length: 100") + b"hel", then="close"),
    "/closed-mid-chunk": Answer(_head("HTTP/1.1 200 OK", "Transfer-Encoding: chunked") + b"100\r\nhel",
                               then="close"),
    "/reset-mid-body": Answer(_head("HTTP/1.1 200 OK", "Content-Length: 100") + b"hel", then="reset"),
    "/gzip-that-is-not": Answer(_head("HTTP/1.1 200 OK", "Content-Encoding: gzip", "Content-Length: 10")
                                + b"not gzip!!"),
    "/brotli-unasked": Answer(_head("HTTP/1.1 200 OK", "Content-Encoding: br", "Content-Length: 5") + b"hello"),
    "/gzip-bomb": Answer(_head("HTTP/1.1 200 OK", "Content-Encoding: gzip", f"Content-Length: {len(_BOMB)}")
                         + _BOMB),
    "/body-not-utf8": Answer(_head("HTTP/1.1 200 OK", "Content-Type: text/html; charset=utf-8",
                                   "Content-Length: 8") + b"\xff\xfehello\xe9"),
    "/odd-set-cookies": Answer(b"HTTP/1.1 200 OK\r\nSet-Cookie: a=b; Max-Age=99999999999999999999999\r\n"
                               b"Set-Cookie: c=d; Expires=Mon, 99 Foo 99999 99:99:99 GMT\r\n"
                               b"Set-Cookie: \xff=\x01; Domain=[::1\r\nSet-Cookie: =nameless\r\n"
                               b"Set-Cookie: e=f; Domain=..; Path=relative\r\nContent-Length: 5\r\n\r\nhello"),
    "/status-999": Answer(_head("HTTP/1.1 999 Whatever", "Content-Length: 5") + b"hello"),
}


KEEP_ALIVE_SECONDS = 60  # longer than any round of cases; the servers stop with their test


def serve_hostile(servers: Servers) -> int:
    """Serve ANSWERS on a free port of 127.0.0.1 (one answer per connection); the port."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(Exception):
            while True:  # one answer per request until an answer ends the connection or the client hangs up
                head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), KEEP_ALIVE_SECONDS)
                path = head.split(b" ", 2)[1].decode("latin-1").split("?")[0]
                answer = ANSWERS.get(path, Answer(_head("HTTP/1.1 404 Not Found", "Content-Length: 0")))
                writer.write(answer.data)
                await writer.drain()
                if answer.then == "reset":
                    await asyncio.sleep(0.05)  # let the client read what was sent
                    sock = writer.get_extra_info("socket")
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    writer.transport.abort()
                    return
                if answer.then == "close":
                    break
        writer.close()

    return servers.serve(handle)


@contextlib.contextmanager
def hostile_server() -> Iterator[str]:
    """The hostile server's base URL, http://127.0.0.1:PORT."""
    with running() as servers:
        yield f"http://127.0.0.1:{serve_hostile(servers)}"


# Answers that never end: a head, then one piece written again and again until the client hangs up (at most
# ENDLESS_LIMIT bytes, so a client that never does cannot keep a test running).
ENDLESS: dict[str, tuple[bytes, bytes]] = {
    "/endless-body": (_head("HTTP/1.1 200 OK"), b"x" * 65536),
    "/endless-chunks": (_head("HTTP/1.1 200 OK", "Transfer-Encoding: chunked"), b"4000\r\n" + b"x" * 0x4000 + b"\r\n"),
    "/endless-headers": (b"HTTP/1.1 200 OK\r\n", b"X-A: " + b"b" * 100 + b"\r\n"),
    "/endless-interim-responses": (b"", b"HTTP/1.1 100 Continue\r\n\r\n"),
}
ENDLESS_LIMIT = 256 * 1024 * 1024


def serve_endless(servers: Servers) -> int:
    """Serve ENDLESS on a free port of 127.0.0.1; the port."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(Exception):
            head = await reader.readuntil(b"\r\n\r\n")
            start, piece = ENDLESS[head.split(b" ", 2)[1].decode("latin-1")]
            writer.write(start)
            sent = 0
            while sent < ENDLESS_LIMIT and not writer.is_closing():  # a closed transport drops writes silently
                writer.write(piece)
                await writer.drain()
                sent += len(piece)
        writer.close()

    return servers.serve(handle)
