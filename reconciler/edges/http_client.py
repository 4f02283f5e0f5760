"""HTTP over aiohttp (the HTTP edge): the exchanges of `qrm tests run` and the HTTP(S) health checks of
`qrm services health`. (Notifications post through their own edge, notify_http.)

Test cases: a `Pool` holds one keep-alive ClientSession (one TCPConnector) per environment's base URL,
closed when the run ends; each case attempt gets a `Browser` on it with its own aiohttp.CookieJar
(real cookie rules: domain, path, expiry; `unsafe` so that IP hosts such as 127.0.0.1 keep cookies).
Bodies are decompressed (gzip, deflate) and de-chunked by aiohttp; proxies come from the environment
(HTTP_PROXY, HTTPS_PROXY, NO_PROXY, read once per run; never for loopback); TLS is verified. A header
line over 64 KiB and a body over 1 MiB (counted while reading, after decompression) are errors. Every
failure is an `HttpError` with a one-line reason.

Health checks: one GET per check, redirects not followed, the body read up to 64 KiB and dropped, each
check under its own asyncio timeout around resolve + connect + TLS + request + response. A check knows
its phase (a context variable set by aiohttp's trace hooks, the resolver and the TLS context), so a
timeout says what it was waiting for. Names are looked up by a function the caller gives (the sockets
edge's daemon-thread lookups), so a resolver that hangs costs each check its timeout and nothing more.

aiohttp, not httpx: PERF-NOTES measured a shared httpx.AsyncClient collapsing above ~10 concurrent
requests (and PoolTimeout at 1,000), where aiohttp's ClientSession holds ~12,000 requests/s at c=100.
"""

from __future__ import annotations

import ast
import asyncio
import contextvars
import errno
import ipaddress
import os
import re
import socket
import ssl
import time
import urllib.request
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from http.cookies import SimpleCookie
from types import SimpleNamespace
from typing import Any

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.http_exceptions import (
    BadHttpMessage,
    BadStatusLine,
    ContentEncodingError,
    ContentLengthError,
    LineTooLong,
    TransferEncodingError,
)
from yarl import URL

from reconciler.core.health import CRITICAL, CheckResult, CheckSpec, http_status

MAX_BODY_BYTES = 1024 * 1024
MAX_HEADER_BYTES = 64 * 1024
HEALTH_BODY_BYTES = 64 * 1024  # a health check reads this much of a body, then drops the connection
USER_AGENT = "qrm-tests"
HEALTH_USER_AGENT = "qrm-health/1"
# Idle keep-alive connections are dropped after 1 s, below common server idle timeouts (gunicorn: 2 s),
# so that a POST is not sent on a connection the server is closing (aiohttp retries only idempotent ones).
KEEPALIVE_SECONDS = 1.0
_NO_TIMEOUT = aiohttp.ClientTimeout(total=None, connect=None, sock_connect=None, sock_read=None)
_HANDSHAKE = "in the TLS handshake"

Lookup = Callable[[str, int], Awaitable[list[str]]]


class HttpError(Exception):
    """The exchange failed: no (whole) response to judge."""


@dataclass(frozen=True)
class Upload:
    """One file of a multipart/form-data body."""

    field: str
    filename: str
    content_type: str
    data: bytes


@dataclass(frozen=True)
class Reply:
    status: int
    headers: dict[str, str]  # lower-case names; of a repeated header, the last value
    body: bytes

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", "replace")


class _EnvProxies:
    """The proxy for each (scheme, host), as HTTP_PROXY, HTTPS_PROXY and NO_PROXY say (read once); localhost and
    loopback addresses are never proxied, as Go's ProxyFromEnvironment (Consul's checks) decides. aiohttp's own
    trust_env asks the environment and ~/.netrc in worker threads on every request: ~0.4 s of 1,000 cases."""

    def __init__(self) -> None:
        self._env = urllib.request.getproxies_environment()
        self._known: dict[tuple[str, str], URL | None] = {}

    def __call__(self, url: URL) -> URL | None:
        if not self._env:
            return None
        key = (url.scheme, url.host or "")
        if key not in self._known:
            proxy = self._env.get(url.scheme)
            bypass = not url.host or _is_loopback(url.host) or urllib.request.proxy_bypass(url.host)  # NO_PROXY
            self._known[key] = URL(proxy) if proxy and not bypass else None
        return self._known[key]


def _is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


# --- test cases ------------------------------------------------------------------------------------

class Pool:
    """One keep-alive ClientSession per base URL (an environment), created on first use; `close` ends them.
    Concurrency is bounded by the caller, so the connectors have no limit of their own."""

    def __init__(self) -> None:
        self._sessions: dict[str, aiohttp.ClientSession] = {}
        self._proxies = _EnvProxies()

    def browser(self, base_url: str) -> Browser:
        session = self._sessions.get(base_url)
        if session is None:
            session = self._sessions[base_url] = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=0, keepalive_timeout=KEEPALIVE_SECONDS),
                cookie_jar=aiohttp.DummyCookieJar(),  # each case has its own jar (Browser)
                headers={"User-Agent": USER_AGENT}, timeout=_NO_TIMEOUT,
                max_line_size=MAX_HEADER_BYTES, max_field_size=MAX_HEADER_BYTES)
        return Browser(session, self._proxies)

    async def close(self) -> None:
        for session in self._sessions.values():
            await session.close()
        self._sessions.clear()

    async def __aenter__(self) -> Pool:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


class Browser:
    """One case attempt's client: the environment's pooled connections and a cookie jar of its own."""

    def __init__(self, session: aiohttp.ClientSession, proxies: Callable[[URL], URL | None]) -> None:
        self._session = session
        self._proxies = proxies
        self._jar = aiohttp.CookieJar(unsafe=True)

    def cookie(self, name: str) -> str | None:
        """The value of the cookie `name` the jar holds (the last one set, whatever its domain or path)."""
        found = None
        for morsel in self._jar:
            if morsel.key == name:
                found = morsel.value
        return found

    async def request(self, method: str, url: str, headers: Mapping[str, str], *, body: bytes | None = None,
                      form: Mapping[str, str] | None = None, files: Sequence[Upload] = ()) -> Reply:
        """One exchange; with `files`, a multipart/form-data body of the `form` fields and the files."""
        try:
            target = URL(url)
        except ValueError as exc:
            raise HttpError(f"not a valid URL: {url!r} ({exc})") from None
        if target.scheme not in ("http", "https") or not target.host:
            raise HttpError(f"not an http(s) URL: {url!r}")
        sent = dict(headers)
        cookies = "; ".join(f"{m.key}={m.coded_value}" for m in self._jar.filter_cookies(target).values())
        if cookies:
            sent["Cookie"] = f"{sent['Cookie']}; {cookies}" if sent.get("Cookie") else cookies
        data: Any = body
        if files:
            multipart = aiohttp.FormData()
            for name, value in (form or {}).items():
                multipart.add_field(name, value)
            for upload in files:
                multipart.add_field(upload.field, upload.data, filename=upload.filename,
                                    content_type=upload.content_type)
            data = multipart
        try:
            async with self._session.request(method, target, headers=sent, data=data, allow_redirects=False,
                                             proxy=self._proxies(target)) as resp:
                self._jar.update_cookies(_cookies_for(resp.cookies, resp.url), resp.url)
                content = b"" if method == "HEAD" else await _read_capped(resp)
                return Reply(resp.status, {_text(k).lower(): _text(v) for k, v in resp.headers.items()}, content)
        except (aiohttp.ClientError, OSError, ValueError) as exc:
            raise HttpError(_request_error(exc, target)) from None


def _cookies_for(cookies: SimpleCookie, url: URL) -> SimpleCookie:
    """The cookies a response may set: none whose Domain is a single label other than the host's own
    (`Domain=com` from shop.example.com). aiohttp's jar checks that a Domain covers the host, but has no public
    suffix list: such a cookie would go to every .com host a redirect leads to, where a browser drops it
    (RFC 6265 5.3, step 5)."""
    kept = SimpleCookie()
    host = (url.raw_host or "").lower()
    for name, morsel in cookies.items():
        domain = morsel["domain"].strip(".").lower()
        if domain and "." not in domain and domain != host:
            continue
        kept[name] = morsel
    return kept


async def _read_capped(resp: aiohttp.ClientResponse) -> bytes:
    if resp.content_length is not None and resp.content_length > MAX_BODY_BYTES:
        raise HttpError(_too_large())
    chunks: list[bytes] = []
    size = 0
    try:
        async for chunk in resp.content.iter_any():
            size += len(chunk)
            if size > MAX_BODY_BYTES:
                raise HttpError(_too_large())
            chunks.append(chunk)
    except aiohttp.ClientPayloadError as exc:
        raise HttpError(_body_problem(exc, resp, size) or f"the response ended early after {size} body bytes") from None
    return b"".join(chunks)


def _too_large() -> str:
    return f"response body larger than {MAX_BODY_BYTES // 1024 // 1024} MB"


# What a failed exchange reads as, by kind of failure (_failure): a test case's words, and a health
# check's, which add the phase the check was in. Fields: where (host:port), host, phase, detail.
_CASE_WORDS = {
    "response": "{detail}",
    "tls-verify": "TLS handshake with {where} failed: certificate verify failed ({detail})",
    "tls": "TLS handshake with {where} failed: {detail}",
    "tls-later": "TLS handshake with {where} failed: {detail}",
    "resolve": "cannot resolve {host}: {detail}",
    "refused": "cannot connect to {where}: {detail}",
    "connect": "cannot connect to {where}: {detail}",
    "reset": "connection reset by peer",
    "closed": "the connection closed before a response",
    "closed-mid": "the connection closed mid-response",
    "url": "not a valid URL: {detail}",
    "os": "connection failed: {detail}",
    "other": "the request failed: {detail}",
}
_CHECK_WORDS = _CASE_WORDS | {
    "tls-verify": "TLS handshake failed: certificate verify failed ({detail})",
    "tls": "TLS handshake failed: {detail}",
    "tls-later": "TLS error {phase}: {detail}",
    "refused": "connection refused by {where}",
    "connect": "{detail} ({phase})",
    "reset": "connection reset by peer ({phase})",
    "closed": "connection closed without a response",
    "closed-mid": "connection closed mid-response ({phase})",
    "os": "{detail} ({phase})",
    "other": "check failed {phase}: {detail}",
}


def _request_error(exc: BaseException, url: URL) -> str:
    """A one-line reason for a failed exchange of a test case."""
    kind, detail = _failure(exc)
    return _CASE_WORDS[kind].format(where=f"{url.host}:{url.port}", host=url.host, phase="", detail=detail)


# --- what both read into a reason ------------------------------------------------------------------

def _failure(exc: BaseException, phase: str | None = None) -> tuple[str, str]:
    """What kind of failure `exc` is (a key of _CASE_WORDS) and its detail, for a test case and a check (in
    `phase`) alike."""
    found = _response_problem(exc)
    if found is not None:
        return "response", found
    cause = _root(exc)
    if isinstance(cause, ssl.SSLCertVerificationError):
        return "tls-verify", str(cause.verify_message)
    if isinstance(cause, ssl.SSLError):
        return "tls" if phase in (None, _HANDSHAKE) else "tls-later", _ssl_detail(cause)
    if isinstance(cause, socket.gaierror):
        return "resolve", str(cause.strerror or cause)
    if isinstance(cause, ConnectionRefusedError) or (isinstance(cause, OSError) and cause.errno == errno.ECONNREFUSED):
        return "refused", _strerror(cause)
    if isinstance(exc, aiohttp.ClientConnectorError):
        return "connect", _strerror(cause)
    if _is_reset(cause):
        return "reset", ""
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        # aiohttp gives the half-read head, if any, instead of a text
        return ("closed" if isinstance(exc.message, str) else "closed-mid"), ""
    if isinstance(exc, aiohttp.InvalidURL):
        return "url", f"{_text(str(exc.url))!r}" + (f" ({exc.description})" if exc.description else "")
    if isinstance(cause, OSError):
        return "os", _strerror(cause)
    return "other", f"{type(exc).__name__}: {_one_line(str(exc))}"


def _chain(exc: BaseException) -> list[BaseException]:
    """The exception and its causes (aiohttp wraps what the parser or the socket raised)."""
    found: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in found:
        found.append(current)
        current = current.__cause__ if current.__suppress_context__ else (current.__cause__ or current.__context__)
    return found


def _root(exc: BaseException) -> BaseException:
    return _chain(exc)[-1]


def _response_problem(exc: BaseException) -> str | None:
    """The reason for a response aiohttp's parser refused, or None when the parser did not fail."""
    for cause in _chain(exc):
        if isinstance(cause, LineTooLong):
            return f"response headers larger than {MAX_HEADER_BYTES // 1024} KiB"
        if isinstance(cause, BadStatusLine):
            return f"not an HTTP response: {_status_line(cause.message)[:60]!r}"
        if isinstance(cause, ContentEncodingError):  # a coding aiohttp has no decoder for (br without Brotli, ...)
            coding = _one_line(str(cause.message)).split(". ")[0].rpartition(": ")[2]
            return f"the body's Content-Encoding cannot be decoded: {coding}"
        if isinstance(cause, TransferEncodingError):
            text = _one_line(str(cause.message))
            if text.startswith("Not enough data"):  # the connection closed in the middle of a chunk
                return "the response ended in the middle of a chunk"
            # the pure-Python parser: the message is the chunk-size line it could not read
            return f"a malformed response: invalid chunk size {text[:60]!r}"
        if isinstance(cause, BadHttpMessage):
            return f"a malformed response: {_one_line(str(cause.message)).rstrip(':')}"
    return None


def _body_problem(exc: aiohttp.ClientPayloadError, resp: aiohttp.ClientResponse, size: int) -> str | None:
    """Why reading a body failed, when more is known than that it ended early: a reset, a body that does not
    decode as its Content-Encoding says, a malformed chunk (aiohttp wraps the parser's error in a payload error)."""
    if _was_reset(exc):
        return f"connection reset by peer after {size} body bytes"
    for cause in _chain(exc):
        if isinstance(cause, ContentEncodingError):
            if isinstance(_root(exc), ContentEncodingError):  # no decoder failed: one was missing
                return _response_problem(cause)
            coding = _text(resp.headers.get("Content-Encoding", "")).strip()[:40]
            return f"the body is not valid {coding} data (Content-Encoding: {coding})"
        if isinstance(cause, ContentLengthError) or (  # the body ended early: the caller says so, with its size
                isinstance(cause, TransferEncodingError) and str(cause.message).startswith("Not enough data")):
            return None
        if isinstance(cause, LineTooLong):
            return f"a malformed chunked body: a chunk-size line larger than {MAX_HEADER_BYTES // 1024} KiB"
        if isinstance(cause, BadHttpMessage):
            return _response_problem(cause)
    return None


def _status_line(message: str) -> str:
    """The line the parser quotes in its message (b'...' from llhttp, '...' from the Python parser)."""
    match = re.search(r"b?('(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\")", message)
    if match is None:
        return message.strip().splitlines()[0] if message.strip() else ""
    try:
        quoted = ast.literal_eval(match.group(0))
    except (ValueError, SyntaxError):
        return match.group(1)[1:-1]
    return quoted.decode("latin-1") if isinstance(quoted, bytes) else str(quoted)


def _one_line(text: str) -> str:
    lines = text.strip().splitlines()
    return lines[0].strip() if lines else ""


def _text(value: str) -> str:
    """A header name or value as text without lone surrogates: aiohttp decodes header bytes as UTF-8 with
    surrogateescape, and a surrogate cannot be written to a report or a terminal. Bytes that are not UTF-8
    become U+FFFD."""
    try:
        return value.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    except UnicodeEncodeError:  # a surrogate that surrogateescape did not make
        return value.encode("utf-8", "replace").decode("utf-8")


def _was_reset(exc: aiohttp.ClientPayloadError) -> bool:
    # aiohttp reports a body cut by a reset as a payload error whose text names the socket's error
    # (the ConnectionResetError itself is not chained), so its text is all there is to tell.
    return "ConnectionResetError" in str(exc) or any(_is_reset(c) for c in _chain(exc))


def _is_reset(exc: BaseException) -> bool:
    return isinstance(exc, ConnectionResetError | BrokenPipeError) or (
        isinstance(exc, OSError) and exc.errno in (errno.ECONNRESET, errno.EPIPE))


def _strerror(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.errno is not None and exc.errno > 0:
        return os.strerror(exc.errno)
    return str(exc)


def _ssl_detail(exc: ssl.SSLError) -> str:
    return str(exc.reason or exc).replace("_", " ").lower()


# --- health checks ---------------------------------------------------------------------------------

class _Phase:
    """Where a check is, so a timeout can say what it was waiting for."""

    __slots__ = ("name",)

    def __init__(self) -> None:
        self.name = "connecting"


_PHASE: contextvars.ContextVar[_Phase] = contextvars.ContextVar("qrm_health_phase")


def _set_phase(name: str) -> None:
    phase = _PHASE.get(None)
    if phase is not None:
        phase.name = name


class _BadResponse(Exception):
    """The peer answered something that is not a complete HTTP response."""


class _TracedTlsContext(ssl.SSLContext):
    """An SSL context that marks the check's phase when asyncio starts the handshake on a connected socket
    (aiohttp connects and handshakes in one call, with no hook in between)."""

    def wrap_bio(self, *args: Any, **kwargs: Any) -> ssl.SSLObject:
        _set_phase(_HANDSHAKE)
        return super().wrap_bio(*args, **kwargs)


def _tls_context(verify: bool = True) -> ssl.SSLContext:
    """One context per round (creating one costs ~20 ms): the system's CAs (SSL_CERT_FILE and SSL_CERT_DIR
    are honoured), hostname checked, as Consul's HTTPS checks; with `verify` False (a check's
    tls_skip_verify) any certificate and name are accepted, but it is still TLS."""
    context = _TracedTlsContext(ssl.PROTOCOL_TLS_CLIENT)
    if verify:
        context.load_default_certs()
    else:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    context.set_alpn_protocols(["http/1.1"])
    return context


class _Resolver(AbstractResolver):
    """aiohttp's resolver over the caller's lookups; marks the check's phase while it waits."""

    def __init__(self, lookup: Lookup) -> None:
        self._lookup = lookup

    async def resolve(self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET,
                      ) -> list[ResolveResult]:
        _set_phase(f"resolving {host}")
        addresses = await self._lookup(host, port)
        _set_phase("connecting")
        if not addresses:
            raise OSError(f"{host} resolved to no address")
        return [ResolveResult(hostname=host, host=a, port=port, proto=0, flags=socket.AI_NUMERICHOST,
                              family=socket.AF_INET6 if ":" in a else socket.AF_INET) for a in addresses]

    async def close(self) -> None:
        pass


def _traces() -> list[aiohttp.TraceConfig]:
    trace = aiohttp.TraceConfig()

    async def connected(_session: aiohttp.ClientSession, _context: SimpleNamespace, _params: object) -> None:
        _set_phase("sending the request")

    async def sent(_session: aiohttp.ClientSession, _context: SimpleNamespace, _params: object) -> None:
        _set_phase("waiting for the response")

    trace.on_connection_create_end.append(connected)
    trace.on_request_headers_sent.append(sent)
    return [trace]


async def check_all(specs: Sequence[CheckSpec], limit: asyncio.Semaphore, lookup: Lookup) -> list[CheckResult]:
    """Every HTTP(S) check at once (at most `limit` in flight); one result per spec, in order.

    Never raises for what a service does: hangs, refusals, resets, TLS failures, malformed answers and
    unresolvable names are critical results with a reason."""
    if not specs:
        return []
    verified = _tls_context() if any(s.scheme == "https" and not s.tls_skip_verify for s in specs) else None
    unverified = _tls_context(False) if any(s.scheme == "https" and s.tls_skip_verify for s in specs) else None
    connector = aiohttp.TCPConnector(limit=0, force_close=True, use_dns_cache=False, resolver=_Resolver(lookup))
    async with aiohttp.ClientSession(
            connector=connector, cookie_jar=aiohttp.DummyCookieJar(), timeout=_NO_TIMEOUT,
            headers={"User-Agent": HEALTH_USER_AGENT, "Accept": "*/*"}, trace_configs=_traces(),
            max_line_size=MAX_HEADER_BYTES, max_field_size=MAX_HEADER_BYTES) as session:
        proxies = _EnvProxies()
        return list(await asyncio.gather(*(
            _check(session, spec, limit, unverified if spec.tls_skip_verify else verified, proxies)
            for spec in specs)))


async def _check(session: aiohttp.ClientSession, spec: CheckSpec, limit: asyncio.Semaphore,
                 tls: ssl.SSLContext | None, proxies: _EnvProxies) -> CheckResult:
    async with limit:
        started_at = time.time()
        start = time.perf_counter()
        phase = _Phase()
        _PHASE.set(phase)  # this task's own: gather runs each check in a task with a copy of the context
        try:
            async with asyncio.timeout(spec.timeout):
                # Every check's clock starts before any check's work: aiohttp builds and connects a request in
                # one step, so 1,000 checks started one after the other would start their clocks ~0.5 s apart.
                await asyncio.sleep(0)
                status, reason = await _probe(session, spec, tls, phase, proxies)
        except TimeoutError:
            status, reason = CRITICAL, f"timed out after {spec.timeout:g}s {phase.name}"
        except Exception as exc:  # whatever a peer does is a result, never a crash of the round
            status, reason = CRITICAL, _check_error(exc, spec, phase)
        latency = (time.perf_counter() - start) * 1000
        return CheckResult(spec.service, status, reason, latency, started_at)


async def _probe(session: aiohttp.ClientSession, spec: CheckSpec, tls: ssl.SSLContext | None,
                 phase: _Phase, proxies: _EnvProxies) -> tuple[str, str]:
    url = URL(f"{spec.scheme}://{spec.netloc}{spec.path or '/'}")
    async with session.get(url, allow_redirects=False, ssl=tls if tls is not None else True,
                           proxy=proxies(url)) as resp:
        code = resp.status
        if code not in (204, 304):  # these never have a body (RFC 9112 6.3)
            phase.name = "reading the response body"
            await _drain(resp)
        status = http_status(code)
        location = resp.headers.get("Location")
        location = _text(location) if location is not None else None
        if 300 <= code <= 399 and location is not None:
            return status, f"HTTP {code} (redirect to {location[:200]}, not followed)"
        return status, f"HTTP {code}"


async def _drain(resp: aiohttp.ClientResponse) -> None:
    """Read (and drop) the body up to HEALTH_BODY_BYTES, so that a response cut short is noticed."""
    size = 0
    try:
        while size < HEALTH_BODY_BYTES:
            chunk = await resp.content.read(HEALTH_BODY_BYTES - size)
            if not chunk:
                return
            size += len(chunk)
    except aiohttp.ClientPayloadError as exc:
        if _was_reset(exc):
            raise ConnectionResetError(errno.ECONNRESET, "Connection reset by peer") from None
        found = _body_problem(exc, resp, size)
        if found is not None:
            raise _BadResponse(found) from None
        expected = resp.content_length
        if expected is not None:
            raise _BadResponse(f"the response ended after {size} of {expected} body bytes") from None
        raise _BadResponse(f"the response ended early after {size} body bytes") from None
    resp.close()  # the rest is not waited for: the connection is dropped


def _check_error(exc: BaseException, spec: CheckSpec, phase: _Phase) -> str:
    """A one-line reason for a failed check."""
    if isinstance(exc, _BadResponse):
        return str(exc)
    kind, detail = _failure(exc, phase.name)
    return _CHECK_WORDS[kind].format(where=spec.netloc, host=spec.address, phase=phase.name, detail=detail)
