"""Who is looking at the dashboard: a browser session in an HttpOnly, SameSite=Strict cookie, and the check
that a form post comes from the dashboard itself.

The dashboard uses the API's tokens. A person signs in either by pasting a token into the sign-in form (the
cookie then holds that token, so its scopes apply and revoking it in qrm.yaml signs the browser out on the
next request, on every replica), or through the one-time login URL `qrm serve` prints at start: a random
ticket, good once and for ten minutes, that opens a session of this server process with every scope (the
person who started the server owns the workspace), kept in memory and lost when the server stops.

Cross-site requests: the cookie is SameSite=Strict, so another site's form post arrives without it; and
every post must carry the page's CSRF token (a digest of the session, in a hidden field or the X-CSRF-Token
header htmx sends), which another site cannot read. A post with an Origin of another host is refused too.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time
from dataclasses import dataclass
from typing import Annotated
from urllib.parse import urlsplit

from fastapi import Depends, Request

from reconciler.core.models import ApiToken
from reconciler.core.tokens import find
from reconciler.flows.workspace import Workspace
from reconciler.server.auth import workspace

COOKIE = "qrm_session"
TICKET_SECONDS = 600
SESSION_SECONDS = 12 * 3600
CONSOLE = "console"  # the name a one-time login's session goes by in the access log and on the pages
ALL_SCOPES = ("read", "write", "secrets")


class SignInNeeded(Exception):
    """No session, or one that is no longer good: the pages answer with the sign-in form (401)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class Forbidden(Exception):
    """A session without the scope, or a post without this page's CSRF token (403)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class Viewer:
    """The person behind a page request: a name and scopes, and the CSRF token their forms carry."""

    name: str
    scopes: tuple[str, ...]
    csrf: str
    by_cookie: bool = True  # False: an API token header (a script), which no other site can make a browser send

    def can(self, scope: str) -> bool:
        return scope in self.scopes


class Sessions:
    """One-time tickets and the sessions they opened, of this server process."""

    def __init__(self, ticket: str | None = None) -> None:
        """`ticket`: the one `qrm serve` printed before the app existed (it hands it over in the environment)."""
        self._lock = threading.Lock()
        self._tickets: dict[str, float] = {}  # ticket -> when it stops being good
        self._sessions: dict[str, float] = {}
        if ticket:
            self._tickets[ticket] = time.monotonic() + TICKET_SECONDS

    def ticket(self) -> str:
        """A new one-time login ticket (printed by `qrm serve` as /ui/login/TICKET)."""
        ticket = secrets.token_urlsafe(24)
        with self._lock:
            self._tickets[ticket] = time.monotonic() + TICKET_SECONDS
        return ticket

    def redeem(self, ticket: str) -> str | None:
        """The cookie value of a new session for a good ticket, used up now; None for any other ticket."""
        with self._lock:
            now = time.monotonic()
            found = next((t for t in self._tickets if hmac.compare_digest(t, ticket)), None)
            good = found is not None and self._tickets.pop(found) > now
            if not good:
                return None
            session = secrets.token_urlsafe(32)
            self._sessions[session] = now + SESSION_SECONDS
            return "s." + session

    def is_open(self, session: str) -> bool:
        with self._lock:
            found = next((s for s in self._sessions if hmac.compare_digest(s, session)), None)
            return found is not None and self._sessions[found] > time.monotonic()

    def close(self, session: str) -> None:
        with self._lock:
            self._sessions.pop(session, None)


def token_cookie(token: str) -> str:
    return "t." + token


def csrf_of(cookie: str) -> str:
    """The CSRF token of a session: a digest of its cookie, which only a page of this origin can show."""
    return hashlib.sha256(b"qrm csrf\0" + cookie.encode()).hexdigest()[:32]


def _sessions(request: Request) -> Sessions:
    found: Sessions = request.app.state.sessions
    return found


def viewer(request: Request, ws: Annotated[Workspace, Depends(workspace)]) -> Viewer:
    """The viewer of a page request, from the session cookie (or an API token header, for scripts and tests)."""
    cookie = request.cookies.get(COOKIE, "")
    presented = request.headers.get("x-qrm-token") or request.headers.get("authorization", "").removeprefix(
        "Bearer ").strip()
    by_cookie = bool(cookie)
    if not cookie and presented:
        cookie = token_cookie(presented)
    if not cookie:
        raise SignInNeeded("sign in to see the dashboard")
    kind, _, value = cookie.partition(".")
    if kind == "s" and _sessions(request).is_open(value):
        request.state.token_name = CONSOLE
        return Viewer(CONSOLE, ALL_SCOPES, csrf_of(cookie), by_cookie)
    if kind == "t" and value:
        token: ApiToken | None = find(ws.settings.tokens, value)
        if token is not None:
            request.state.token_name = token.name
            return Viewer(token.name, tuple(token.scopes), csrf_of(cookie), by_cookie)
    raise SignInNeeded("your session has ended or its token was revoked: sign in again")


def require_page(scope: str) -> object:
    """A dependency: the viewer, who must have `scope` (read for every page; write or secrets for actions)."""

    def check(request: Request, seen: Annotated[Viewer, Depends(viewer)]) -> Viewer:
        if not seen.can(scope):
            raise Forbidden(f"{seen.name} has no {scope!r} scope")
        return seen

    return Depends(check)


async def check_post(request: Request, seen: Viewer) -> None:
    """Refuse a state-changing request that did not come from one of this server's pages."""
    if not seen.by_cookie:
        return  # a token header is no ambient credential: only its holder can send it
    origin = request.headers.get("origin")
    if origin and origin != "null" and urlsplit(origin).netloc != request.headers.get("host", ""):
        raise Forbidden(f"a cross-site request (from {origin}) is refused")
    if request.headers.get("sec-fetch-site") == "cross-site":
        raise Forbidden("a cross-site request is refused")
    sent = request.headers.get("x-csrf-token")
    if sent is None:
        form = await request.form()
        field = form.get("csrf")
        sent = field if isinstance(field, str) else None
    if sent is None or not hmac.compare_digest(sent, seen.csrf):
        raise Forbidden("this form is not from this dashboard (its CSRF token is missing or wrong): reload the page")
