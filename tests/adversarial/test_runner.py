"""The test runner and the health checks against a hostile server (issue 15, item 3): every answer a server can
send ends as a case result (an error with a reason) or a check result, never as the end of the run; `qrm tests
run` and the apply gate still write their reports and exit 3 for a blocking suite.

The answers are raw bytes on a real socket of 127.0.0.1 (tests/support/hostile_http.py). Each runs under both of
aiohttp's response parsers: llhttp (the C extension) and the pure-Python one (AIOHTTP_NO_EXTENSIONS, PyPy), which
refuse different things.
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import aiohttp.client_proto
import aiohttp.http_parser
import pytest
import yaml

from reconciler.core.health import CRITICAL, PASSING, CheckResult, CheckSpec
from reconciler.core.models import TestCase
from reconciler.core.test_results import ERROR, FAILED, PASSED, CaseResult, Target
from reconciler.flows.services import run_checks
from reconciler.flows.tests_http import run_cases
from tests.support.healthservers import running
from tests.support.hostile_http import ANSWERS, hostile_server, serve_hostile
from tests.support.workspace import Workspace

HELLO: tuple[dict[str, Any], ...] = ({"status": 200}, {"contains": "hello"})
FOLLOW: tuple[dict[str, Any], ...] = ({"status": 302}, {"flash": "Saved"})  # the flash makes the runner follow


@dataclass(frozen=True)
class Hostile:
    path: str
    outcome: str  # of a test case
    reason: str
    check: str  # a health check's reason (critical unless it is an HTTP 200)
    python: tuple[str, str, str] | None = None  # (outcome, reason, check) where the pure-Python parser differs
    expect: tuple[dict[str, Any], ...] = HELLO


MALFORMED = "a malformed response: "
HOSTILE = [
    Hostile("/content-length-minus-1", ERROR, MALFORMED + "Invalid character in Content-Length",
            MALFORMED + "Invalid character in Content-Length",
            (ERROR, MALFORMED + "Invalid HTTP header: 'Content-Length'", MALFORMED + "Invalid HTTP header: "
             "'Content-Length'")),
    Hostile("/chunk-size-minus-1", ERROR, MALFORMED + "Invalid character in chunk size",
            MALFORMED + "Invalid character in chunk size",
            (ERROR, MALFORMED + "invalid chunk size '-1'", MALFORMED + "invalid chunk size '-1'")),
    # 70,000 leading zeros are a valid chunk size to llhttp; the Python parser stops at 64 KiB
    Hostile("/chunk-size-line-over-64k", PASSED, "", "HTTP 200",
            (ERROR, "a malformed chunked body: a chunk-size line larger than 64 KiB",
             "a malformed chunked body: a chunk-size line larger than 64 KiB")),
    Hostile("/location-port-99999", ERROR,
            "following the redirect to http://127.0.0.1:99999/x: not a valid URL: 'http://127.0.0.1:99999/x' "
            "(Port out of range 0-65535)",
            "HTTP 302 (redirect to http://127.0.0.1:99999/x, not followed)", expect=FOLLOW),
    Hostile("/location-broken-ipv6", ERROR,
            "following the redirect to http://[::1/: not a valid URL: 'http://[::1/' (Invalid IPv6 URL)",
            "HTTP 302 (redirect to http://[::1/, not followed)", expect=FOLLOW),
    Hostile("/location-not-utf8", FAILED, "redirect to '/caf\ufffd\ufffd', expected '/cafe'",
            "HTTP 302 (redirect to /caf\ufffd\ufffd, not followed)", expect=({"redirect": "/cafe"},)),
    Hostile("/redirect-loop", FAILED, "flash None, expected 'Saved'",
            "HTTP 302 (redirect to /redirect-loop, not followed)", expect=FOLLOW),
    Hostile("/garbage-status-line", ERROR, "not an HTTP response: 'HTTP/1.1 abc OK'",
            "not an HTTP response: 'HTTP/1.1 abc OK'"),
    Hostile("/not-http", ERROR, "not an HTTP response: 'hello'", "not an HTTP response: 'hello'",
            (ERROR, "the connection closed before a response", "connection closed without a response")),
    Hostile("/header-without-colon", ERROR, MALFORMED + "Invalid header token", MALFORMED + "Invalid header token",
            (ERROR, MALFORMED + "Invalid HTTP header: b'NoColonHere'", MALFORMED + "Invalid HTTP header: "
             "b'NoColonHere'")),
    Hostile("/header-over-64k", ERROR, "response headers larger than 64 KiB", "response headers larger than 64 KiB"),
    Hostile("/twenty-thousand-headers", ERROR, MALFORMED + "Too many headers received",
            MALFORMED + "Too many headers received"),
    Hostile("/content-length-overflow", ERROR, MALFORMED + "Content-Length overflow",
            MALFORMED + "Content-Length overflow",
            (ERROR, "response body larger than 1 MB", f"the response ended after 5 of {'9' * 30} body bytes")),
    Hostile("/two-content-lengths", ERROR, MALFORMED + "Duplicate Content-Length",
            MALFORMED + "Duplicate Content-Length", (PASSED, "", "HTTP 200")),
    # llhttp parses the surplus as the next response, and refuses it; the Python parser drops it
    Hostile("/body-longer-than-content-length", ERROR, "not an HTTP response: 'hello world'",
            "not an HTTP response: 'hello world'", (PASSED, "", "HTTP 200")),
    Hostile("/body-shorter-then-closed", ERROR, "the response ended early after 3 body bytes",
            "the response ended after 3 of 100 body bytes"),
    Hostile("/reset-mid-body", ERROR, "connection reset by peer after 3 body bytes",
            "connection reset by peer (reading the response body)"),
    Hostile("/gzip-that-is-not", ERROR, "the body is not valid gzip data (Content-Encoding: gzip)",
            "the body is not valid gzip data (Content-Encoding: gzip)"),
    Hostile("/brotli-unasked", ERROR, "the body's Content-Encoding cannot be decoded: brotli (br)",
            "the body's Content-Encoding cannot be decoded: brotli (br)"),
    Hostile("/gzip-bomb", ERROR, "response body larger than 1 MB", "HTTP 200"),  # a check reads 64 KiB only
    Hostile("/body-not-utf8", PASSED, "", "HTTP 200"),  # decoded with U+FFFD for the bytes that are not UTF-8
    Hostile("/status-999", FAILED, "status 999, expected 200", "HTTP 999"),
]
assert sorted(h.path for h in HOSTILE) == sorted(ANSWERS), "every hostile answer has an expectation"

HAS_LLHTTP = aiohttp.http_parser.HttpResponseParser is not aiohttp.http_parser.HttpResponseParserPy
PARSERS = {"llhttp": aiohttp.http_parser.HttpResponseParser, "python": aiohttp.http_parser.HttpResponseParserPy}


def case(path: str, expect: tuple[dict[str, Any], ...]) -> TestCase:
    return TestCase.model_validate({"id": path.strip("/"), "name": path, "type": "custom", "request": {"path": path},
                                    "expect": list(expect)})


@dataclass
class Round:
    cases: dict[str, CaseResult]
    checks: dict[str, CheckResult]


@pytest.fixture(scope="module", params=list(PARSERS))
def hostile_round(request: pytest.FixtureRequest) -> Iterator[tuple[str, Round]]:
    """Every hostile answer as a test case and as a health check, all in one run each (as qrm runs them), under
    one of aiohttp's response parsers."""
    parser = request.param
    if parser == "llhttp" and not HAS_LLHTTP:
        pytest.skip("aiohttp's C extension (llhttp) is not installed")
    with pytest.MonkeyPatch.context() as patch, running() as servers:
        patch.setattr(aiohttp.client_proto, "HttpResponseParser", PARSERS[parser])
        port = serve_hostile(servers)
        results = run_cases([case(h.path, h.expect) for h in HOSTILE], [Target("dev", f"http://127.0.0.1:{port}")])
        checks = run_checks([CheckSpec(service=h.path, kind="http", scheme="http", address="127.0.0.1", port=port,
                                       path=h.path, timeout=10) for h in HOSTILE])
    yield parser, Round({r.name: r for r in results}, {c.service: c for c in checks})


def expected(hostile: Hostile, parser: str) -> tuple[str, str, str]:
    if parser == "python" and hostile.python is not None:
        return hostile.python
    return hostile.outcome, hostile.reason, hostile.check


@pytest.mark.parametrize("hostile", HOSTILE, ids=[h.path.strip("/") for h in HOSTILE])
def test_a_hostile_answer_is_a_case_result_with_a_reason(hostile_round: tuple[str, Round], hostile: Hostile) -> None:
    parser, results = hostile_round
    outcome, reason, _ = expected(hostile, parser)
    result = results.cases[hostile.path]
    assert (result.outcome, result.reason) == (outcome, reason)
    result.reason.encode("utf-8")  # no lone surrogates from header bytes that are not UTF-8: a report can hold it


@pytest.mark.parametrize("hostile", HOSTILE, ids=[h.path.strip("/") for h in HOSTILE])
def test_a_hostile_answer_is_a_health_check_result_with_a_reason(hostile_round: tuple[str, Round],
                                                                 hostile: Hostile) -> None:
    parser, results = hostile_round
    _, _, reason = expected(hostile, parser)
    check = results.checks[hostile.path]
    assert (check.status, check.reason) == (PASSING if reason == "HTTP 200" else CRITICAL, reason)
    check.reason.encode("utf-8")


# --- the command and the apply gate: reports always complete, exit 3 ----------------------------------

def hostile_manifests(url: str, *, auto_run: bool = False) -> str:
    cases = [{"id": h.path.strip("/"), "name": h.path, "type": "custom", "request": {"path": h.path},
              "expect": list(h.expect)} for h in HOSTILE]
    project = {"kind": "Project", "name": "shop", "services": {"web": {"type": "app"}},
               "environments": {"dev": {"host": "localhost", "url": url}}}
    suite = {"kind": "TestSuite", "name": "hostile", "project": "shop", "block_on_failure": True,
             "auto_run": auto_run, "cases": cases}
    return yaml.safe_dump(project) + "---\n" + yaml.safe_dump(suite)


def counts() -> dict[str, int]:
    outcomes = [h.outcome for h in HOSTILE] if HAS_LLHTTP else [(h.python or (h.outcome,))[0] for h in HOSTILE]
    return {"passed": outcomes.count(PASSED), "failed": outcomes.count(FAILED), "error": outcomes.count(ERROR),
            "skipped": 0}


def assert_reports_complete(workspace: Workspace) -> None:
    base = workspace.root / "reports" / "tests" / "hostile"
    report = yaml.safe_load((base / "dev.yaml").read_text(encoding="utf-8"))
    assert report["counts"] == counts()
    assert sorted(r["id"] for r in report["results"]) == sorted(h.path.strip("/") for h in HOSTILE)
    assert all(r.get("reason") for r in report["results"] if r["outcome"] == ERROR)
    [line] = (base / "history.jsonl").read_text().splitlines()
    assert json.loads(line)["failed"] == counts()["failed"] + counts()["error"]
    assert "## Failures" in (base / "summary.md").read_text(encoding="utf-8")


def test_tests_run_on_a_hostile_server_writes_every_report_and_exits_3(workspace: Workspace) -> None:
    with hostile_server() as url:
        workspace.manifest("shop.yaml", hostile_manifests(url))
        junit = workspace.root / "out" / "junit.xml"
        result = workspace.qrm("tests", "run", "hostile", "--junit", str(junit))
    assert result.exit_code == 3, result.output
    assert "Traceback" not in result.output
    assert_reports_complete(workspace)
    [suite] = ET.parse(junit).getroot().findall("testsuite")
    assert (suite.get("tests"), suite.get("errors")) == (str(len(HOSTILE)), str(counts()["error"]))


def test_the_apply_gate_on_a_hostile_server_exits_3_and_the_apply_stays(workspace: Workspace) -> None:
    with hostile_server() as url:
        workspace.manifest("shop.yaml", hostile_manifests(url, auto_run=True))
        result = workspace.qrm("apply", "--yes")
    assert result.exit_code == 3, result.output
    assert "Traceback" not in result.output
    assert "Apply complete: " in result.output and "the apply itself stays applied" in result.output
    assert_reports_complete(workspace)
