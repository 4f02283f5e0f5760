"""A real aiohttp.web server on 127.0.0.1 for the runner's client tests: it parses what the runner sends
(multipart uploads, cookies) with aiohttp's own server machinery and answers in ways the Quantum stand-in
does not (gzip, chunked, keep-alive, cookies with paths and expiry, a proxy's absolute-form requests).

Each request is recorded in `Echo.seen` (path, Cookie header, the connection it came on), so a test
asserts what arrived.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web


@dataclass
class Seen:
    path: str
    url: str  # as the request line gave it: absolute-form through a proxy
    cookie: str
    connection: int  # id of the transport: requests on one keep-alive connection share it


@dataclass
class Echo:
    url: str = ""
    seen: list[Seen] = field(default_factory=list)
    uploads: list[dict[str, Any]] = field(default_factory=list)


async def _upload(request: web.Request) -> web.Response:
    """Every part of a multipart/form-data body: name, filename, content type, size, and a field's value."""
    parts: dict[str, Any] = {}
    reader = await request.multipart()
    async for part in reader:
        data = await part.read()  # type: ignore[union-attr]
        name = str(part.name)
        if part.filename is None:  # type: ignore[union-attr]
            parts[name] = {"value": data.decode()}
        else:
            parts[name] = {"filename": part.filename, "content_type": part.headers.get("Content-Type"),  # type: ignore[union-attr]
                           "size": len(data), "head": data[:22].decode("latin-1")}
    request.app[ECHO].uploads.append(parts)
    return web.json_response({"content_type": request.content_type, "parts": parts})


async def _cookies(request: web.Request) -> web.Response:
    """Sets cookies that real rules treat differently, then redirects to /echo (which the runner follows)."""
    response = web.HTTPFound("/echo")
    response.set_cookie("kept", "1", path="/")
    response.set_cookie("elsewhere", "2", path="/other")  # not sent to /echo
    response.set_cookie("gone", "3", path="/", max_age=0)  # expired at once
    response.set_cookie("foreign", "4", path="/", domain="example.org")  # another domain: rejected
    raise response


async def _echo(request: web.Request) -> web.Response:
    return web.Response(text=f"<html><body>cookie: {request.headers.get('Cookie', '')}</body></html>",
                        content_type="text/html")


async def _gzip(request: web.Request) -> web.Response:
    response = web.Response(text="<html><body>" + "compressed page " * 500 + "</body></html>",
                            content_type="text/html")
    response.enable_compression(web.ContentCoding.gzip)
    return response


async def _chunked(request: web.Request) -> web.StreamResponse:
    response = web.StreamResponse(headers={"Content-Type": "text/html"})
    response.enable_chunked_encoding()
    await response.prepare(request)
    for i in range(5):
        await response.write(f"<p>chunk {i}</p>".encode())
    await response.write_eof()
    return response


async def _any(request: web.Request) -> web.Response:
    return web.Response(text=f"<html><body>answered {request.method} {request.url}</body></html>",
                        content_type="text/html")


@web.middleware
async def _record(request: web.Request, handler: Any) -> web.StreamResponse:
    request.app[ECHO].seen.append(Seen(request.path, request.raw_path, request.headers.get("Cookie", ""),
                                         id(request.transport)))
    return await handler(request)  # type: ignore[no-any-return]


ECHO = web.AppKey("echo", Echo)


def _app(echo: Echo) -> web.Application:
    app = web.Application(middlewares=[_record])
    app[ECHO] = echo
    app.router.add_post("/upload", _upload)
    app.router.add_get("/cookies", _cookies)
    app.router.add_get("/echo", _echo)
    app.router.add_get("/gzip", _gzip)
    app.router.add_get("/chunked", _chunked)
    app.router.add_route("*", "/{tail:.*}", _any)
    return app


@contextlib.contextmanager
def echo_server() -> Iterator[Echo]:
    """The server in a thread of its own (its own loop), on a free port of 127.0.0.1."""
    echo = Echo()
    loop = asyncio.new_event_loop()
    runner = web.AppRunner(_app(echo), access_log=None)

    async def start() -> None:
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        echo.url = f"http://127.0.0.1:{runner.addresses[0][1]}"

    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    asyncio.run_coroutine_threadsafe(start(), loop).result(10)
    try:
        yield echo
    finally:
        asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)
        loop.close()
