"""`qrm tests run` against real Quantum-like servers on 127.0.0.1 (tests/support/quantum_server.py): every
assertion kind passing and failing, flashes, auth redirects, cookie jars, Referer, retries, timeouts,
protected environments, two environments at once, the reports, JUnit XML and the exit code. The aiohttp
client against an aiohttp.web server (tests/support/echo_server.py) and odd raw servers: multipart uploads,
cookie rules, gzip and chunked bodies, keep-alive, proxies, TLS and every odd answer as an error with a reason."""

from __future__ import annotations

import json
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from reconciler.core import test_results
from reconciler.core.assertions import Response, evaluate, parse_json_path
from reconciler.core.models import Assertion, TestCase, UploadFile
from reconciler.core.test_results import Target
from reconciler.flows.tests_http import run_cases, upload_bytes
from tests.support.echo_server import Echo, echo_server
from tests.support.healthservers import Certificates, running
from tests.support.quantum_server import Running, quantum_server
from tests.support.workspace import Workspace


@pytest.fixture(scope="module")
def server() -> Iterator[Running]:
    with quantum_server("v1") as running:
        yield running


@pytest.fixture(scope="module")
def other() -> Iterator[Running]:
    with quantum_server("v2") as running:
        yield running


def case(id: str, expect: list[dict[str, Any]], **request: Any) -> TestCase:
    extra = {k: request.pop(k) for k in ("retries", "timeout", "writes") if k in request}
    return TestCase.model_validate({"id": id, "name": id, "type": "custom", "request": request,
                                    "expect": expect, **extra})


def run_one(server: Running | Echo, c: TestCase, protected: bool = False,
            base_url: str | None = None) -> test_results.CaseResult:
    [result] = run_cases([c], [Target("dev", base_url or server.url, protected)])
    return result


# (path, method/form, assertion, passes)
ASSERTION_CASES: list[tuple[str, dict[str, Any], dict[str, Any], bool]] = [
    ("/", {}, {"status": 200}, True),
    ("/", {}, {"status": 201}, False),
    ("/nope", {}, {"status": 404}, True),
    ("/about.q", {}, {"status_in": [200, 204]}, True),
    ("/about/", {}, {"status_in": [200, 204]}, False),
    ("/blog", {}, {"contains": "<h1>Blog</h1>"}, True),
    ("/", {}, {"header": {"Content-Type": "text/html"}}, True),
    ("/", {}, {"header": {"X-Missing": "x"}}, False),
    ("/", {}, {"contains": "Welcome"}, True),
    ("/", {}, {"contains": "Goodbye"}, False),
    ("/", {}, {"not_contains": "Goodbye"}, True),
    ("/", {}, {"not_contains": "Welcome"}, False),
    ("/", {}, {"regex": r"<li>\w+</li>"}, True),
    ("/", {}, {"regex": r"^\d+$"}, False),
    ("/api/items", {}, {"json_path": {"path": "$.items[1].name", "equals": "beta"}}, True),
    ("/api/items", {}, {"json_path": {"path": "$.items[1].name", "equals": "gamma"}}, False),
    ("/api/items", {}, {"json_path": {"path": "$.count", "exists": True}}, True),
    ("/api/items", {}, {"json_path": {"path": "$.items[5]"}}, False),
    ("/", {}, {"json_path": {"path": "$.x"}}, False),  # not JSON
    ("/", {}, {"xpath": {"path": "//ul[@class='posts']/li", "count": 2}}, True),
    ("/", {}, {"xpath": {"path": "//h1", "equals": "Welcome"}}, True),
    ("/", {}, {"xpath": {"path": "//h2"}}, False),
    ("/", {}, {"xpath": {"path": "//[bad"}}, False),
    ("/", {}, {"css": {"path": "ul.posts li", "count": 2}}, True),
    ("/", {}, {"css": {"path": "p#v", "contains": "v1"}}, True),
    ("/", {}, {"css": {"path": "p#v", "contains": "v9"}}, False),
    ("/admin", {}, {"redirect": "/login"}, True),
    ("/admin", {}, {"redirect": "/home"}, False),
    ("/", {}, {"max_ms": 5000}, True),
    ("/slow", {"timeout": "2s"}, {"max_ms": 1}, False),
    ("/", {}, {"no_errors": True}, True),
    ("/broken", {}, {"no_errors": True}, False),
    ("/crash", {}, {"no_errors": True}, False),
    ("/missing", {}, {"no_errors": True}, False),
    ("/contact", {"method": "POST", "form": {"name": "Al"}}, {"flash": "at least 3 characters"}, True),
    ("/contact", {"method": "POST", "form": {"name": "Alice", "email": "nope"}},
     {"flash": "must be a valid email"}, True),
    ("/contact", {"method": "POST", "form": {"name": "Alice", "email": "a@b.io"}}, {"flash": "Thanks, Alice!"}, True),
    ("/contact", {"method": "POST", "form": {"name": "Alice", "email": "a@b.io"}}, {"flash": "is required"}, False),
]


@pytest.mark.parametrize(("path", "request_extra", "assertion", "passes"), ASSERTION_CASES,
                         ids=[f"{next(iter(a))}-{p}-{'pass' if ok else 'fail'}" for p, _, a, ok in ASSERTION_CASES])
def test_each_assertion_kind_passes_and_fails(server: Running, path: str, request_extra: dict[str, Any],
                                              assertion: dict[str, Any], passes: bool) -> None:
    extra = dict(request_extra)
    timeout = extra.pop("timeout", None)
    c = case("c", [assertion], path=path, **extra, **({"timeout": timeout} if timeout else {}))
    result = run_one(server, c)
    assert (result.outcome == test_results.PASSED) is passes, result
    if not passes:
        assert result.reason


def test_the_whole_batch_runs_concurrently_in_one_pool(server: Running) -> None:
    cases = [case(f"c{i}", [a], path=p, **{k: v for k, v in r.items() if k != "timeout"})
             for i, (p, r, a, _) in enumerate(ASSERTION_CASES) if p != "/slow"]
    results = run_cases(cases, [Target("dev", server.url)], concurrency=5)
    expected = [ok for p, _, _, ok in ASSERTION_CASES if p != "/slow"]
    assert [r.outcome == test_results.PASSED for r in results] == expected


def test_rejected_input_is_a_302_back_to_the_referer_with_the_error_flash(server: Running) -> None:
    c = case("invalid", [{"status": 302}, {"redirect": "/contact"}, {"flash": "Parameter 'email' is required"}],
             method="POST", path="/contact", form={"name": "Alice"})
    result = run_one(server, c)
    assert result.outcome == test_results.PASSED, result
    assert f"{server.url}/contact" in server.state.referers


def test_a_valid_action_redirects_with_a_success_flash_and_the_jar_keeps_the_login(server: Running) -> None:
    c = case("login", [{"status": 302}, {"redirect": "/admin"}, {"flash": "Welcome back!"}],
             method="POST", path="/login", form={"username": "ada", "password": "secret"})
    assert run_one(server, c).outcome == test_results.PASSED


def test_a_guarded_page_redirects_to_login_without_a_session(server: Running) -> None:
    c = case("auth", [{"status": 302}, {"redirect": "/login"}], path="/admin")
    assert run_one(server, c).outcome == test_results.PASSED


def test_each_case_has_its_own_cookie_jar(server: Running) -> None:
    login = case("login", [{"flash": "Welcome back!"}], method="POST", path="/login",
                 form={"username": "ada", "password": "secret"})
    guarded = [case(f"guarded{i}", [{"redirect": "/login"}], path="/admin") for i in range(10)]
    results = run_cases([login, *guarded, login], [Target("dev", server.url)])
    assert all(r.outcome == test_results.PASSED for r in results), [r.reason for r in results]


def test_a_write_sends_the_page_as_referer_and_a_read_sends_none(server: Running) -> None:
    before = len(server.state.referers)
    run_one(server, case("w", [], method="POST", path="/contact", form={"name": "x"}))
    assert server.state.referers[before:] == [f"{server.url}/contact"]


def test_retries_record_every_attempt_and_a_late_pass_is_flaky(server: Running) -> None:
    server.state.hits.pop("/flaky", None)
    result = run_one(server, case("flaky", [{"status": 200}, {"no_errors": True}], path="/flaky", retries=2))
    assert result.outcome == test_results.PASSED and result.flaky
    assert [a.status for a in result.attempts] == [500, 200]
    assert not result.attempts[0].passed
    no_retry = run_one(server, case("flaky", [{"status": 200}], path="/flaky"))
    assert no_retry.outcome == test_results.FAILED and len(no_retry.attempts) == 1


def test_a_hanging_path_times_out_without_stalling_the_others(server: Running) -> None:
    hang = case("hang", [{"status": 200}], path="/slow", timeout="500ms", retries=1)
    quick = [case(f"q{i}", [{"status": 200}], path="/") for i in range(30)]
    start = time.perf_counter()
    results = run_cases([hang, *quick], [Target("dev", server.url)], concurrency=4)
    assert time.perf_counter() - start < 3
    assert results[0].outcome == test_results.ERROR and "timed out" in results[0].reason
    assert len(results[0].attempts) == 2
    assert all(r.outcome == test_results.PASSED for r in results[1:])


def test_a_refused_connection_is_an_error_with_a_reason() -> None:
    [result] = run_cases([case("c", [{"status": 200}], path="/")], [Target("dev", "http://127.0.0.1:1")])
    assert result.outcome == test_results.ERROR and "cannot connect" in result.reason


@pytest.mark.parametrize(("path", "reason"), [
    ("/huge", "larger than 1 MB"),
    ("/malformed", "not an HTTP response"),
])
def test_hostile_answers_are_errors_with_a_reason_and_the_run_goes_on(server: Running, path: str,
                                                                     reason: str) -> None:
    results = run_cases([case("bad", [{"status": 200}], path=path), case("ok", [{"status": 200}], path="/")],
                        [Target("dev", server.url)])
    assert results[0].outcome == test_results.ERROR and reason in results[0].reason, results[0]
    assert results[1].outcome == test_results.PASSED


def test_a_redirect_loop_is_followed_once(server: Running) -> None:
    result = run_one(server, case("loop", [{"status": 302}, {"redirect": "/loop"}], path="/loop"))
    assert result.outcome == test_results.PASSED and len(result.attempts) == 1


def test_cases_that_write_are_skipped_on_a_protected_environment(server: Running) -> None:
    writer = case("w", [{"status": 302}], method="POST", path="/contact", form={"name": "x"}, writes=True)
    reader = case("r", [{"status": 200}], path="/")
    results = run_cases([writer, reader], [Target("prod", server.url, protected=True)])
    assert [r.outcome for r in results] == [test_results.SKIPPED, test_results.PASSED]
    assert "protected" in results[0].reason and not results[0].attempts


def test_two_environments_at_once(server: Running, other: Running) -> None:
    c = case("variant", [{"css": {"path": "p#v", "equals": "v1"}}], path="/")
    results = run_cases([c], [Target("dev", server.url), Target("staging", other.url)])
    assert [(r.environment, r.outcome) for r in results] == [("dev", test_results.PASSED),
                                                             ("staging", test_results.FAILED)]


def test_json_paths_and_bad_selectors_without_a_server() -> None:
    assert parse_json_path("$.a.b[0]['c d']") == ["a", "b", 0, "c d"]
    with pytest.raises(ValueError):
        parse_json_path("$..a")
    response = Response(200, {}, "<p>x</p>", 1.0)
    outcome = evaluate(Assertion(xpath={"path": "//p"}), response)  # no select function: unsupported
    assert not outcome.passed and "not supported" in outcome.message


# --- the command, reports, JUnit XML and the exit code --------------------------------------------

def project_manifests(dev: str, staging: str, *, blocking: bool, failing: bool) -> str:
    cases = [
        {"id": "home", "name": "home loads", "type": "smoke", "request": {"path": "/"},
         "expect": [{"status": 200}, {"no_errors": True}]},
        {"id": "flaky", "name": "flaky", "type": "smoke", "request": {"path": "/flaky"}, "retries": 1,
         "expect": [{"status": 200}]},
        {"id": "contact-invalid", "name": "contact rejects", "type": "action", "writes": True,
         "request": {"method": "POST", "path": "/contact", "form": {"name": "A"}},
         "expect": [{"status": 302}, {"flash": "at least 3"}]},
        {"id": "variant", "name": "variant", "type": "custom", "request": {"path": "/"},
         "expect": [{"contains": "v1" if failing else "Welcome"}]},
    ]
    suite = {"kind": "TestSuite", "name": "shop-smoke", "project": "shop", "block_on_failure": blocking,
             "environments": ["dev", "staging"], "cases": cases}
    project = {"kind": "Project", "name": "shop", "services": {"web": {"type": "app"}},
               "environments": {"dev": {"url": dev}, "staging": {"url": staging, "protected": True}}}
    return yaml.safe_dump(project) + "---\n" + yaml.safe_dump(suite)


def test_tests_run_writes_reports_and_junit_and_exits_3_on_a_blocking_failure(
        workspace: Workspace, server: Running, other: Running) -> None:
    server.state.hits.pop("/flaky", None)
    other.state.hits.pop("/flaky", None)
    workspace.manifest("shop.yaml", project_manifests(server.url, other.url, blocking=True, failing=True))
    junit = workspace.root / "out" / "junit.xml"
    result = workspace.qrm("tests", "run", "shop-smoke", "--env", "dev", "--env", "staging", "--junit", str(junit))
    assert result.exit_code == 3, result.output
    base = workspace.root / "reports" / "tests" / "shop-smoke"
    dev = yaml.safe_load((base / "dev.yaml").read_text())
    staging = yaml.safe_load((base / "staging.yaml").read_text())
    assert dev["counts"] == {"passed": 4, "failed": 0, "error": 0, "skipped": 0}
    assert [r["id"] for r in dev["results"]] == sorted(r["id"] for r in dev["results"])
    assert {r["id"]: r.get("flaky", False) for r in dev["results"]}["flaky"] is True
    assert staging["counts"] == {"passed": 2, "failed": 1, "error": 0, "skipped": 1}
    skipped = {r["id"]: r for r in staging["results"]}["contact-invalid"]
    assert skipped["outcome"] == "skipped" and "protected" in skipped["reason"]
    history = [json.loads(line) for line in (base / "history.jsonl").read_text().splitlines()]
    assert [(h["environment"], h["passed"], h["failed"], h["skipped"]) for h in history] == [
        ("dev", 4, 0, 0), ("staging", 2, 1, 1)]
    assert all("time" in h and "duration" in h for h in history)
    summary = (base / "summary.md").read_text()
    assert "| staging | 2 | 1 | 0 | 1 |" in summary and "`variant` on staging" in summary

    root = ET.parse(junit).getroot()
    suites = root.findall("testsuite")
    assert [s.get("name") for s in suites] == ["shop-smoke[dev]", "shop-smoke[staging]"]
    props = {p.get("name"): p.get("value") for p in suites[1].find("properties") or []}
    assert props["environment"] == "staging"
    assert (suites[1].get("failures"), suites[1].get("skipped")) == ("1", "1")
    dev_cases = {c.get("name"): c for c in suites[0].findall("testcase")}
    flaky_props = {p.get("name"): p.get("value") for p in dev_cases["flaky"].find("properties") or []}
    assert flaky_props["flaky"] == "true" and flaky_props["attempts"] == "2"
    staging_cases = {c.get("name"): c for c in suites[1].findall("testcase")}
    assert staging_cases["variant"].find("failure") is not None
    assert staging_cases["contact-invalid"].find("skipped") is not None

    again = workspace.qrm("tests", "run", "shop-smoke", "--json")
    assert again.exit_code == 3
    assert len((base / "history.jsonl").read_text().splitlines()) == 4


def test_a_failure_in_a_non_blocking_suite_exits_0(workspace: Workspace, server: Running, other: Running) -> None:
    workspace.manifest("shop.yaml", project_manifests(server.url, other.url, blocking=False, failing=True))
    result = workspace.qrm("tests", "run", "--env", "staging", "--json")
    assert result.exit_code == 0, result.output
    [document] = json.loads(result.stdout)
    assert document["environments"]["staging"]["failed"] == 1


def test_a_passing_blocking_suite_exits_0(workspace: Workspace, server: Running, other: Running) -> None:
    workspace.manifest("shop.yaml", project_manifests(server.url, other.url, blocking=True, failing=False))
    result = workspace.qrm("tests", "run", "shop-smoke")
    assert result.exit_code == 0, result.output
    assert "shop-smoke on staging: 3 passed, 0 failed, 0 errors, 1 skipped" in result.output


@pytest.mark.parametrize(("args", "message"), [
    (("tests", "run", "nope"), "unknown suite 'nope'"),
    (("tests", "run", "shop-smoke", "--env", "qa"), "has no environment 'qa'"),
])
def test_unknown_suites_and_environments_exit_1(workspace: Workspace, server: Running, args: tuple[str, ...],
                                                message: str) -> None:
    workspace.manifest("shop.yaml", project_manifests(server.url, server.url, blocking=True, failing=False))
    result = workspace.qrm(*args)
    assert result.exit_code == 1
    assert message in result.output


def test_the_base_url_comes_from_the_allocated_port_of_the_web_service(workspace: Workspace) -> None:
    workspace.manifest("shop.yaml", """
kind: Project
name: shop
base_path: /app
environments:
  dev: {host: localhost}
services:
  db: {type: database}
  web: {type: app}
---
kind: TestSuite
name: s
project: shop
cases:
  - {id: home, name: home, type: smoke, request: {path: /}, expect: [{status: 404}]}
""")
    applied = workspace.qrm("apply", "--yes")
    assert applied.exit_code == 0, applied.output
    from reconciler.edges.registry import Registry

    registry = Registry(f"sqlite:///{workspace.root / '.qrm' / 'registry.db'}")
    try:
        port = next(s.port for s in registry.recorded_services().values() if s.name.endswith("-web"))
    finally:
        registry.close()
    with quantum_server(port=port):
        result = workspace.qrm("tests", "run", "s", "--json")
    assert result.exit_code == 0, result.output
    [document] = json.loads(result.stdout)
    assert document["environments"]["dev"]["base_url"] == f"http://127.0.0.1:{port}/app"
    assert document["environments"]["dev"]["passed"] == 1  # /app/ is not a component here: 404


# --- the client (aiohttp): uploads, cookie rules, encodings, keep-alive, proxies, TLS ---------------

@pytest.fixture(scope="module")
def echo() -> Iterator[Echo]:
    with echo_server() as running:
        yield running


@pytest.mark.parametrize(("file", "expected"), [
    (UploadFile(filename="a.txt", content="héllo"), "héllo".encode()),
    (UploadFile(filename="a.bin", size=0), b""),
    (UploadFile(filename="a.bin", size=5), b"qrm-u"),
    (UploadFile(filename="a.bin", size=25), b"qrm-upload-qrm-upload-qrm"),
], ids=["content", "empty", "short", "repeated"])
def test_an_upload_sends_its_content_else_size_generated_bytes(file: UploadFile, expected: bytes) -> None:
    assert upload_bytes(file) == expected


def test_a_case_with_files_posts_multipart_form_data_with_its_fields(echo: Echo) -> None:
    c = case("upload", [{"status": 200},
                        {"json_path": {"path": "$.content_type", "equals": "multipart/form-data"}},
                        {"json_path": {"path": "$.parts.cv.filename", "equals": "cv.pdf"}},
                        {"json_path": {"path": "$.parts.cv.size", "equals": 3000}},
                        {"json_path": {"path": "$.parts.note.value", "equals": "true"}}],
             method="POST", path="/upload", form={"title": "Dr", "note": True},
             files={"cv": {"filename": "cv.pdf", "content_type": "application/pdf", "size": 3000},
                    "letter": {"filename": "letter.txt", "content_type": "text/plain", "content": "Dear Sir"}})
    before = len(echo.uploads)
    result = run_one(echo, c)
    assert result.outcome == test_results.PASSED, result.reason
    [parts] = echo.uploads[before:]
    assert parts == {
        "title": {"value": "Dr"},
        "note": {"value": "true"},
        "cv": {"filename": "cv.pdf", "content_type": "application/pdf", "size": 3000, "head": "qrm-upload-qrm-upload-"},
        "letter": {"filename": "letter.txt", "content_type": "text/plain", "size": 8, "head": "Dear Sir"},
    }


def test_the_cookie_jar_follows_real_cookie_rules(echo: Echo) -> None:
    """Path, expiry and domain are honoured on the followed redirect, and the IP host keeps its cookies."""
    c = case("cookies", [{"status": 302}, {"redirect": "/echo"}, {"no_errors": True}], path="/cookies")
    result = run_one(echo, c)
    assert result.outcome == test_results.PASSED, result.reason
    followed = [s for s in echo.seen if s.path == "/echo"][-1]
    assert followed.cookie == "kept=1"


@pytest.mark.parametrize(("expect", "followed"), [
    ([{"status": 302}, {"redirect": "/echo"}], False),
    ([{"status": 302}, {"flash": "x"}], True),
    ([{"status": 302}, {"no_errors": True}], True),
], ids=["nothing-reads-it", "flash", "no_errors"])
def test_a_redirect_is_followed_only_when_an_assertion_reads_the_page_it_leads_to(
        echo: Echo, expect: list[dict[str, Any]], followed: bool) -> None:
    before = len(echo.seen)
    run_one(echo, case("redirect", expect, path="/cookies"))
    assert [s.path for s in echo.seen[before:]] == (["/cookies", "/echo"] if followed else ["/cookies"])


@pytest.mark.parametrize("path", ["/gzip", "/chunked"])
def test_compressed_and_chunked_bodies_are_decoded(echo: Echo, path: str) -> None:
    expect = {"/gzip": "compressed page compressed page", "/chunked": "<p>chunk 0</p><p>chunk 1</p>"}[path]
    result = run_one(echo, case("decoded", [{"status": 200}, {"contains": expect}], path=path))
    assert result.outcome == test_results.PASSED, result.reason


def test_the_cases_of_an_environment_share_keep_alive_connections(echo: Echo) -> None:
    before = len(echo.seen)
    cases = [case(f"k{i}", [{"status": 200}], path=f"/page/{i}") for i in range(40)]
    results = run_cases(cases, [Target("dev", echo.url)], concurrency=4)
    assert all(r.outcome == test_results.PASSED for r in results)
    seen = echo.seen[before:]
    assert len(seen) == 40
    assert len({s.connection for s in seen}) <= 8  # 40 requests on the few connections of 4 workers


def test_proxies_come_from_the_environment(echo: Echo, monkeypatch: pytest.MonkeyPatch) -> None:
    """A host only the proxy can reach: the request goes to HTTP_PROXY in absolute form."""
    monkeypatch.setenv("HTTP_PROXY", echo.url)
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    result = run_one(echo, case("proxied", [{"status": 200}, {"contains": "answered GET http://shop.invalid/x"}],
                                path="/x"), base_url="http://shop.invalid")
    assert result.outcome == test_results.PASSED, result.reason
    assert echo.seen[-1].url == "http://shop.invalid/x"


def test_loopback_is_never_proxied(echo: Echo, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")  # nothing listens there: a proxied request would fail
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    assert run_one(echo, case("direct", [{"status": 200}], path="/x")).outcome == test_results.PASSED


def test_no_proxy_sends_a_host_direct(echo: Echo, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTP_PROXY", echo.url)
    monkeypatch.setenv("NO_PROXY", "shop.invalid")
    before = len(echo.seen)
    result = run_one(echo, case("direct", [{"status": 200}], path="/x"), base_url="http://shop.invalid")
    assert result.outcome == test_results.ERROR and result.reason.startswith("cannot resolve shop.invalid"), result
    assert len(echo.seen) == before


def test_tls_is_verified(tmp_path: Path) -> None:
    certs = Certificates(tmp_path)
    with running() as servers:
        port = servers.status(200, tls=certs.server_context("localhost", self_signed=True))
        [result] = run_cases([case("tls", [{"status": 200}], path="/")], [Target("dev", f"https://127.0.0.1:{port}")])
    assert result.outcome == test_results.ERROR
    assert result.reason == (f"TLS handshake with 127.0.0.1:{port} failed: certificate verify failed "
                             "(self-signed certificate)")


@pytest.mark.parametrize(("answer", "reason"), [
    (b"", "the connection closed before a response"),
    (b"HTTP/1.1 200 OK\r\nContent-", "the connection closed mid-response"),
    (b"SSH-2.0-OpenSSH_9.2\r\n\r\n", "not an HTTP response: 'SSH-2.0-OpenSSH_9.2'"),
    (b"HTTP/1.1 200 OK\r\nX-Big: " + b"a" * 70_000 + b"\r\n\r\n", "response headers larger than 64 KiB"),
    (b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nabc", "the response ended early after 3 body bytes"),
    (b"HTTP/1.1 200 OK\r\nContent-Length: 2000000\r\n\r\nabc", "response body larger than 1 MB"),
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n",
     "a malformed response: Invalid character in chunk size"),
    (b"HTTP/1.1 200 OK\r\nContent-Length: abc\r\n\r\nhello",
     "a malformed response: Invalid character in Content-Length"),
], ids=["closed", "closed-mid-head", "not-http", "huge-header", "short-body", "huge-length", "bad-chunk", "bad-length"])
def test_odd_answers_are_errors_with_a_clear_reason(answer: bytes, reason: str) -> None:
    with running() as servers:
        port = servers.raw(answer)
        [result] = run_cases([case("odd", [{"status": 200}], path="/")], [Target("dev", f"http://127.0.0.1:{port}")])
    assert (result.outcome, result.reason) == (test_results.ERROR, reason)
