"""Runs test cases over HTTP (the test-runner edge): a small asyncio HTTP/1.1 client, a cookie jar
per case, the Referer of the page on writes, one followed redirect to read the flash, a timeout, a
response size cap and retries, every attempt recorded. Assertions are judged by reconciler.core.assertions.

One connection per request (`Connection: close`): a case sends one or two requests, and the
servers under test are local or near, so keep-alive pools would buy little and cost state.
"""

from __future__ import annotations

import asyncio
import json
import os
import ssl
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode, urljoin, urlsplit

from reconciler.core.assertions import Response, evaluate_all
from reconciler.core.durations import parse_duration
from reconciler.core.flash import flash_from_page, flash_from_session_cookie
from reconciler.core.models import TestCase
from reconciler.core.test_results import ERROR, FAILED, PASSED, SKIPPED, Attempt, CaseResult, Target, skip_reason

MAX_BODY_BYTES = 1024 * 1024
MAX_HEADER_BYTES = 64 * 1024
DEFAULT_TIMEOUT = 10.0
DEFAULT_CONCURRENCY = 20
WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


class HttpError(Exception):
    """The exchange failed: no (whole) response to judge."""


# --- the HTTP client -------------------------------------------------------------------------------

@dataclass
class RawResponse:
    status: int
    headers: dict[str, str]
    set_cookies: list[str]
    body: bytes


@dataclass
class CookieJar:
    """Name -> value, for one case against one server (host-only, paths ignored: enough for a test)."""

    cookies: dict[str, str] = field(default_factory=dict)

    def header(self) -> str | None:
        return "; ".join(f"{k}={v}" for k, v in sorted(self.cookies.items())) or None

    def update(self, set_cookies: Sequence[str]) -> None:
        for line in set_cookies:
            first, *attributes = line.split(";")
            name, sep, value = first.partition("=")
            if not sep or not name.strip():
                continue
            expired = any(a.strip().lower().replace(" ", "") in ("max-age=0",) for a in attributes)
            if expired:
                self.cookies.pop(name.strip(), None)
            else:
                self.cookies[name.strip()] = value.strip().strip('"')


def _tls_context() -> ssl.SSLContext:
    return ssl.create_default_context()


async def _read_head(reader: asyncio.StreamReader) -> tuple[int, dict[str, str], list[str]]:
    while True:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except asyncio.LimitOverrunError:
            raise HttpError(f"response headers larger than {MAX_HEADER_BYTES // 1024} KiB") from None
        except asyncio.IncompleteReadError:
            raise HttpError("the connection closed before a response") from None
        lines = head.decode("latin-1").split("\r\n")
        parts = lines[0].split(" ", 2)
        if len(parts) < 2 or not parts[0].startswith("HTTP/") or not (parts[1].isdigit() and len(parts[1]) == 3):
            raise HttpError(f"not an HTTP response: {lines[0][:60]!r}")
        code = int(parts[1])
        headers: dict[str, str] = {}
        cookies: list[str] = []
        for line in lines[1:]:
            name, sep, value = line.partition(":")
            if sep:
                key = name.strip().lower()
                if key == "set-cookie":
                    cookies.append(value.strip())
                headers[key] = value.strip()
        if not 100 <= code <= 199:
            return code, headers, cookies


def _too_large() -> HttpError:
    return HttpError(f"response body larger than {MAX_BODY_BYTES // 1024 // 1024} MB")


async def _read_body(reader: asyncio.StreamReader, headers: dict[str, str]) -> bytes:
    chunks: list[bytes] = []
    size = 0
    try:
        if "chunked" in headers.get("transfer-encoding", "").lower():
            while True:
                line = await reader.readuntil(b"\r\n")
                try:
                    n = int(line.split(b";", 1)[0].strip(), 16)
                except ValueError:
                    raise HttpError("a malformed chunked body") from None
                if n == 0:
                    return b"".join(chunks)
                if size + n > MAX_BODY_BYTES:
                    raise _too_large()
                chunks.append(await reader.readexactly(n))
                await reader.readexactly(2)
                size += n
        length = headers.get("content-length")
        if length is not None:
            try:
                expected = int(length)
            except ValueError:
                raise HttpError(f"an invalid Content-Length {length[:30]!r}") from None
            if expected > MAX_BODY_BYTES:
                raise _too_large()
            return await reader.readexactly(expected)
        while True:
            data = await reader.read(65536)
            if not data:
                return b"".join(chunks)
            size += len(data)
            if size > MAX_BODY_BYTES:
                raise _too_large()
            chunks.append(data)
    except asyncio.IncompleteReadError as exc:
        raise HttpError(f"the response ended early after {len(exc.partial)} body bytes") from None


async def request(method: str, url: str, headers: dict[str, str], body: bytes | None) -> RawResponse:
    """One HTTP/1.1 exchange on a new connection."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise HttpError(f"not an http(s) URL: {url!r}")
    tls = parts.scheme == "https"
    port = parts.port or (443 if tls else 80)
    try:
        reader, writer = await asyncio.open_connection(
            parts.hostname, port, ssl=_tls_context() if tls else None, limit=MAX_HEADER_BYTES)
    except OSError as exc:
        # asyncio says "Connect call failed (address)"; the errno says what happened (Connection refused)
        why = os.strerror(exc.errno) if exc.errno else (exc.strerror or str(exc))
        raise HttpError(f"cannot connect to {parts.hostname}:{port}: {why}") from None
    try:
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        host = parts.hostname if parts.port is None else f"{parts.hostname}:{parts.port}"
        lines = [f"{method} {target} HTTP/1.1", f"Host: {host}", "Connection: close", "User-Agent: qrm-tests"]
        lines += [f"{k}: {v}" for k, v in headers.items()]
        if body is not None:
            lines.append(f"Content-Length: {len(body)}")
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + (body or b""))
        await writer.drain()
        status, response_headers, cookies = await _read_head(reader)
        data = b"" if method == "HEAD" or status in (204, 304) else await _read_body(reader, response_headers)
        return RawResponse(status, response_headers, cookies, data)
    except (ConnectionError, OSError) as exc:
        raise HttpError(f"connection failed: {exc}") from None
    finally:
        writer.close()


# --- flash messages and selectors ------------------------------------------------------------------

def _flash_from_page(body: str) -> str | None:
    """The text of the page's flash markup (`alert alert-success`, `flash`, role alert, ...): core.flash."""
    return flash_from_page(body)


def _flash_from_cookie(value: str | None) -> str | None:
    """The flash in a `session` cookie: Flask's signed cookie, either form, and the older forms (core.flash)."""
    return flash_from_session_cookie(value)


def select(kind: str, path: str, body: str) -> list[str]:
    """The texts (or attribute values) that an XPath or a CSS selector picks in an HTML body."""
    import lxml.etree
    import lxml.html

    try:
        root = lxml.html.document_fromstring(body or "<html></html>")
    except (ValueError, lxml.etree.ParserError) as exc:
        raise ValueError(f"the body is not HTML: {exc}") from None
    if kind == "css":
        try:
            from lxml.cssselect import CSSSelector
        except ImportError:
            raise ValueError("css assertions need the cssselect package, which is not installed") from None
        try:
            found: Any = CSSSelector(path)(root)
        except Exception as exc:  # cssselect's SelectorError and friends
            raise ValueError(f"invalid CSS selector: {exc}") from None
    else:
        try:
            found = root.xpath(path)
        except lxml.etree.XPathError as exc:
            raise ValueError(f"invalid XPath: {exc}") from None
    if not isinstance(found, list):
        return [str(found)]
    return [" ".join(x.text_content().split()) if isinstance(x, lxml.html.HtmlElement) else str(x) for x in found]


# --- one case --------------------------------------------------------------------------------------

def _url(base_url: str, path: str, query: dict[str, str]) -> str:
    url = base_url.rstrip("/") + (path if path.startswith("/") else "/" + path)
    return url + ("?" + urlencode(query) if query else "")


async def _attempt(case: TestCase, target: Target) -> Attempt:
    req = case.request
    jar = CookieJar()
    headers = dict(req.headers)
    body: bytes | None = None
    if req.form is not None:
        form = {k: ("true" if v is True else "false" if v is False else str(v)) for k, v in req.form.items()}
        body = urlencode(form).encode()
        headers.setdefault("Content-Type", "application/x-www-form-urlencoded")
    elif req.json_body is not None:
        body = json.dumps(req.json_body).encode()
        headers.setdefault("Content-Type", "application/json")
    elif req.method in WRITE_METHODS:
        body = b""
    url = _url(target.base_url, req.path, req.query)
    if req.method in WRITE_METHODS:
        headers.setdefault("Referer", _url(target.base_url, req.path, {}))
    started = time.perf_counter()
    try:
        raw = await request(req.method, url, headers, body)
    except HttpError as exc:
        return Attempt(None, (time.perf_counter() - started) * 1000, error=str(exc))
    elapsed = (time.perf_counter() - started) * 1000
    jar.update(raw.set_cookies)
    location = raw.headers.get("location")
    flash: str | None = None
    followed: str | None = None
    wants_flash = any(a.flash is not None for a in case.expect)  # pages are parsed for a flash only then
    if raw.status in (301, 302, 303, 307, 308) and location:
        flash = _flash_from_cookie(jar.cookies.get("session"))
        cookie = jar.header()
        try:
            nxt = await request("GET", urljoin(url, location), {"Cookie": cookie} if cookie else {}, None)
        except HttpError as exc:
            if wants_flash:  # only the flash needs the followed page
                return Attempt(raw.status, elapsed, error=f"following the redirect to {location}: {exc}")
        else:
            jar.update(nxt.set_cookies)
            followed = nxt.body.decode("utf-8", "replace")
            page = _flash_from_page(followed) if wants_flash else None
            # both: a page's own alert or status markup must not hide the flash the cookie carries
            flash = "\n".join(dict.fromkeys(t for t in (page, flash) if t)) or None
    text = raw.body.decode("utf-8", "replace")
    if flash is None and raw.status < 300 and wants_flash:
        flash = _flash_from_page(text)
    response = Response(raw.status, raw.headers, text, elapsed, location, flash, followed)
    return Attempt(raw.status, elapsed, tuple(evaluate_all(case.expect, response, select)))


def _skip_reason(case: TestCase, target: Target) -> str | None:
    reason = skip_reason(case, target)
    if reason is not None:
        return reason
    if case.type == "query" or case.request.sql is not None:
        return "a query case: qrm tests run passes it to reconciler.edges.query_tests, not the HTTP runner"
    return None


async def run_case(case: TestCase, target: Target, limit: asyncio.Semaphore) -> CaseResult:
    reason = _skip_reason(case, target)
    if reason is not None:
        return CaseResult(case.id, case.name, case.type, target.environment, SKIPPED, reason=reason)
    timeout = parse_duration(case.timeout) if case.timeout else DEFAULT_TIMEOUT
    attempts: list[Attempt] = []
    async with limit:
        started = time.perf_counter()
        for _ in range(case.retries + 1):
            try:
                attempt = await asyncio.wait_for(_attempt(case, target), timeout)
            except TimeoutError:
                attempt = Attempt(None, timeout * 1000, error=f"timed out after {timeout:g}s")
            attempts.append(attempt)
            if attempt.passed:
                break
        duration = (time.perf_counter() - started) * 1000
    last = attempts[-1]
    if last.passed:
        outcome, why = PASSED, ""
    elif last.error is not None:
        outcome, why = ERROR, last.error
    else:
        outcome, why = FAILED, "; ".join(last.failures())
    return CaseResult(case.id, case.name, case.type, target.environment, outcome, tuple(attempts), why, duration)


def run_cases(
    cases: Sequence[TestCase], targets: Sequence[Target], concurrency: int = DEFAULT_CONCURRENCY,
    on_result: Callable[[CaseResult], None] | None = None,
) -> list[CaseResult]:
    """Every case against every target, at most `concurrency` at once; results in (target, case) order."""

    async def main() -> list[CaseResult]:
        limit = asyncio.Semaphore(concurrency)

        async def one(case: TestCase, target: Target) -> CaseResult:
            result = await run_case(case, target, limit)
            if on_result is not None:
                on_result(result)
            return result

        return list(await asyncio.gather(*(one(c, t) for t in targets for c in cases)))

    return asyncio.run(main())
