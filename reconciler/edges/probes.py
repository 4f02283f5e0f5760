"""What the machines say right now (the sockets edge): listening ports and the ephemeral range.

On this machine listeners come from /proc/net/tcp and tcp6, read once per run (~8 ms for
1,000 sockets) rather than one bind() per candidate port, which is slower and misses
listeners on other addresses. Other hosts are asked with TCP connects, all at once.
"""

from __future__ import annotations

import contextlib
import ipaddress
import socket
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from reconciler.core.health import CRITICAL, PASSING, CheckResult, CheckSpec, http_status

if TYPE_CHECKING:
    import asyncio
    import ssl

_LISTEN = "0A"  # TCP_LISTEN in /proc/net/tcp's st column


def local_listeners(proc_net: Path = Path("/proc/net")) -> frozenset[int]:
    """Every TCP port something listens on here, on any address, IPv4 or IPv6."""
    ports: set[int] = set()
    for name in ("tcp", "tcp6"):
        try:
            lines = (proc_net / name).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if len(fields) > 3 and fields[3] == _LISTEN:
                ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return frozenset(ports)


def ephemeral_range(path: Path = Path("/proc/sys/net/ipv4/ip_local_port_range")) -> tuple[int, int] | None:
    try:
        low, high = (int(x) for x in path.read_text().split())
    except (OSError, ValueError):
        return None
    return low, high


async def _is_open(address: str, port: int, timeout: float, limit: asyncio.Semaphore) -> bool:
    import asyncio

    async with limit:
        try:
            _, writer = await asyncio.wait_for(asyncio.open_connection(address, port), timeout)
        except (OSError, TimeoutError):
            return False
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
        return True


def remote_listeners(
    address: str, ports: Iterable[int], timeout: float = 0.5, concurrency: int = 100
) -> frozenset[int]:
    """The ports among `ports` that accept a TCP connection at `address` (concurrently, bounded)."""
    wanted = sorted(set(ports))
    if not wanted:
        return frozenset()
    try:
        socket.getaddrinfo(address, None)
    except OSError:
        return frozenset()  # unresolvable: nothing is known to listen there

    import asyncio  # here, not at the top: it costs 45 ms of every qrm start and only remote hosts need it

    async def run() -> frozenset[int]:
        limit = asyncio.Semaphore(concurrency)
        results = await asyncio.gather(*(_is_open(address, p, timeout, limit) for p in wanted))
        return frozenset(p for p, is_open in zip(wanted, results, strict=True) if is_open)

    return asyncio.run(run())


# --- health checks -------------------------------------------------------------------------------
#
# A minimal HTTP/1.1 client over asyncio streams rather than httpx: PERF-NOTES measured a shared
# httpx.AsyncClient collapsing above ~10 concurrent requests (and PoolTimeout at 1,000), while a
# health check needs one GET, its status line and a bounded read of the rest. Every check runs
# concurrently (bounded by a semaphore) under its own asyncio timeout around resolve + connect +
# TLS + request + response, so a service that hangs costs one timeout, not one per service.

MAX_HEADER_BYTES = 64 * 1024
MAX_BODY_BYTES = 64 * 1024  # read and discarded; beyond it the rest is not waited for
USER_AGENT = "qrm-health/1"
_HANDSHAKE = "in the TLS handshake"


class _Phase:
    """Where a check is, so a timeout can say what it was waiting for."""

    __slots__ = ("name", "received")

    def __init__(self) -> None:
        self.name = "connecting"
        self.received = 0


class _BadResponse(Exception):
    """The peer answered something that is not a complete HTTP response."""


def run_checks(specs: Sequence[CheckSpec], concurrency: int = 200) -> list[CheckResult]:
    """Run every check at once (at most `concurrency` in flight); one result per spec, in order.

    Never raises for what a service does: hangs, refusals, resets, TLS failures and unresolvable
    names are critical results with a reason.
    """
    if not specs:
        return []
    import asyncio

    return asyncio.run(check_all(specs, concurrency))


async def check_all(specs: Sequence[CheckSpec], concurrency: int = 200) -> list[CheckResult]:
    import asyncio

    limit = asyncio.Semaphore(max(1, concurrency))
    verified = _tls_context() if any(s.scheme == "https" and not s.tls_skip_verify for s in specs) else None
    unverified = _tls_context(verify=False) if any(s.scheme == "https" and s.tls_skip_verify for s in specs) else None
    resolving: dict[str, asyncio.Future[list[str]]] = {}
    for spec in specs:
        if spec.address not in resolving and not _is_ip(spec.address):
            resolving[spec.address] = _resolve(spec.address, spec.port)  # once per name, shared by its checks
    try:
        return list(await asyncio.gather(*(
            _check(spec, limit, unverified if spec.tls_skip_verify else verified, resolving) for spec in specs)))
    finally:
        for future in resolving.values():
            if future.done() and not future.cancelled():
                future.exception()  # retrieved: checks that timed out first never awaited it
            future.cancel()


def _tls_context(verify: bool = True) -> ssl.SSLContext:
    """One context for the whole round (creating one costs ~20 ms): the system's CAs (SSL_CERT_FILE and
    SSL_CERT_DIR are honoured), hostname checked, as Consul's HTTPS checks; with `verify` False (a
    check's tls_skip_verify) any certificate and name are accepted."""
    import ssl

    context = ssl.create_default_context()
    if not verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    context.set_alpn_protocols(["http/1.1"])
    return context


def _is_ip(address: str) -> bool:
    try:
        ipaddress.ip_address(address)
    except ValueError:
        return False
    return True


def _resolve(address: str, port: int) -> asyncio.Future[list[str]]:
    """The addresses of a name, looked up in a daemon thread: a resolver that hangs costs each check its
    own timeout and then nothing, where the loop's executor would hold up the end of the round until
    the resolver gave up."""
    import asyncio
    import threading

    loop = asyncio.get_running_loop()
    future: asyncio.Future[list[str]] = loop.create_future()

    def settle(result: list[str] | None, error: BaseException | None) -> None:
        if future.done():
            return
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(result or [])

    def lookup() -> None:
        result: list[str] | None = None
        error: BaseException | None = None
        try:
            result = []
            for _family, _type, _proto, _name, sockaddr in socket.getaddrinfo(address, port, type=socket.SOCK_STREAM):
                if str(sockaddr[0]) not in result:
                    result.append(str(sockaddr[0]))
        except Exception as exc:
            error = exc
        with contextlib.suppress(RuntimeError):  # the round is over and its loop closed
            loop.call_soon_threadsafe(settle, result, error)

    threading.Thread(target=lookup, name=f"qrm-resolve-{address}", daemon=True).start()
    return future


async def _check(
    spec: CheckSpec, limit: asyncio.Semaphore, tls: ssl.SSLContext | None,
    resolving: dict[str, asyncio.Future[list[str]]],
) -> CheckResult:
    import asyncio

    async with limit:
        started_at = time.time()
        start = time.perf_counter()
        phase = _Phase()
        try:
            status, reason = await asyncio.wait_for(_probe(spec, tls, resolving, phase), spec.timeout)
        except TimeoutError:
            status, reason = CRITICAL, f"timed out after {spec.timeout:g}s {phase.name}"
        except Exception as exc:  # whatever a peer does is a result, never a crash of the round
            status, reason = CRITICAL, _describe_error(exc, spec, phase)
        latency = (time.perf_counter() - start) * 1000
        return CheckResult(spec.service, status, reason, latency, started_at)


async def _probe(
    spec: CheckSpec, tls: ssl.SSLContext | None, resolving: dict[str, asyncio.Future[list[str]]], phase: _Phase,
) -> tuple[str, str]:
    import asyncio

    if spec.address in resolving:
        phase.name = f"resolving {spec.address}"
        addresses = await asyncio.shield(resolving[spec.address])  # shared: one check's timeout must not cancel it
    else:
        addresses = [spec.address]
    phase.name = "connecting"
    reader, writer = await _connect(addresses, spec.port)
    try:
        if spec.kind != "http":
            return PASSING, f"TCP connect to {spec.netloc} succeeded"
        if spec.scheme == "https":
            assert tls is not None
            phase.name = _HANDSHAKE
            await writer.start_tls(tls, server_hostname=spec.address)
        phase.name = "sending the request"
        writer.write(
            f"GET {spec.path} HTTP/1.1\r\nHost: {spec.netloc}\r\nUser-Agent: {USER_AGENT}\r\n"
            "Accept: */*\r\nConnection: close\r\n\r\n".encode("latin-1"))
        await writer.drain()
        phase.name = "waiting for the response"
        code, headers = await _read_head(reader, phase)
        if code not in (204, 304):  # these never have a body (RFC 9112 6.3)
            phase.name = "reading the response body"
            await _read_body(reader, headers, phase)
        status = http_status(code)
        if 300 <= code <= 399 and "location" in headers:
            return status, f"HTTP {code} (redirect to {headers['location'][:200]}, not followed)"
        return status, f"HTTP {code}"
    finally:
        writer.close()


async def _connect(addresses: list[str], port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A connection to the first address that accepts one (a host may resolve to several)."""
    import asyncio

    last: OSError | None = None
    for address in addresses:
        try:
            return await asyncio.open_connection(address, port, limit=MAX_HEADER_BYTES)
        except OSError as exc:
            last = exc
    raise last if last is not None else OSError("the name resolved to no address")


async def _read_head(reader: asyncio.StreamReader, phase: _Phase) -> tuple[int, dict[str, str]]:
    """The final status code and the headers (1xx interim responses skipped)."""
    import asyncio

    while True:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except asyncio.LimitOverrunError:
            raise _BadResponse(f"response headers larger than {MAX_HEADER_BYTES // 1024} KiB") from None
        phase.received += len(head)
        lines = head.decode("latin-1").split("\r\n")
        parts = lines[0].split(" ", 2)
        if len(parts) < 2 or not parts[0].startswith("HTTP/") or not (parts[1].isdigit() and len(parts[1]) == 3):
            raise _BadResponse(f"not an HTTP response: {lines[0][:60]!r}")
        code = int(parts[1])
        headers: dict[str, str] = {}
        for line in lines[1:]:
            name, sep, value = line.partition(":")
            if sep:
                headers[name.strip().lower()] = value.strip()
        if not 100 <= code <= 199:
            return code, headers


async def _read_body(reader: asyncio.StreamReader, headers: dict[str, str], phase: _Phase) -> None:
    """Read (and drop) the body up to MAX_BODY_BYTES, so that a response cut short is noticed."""
    import asyncio

    body = 0
    if "chunked" in headers.get("transfer-encoding", "").lower():
        while body < MAX_BODY_BYTES:
            size_line = await reader.readuntil(b"\r\n")
            try:
                size = int(size_line.split(b";", 1)[0].strip(), 16)
            except ValueError:
                raise _BadResponse("a malformed chunked body") from None
            if size == 0:
                return
            wanted = min(size + 2, MAX_BODY_BYTES - body)  # the chunk and its CRLF, within the cap
            phase.received += len(await reader.readexactly(wanted))
            body += wanted
        return
    length = headers.get("content-length")
    if length is not None:
        try:
            expected = int(length)
        except ValueError:
            raise _BadResponse(f"an invalid Content-Length {length[:30]!r}") from None
        try:
            data = await reader.readexactly(min(expected, MAX_BODY_BYTES))
        except asyncio.IncompleteReadError as exc:
            raise _BadResponse(f"the response ended after {len(exc.partial)} of {expected} body bytes") from None
        phase.received += len(data)
        return
    while body < MAX_BODY_BYTES:  # no length: the body ends when the server closes the connection
        data = await reader.read(MAX_BODY_BYTES - body)
        if not data:
            return
        body += len(data)
        phase.received += len(data)


def _describe_error(exc: BaseException, spec: CheckSpec, phase: _Phase) -> str:
    """A one-line reason for a failed check."""
    import asyncio
    import ssl

    if isinstance(exc, _BadResponse):
        return str(exc)
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"TLS handshake failed: certificate verify failed ({exc.verify_message})"
    if isinstance(exc, ssl.SSLError):
        detail = (exc.reason or str(exc)).replace("_", " ").lower()
        if phase.name == _HANDSHAKE:
            return f"TLS handshake failed: {detail}"
        return f"TLS error {phase.name}: {detail}"
    if isinstance(exc, socket.gaierror):
        return f"cannot resolve {spec.address}: {exc.strerror or exc}"
    if isinstance(exc, ConnectionRefusedError):
        return f"connection refused by {spec.netloc}"
    if isinstance(exc, ConnectionResetError | BrokenPipeError):
        return f"connection reset by peer ({phase.name})"
    if isinstance(exc, asyncio.IncompleteReadError):
        if phase.received == 0 and not exc.partial:
            return "connection closed without a response"
        return f"connection closed mid-response ({phase.name})"
    if isinstance(exc, OSError):
        return f"{exc.strerror or exc} ({phase.name})"
    return f"check failed {phase.name}: {type(exc).__name__}: {exc}"
