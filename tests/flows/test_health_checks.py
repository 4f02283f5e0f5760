"""Health probes against real servers on 127.0.0.1: one table of server behaviours -> status and reason.

All the table's checks run in ONE round, as `qrm services health` runs them: a service that hangs,
refuses, resets or fails TLS must not delay or break the others.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from reconciler.core.health import CRITICAL, PASSING, WARNING, CheckResult, CheckSpec
from reconciler.flows.services import run_checks
from tests.support.healthservers import Certificates, Servers, running

TIMEOUT = 2.0  # long enough that a starved event loop still times out in the phase each case names
SLACK = 10.0  # the timeout of every case that expects an answer, not a timeout
BIG = 10 * 1024 * 1024


@dataclass(frozen=True)
class Case:
    id: str
    start: Callable[[Servers, Certificates], int]  # starts the server, returns its port
    status: str
    reason: str  # a regular expression the whole reason must match
    kind: str = "http"  # http | https | tcp
    address: str = "127.0.0.1"
    tls_skip_verify: bool = False


def raw_200(body: str) -> bytes:
    return f"HTTP/1.1 200 OK\r\nContent-Length: {len(body)}\r\n\r\n{body}".encode()


CASES = [
    # HTTP status codes, as Consul maps them: 2xx passing, 429 warning, anything else critical
    Case("200", lambda s, c: s.status(200), PASSING, r"HTTP 200"),
    Case("204 without a body", lambda s, c: s.status(204, body=b""), PASSING, r"HTTP 204"),
    Case("429 too many requests", lambda s, c: s.status(429), WARNING, r"HTTP 429"),
    Case("500", lambda s, c: s.status(500), CRITICAL, r"HTTP 500"),
    Case("503", lambda s, c: s.status(503), CRITICAL, r"HTTP 503"),
    Case("404", lambda s, c: s.status(404), CRITICAL, r"HTTP 404"),
    Case("302 is not followed", lambda s, c: s.status(302, headers=("Location: /login",)), CRITICAL,
         r"HTTP 302 \(redirect to /login, not followed\)"),
    # real-world response shapes
    Case("http.server in HTTP/1.1 keep-alive mode", lambda s, c: s.http_server(), PASSING, r"HTTP 200"),
    Case("Content-Length body on a connection the server keeps open",
         lambda s, c: s.raw(raw_200("ok"), then="hang"), PASSING, r"HTTP 200"),
    Case("chunked body on a connection the server keeps open",
         lambda s, c: s.raw(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
                            then="hang"), PASSING, r"HTTP 200"),
    Case("103 early hints, then 200",
         lambda s, c: s.raw(b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\n\r\n" + raw_200("")), PASSING,
         r"HTTP 200"),
    Case("10 MB body: read up to the cap only",
         lambda s, c: s.raw(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % BIG + b"x" * BIG, then="hang"),
         PASSING, r"HTTP 200"),
    Case("body without length, ended by close", lambda s, c: s.raw(b"HTTP/1.1 200 OK\r\n\r\nhealthy"), PASSING,
         r"HTTP 200"),
    # failures: each a critical result with a reason, never an exception
    Case("hangs forever", lambda s, c: s.hang(), CRITICAL, r"timed out after 2s waiting for the response"),
    Case("headers, then hangs in the body",
         lambda s, c: s.raw(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc", then="hang"), CRITICAL,
         r"timed out after 2s reading the response body"),
    Case("connection refused", lambda s, c: s.refused(), CRITICAL, r"connection refused by 127\.0\.0\.1:\d+"),
    Case("reset before any response", lambda s, c: s.raw(b"", then="reset"), CRITICAL,
         r"connection reset by peer \(waiting for the response\)"),
    Case("reset mid-response",
         lambda s, c: s.raw(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nabc", then="reset"), CRITICAL,
         r"connection reset by peer \((reading the response body|waiting for the response)\)"),
    Case("closed mid-body", lambda s, c: s.raw(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nabc"), CRITICAL,
         r"the response ended after 3 of 100 body bytes"),
    Case("closed without a response", lambda s, c: s.raw(b""), CRITICAL, r"connection closed without a response"),
    Case("closed mid-headers", lambda s, c: s.raw(b"HTTP/1.1 200 OK\r\nContent-"), CRITICAL,
         r"connection closed mid-response \(waiting for the response\)"),
    Case("not HTTP", lambda s, c: s.raw(b"SSH-2.0-OpenSSH_9.2\r\n\r\n"), CRITICAL,
         r"not an HTTP response: 'SSH-2\.0-OpenSSH_9\.2'"),
    Case("headers over 64 KiB", lambda s, c: s.raw(b"HTTP/1.1 200 OK\r\nX-Big: " + b"a" * 70_000 + b"\r\n\r\n"),
         CRITICAL, r"response headers larger than 64 KiB"),
    Case("unresolvable host", lambda s, c: 80, CRITICAL, r"cannot resolve nonexistent\.invalid: .+",
         address="nonexistent.invalid"),
    # HTTPS with the system's trust store (here SSL_CERT_FILE = the test CA)
    Case("https, certificate from a trusted CA", lambda s, c: s.status(200, tls=c.server_context("localhost")),
         PASSING, r"HTTP 200", kind="https"),
    Case("https, 500", lambda s, c: s.status(500, tls=c.server_context("localhost")), CRITICAL, r"HTTP 500",
         kind="https"),
    Case("https, self-signed certificate",
         lambda s, c: s.status(200, tls=c.server_context("localhost", self_signed=True)), CRITICAL,
         r"TLS handshake failed: certificate verify failed \(self[- ]signed certificate\)", kind="https"),
    Case("https, self-signed certificate, tls_skip_verify",
         lambda s, c: s.status(200, tls=c.server_context("localhost", self_signed=True)), PASSING, r"HTTP 200",
         kind="https", tls_skip_verify=True),
    Case("https, 500 behind a self-signed certificate, tls_skip_verify",
         lambda s, c: s.status(500, tls=c.server_context("localhost", self_signed=True)), CRITICAL, r"HTTP 500",
         kind="https", tls_skip_verify=True),
    Case("https, tls_skip_verify to a plain-HTTP port: still TLS",
         lambda s, c: s.status(400, read_whole_head=False), CRITICAL,
         r"TLS handshake failed: (wrong version number|record layer failure|packet length too long)",
         kind="https", tls_skip_verify=True),
    Case("https, certificate for another name",
         lambda s, c: s.status(200, tls=c.server_context("example.org", ip=None)), CRITICAL,
         r"TLS handshake failed: certificate verify failed \(IP address mismatch.*\)", kind="https"),
    Case("https to a plain-HTTP port that answers at once", lambda s, c: s.status(400, read_whole_head=False),
         CRITICAL, r"TLS handshake failed: (wrong version number|record layer failure|packet length too long)",
         kind="https"),
    Case("https to a plain-HTTP port that waits for a request", lambda s, c: s.status(200), CRITICAL,
         r"timed out after 2s in the TLS handshake", kind="https"),
    Case("https to a port that hangs", lambda s, c: s.hang(), CRITICAL,
         r"timed out after 2s in the TLS handshake", kind="https"),
    Case("https, unresolvable host", lambda s, c: 443, CRITICAL, r"cannot resolve nonexistent\.invalid: .+",
         kind="https", address="nonexistent.invalid"),
    # TCP connect checks
    Case("tcp, open port", lambda s, c: s.listener(), PASSING, r"TCP connect to 127\.0\.0\.1:\d+ succeeded",
         kind="tcp"),
    Case("tcp, server that never answers (connect is all a TCP check asks)", lambda s, c: s.hang(), PASSING,
         r"TCP connect to 127\.0\.0\.1:\d+ succeeded", kind="tcp"),
    Case("tcp, closed port", lambda s, c: s.refused(), CRITICAL, r"connection refused by 127\.0\.0\.1:\d+",
         kind="tcp"),
    Case("tcp, unresolvable host", lambda s, c: 5432, CRITICAL, r"cannot resolve nonexistent\.invalid: .+",
         kind="tcp", address="nonexistent.invalid"),
]


def spec_of(case: Case, port: int, timeout: float = TIMEOUT) -> CheckSpec:
    http = case.kind in ("http", "https")
    return CheckSpec(service=case.id, kind="http" if http else "tcp", scheme=case.kind, address=case.address,
                     port=port, path="/health" if http else None, timeout=timeout,
                     tls_skip_verify=case.tls_skip_verify)


@pytest.fixture(scope="module")
def servers() -> Iterator[Servers]:
    with running() as started:
        yield started


@pytest.fixture(scope="module")
def table_round(servers: Servers, tmp_path_factory: pytest.TempPathFactory) -> dict[str, CheckResult]:
    """The whole table in one round, with the test CA as the system's trust store."""
    certs = Certificates(tmp_path_factory.mktemp("certs"))
    # Only the cases about a timeout get the short one: on a busy machine a threaded test server can
    # take long to reset or answer, and that must not read as a timeout.
    specs = [spec_of(case, case.start(servers, certs), TIMEOUT if case.reason.startswith("timed out") else SLACK)
             for case in CASES]
    saved = os.environ.get("SSL_CERT_FILE")
    os.environ["SSL_CERT_FILE"] = str(certs.ca_file)
    try:
        results = run_checks(specs)
    finally:
        if saved is None:
            del os.environ["SSL_CERT_FILE"]
        else:
            os.environ["SSL_CERT_FILE"] = saved
    assert [r.service for r in results] == [c.id for c in CASES]
    return {r.service: r for r in results}


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_server_behaviour_gives_status_and_reason(case: Case, table_round: dict[str, CheckResult]) -> None:
    result = table_round[case.id]
    assert (result.status, result.reason) == (case.status, result.reason)
    assert re.fullmatch(case.reason, result.reason), result.reason
    assert result.latency_ms >= 0
    if result.reason.startswith("timed out"):
        assert result.latency_ms >= TIMEOUT * 1000 * 0.95


def test_the_table_round_takes_about_one_timeout_not_one_per_hanging_service(
        table_round: dict[str, CheckResult]) -> None:
    results = list(table_round.values())
    timed_out = [r for r in results if r.reason.startswith("timed out")]
    assert len(timed_out) >= 4
    # every timed-out check started before the first of them ended: they waited at the same time
    assert max(r.started_at for r in timed_out) < min(r.started_at + r.latency_ms / 1000 for r in timed_out)


def intervals(results: list[CheckResult]) -> list[tuple[float, float]]:
    return [(r.started_at, r.started_at + r.latency_ms / 1000) for r in results]


def test_twenty_hanging_services_time_out_together_each_after_its_own_timeout(servers: Servers) -> None:
    port = servers.hang()
    specs = [CheckSpec(service=f"hang-{i:02d}", kind="http", scheme="http", address="127.0.0.1", port=port,
                       path="/health", timeout=0.5) for i in range(20)]
    results = run_checks(specs)

    assert [r.service for r in results] == [s.service for s in specs]
    assert {(r.status, r.reason) for r in results} == {(CRITICAL, "timed out after 0.5s waiting for the response")}
    assert all(r.latency_ms >= 500 * 0.95 for r in results), [r.latency_ms for r in results]
    spans = intervals(results)
    assert max(start for start, _ in spans) < min(end for _, end in spans)  # all 20 in flight at once


def test_concurrency_is_bounded(servers: Servers) -> None:
    port = servers.hang()
    specs = [CheckSpec(service=f"hang-{i}", kind="tcp" if i < 0 else "http", scheme="http", address="127.0.0.1",
                       port=port, path="/", timeout=0.2) for i in range(6)]
    results = run_checks(specs, concurrency=2)

    assert all(r.status == CRITICAL for r in results)
    spans = intervals(results)
    in_flight = [sum(1 for start, end in spans if start <= moment < end) for moment, _ in
                 ((s + 0.01, e) for s, e in spans)]
    assert max(in_flight) == 2, in_flight


def test_a_refused_check_does_not_wait_for_its_timeout(servers: Servers) -> None:
    port = servers.refused()
    [result] = run_checks([CheckSpec(service="r", kind="tcp", scheme="tcp", address="127.0.0.1", port=port,
                                            path=None, timeout=30)])
    assert result.status == CRITICAL
    assert result.latency_ms < 5000


def test_no_checks_is_an_empty_round() -> None:
    assert run_checks([]) == []


def test_the_https_round_trusts_ssl_cert_file(servers: Servers, tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    certs = Certificates(tmp_path)
    port = servers.status(204, body=b"", tls=certs.server_context("localhost"))
    spec = CheckSpec(service="tls", kind="http", scheme="https", address="127.0.0.1", port=port, path="/h",
                     timeout=2)
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    [untrusted] = run_checks([spec])
    monkeypatch.setenv("SSL_CERT_FILE", str(certs.ca_file))
    [trusted] = run_checks([spec])

    assert untrusted.status == CRITICAL and "certificate verify failed" in untrusted.reason
    assert (trusted.status, trusted.reason) == (PASSING, "HTTP 204")
