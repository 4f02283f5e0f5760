"""What the machines say right now (the sockets edge): listening ports, the ephemeral range, the TCP
connect checks of `qrm services health` and the name lookups of a health round.

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

from reconciler.core.health import CRITICAL, PASSING, CheckResult, CheckSpec

if TYPE_CHECKING:
    import asyncio

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


# --- TCP connect checks and name lookups ---------------------------------------------------------
#
# Every check of a round runs concurrently (bounded by the caller's semaphore) under its own asyncio
# timeout around resolve + connect, so a service that hangs costs one timeout, not one per service.
# HTTP(S) checks are in reconciler.edges.http_client; they share this round's Lookups.


FD_RESERVE = 64  # open files a round leaves to the rest of the process (registry, report, lookups' threads)


def open_files_for(wanted: int) -> int:
    """How many sockets a round may hold at once. The soft limit of open files is raised towards the hard
    limit when `wanted` needs it (as Go programs such as Consul do at start: 1,024 is a common soft
    limit, the hard one far higher), less FD_RESERVE for the process's other files."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    needed = wanted + FD_RESERVE
    if soft != resource.RLIM_INFINITY and soft < needed:
        raised = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (raised, hard))
            soft = raised
    available = needed if soft == resource.RLIM_INFINITY else soft
    return max(1, min(wanted, available - FD_RESERVE))


class Lookups:
    """The addresses of names for one round: each name looked up once, in a daemon thread, and shared
    by the checks that need it. A resolver that hangs costs each check its own timeout and then nothing,
    where the loop's executor would hold up the end of the round until the resolver gave up."""

    def __init__(self) -> None:
        self._futures: dict[str, asyncio.Future[list[str]]] = {}

    async def resolve(self, address: str, port: int) -> list[str]:
        import asyncio

        future = self._futures.get(address)
        if future is None:
            future = self._futures[address] = _resolve(address, port)
        return await asyncio.shield(future)  # shared: one check's timeout must not cancel it

    def close(self) -> None:
        for future in self._futures.values():
            if future.done() and not future.cancelled():
                future.exception()  # retrieved: checks that timed out first never awaited it
            future.cancel()


async def check_all(specs: Sequence[CheckSpec], limit: asyncio.Semaphore, lookups: Lookups) -> list[CheckResult]:
    """A TCP connect check of every spec at once (at most `limit` in flight); one result per spec, in order.

    Never raises for what a service does: hangs, refusals and unresolvable names are critical results
    with a reason."""
    import asyncio

    return list(await asyncio.gather(*(_check(spec, limit, lookups) for spec in specs)))


def _is_ip(address: str) -> bool:
    try:
        ipaddress.ip_address(address)
    except ValueError:
        return False
    return True


def _resolve(address: str, port: int) -> asyncio.Future[list[str]]:
    """The addresses of a name, looked up in a daemon thread (see Lookups)."""
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


async def _check(spec: CheckSpec, limit: asyncio.Semaphore, lookups: Lookups) -> CheckResult:
    import asyncio

    async with limit:
        started_at = time.time()
        start = time.perf_counter()
        phase = "connecting"
        try:
            async with asyncio.timeout(spec.timeout):
                await asyncio.sleep(0)  # every check's clock starts before any check connects
                if not _is_ip(spec.address):
                    phase = f"resolving {spec.address}"
                    addresses = await lookups.resolve(spec.address, spec.port)
                    phase = "connecting"
                else:
                    addresses = [spec.address]
                await _connect(addresses, spec.port)
            status, reason = PASSING, f"TCP connect to {spec.netloc} succeeded"
        except TimeoutError:
            status, reason = CRITICAL, f"timed out after {spec.timeout:g}s {phase}"
        except Exception as exc:  # whatever a peer does is a result, never a crash of the round
            status, reason = CRITICAL, _describe_error(exc, spec, phase)
        latency = (time.perf_counter() - start) * 1000
        return CheckResult(spec.service, status, reason, latency, started_at)


async def _connect(addresses: list[str], port: int) -> None:
    """A connection to the first address that accepts one (a host may resolve to several), closed at once."""
    import asyncio

    last: OSError | None = None
    for address in addresses:
        try:
            _, writer = await asyncio.open_connection(address, port)
        except OSError as exc:
            last = exc
            continue
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
        return
    raise last if last is not None else OSError("the name resolved to no address")


def _describe_error(exc: BaseException, spec: CheckSpec, phase: str) -> str:
    """A one-line reason for a failed check."""
    if isinstance(exc, socket.gaierror):
        return f"cannot resolve {spec.address}: {exc.strerror or exc}"
    if isinstance(exc, ConnectionRefusedError):
        return f"connection refused by {spec.netloc}"
    if isinstance(exc, OSError):
        return f"{exc.strerror or exc} ({phase})"
    return f"check failed {phase}: {type(exc).__name__}: {exc}"
