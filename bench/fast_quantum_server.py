"""A fast Quantum-like test server for the benchmarks: raw asyncio streams, a listen backlog of 1024,
HTTP/1.1 with `Connection: close`, and responses computed once per (method, path, session, form) and
then served from a cache.

It answers the paths bench/tests.py uses with the semantics of tests/support/quantum_server.py: the pages
/, /about, /blog, /contact, /login, /thanks (200, with the flash of the `session` cookie rendered as
`<div class="alert alert-...">`), /health and /api/items (JSON), /admin (302 to /login without a user in
the session), and the actions POST /contact and POST /login (q:param validation; 302 to the Referer with
an error flash, or 302 to /thanks or /admin with a success flash). The `session` cookie is Flask's signed
cookie (tests.support.quantum_server.sign: Flask's own serializer), the flash in it as a Quantum server
stores it (`{"flash": {"message", "type"}, "quantum_session": {...}}`) and popped by the next request to
a component, so a benchmark reads flashes through the same path as against a real server. Anything else
is the 404 page.

Run:  python bench/fast_quantum_server.py [--variant v1] [--port 0]
It prints its base URL on a line of its own once it listens, and serves until stdin closes or it is
terminated.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

# Run as a script, this file's folder would come first on the import path, where bench/secrets.py would
# stand in for the standard library's `secrets` (werkzeug imports it): put the checkout there instead.
_HERE = Path(__file__).resolve().parent
sys.path[:] = [str(_HERE.parent)] + [p for p in sys.path if Path(p or ".").resolve() != _HERE]

from tests.support.quantum_server import CONTACT_RULES, LOGIN_RULES, flash_markup, sign, unsign, validate  # noqa: E402

BACKLOG = 1024
MAX_HEAD = 64 * 1024
REASONS = {200: "OK", 302: "Found", 404: "Not Found", 405: "Method Not Allowed"}
NOT_FOUND = ("<html><head><title>404 - Component Not Found</title></head>"
             "<body><h1>404 - Component Not Found</h1></body></html>")
PAGES = {
    "/": "index", "/index.q": "index", "/about": "about", "/about.q": "about", "/blog": "blog",
    "/blog/index": "blog", "/contact": "contact", "/contact.q": "contact", "/login": "login",
    "/login.q": "login", "/thanks": "thanks", "/thanks.q": "thanks", "/admin": "admin", "/admin.q": "admin",
    "/api/items": "api", "/health": "health",
}


def _page(title: str, body: str, flash: dict[str, Any] | None) -> str:
    shown = flash_markup(flash)
    return f"<!DOCTYPE html><html><head><title>{title}</title></head><body>{shown}{body}</body></html>"


class App:
    """Computes responses; `respond` memoises them, so a steady benchmark serves bytes from a dict."""

    def __init__(self, variant: str) -> None:
        self.variant = variant
        self.cache: dict[tuple[str, str, str, bytes, str], bytes] = {}
        self.content: dict[str, tuple[str, str]] = {
            "index": ("Home", '<h1>Welcome</h1><ul class="posts"><li>one</li><li>two</li></ul>'
                      f'<p id="v">{variant}</p>'),
            "about": ("About", "<h1>About us</h1>"),
            "blog": ("Blog", "<h1>Blog</h1>"),
            "contact": ("Contact", '<form method="post"><input name="name"/><input name="email"/></form>'),
            "login": ("Login", '<form method="post"><input name="username"/><input name="password"/></form>'),
            "thanks": ("Thanks", "<h1>Thank you</h1>"),
        }

    def _send(self, status: int, body: str = "", *, session: dict[str, Any] | None = None,
              content_type: str = "text/html; charset=utf-8", location: str | None = None,
              head: bool = False) -> bytes:
        data = body.encode()
        lines = [f"HTTP/1.1 {status} {REASONS.get(status, 'OK')}", f"Content-Type: {content_type}",
                 f"Content-Length: {len(data)}", f"X-Quantum-Variant: {self.variant}", "Connection: close"]
        if location is not None:
            lines.append(f"Location: {location}")
        if session is not None:
            lines.append(f"Set-Cookie: session={sign(session)}; Path=/; HttpOnly")
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + (b"" if head else data)

    def respond(self, method: str, target: str, cookie: str, body: bytes, referer: str) -> bytes:
        key = (method, target, cookie, body, referer if method == "POST" else "")
        cached = self.cache.get(key)
        if cached is None:
            cached = self.cache[key] = self._compute(method, target, cookie, body, referer)
        return cached

    def _compute(self, method: str, target: str, cookie: str, body: bytes, referer: str) -> bytes:
        path = urlsplit(target).path
        name = PAGES.get(path)
        head = method == "HEAD"
        if name is None:
            return self._send(404, NOT_FOUND, head=head)
        if name == "health" and method in ("GET", "HEAD"):
            return self._send(200, json.dumps({"status": "healthy", "variant": self.variant}),
                              content_type="application/json", head=head)
        session = self._session(cookie)
        flash = session.pop("flash", None)  # popped by the next request to any component
        quantum = session.setdefault("quantum_session", {})
        if method in ("GET", "HEAD"):
            if name == "api":
                items = [{"id": 1, "name": "alpha"}, {"id": 2, "name": "beta"}]
                return self._send(200, json.dumps({"items": items, "count": len(items), "variant": self.variant}),
                                  content_type="application/json", session=session, head=head)
            if name == "admin":
                if "user" not in quantum:
                    return self._send(302, "", location="/login", session=session, head=head)
                title, html = "Admin", f'<h1 id="who">Hello {quantum["user"]}</h1>'
            else:
                title, html = self.content[name]
            return self._send(200, _page(title, html, flash), session=session, head=head)
        rules = {"contact": CONTACT_RULES, "login": LOGIN_RULES}.get(name)
        if rules is None:
            return self._send(405, "<html><head><title>Method Not Allowed</title></head></html>", session=session)
        form = {k: v[0] for k, v in parse_qs(body.decode()).items()}
        problem = validate(form, rules)
        if problem is not None:
            session["flash"] = {"message": problem, "type": "error"}
            return self._send(302, "", location=referer or "/", session=session)
        if name == "login":
            quantum["user"] = form["username"]
            session["flash"] = {"message": "Welcome back!", "type": "success"}
            return self._send(302, "", location="/admin", session=session)
        session["flash"] = {"message": f"Thanks, {form['name']}!", "type": "success"}
        return self._send(302, "", location="/thanks", session=session)

    @staticmethod
    def _session(cookie: str) -> dict[str, Any]:
        for part in cookie.split(";"):
            name, _, value = part.strip().partition("=")
            if name == "session":
                return unsign(value)
        return {}


async def handle(app: App, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        head = await reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        method, target, _ = lines[0].split(" ", 2)
        cookie = referer = ""
        length = 0
        for line in lines[1:]:
            key, _, value = line.partition(":")
            key = key.strip().lower()
            if key == "cookie":
                cookie = value.strip()
            elif key == "content-length":
                length = int(value.strip() or 0)
            elif key == "referer":
                referer = value.strip()
        body = await reader.readexactly(length) if length else b""
        writer.write(app.respond(method, target, cookie, body, referer))
        await writer.drain()
    except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError, ConnectionError):
        pass
    finally:
        writer.close()


async def serve(variant: str, port: int) -> None:
    app = App(variant)
    server = await asyncio.start_server(lambda r, w: handle(app, r, w), "127.0.0.1", port,
                                        backlog=BACKLOG, limit=MAX_HEAD)
    print(f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}", flush=True)
    loop = asyncio.get_running_loop()
    closed = loop.create_future()

    def stdin_closed() -> None:
        if not closed.done():
            closed.set_result(None)

    # stop when the parent goes away (stdin closes)
    loop.add_reader(sys.stdin.fileno(), lambda: stdin_closed() if not sys.stdin.buffer.read1(4096) else None)
    async with server:
        await closed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variant", default="v1")
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(args.variant, args.port))


if __name__ == "__main__":
    main()
