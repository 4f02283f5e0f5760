"""Use cases of `qrm token create|list|revoke`, and the token check of `qrm serve`.

Tokens live in qrm.yaml under `tokens:` (name, scopes, created, sha256 of the token), so adding and
revoking one is a reviewed commit like any other setting; the token itself is shown once by `create`
and stored nowhere. Edits keep qrm.yaml's comments and layout, and are made under a lock, re-reading
the file, so two creates at once both land.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import UTC, datetime

from reconciler.core import tokens as core_tokens
from reconciler.core.errors import QrmError
from reconciler.core.models import ApiToken
from reconciler.edges import files, manifest_files, settings_file
from reconciler.edges.locks import workspace_lock
from reconciler.flows.workspace import Workspace


@dataclass(frozen=True)
class NewToken:
    info: ApiToken
    token: str  # the only time it exists outside the caller's hands: print it once

    def __repr__(self) -> str:  # never through a log line or a traceback
        return f"NewToken(info={self.info!r}, token='***')"


def list_tokens(ws: Workspace) -> list[ApiToken]:
    """The tokens in qrm.yaml as it is now (read again, not the settings the workspace was opened with)."""
    return list(manifest_files.load_settings(ws.root).tokens)


def create_token(ws: Workspace, name: str, scopes: list[str]) -> NewToken:
    unknown = [s for s in scopes if s not in core_tokens.SCOPES]
    if unknown or not scopes:
        problem = f"unknown scope {unknown[0]!r}" if unknown else "a token needs at least one scope"
        raise QrmError(f"{problem}; expected: {', '.join(core_tokens.SCOPES)}")
    token = core_tokens.PREFIX + secrets.token_urlsafe(32)  # 256 random bits
    created = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    ordered = [s for s in core_tokens.SCOPES if s in scopes]
    try:
        info = ApiToken(name=name, scopes=ordered, created=created, sha256=core_tokens.digest(token))
    except ValueError:
        raise QrmError(f"invalid token name {name!r}: lower-case letters, digits, '.', '_' and '-', starting and "
                       "ending with a letter or digit") from None
    with workspace_lock(ws.state_dir / "settings.lock", timeout=30, what="qrm.yaml edit"):
        if any(t.name == name for t in list_tokens(ws)):
            raise QrmError(f"a token named {name!r} exists already; revoke it first (qrm token revoke {name}) or "
                           "choose another name")
        _write(ws, settings_file.with_token(_text(ws), {"name": name, "scopes": ordered, "created": created,
                                                         "sha256": info.sha256}))
    return NewToken(info, token)


def revoke_token(ws: Workspace, name: str) -> ApiToken:
    with workspace_lock(ws.state_dir / "settings.lock", timeout=30, what="qrm.yaml edit"):
        current = {t.name: t for t in list_tokens(ws)}
        if name not in current:
            raise QrmError(f"no token named {name!r}; tokens: {', '.join(sorted(current)) or '(none)'}")
        _write(ws, settings_file.without_token(_text(ws), name))
    return current[name]


def authenticate(ws: Workspace, presented: str) -> ApiToken | None:
    """The token of qrm.yaml (as it is now) that `presented` is, or None."""
    return core_tokens.find(list_tokens(ws), presented)


def check_bind(ws: Workspace, host: str) -> None:
    """Refuse to listen beyond this machine while qrm.yaml has no token: an API other machines can reach
    is one meant to be called with tokens, so a bind to 0.0.0.0 without any is a mistake (the docs and
    /health would be open to every network it is on, and nothing else usable)."""
    if not core_tokens.is_loopback(host) and not list_tokens(ws):
        raise QrmError(f"refusing to listen on {host} without a token (every request but /health needs one): "
                       "create one with qrm token create NAME --scope read, or listen on 127.0.0.1")


def _text(ws: Workspace) -> str:
    path = ws.root / "qrm.yaml"
    return path.read_text(encoding="utf-8") if path.is_file() else ""


def _write(ws: Workspace, text: str) -> None:
    files.write_atomic(ws.root / "qrm.yaml", text, root=ws.root)
    manifest_files.load_settings(ws.root)  # what was written reads back as valid settings
