"""What each request works on: the workspace (its settings read again), and the caller's token.

A token comes as `Authorization: Bearer <token>` or `X-QRM-Token: <token>`; it is looked up by its
sha256 among qrm.yaml's tokens in constant time (core/tokens). No token or an unknown one is 401, a
token without the scope a path needs is 403, each with a JSON reason that never repeats the token.
The token's name (never the token) is what the access log shows.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from reconciler.core.models import ApiToken
from reconciler.core.tokens import find
from reconciler.edges import manifest_files
from reconciler.flows.workspace import Workspace

# Declared as security schemes so /docs offers "Authorize"; checked by `require`, not by FastAPI.
bearer = HTTPBearer(auto_error=False, description="qrm token create NAME --scope read")
header = APIKeyHeader(name="X-QRM-Token", auto_error=False, description="the same token, in a header of its own")


class ApiError(Exception):
    """An answer other than 2xx, with its one-line reason ({"error": reason})."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


def workspace(request: Request) -> Workspace:
    """The workspace of the app, with qrm.yaml read again (a revoked token is refused from the next request)."""
    base: Workspace = request.app.state.workspace
    return dataclasses.replace(base, settings=manifest_files.load_settings(base.root))


def require(scope: str) -> Callable[..., ApiToken]:
    """A dependency that lets a request through with a token that has `scope`, and names its caller."""

    def check(request: Request, ws: Annotated[Workspace, Depends(workspace)],
              credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
              token_header: Annotated[str | None, Depends(header)]) -> ApiToken:
        presented = credentials.credentials if credentials is not None else token_header
        if not presented:
            raise ApiError(401, "this path needs a token: send Authorization: Bearer <token> (or X-QRM-Token); "
                                "create one with qrm token create NAME --scope read")
        token = find(ws.settings.tokens, presented)
        if token is None:
            raise ApiError(401, "the token is not known (revoked, mistyped, or of another workspace)")
        request.state.token_name = token.name
        if scope not in token.scopes:
            raise ApiError(403, f"token {token.name!r} has no {scope!r} scope (it has: {', '.join(token.scopes)})")
        return token

    return check
