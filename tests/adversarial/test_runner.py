"""The test runner and the health checks against a hostile server (issue 15, item 3): every answer a server can
send ends as a case result (an error with a reason) or a check result, never as the end of the run; `qrm tests
run` and the apply gate still write their reports and exit 3 for a blocking suite.

The answers are raw bytes on a real socket of 127.0.0.1 (tests/support/hostile_http.py). Each runs under both of
aiohttp's response parsers: llhttp (the C extension) and the pure-Python one (AIOHTTP_NO_EXTENSIONS, PyPy), which
refuse different things.
"""

from __future__ import annotations

import asyncio
import contextlib
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
from tests.support.echo_server import echo_server
from tests.support.healthservers import running
from tests.support.hostile_http import ANSWERS, ENDLESS, hostile_server, serve_endless, serve_hostile
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
    Hostile("/closed-mid-chunk", ERROR, "the response ended early after 3 body bytes",
            "the response ended early after 3 body bytes"),
    Hostile("/reset-mid-body", ERROR, "connection reset by peer after 3 body bytes",
            "connection reset by peer (reading the response body)"),
    Hostile("/gzip-that-is-not", ERROR, "the body is not valid gzip data (Content-Encoding: gzip)",
            "the body is not valid gzip data (Content-Encoding: gzip)"),
    Hostile("/brotli-unasked", ERROR, "the body's Content-Encoding cannot be decoded: brotli (br)",
            "the body's Content-Encoding cannot be decoded: brotli (br)"),
    Hostile("/gzip-bomb", ERROR, "response body larger than 1 MB", "HTTP 200"),  # a check reads 64 KiB only
    Hostile("/body-not-utf8", PASSED, "", "HTTP 200"),  # decoded with U+FFFD for the bytes that are not UTF-8
    Hostile("/odd-set-cookies", PASSED, "", "HTTP 200"),  # cookies that cannot be kept are dropped
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


# --- what a case sends (item 12): request parts checked when manifests load; cookies follow cookie rules ----

SUITE_WITH_REQUEST = """\
kind: Project
name: shop
environments:
  dev: {{url: "{url}"}}
---
kind: TestSuite
name: parts
project: shop
block_on_failure: true
cases:
  - id: hostile
    name: hostile
    type: custom
    request:
{request}
    expect: [{{status: 200}}]
"""


HEADER_INJECTION = "it would end the header and start another (header injection)"


@pytest.mark.parametrize(("request_yaml", "where", "problem"), [
    ('      headers:\n        X-Forward: "a\\r\\nX-Injected: 1"', "16:9: cases.0.request.headers.X-Forward",
     f"the value of header X-Forward holds a line break (CR): {HEADER_INJECTION}"),
    ('      headers:\n        X-Forward: "a\\nX-Injected: 1"', "16:9: cases.0.request.headers.X-Forward",
     f"the value of header X-Forward holds a line break (LF): {HEADER_INJECTION}"),
    ('      headers:\n        X-Nul: "a\\0b"', "16:9: cases.0.request.headers.X-Nul",
     "the value of header X-Nul holds a control character (NUL)"),
    ('      headers:\n        X-Name: "caf\\u00e9 \\u2603"', "16:9: cases.0.request.headers.X-Name",
     "the value of header X-Name holds non-ASCII text: HTTP header values are ASCII (RFC 9110); percent-encode the "
     "text"),
    ('      headers:\n        "Bad Name": "v"', "16:9: cases.0.request.headers.Bad Name",
     "header name 'Bad Name' is not an HTTP token (letters, digits and !#$%&'*+-.^_`|~; no spaces, colons or control "
     "characters)"),
    ('      path: "/a\\r\\nX-Injected: 1"', "15:7: cases.0.request.path",
     "the path holds a control character (CR); a URL cannot carry one"),
    ('      method: POST\n      files:\n        cv: {filename: "cv.pdf", content_type: "text/plain\\r\\nX-Evil: 1"}',
     "17:34: cases.0.request.files.cv.content_type", "the content type holds a control character (CR)"),
    ('      method: POST\n      files:\n        cv: {filename: "cv\\r\\n.pdf"}',
     "17:14: cases.0.request.files.cv.filename", "the filename 'cv\\r\\n.pdf' holds a control character (CR)"),
    # a multipart field name goes into a header of the body; a urlencoded one is percent-encoded (any text is fine)
    ('      method: POST\n      form: {"a\\r\\nb": "1"}\n      files: {cv: {filename: cv.pdf}}',
     "16:14: cases.0.request.form.", "the field name 'a\\r\\nb' holds a control character (CR)"),
], ids=["header-crlf", "header-lf", "header-nul", "header-not-ascii", "header-name", "path-crlf",
        "upload-content-type", "upload-filename", "form-field-name"])
def test_a_request_part_no_client_can_send_is_a_manifest_problem_and_nothing_is_sent(
        workspace: Workspace, request_yaml: str, where: str, problem: str) -> None:
    """Checked when the manifests load (validate, plan, tests run): the file, line, column and field, and why."""
    seen: list[bytes] = []
    with running() as servers:
        port = servers.serve(_recording(seen))
        workspace.manifest("shop.yaml", SUITE_WITH_REQUEST.format(url=f"http://127.0.0.1:{port}", request=request_yaml))
        validated = workspace.qrm("validate")
        ran = workspace.qrm("tests", "run", "parts")
    for result in (validated, ran):
        assert result.exit_code == 1, result.output
        assert f"manifests/shop.yaml:{where}" in result.output and problem in result.output, result.output
    assert seen == []  # the case was never sent
    assert not (workspace.root / "reports" / "tests" / "parts").exists()


def _recording(seen: list[bytes]) -> Any:
    """A raw handler that records each request head (and body) as it arrived, and answers 200."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(Exception):
            head = await reader.readuntil(b"\r\n\r\n")
            length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n")
                           if line.lower().startswith(b"content-length:")), 0)
            seen.append(head + (await reader.readexactly(length) if length else b""))
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            await writer.drain()
        writer.close()

    return handle


def test_a_path_with_spaces_and_non_ascii_text_is_sent_percent_encoded(workspace: Workspace) -> None:
    """RFC 3986, as browsers send it: the request line and the Referer of a write carry the same ASCII URL."""
    seen: list[bytes] = []
    with running() as servers:
        port = servers.serve(_recording(seen))
        workspace.manifest("shop.yaml", SUITE_WITH_REQUEST.format(
            url=f"http://127.0.0.1:{port}", request='      method: POST\n      path: "/café ☃/a%20b"'))
        result = workspace.qrm("tests", "run", "parts")
    assert result.exit_code == 0, result.output
    [request] = seen
    lines = request.split(b"\r\n")
    assert lines[0] == b"POST /caf%C3%A9%20%E2%98%83/a%20b HTTP/1.1"
    assert f"Referer: http://127.0.0.1:{port}/caf%C3%A9%20%E2%98%83/a%20b".encode() in lines


def test_a_cookie_set_by_one_host_is_never_sent_to_another_after_a_redirect() -> None:
    """Host A (127.0.0.1) sets cookies, one claiming Domain=localhost, and redirects to host B (localhost, another
    server): B gets none of them, nor the case's own Cookie and Authorization headers. A redirect to A's own host
    on another port gets A's cookie: cookies do not isolate by port (RFC 6265 8.5)."""
    with echo_server() as echo, running() as servers:
        b_port = int(echo.url.rsplit(":", 1)[1])

        def redirect_to(host: str) -> bytes:
            return (f"HTTP/1.1 302 Found\r\nSet-Cookie: sid=a-secret; Path=/\r\n"
                    f"Set-Cookie: claimed=1; Domain=localhost; Path=/\r\nLocation: http://{host}:{b_port}/echo\r\n"
                    "Content-Length: 0\r\n\r\n").encode()

        c = TestCase.model_validate({
            "id": "c", "name": "c", "type": "custom", "expect": [{"status": 302}, {"no_errors": True}],
            "request": {"path": "/", "headers": {"Cookie": "mine=1", "Authorization": "Bearer t0ken"}}})
        [other_host] = run_cases([c], [Target("dev", f"http://127.0.0.1:{servers.raw(redirect_to('localhost'))}")])
        [same_host] = run_cases([c], [Target("dev", f"http://127.0.0.1:{servers.raw(redirect_to('127.0.0.1'))}")])
    assert (other_host.outcome, same_host.outcome) == (PASSED, PASSED)
    followed = [s for s in echo.seen if s.path == "/echo"]
    assert [s.cookie for s in followed] == ["", "sid=a-secret"]


def test_tests_generate_percent_encodes_control_characters_of_q_files_as_a_browser_would(
        workspace: Workspace) -> None:
    """A .q file named with a newline, a form action and an upload field whose name and accept= hold control
    characters: the generated suite still loads (each part percent-encoded, an unusable accept= an
    application/octet-stream upload), so one hostile file name does not make every manifest invalid."""
    workspace.manifest("blog.yaml", """
        kind: Project
        name: blog
        source: ../blog-app
        environments:
          dev: {url: "http://127.0.0.1:9"}
        """)
    components = workspace.root.parent / "blog-app" / "components"
    components.mkdir(parents=True)
    (components / "evil\nname.q").write_text("""<q:component name="Evil" type="page">
  <form method="post" action="/up&#10;load" enctype="multipart/form-data">
    <input type="file" name="cv&#13;&#10;X: 1" accept="text/plain&#13;&#10;X-Evil: 1" />
    <button type="submit">Send</button>
  </form>
</q:component>
""")
    generated = workspace.qrm("tests", "generate", "blog")
    assert generated.exit_code == 0, generated.output
    validated = workspace.qrm("validate")
    assert validated.exit_code == 0, validated.output
    suite = yaml.safe_load((workspace.root / "manifests" / "tests" / "blog.yaml").read_text())
    requests = {case["id"]: case["request"] for case in suite["cases"]}
    assert requests["components/evil\nname.q#page"]["path"] == "/evil%0Aname"
    [form] = [r for i, r in requests.items() if "#form:" in i]
    assert form["path"] == "/up%0Aload"
    assert form["files"] == {"cv%0D%0AX: 1": {"filename": "qa-cv%0D%0AX: 1.bin"}}  # the default content type


def test_a_cookie_for_a_whole_top_level_domain_is_dropped(monkeypatch: pytest.MonkeyPatch) -> None:
    """shop.test sets one cookie for Domain=test and one for Domain=shop.test, then redirects: evil.test gets
    neither, b.shop.test the second only. Names a test cannot resolve are reached through a proxy (a raw server on
    127.0.0.1 that sees every request in absolute form)."""
    heads: list[bytes] = []

    async def proxy(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(Exception):
            head = await reader.readuntil(b"\r\n\r\n")
            heads.append(head)
            target = head.split(b" ")[1].decode()
            if target.startswith("http://shop.test/to/"):
                to = target.rsplit("/", 1)[1]
                writer.write(("HTTP/1.1 302 Found\r\nSet-Cookie: wide=1; Domain=test; Path=/\r\n"
                              "Set-Cookie: shop=1; Domain=shop.test; Path=/\r\n"
                              f"Location: http://{to}/landed\r\nContent-Length: 0\r\n\r\n").encode())
            else:
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
            await writer.drain()
        writer.close()

    with running() as servers:
        monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{servers.serve(proxy)}")
        monkeypatch.delenv("NO_PROXY", raising=False)
        monkeypatch.delenv("no_proxy", raising=False)
        cases = [TestCase.model_validate({"id": host, "name": host, "type": "custom",
                                          "request": {"path": f"/to/{host}"},
                                          "expect": [{"status": 302}, {"no_errors": True}]})
                 for host in ("evil.test", "b.shop.test")]
        results = run_cases(cases, [Target("dev", "http://shop.test")], concurrency=1)
    assert [r.outcome for r in results] == [PASSED, PASSED], results
    landed = {h.split(b" ")[1].decode(): [line for line in h.split(b"\r\n") if line.lower().startswith(b"cookie:")]
              for h in heads if b"/landed" in h.split(b"\r\n")[0]}
    assert landed == {"http://evil.test/landed": [], "http://b.shop.test/landed": [b"Cookie: shop=1"]}


@pytest.mark.parametrize("parser", list(PARSERS))
def test_an_answer_that_never_ends_is_cut_at_a_bound(parser: str) -> None:
    """A body, a chunk stream, headers or 1xx interim responses without end: each case ends at the body cap, the
    header limits or its timeout, and the run ends with them."""
    if parser == "llhttp" and not HAS_LLHTTP:
        pytest.skip("aiohttp's C extension (llhttp) is not installed")
    cases = [TestCase.model_validate({"id": p.strip("/"), "name": p, "type": "custom", "timeout": "2s",
                                      "request": {"path": p}, "expect": [{"status": 200}]}) for p in ENDLESS]
    with pytest.MonkeyPatch.context() as patch, running() as servers:
        patch.setattr(aiohttp.client_proto, "HttpResponseParser", PARSERS[parser])
        results = run_cases(cases, [Target("dev", f"http://127.0.0.1:{serve_endless(servers)}")])
    assert {r.name: (r.outcome, r.reason) for r in results} == {
        "/endless-body": (ERROR, "response body larger than 1 MB"),
        "/endless-chunks": (ERROR, "response body larger than 1 MB"),
        "/endless-headers": (ERROR, MALFORMED + "Too many headers received"),
        "/endless-interim-responses": (ERROR, "timed out after 2s"),
    }
