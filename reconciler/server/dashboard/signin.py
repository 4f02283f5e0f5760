"""Signing in and out of the dashboard: the sign-in form (a token pasted in), the one-time login URL that
`qrm serve` prints, and sign-out. Each sets or clears the session cookie (HttpOnly, SameSite=Strict, Secure
when the request came over HTTPS) and goes on to the overview."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from reconciler.core.tokens import find
from reconciler.flows.workspace import Workspace
from reconciler.server.auth import workspace
from reconciler.server.dashboard import sessions
from reconciler.server.dashboard.render import page

router = APIRouter(include_in_schema=False)


def _signed_in(request: Request, cookie: str) -> Response:
    answer = RedirectResponse("/ui/", status_code=303)
    answer.set_cookie(sessions.COOKIE, cookie, max_age=sessions.SESSION_SECONDS, path="/", httponly=True,
                      samesite="strict", secure=request.url.scheme == "https")
    return answer


@router.get("/ui/login")
def login_form(request: Request) -> HTMLResponse:
    return page(request, "login.html", None)


@router.post("/ui/login")
def login(request: Request, ws: Annotated[Workspace, Depends(workspace)],
          token: Annotated[str, Form()] = "") -> Response:
    if find(ws.settings.tokens, token.strip()) is None:
        return page(request, "login.html", None, status=401,
                    problem="that token is not known (revoked, mistyped, or of another workspace)")
    return _signed_in(request, sessions.token_cookie(token.strip()))


@router.get("/ui/login/{ticket}")
def login_once(request: Request, ticket: str) -> Response:
    found: sessions.Sessions = request.app.state.sessions
    cookie = found.redeem(ticket)
    if cookie is None:
        return page(request, "login.html", None, status=401,
                    problem="this login link was used already or is older than ten minutes: sign in with a token, "
                            "or restart qrm serve for a new link")
    return _signed_in(request, cookie)


@router.post("/ui/logout")
async def logout(request: Request, seen: Annotated[sessions.Viewer, Depends(sessions.viewer)]) -> Response:
    await sessions.check_post(request, seen)
    cookie = request.cookies.get(sessions.COOKIE, "")
    if cookie.startswith("s."):
        found: sessions.Sessions = request.app.state.sessions
        found.close(cookie[2:])
    answer = RedirectResponse("/ui/login", status_code=303)
    answer.delete_cookie(sessions.COOKIE, path="/", httponly=True, samesite="strict")
    return answer
