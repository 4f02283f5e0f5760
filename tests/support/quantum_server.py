"""A real HTTP server on 127.0.0.1 that answers as a Quantum server does (../shared/QUANTUM.md):
routes / -> index, /<path> and /<path>.q, /health JSON, the 404 / 400 / 500 error pages, a guarded
page that redirects to /login without a session, actions that validate their q:param rules and reject
with 302 to the Referer plus an error flash in the signed `session` cookie, a successful action that
redirects with a success flash, a JSON endpoint, a path that hangs and one that fails once.

`variant` changes what the pages say, so that two instances make two environments that differ.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.cookies import SimpleCookie
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

SECRET = b"quantum-test-secret"
EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


def sign(data: dict[str, Any]) -> str:
    payload = base64.urlsafe_b64encode(json.dumps(data, sort_keys=True).encode()).decode().rstrip("=")
    return payload + "." + hmac.new(SECRET, payload.encode(), hashlib.sha256).hexdigest()[:32]


def unsign(value: str) -> dict[str, Any]:
    payload, _, mac = value.rpartition(".")
    if not payload or not hmac.compare_digest(mac, hmac.new(SECRET, payload.encode(), hashlib.sha256).hexdigest()[:32]):
        return {}
    try:
        data = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


# The action rules: field -> (required, minlength, type), as q:param declares them.
CONTACT_RULES: dict[str, tuple[bool, int, str]] = {"name": (True, 3, "string"), "email": (True, 0, "email")}
LOGIN_RULES: dict[str, tuple[bool, int, str]] = {"username": (True, 1, "string"), "password": (True, 4, "string")}


def validate(form: dict[str, str], rules: dict[str, tuple[bool, int, str]]) -> str | None:
    for name, (required, minlength, kind) in rules.items():
        value = form.get(name, "")
        if not value:
            if required:
                return f"Parameter '{name}' is required"
            continue
        if len(value) < minlength:
            return f"Parameter '{name}' must be at least {minlength} characters"
        if kind == "email" and not EMAIL.match(value):
            return f"Parameter '{name}' must be a valid email"
    return None


@dataclass
class State:
    variant: str = "v1"
    stop: threading.Event = field(default_factory=threading.Event)
    hits: dict[str, int] = field(default_factory=dict)
    referers: list[str] = field(default_factory=list)
    cookies_seen: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def hit(self, path: str) -> int:
        with self.lock:
            self.hits[path] = self.hits.get(path, 0) + 1
            return self.hits[path]


def _page(title: str, body: str, flashes: list[dict[str, str]]) -> str:
    shown = "".join(f'<div class="flash flash-{f.get("type", "info")}">{f.get("message", "")}</div>' for f in flashes)
    return f"<!DOCTYPE html><html><head><title>{title}</title></head><body>{shown}{body}</body></html>"


class Handler(BaseHTTPRequestHandler):
    disable_nagle_algorithm = True
    server: QuantumHTTPServer

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    # --- plumbing ---
    def _session(self) -> dict[str, Any]:
        raw = self.headers.get("Cookie")
        if not raw:
            return {}
        self.server.state.cookies_seen.append(raw)
        jar: SimpleCookie = SimpleCookie()
        jar.load(raw)
        return unsign(jar["session"].value) if "session" in jar else {}

    def _send(self, status: int, body: str = "", *, session: dict[str, Any] | None = None,
              content_type: str = "text/html; charset=utf-8", location: str | None = None) -> None:
        data = body.encode()
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("X-Quantum-Variant", self.server.state.variant)
        if location is not None:
            self.send_header("Location", location)
        if session is not None:
            self.send_header("Set-Cookie", f"session={sign(session)}; Path=/; HttpOnly")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def _render(self, title: str, body: str, session: dict[str, Any], status: int = 200) -> None:
        flashes = session.pop("flashes", [])
        self._send(status, _page(title, body, flashes), session=session)

    def _form(self) -> dict[str, str]:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        if "json" in (self.headers.get("Content-Type") or ""):
            data = json.loads(raw or b"{}")
            return {str(k): str(v) for k, v in data.items()}
        return {k: v[0] for k, v in parse_qs(raw.decode()).items()}

    def _component(self) -> str | None:
        path = urlsplit(self.path).path
        if path == "/":
            return "index"
        if path.endswith("/"):
            return None
        name = path[1:].removesuffix(".q")
        if name in COMPONENTS:
            return name
        return f"{name}/index" if f"{name}/index" in COMPONENTS else None

    # --- methods ---
    def do_GET(self) -> None:
        path = urlsplit(self.path).path
        state = self.server.state
        if path == "/health":
            self._send(200, json.dumps({"status": "healthy", "variant": state.variant}),
                       content_type="application/json")
            return
        name = self._component()
        if name is None:
            self._send(404, "<html><head><title>404 - Component Not Found</title></head>"
                            f"<body><h1>404 - Component Not Found</h1><p>{path}</p></body></html>")
            return
        if name == "broken":
            self._send(400, "<html><head><title>Parse Error</title></head><body>line 3: unclosed tag</body></html>")
            return
        if name == "crash":
            self._send(500, "<html><head><title>Runtime Error</title></head><body>Traceback ...</body></html>",
                       session={})
            return
        if name == "slow":
            if not state.stop.wait(30):  # stopped: the client is gone, answer nothing
                self._send(200, "finally")
            return
        if name == "huge":  # 50 MB with no Content-Length: the client must stop at its cap
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.end_headers()
            chunk = b"x" * 65536
            try:
                for _ in range(50 * 16):
                    self.wfile.write(chunk)
            except OSError:
                pass
            self.close_connection = True
            return
        if name == "malformed":
            self.wfile.write(b"HTTQ/9 OK maybe\r\n\r\n")
            self.close_connection = True
            return
        if name == "loop":
            self._send(302, "", location="/loop")
            return
        if name == "flaky":
            if state.hit(path) % 2 == 1:
                self._send(500, "<html><head><title>Runtime Error</title></head><body>try again</body></html>")
            else:
                self._send(200, _page("Flaky", "<p>ok now</p>", []))
            return
        session = self._session()
        if name == "api/items":
            items = [{"id": 1, "name": "alpha"}, {"id": 2, "name": "beta"}]
            self._send(200, json.dumps({"items": items, "count": len(items), "variant": state.variant}),
                       content_type="application/json", session=session)
            return
        if name == "admin":
            if "user" not in session:
                self._send(302, "", location="/login", session=session)
                return
            self._render("Admin", f'<h1 id="who">Hello {session["user"]}</h1>', session)
            return
        self._render(*COMPONENTS[name](state), session)

    def do_HEAD(self) -> None:
        self.do_GET()

    def do_POST(self) -> None:
        name = self._component()
        state = self.server.state
        if name is None:
            self._send(404, "<html><head><title>404 - Component Not Found</title></head><body></body></html>")
            return
        referer = self.headers.get("Referer")
        with state.lock:
            state.referers.append(referer or "")
        session = self._session()
        form = self._form()
        rules = {"contact": CONTACT_RULES, "login": LOGIN_RULES}.get(name)
        if rules is None:
            self._send(405, "<html><head><title>Method Not Allowed</title></head></html>", session=session)
            return
        problem = validate(form, rules)
        if problem is not None:
            session.setdefault("flashes", []).append({"message": problem, "type": "error"})
            self._send(302, "", location=referer or "/", session=session)
            return
        if name == "login":
            session["user"] = form["username"]
            session.setdefault("flashes", []).append({"message": "Welcome back!", "type": "success"})
            self._send(302, "", location="/admin", session=session)
            return
        session.setdefault("flashes", []).append({"message": f"Thanks, {form['name']}!", "type": "success"})
        self._send(302, "", location="/thanks", session=session)

    do_PUT = do_POST
    do_DELETE = do_POST


def _index(state: State) -> tuple[str, str]:
    return "Home", f'<h1>Welcome</h1><ul class="posts"><li>one</li><li>two</li></ul><p id="v">{state.variant}</p>'


COMPONENTS: dict[str, Any] = {
    "index": _index,
    "about": lambda s: ("About", "<h1>About us</h1>"),
    "blog/index": lambda s: ("Blog", "<h1>Blog</h1>"),
    "contact": lambda s: ("Contact", '<form method="post"><input name="name"/><input name="email"/></form>'),
    "login": lambda s: ("Login", '<form method="post"><input name="username"/><input name="password"/></form>'),
    "thanks": lambda s: ("Thanks", "<h1>Thank you</h1>"),
    "admin": None, "broken": None, "crash": None, "slow": None, "flaky": None, "api/items": None,
    "huge": None, "malformed": None, "loop": None,
}


class QuantumHTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a client that went away (a timed-out case) is not news

    def __init__(self, port: int, state: State) -> None:
        super().__init__(("127.0.0.1", port), Handler)
        self.state = state


@dataclass
class Running:
    server: QuantumHTTPServer

    @property
    def state(self) -> State:
        return self.server.state

    @property
    def port(self) -> int:
        return int(self.server.server_address[1])

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@contextmanager
def quantum_server(variant: str = "v1", port: int = 0) -> Iterator[Running]:
    server = QuantumHTTPServer(port, State(variant))
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield Running(server)
    finally:
        server.state.stop.set()
        server.shutdown()
        server.server_close()
