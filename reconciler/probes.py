"""What the machines say right now (the sockets edge): listening ports and the ephemeral range.

On this machine listeners come from /proc/net/tcp and tcp6, read once per run (~8 ms for
1,000 sockets) rather than one bind() per candidate port, which is slower and misses
listeners on other addresses. Other hosts are asked with TCP connects, all at once.
"""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

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
