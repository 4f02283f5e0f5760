"""The Quantum stand-in for tests: a Flask app, as the real Quantum server is (../shared/QUANTUM.md), served
by werkzeug's threaded server on 127.0.0.1, so that its `session` cookie is Flask's own signed cookie
(itsdangerous: base64url(JSON).timestamp.signature, or `.` + base64url(zlib(JSON)) when that is shorter).

It answers as a Quantum server does: routes / -> index, /<path> and /<path>.q (else <path>/index), /health
JSON, the 404 / 400 / 500 error pages, a guarded page that redirects to /login without a session, actions
that validate their q:param rules and reject with 302 to the Referer plus an error flash, a successful
action that redirects with a success flash, a JSON endpoint, a path that hangs and one that fails once.
The flash is stored as the real server stores it, `session["flash"] = {"message": ..., "type": ...}`, and
popped by the next request to any component; a page renders it as `<div class="alert alert-success">`
(`alert-danger` for an error), a markup of the page's own choosing as on a real server.

`variant` changes what the pages say, so that two instances make two environments that differ. Two
switches take one of the two places a flash can be read away from a test: `pages_show_flash=False` (the
pages render no flash, only a status line of their own: only the session cookie has it) and
`server_side_sessions=True` (the session stays in the server's memory and the cookie holds only a
random id: only the page has it).
"""

from __future__ import annotations

import html
import json
import os
import re
import socket
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import flask
from flask.sessions import SecureCookieSession, SecureCookieSessionInterface, SessionInterface
from itsdangerous import BadSignature
from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server

SECRET = "quantum-test-secret"
EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
METHODS = ["GET", "HEAD", "POST", "PUT", "DELETE"]

_SIGNING_APP = flask.Flask("quantum-stand-in-cookies")
_SIGNING_APP.secret_key = SECRET
_SERIALIZER = SecureCookieSessionInterface().get_signing_serializer(_SIGNING_APP)
assert _SERIALIZER is not None


def sign(data: dict[str, Any]) -> str:
    """The `session` cookie value Flask sets for this session with the stand-in's secret key."""
    assert _SERIALIZER is not None
    value: str = _SERIALIZER.dumps(data)
    return value


def unsign(value: str) -> dict[str, Any]:
    """The session in a cookie value; {} when it is not one signed with the stand-in's key."""
    assert _SERIALIZER is not None
    try:
        data = _SERIALIZER.loads(value)
    except (BadSignature, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


# The action rules: field -> (required, minlength, type), as q:param declares them.
CONTACT_RULES: dict[str, tuple[bool, int, str]] = {"name": (True, 3, "string"), "email": (True, 0, "email")}
LOGIN_RULES: dict[str, tuple[bool, int, str]] = {"username": (True, 1, "string"), "password": (True, 4, "string")}
EMAIL_RULES: dict[str, tuple[bool, int, str]] = {"recipientEmail": (True, 0, "email"), "subject": (False, 3, "string")}
EMAIL_SENT = "Email sent successfully!"


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


def flash_markup(flash: dict[str, Any] | None) -> str:
    """How the stand-in's pages show a flash: Bootstrap's alert (no class `flash`, no role)."""
    if not isinstance(flash, dict) or not flash.get("message"):
        return ""
    kind = "danger" if flash.get("type") == "error" else "success"
    return f'<div class="alert alert-{kind}">{html.escape(str(flash["message"]))}</div>'


def _page(title: str, body: str, shown: str) -> str:
    return f"<!DOCTYPE html><html><head><title>{title}</title></head><body>{shown}{body}</body></html>"


def _index(state: State) -> tuple[str, str]:
    return "Home", f'<h1>Welcome</h1><ul class="posts"><li>one</li><li>two</li></ul><p id="v">{state.variant}</p>'


COMPONENTS: dict[str, Any] = {
    "index": _index,
    "about": lambda s: ("About", "<h1>About us</h1>"),
    "blog/index": lambda s: ("Blog", "<h1>Blog</h1>"),
    "contact": lambda s: ("Contact", '<form method="post"><input name="name"/><input name="email"/></form>'),
    "login": lambda s: ("Login", '<form method="post"><input name="username"/><input name="password"/></form>'),
    "email": lambda s: ("Send email", '<form method="post"><input type="hidden" name="action" value="sendEmail"/>'
                                      '<input type="email" name="recipientEmail"/><input name="subject"/></form>'),
    "thanks": lambda s: ("Thanks", "<h1>Thank you</h1>"),
    "admin": None, "broken": None, "crash": None, "slow": None, "flaky": None, "api/items": None,
    "huge": None, "malformed": None, "loop": None,
}


def _contact_done(form: dict[str, str], quantum: dict[str, Any]) -> tuple[str, str]:
    return "/thanks", f"Thanks, {form['name']}!"


def _login_done(form: dict[str, str], quantum: dict[str, Any]) -> tuple[str, str]:
    quantum["user"] = form["username"]
    return "/admin", "Welcome back!"


def _email_done(form: dict[str, str], quantum: dict[str, Any]) -> tuple[str, str]:
    return "/email", EMAIL_SENT


# component -> (its action's q:param rules, what success does: (redirect URL, success flash))
ACTIONS: dict[str, tuple[dict[str, tuple[bool, int, str]], Callable[[dict[str, str], dict[str, Any]],
                                                                      tuple[str, str]]]] = {
    "contact": (CONTACT_RULES, _contact_done),
    "login": (LOGIN_RULES, _login_done),
    "email": (EMAIL_RULES, _email_done),
}

NOT_FOUND = ("<html><head><title>404 - Component Not Found</title></head>"
             "<body><h1>404 - Component Not Found</h1><p>{path}</p></body></html>")
PARSE_ERROR = "<html><head><title>Parse Error</title></head><body>line 3: unclosed tag</body></html>"
OWN_STATUS = '<p role="status" class="text-muted">All systems normal</p>'
RUNTIME_ERROR = "<html><head><title>Runtime Error</title></head><body>{detail}</body></html>"


class ServerSideSessions(SessionInterface):
    """Flask's session kept in the server's memory; the cookie holds only a random id (as Flask-Session
    does). Nothing in the cookie says what the flash is: a test reads it from the page."""

    def __init__(self) -> None:
        self.store: dict[str, dict[str, Any]] = {}
        self.lock = threading.Lock()

    def open_session(self, app: flask.Flask, request: flask.Request) -> SecureCookieSession:
        sid = request.cookies.get(self.get_cookie_name(app), "")
        with self.lock:
            stored = dict(self.store.get(sid, {}))
        session = SecureCookieSession(stored)
        session["_sid"] = sid if sid in self.store else os.urandom(16).hex()
        session.modified = False
        return session

    def save_session(self, app: flask.Flask, session: Any, response: flask.Response) -> None:
        if not session.modified:
            return
        sid = str(session["_sid"])
        with self.lock:
            self.store[sid] = dict(session)
        response.set_cookie(self.get_cookie_name(app), sid, httponly=True, path="/")


def _component(path: str) -> str | None:
    if path == "":
        return "index"
    if path.endswith("/"):
        return None
    name = path.removesuffix(".q")
    if name in COMPONENTS:
        return name
    return f"{name}/index" if f"{name}/index" in COMPONENTS else None


def create_app(state: State, *, pages_show_flash: bool = True, server_side_sessions: bool = False) -> flask.Flask:
    """The stand-in's Flask app for one environment."""
    app = flask.Flask(f"quantum-stand-in-{state.variant}")
    app.secret_key = SECRET
    if server_side_sessions:
        app.session_interface = ServerSideSessions()

    def send(status: int, body: str = "", *, content_type: str = "text/html; charset=utf-8",
             location: str | None = None) -> flask.Response:
        response = flask.Response(body, status=status, content_type=content_type)
        if location is not None:
            response.headers["Location"] = location
        return response

    def open_session() -> tuple[dict[str, Any], str]:
        """The session of this request to a component: its flash popped (and shown once), the cookie set."""
        session = flask.session
        raw = flask.request.headers.get("Cookie")
        if raw:
            with state.lock:
                state.cookies_seen.append(raw)
        popped = session.pop("flash", None)
        session.setdefault("quantum_session", {})
        session.modified = True  # every answer past parsing sets the session cookie
        # without the flash, a page still has markup a flash reader looks at: a status line of its own
        return session["quantum_session"], flash_markup(popped) if pages_show_flash else OWN_STATUS

    def render(title: str, body: str, shown: str, status: int = 200) -> flask.Response:
        return send(status, _page(title, body, shown))

    def special(name: str) -> flask.Response | None:
        """The paths that misbehave on purpose, before any session."""
        if name == "broken":
            return send(400, PARSE_ERROR)
        if name == "slow":
            if not state.stop.wait(30):
                return send(200, "finally")
            return send(200, "")  # stopped: the client is gone
        if name == "huge":  # 50 MB, streamed without Content-Length: the client must stop at its cap
            chunk = b"x" * 65536
            return flask.Response((chunk for _ in range(50 * 16)), status=200, content_type="text/html")
        if name == "malformed":
            sock: socket.socket = flask.request.environ["werkzeug.socket"]
            sock.sendall(b"HTTQ/9 OK maybe\r\n\r\n")
            sock.shutdown(socket.SHUT_RDWR)  # what werkzeug writes after this is dropped quietly
            return send(200, "")
        if name == "loop":
            return send(302, location="/loop")
        if name == "flaky":
            if state.hit(flask.request.path) % 2 == 1:
                return send(500, RUNTIME_ERROR.format(detail="try again"))
            return render("Flaky", "<p>ok now</p>", "")
        return None

    def get(path: str) -> flask.Response:
        if path == "health":
            return send(200, json.dumps({"status": "healthy", "variant": state.variant}),
                        content_type="application/json")
        name = _component(path)
        if name is None:
            return send(404, NOT_FOUND.format(path=html.escape("/" + path)))
        answer = special(name)
        if answer is not None:
            return answer
        quantum, shown = open_session()
        if name == "crash":
            return send(500, RUNTIME_ERROR.format(detail="Traceback ..."))
        if name == "api/items":
            items = [{"id": 1, "name": "alpha"}, {"id": 2, "name": "beta"}]
            return send(200, json.dumps({"items": items, "count": len(items), "variant": state.variant}),
                        content_type="application/json")
        if name == "admin":
            if "user" not in quantum:
                return send(302, location="/login")
            return render("Admin", f'<h1 id="who">Hello {html.escape(str(quantum["user"]))}</h1>', shown)
        title, body = COMPONENTS[name](state)
        return render(title, body, shown)

    def act(path: str) -> flask.Response:
        name = _component(path)
        if name is None:
            return send(404, NOT_FOUND.format(path=html.escape("/" + path)))
        request = flask.request
        referer = request.headers.get("Referer")
        with state.lock:
            state.referers.append(referer or "")
        quantum, _ = open_session()
        if request.is_json:
            data = request.get_json(silent=True)
            form = {str(k): str(v) for k, v in data.items()} if isinstance(data, dict) else {}
        else:
            form = request.form.to_dict()
        if name not in ACTIONS:
            return send(405, "<html><head><title>Method Not Allowed</title></head></html>")
        rules, done = ACTIONS[name]
        problem = validate(form, rules)
        if problem is not None:
            flask.session["flash"] = {"message": problem, "type": "error"}
            return send(302, location=referer or "/")
        location, message = done(form, quantum)
        flask.session["flash"] = {"message": message, "type": "success"}
        return send(302, location=location)

    @app.route("/", defaults={"path": ""}, methods=METHODS)
    @app.route("/<path:path>", methods=METHODS)
    def component(path: str) -> flask.Response:
        return get(path) if flask.request.method in ("GET", "HEAD") else act(path)

    @app.after_request
    def variant(response: flask.Response) -> flask.Response:
        response.headers["X-Quantum-Variant"] = state.variant
        return response

    return app


class QuietHandler(WSGIRequestHandler):
    """werkzeug's handler without its access log on stderr."""

    def log(self, type: str, message: str, *args: Any) -> None:
        pass


@dataclass
class Running:
    server: BaseWSGIServer
    state: State

    @property
    def port(self) -> int:
        return int(self.server.server_address[1])

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@contextmanager
def quantum_server(variant: str = "v1", port: int = 0, *, pages_show_flash: bool = True,
                   server_side_sessions: bool = False) -> Iterator[Running]:
    state = State(variant)
    app = create_app(state, pages_show_flash=pages_show_flash, server_side_sessions=server_side_sessions)
    server = make_server("127.0.0.1", port, app, threaded=True, request_handler=QuietHandler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield Running(server, state)
    finally:
        state.stop.set()
        server.shutdown()
        server.server_close()
        thread.join(5)
