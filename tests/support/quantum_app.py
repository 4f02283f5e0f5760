"""The fixture app tests/fixtures/quantum-app served as a Quantum server serves it, on Flask with
Flask's own signed session cookie (the real server is a Flask app; see the Quantum notes in README):

- routes relative to components/ (the folder its quantum.config.yaml serves): `/`, `/<path>` and
  `/<path>.q`, else `<path>/index.q`; a trailing slash, examples/ and anything else answer 404
  `404 - Component Not Found`; `/health` answers JSON;
- components/broken.q does not parse: 400 `Parse Error`;
- a POST runs the page's action: its q:param rules (coded here from the .q files) checked in order;
  rejected input is 302 back to the Referer with `{"message": "Parameter 'x' ...", "type": "error"}`
  stored as session["flash"]; accepted input is the q:redirect with its flash template filled;
- the next request to a component pops the flash and a page shows it as
  `<div class="alert alert-{type}">{message}</div>`;
- components/admin/index.q requires auth: 302 to /login without a logged-in session.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from flask import Flask, Response, redirect, request, session
from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server

EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


@dataclass(frozen=True)
class Rule:
    """A q:param as the server checks it."""

    name: str
    type: str = "string"
    required: bool = False
    minlength: int | None = None
    maxlength: int | None = None


@dataclass(frozen=True)
class Action:
    rules: tuple[Rule, ...]
    url: str  # the q:redirect url, {application.basePath} already filled
    flash: str  # the q:redirect flash template: {name} is the submitted value


ACTIONS = {
    "contact": Action((Rule("recipientEmail", "email", True), Rule("subject", required=True, minlength=3, maxlength=80),
                       Rule("message", required=True, minlength=10, maxlength=500)),
                      "/thanks", "Email sent successfully to {recipientEmail}!"),
    "login": Action((Rule("username", required=True, minlength=2, maxlength=40),
                     Rule("password", required=True, minlength=8, maxlength=255)),
                    "/admin", "Welcome back, {username}!"),
    "profile": Action((Rule("photo", "file", True),), "/profile", "Photo {photo} uploaded"),
}
PAGES = {
    "index": "<h1>Welcome to the shop</h1><p>Open &amp; friendly</p>",
    "contact": '<h1>Contact us</h1><form method="POST" action="/contact"><input name="recipientEmail"></form>',
    "thanks": "<h1>Thank you</h1>",
    "login": '<h1>Log in</h1><form method="POST" action="/login"><input name="username"></form>',
    "admin/index": "<h1>Dashboard</h1>",
    "profile": '<h1>Profile</h1><form method="POST" enctype="multipart/form-data"><input type="file" name="photo">'
               "</form>",
    "broken": None,
}
GUARDED = {"admin/index"}


def _html(title: str, body: str) -> str:
    return f"<!DOCTYPE html><html><head><title>{title}</title></head><body>{body}</body></html>"


def _component(path: str) -> str | None:
    if path == "/":
        return "index"
    if path.endswith("/"):
        return None
    name = path[1:].removesuffix(".q")
    if name in PAGES:
        return name
    return f"{name}/index" if f"{name}/index" in PAGES else None


def _problem(rule: Rule, value: str | None) -> str | None:
    if not value:
        return f"Parameter '{rule.name}' is required" if rule.required else None
    if rule.type == "email" and not EMAIL.match(value):
        return f"Parameter '{rule.name}' must be a valid email"
    if rule.minlength is not None and len(value) < rule.minlength:
        return f"Parameter '{rule.name}' must be at least {rule.minlength} characters"
    if rule.maxlength is not None and len(value) > rule.maxlength:
        return f"Parameter '{rule.name}' must be at most {rule.maxlength} characters"
    return None


def make_app() -> Flask:
    app = Flask("quantum-app")
    app.secret_key = "quantum-app-test-secret"

    @app.get("/health")
    def health() -> Response:
        return Response('{"status": "healthy"}', content_type="application/json")

    @app.route("/", defaults={"path": ""}, methods=["GET", "HEAD", "POST"])
    @app.route("/<path:path>", methods=["GET", "HEAD", "POST"])
    def component(path: str) -> Any:
        name = _component("/" + path)
        if name is None:
            return Response(_html("404 - Component Not Found", "<h1>404 - Component Not Found</h1>"), 404)
        if PAGES[name] is None:
            return Response(_html("Parse Error", "<p>line 4: unclosed tag &lt;h1&gt;</p>"), 400)
        flash = session.pop("flash", None)  # every request to a component pops it
        if name in GUARDED and "user" not in session.get("quantum_session", {}):
            return redirect("/login", 302)
        if request.method == "POST":
            return _run(name)
        shown = f'<div class="alert alert-{flash["type"]}">{flash["message"]}</div>' if flash else ""
        return Response(_html(name.title(), shown + PAGES[name]))

    def _run(name: str) -> Any:
        action = ACTIONS.get(name)
        if action is None:
            return Response(_html("Method Not Allowed", ""), 405)
        values: dict[str, str] = {}
        for rule in action.rules:
            if rule.type == "file":
                upload = request.files.get(rule.name)
                value = upload.filename if upload is not None and upload.filename else None
            else:
                value = request.form.get(rule.name)
            problem = _problem(rule, value)
            if problem is not None:
                session["flash"] = {"message": problem, "type": "error"}
                return redirect(request.referrer or "/", 302)
            values[rule.name] = value or ""
        if name == "login":
            session["quantum_session"] = {"user": values["username"]}
        session["flash"] = {"message": action.flash.format(**values), "type": "success"}
        return redirect(action.url, 302)

    return app


class _Quiet(WSGIRequestHandler):
    def log(self, type: str, message: str, *args: Any) -> None:
        pass


@dataclass
class Serving:
    server: BaseWSGIServer

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_port}"


@contextmanager
def quantum_app() -> Iterator[Serving]:
    server = make_server("127.0.0.1", 0, make_app(), threaded=True, request_handler=_Quiet)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield Serving(server)
    finally:
        server.shutdown()
        server.server_close()
