"""The component and test-suite endpoints of `qrm serve` as their users call them: a real uvicorn process
over tests/support/suites_api's workspace (a git repository; shop's pages on the Flask Quantum stand-in,
3 of whose 5 smoke cases pass), the token and scope matrix, the original plan's curl lines through the
real `curl`, a run polled until it ends, and unknown names as 404s.
"""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.support import api_server, suites_api
from tests.support.api_server import Server
from tests.support.git_repos import git
from tests.support.suites_api import FAILING, PASSING

PAGES = sorted(f"components/{name}" for name in suites_api.PAGES)
FAILING_PAGES = ["components/gone.q#page", "components/missing.q#page"]


def post(server: Server, path: str, token: str | None, body: bytes = b"", **headers: str) -> httpx.Response:
    sent = {"Authorization": f"Bearer {token}"} if token is not None else {}
    return server.request("POST", path, content=body, headers={**sent, **headers})


def finished(server: Server, run_id: int, token: str, wait: float = 60) -> dict[str, Any]:
    """GET /test-runs/{id} until its status is no longer running."""
    deadline = time.monotonic() + wait
    while True:
        document: dict[str, Any] = server.get(f"/test-runs/{run_id}", token).json()
        if document["status"] != "running" or time.monotonic() > deadline:
            return document
        time.sleep(0.1)


def cli_json(server: Server, *args: str) -> Any:
    env = api_server.environment(server.root.parent / "home")
    return json.loads(api_server.qrm(server.root, env, *args, "--json"))


# --- the token and scope matrix ----------------------------------------------------------------------

ENDPOINTS = [  # method, path, body, the scope it needs
    ("POST", "/projects/shop/components/scan", b"", "write"),
    ("GET", "/projects/shop/components", b"", "read"),
    ("POST", "/projects/shop/test-suites/generate", b"{}", "write"),
    ("POST", "/test-suites/shop-auto/run", b'{"environment": "dev"}', "write"),
    ("GET", "/test-runs/1", b"", "read"),
]


@pytest.mark.parametrize(("method", "path", "body", "scope"), ENDPOINTS, ids=[f"{m} {p}" for m, p, *_ in ENDPOINTS])
@pytest.mark.parametrize("token", [None, "wrong", "reader", "writer", "everything"])
def test_every_endpoint_needs_a_token_with_its_scope(suites_served: Server, method: str, path: str, body: bytes,
                                                     scope: str, token: str | None) -> None:
    if path.startswith("/test-runs/") or path.startswith("/test-suites/"):  # a suite to run, and a run to read
        post(suites_served, "/projects/shop/test-suites/generate", suites_served.tokens["writer"], b"{}")
        post(suites_served, "/test-suites/shop-auto/run", suites_served.tokens["writer"], b'{"environment": "dev"}')
    presented = None if token is None else suites_served.tokens.get(token, "qrm_not-a-token-of-this-workspace")
    headers = {"Authorization": f"Bearer {presented}"} if presented is not None else {}
    answer = suites_served.request(method, path, content=body, headers=headers)
    allowed = token is not None and scope in suites_api.TOKENS.get(token, [])
    expected = (202 if method == "POST" and path.endswith("/run") else 200) if allowed else (
        401 if token in (None, "wrong") else 403)
    assert answer.status_code == expected, answer.text
    if not allowed:
        assert set(answer.json()) == {"error"}
        if expected == 403:
            assert answer.json()["error"].startswith(f"token {token!r} has no {scope!r} scope")
        if presented is not None:
            assert presented not in answer.text


# --- components ------------------------------------------------------------------------------------------

def test_scan_answers_the_components_and_stats_of_qrm_scan_json(suites_served: Server) -> None:
    answer = post(suites_served, "/projects/shop/components/scan", suites_served.tokens["writer"])
    assert answer.status_code == 200, answer.text
    document = answer.json()
    cli = cli_json(suites_served, "scan", "shop")
    assert [c["path"] for c in document["components"]] == PAGES
    assert document["components"] == cli["projects"][0]["components"]
    assert document["stats"] == cli["totals"] == document["totals"]
    assert document["report"] == "reports/components/shop.yaml" and str(suites_served.root) not in answer.text
    assert document["stats"] == {"components": 5, "actions": 0, "forms": 0, "queries": 0, "unparsed": 0,
                                 "not_served": 0}


def test_components_are_the_last_scan_and_a_project_never_scanned_has_none(suites_served: Server) -> None:
    scanned = post(suites_served, "/projects/2/components/scan", suites_served.tokens["writer"]).json()
    reader = suites_served.tokens["reader"]
    last = suites_served.get("/projects/shop/components", reader).json()
    assert (last["project"], last["components"], last["stats"]) == ("shop", scanned["components"], scanned["stats"])
    assert last["scanned_at"] is not None
    assert suites_served.get("/projects/2/components", reader).json() == last
    assert suites_served.get("/projects/blog/components", reader).json() == {
        "project": "blog", "scanned_at": None, "components": [], "stats": {k: 0 for k in scanned["stats"]}}


def test_scanning_a_project_without_a_source_folder_is_refused_by_the_workspace(suites_served: Server) -> None:
    answer = post(suites_served, "/projects/blog/components/scan", suites_served.tokens["writer"])
    assert (answer.status_code, answer.json()) == (409, {"error": "project 'blog' has no source: folder to scan"})


# --- generating a suite ----------------------------------------------------------------------------------

def test_generate_writes_the_projects_suite_as_the_cli_does_and_commits_it_naming_the_token(
        suites_served: Server) -> None:
    answer = post(suites_served, "/projects/shop/test-suites/generate", suites_served.tokens["writer"])
    assert answer.status_code == 200, answer.text
    document = answer.json()
    assert (document["suite"], document["path"], document["total"], document["counts"], document["types"]) == (
        "shop-auto", "manifests/tests/shop.yaml", 5, {"smoke": 5}, [])
    suite = yaml.safe_load((suites_served.root / "manifests/tests/shop.yaml").read_text())
    assert sorted(c["id"] for c in suite["cases"]) == [f"{p}#page" for p in PAGES]
    if document["commit"] is not None:  # the first generation of the module's server commits; later ones find it
        message = git(suites_served.root, "log", "-1", "--format=%B", document["commit"])
        assert message.startswith("qrm serve: generate test suite shop-auto of project shop")
        assert "Requested by token 'writer'." in message
    assert git(suites_served.root, "status", "--porcelain", "manifests", "reports/generated-cases") == ""


def test_a_named_suite_of_some_types_lands_under_manifests_tests_and_is_committed(suites_served: Server) -> None:
    answer = post(suites_served, "/projects/2/test-suites/generate", suites_served.tokens["everything"],
                  b'{"name": "Smoke Only", "types": ["smoke", "api"]}')
    assert answer.status_code == 200, answer.text
    document = answer.json()
    assert (document["suite"], document["path"], document["total"], document["counts"], document["types"]) == (
        "smoke-only", "manifests/tests/smoke-only.yaml", 5, {"smoke": 5}, ["smoke", "endpoint"])
    suite = yaml.safe_load((suites_served.root / document["path"]).read_text())
    assert (suite["kind"], suite["name"], suite["project"], len(suite["cases"])) == ("TestSuite", "smoke-only",
                                                                                    "shop", 5)
    assert cli_json(suites_served, "validate")["valid"] is True
    log = git(suites_served.root, "log", "--format=%s%n%b", "-1", "--", document["path"])
    assert "generate test suite smoke-only (smoke, endpoint) of project shop" in log
    assert "Requested by token 'everything'." in log
    assert git(suites_served.root, "status", "--porcelain", "manifests") == ""


@pytest.mark.parametrize("content_type", [None, "application/json", "application/x-www-form-urlencoded",
                                          "text/plain; charset=utf-8"])
def test_a_json_body_is_read_whatever_its_content_type(suites_served: Server, content_type: str | None) -> None:
    headers = {"Content-Type": content_type} if content_type is not None else {}
    answer = post(suites_served, "/projects/shop/test-suites/generate", suites_served.tokens["writer"],
                  b'{"name": "typed", "types": ["smoke"]}', **headers)
    assert answer.status_code == 200, answer.text
    assert (answer.json()["suite"], answer.json()["types"]) == ("typed", ["smoke"])


@pytest.mark.parametrize(("body", "status", "reason"), [
    (b'{"types": ["smoke", "fuzz"]}', 422, "unknown case type 'fuzz'; known types: smoke, auth, action, form, "
                                           "query, endpoint, custom (and api = endpoint)"),
    (b'{"types": "smoke"}', 422, "body.types: Input should be a valid list"),
    (b'{"name": 7}', 422, "body.name: Input should be a valid string"),
    (b'{"nmae": "x"}', 422, "body.nmae: Extra inputs are not permitted"),
    (b'{"name": "x"', 422, "the body is not JSON (Expecting ',' delimiter: line 1 column 13 (char 12))"),
    (b'["smoke"]', 422, "the body must be a JSON object"),
    (b'{"name": "!!!"}', 422, "suite name '!!!' has no letter or digit to name a suite with"),
    (b'{"name": "shop-auto", "types": ["smoke"]}', 422,
     "suite 'shop-auto' is the project's own suite, with every type; name another suite to hold some types"),
], ids=["unknown-type", "types-not-a-list", "name-not-a-string", "unknown-field", "not-json", "not-an-object",
        "no-name", "own-suite-with-types"])
def test_bad_generate_bodies_are_422_with_a_reason(suites_served: Server, body: bytes, status: int,
                                                   reason: str) -> None:
    answer = post(suites_served, "/projects/shop/test-suites/generate", suites_served.tokens["writer"], body)
    assert (answer.status_code, answer.json()) == (status, {"error": reason})


def test_concurrent_generations_of_different_suites_all_land_as_commits(suites_served: Server) -> None:
    from concurrent.futures import ThreadPoolExecutor

    names = [f"concurrent-{n}" for n in range(6)]
    before = int(git(suites_served.root, "rev-list", "--count", "HEAD"))
    with ThreadPoolExecutor(len(names)) as pool:
        answers = list(pool.map(lambda name: post(suites_served, "/projects/shop/test-suites/generate",
                                                  suites_served.tokens["writer"],
                                                  json.dumps({"name": name, "types": ["smoke"]}).encode()), names))
    assert [a.status_code for a in answers] == [200] * len(names), [a.text for a in answers]
    commits = {a.json()["commit"] for a in answers}
    assert None not in commits and len(commits) == len(names)
    assert int(git(suites_served.root, "rev-list", "--count", "HEAD")) == before + len(names)
    tracked = git(suites_served.root, "ls-files", "manifests/tests").split()
    assert {f"manifests/tests/{name}.yaml" for name in names} <= set(tracked)


def test_a_name_another_projects_suite_has_is_refused_and_nothing_is_written(suites_served: Server) -> None:
    root = suites_served.root
    (root / "manifests/blog-suite.yaml").write_text("kind: TestSuite\nname: taken\nproject: blog\ncases: []\n")
    try:
        answer = post(suites_served, "/projects/shop/test-suites/generate", suites_served.tokens["writer"],
                      b'{"name": "Taken"}')
        assert (answer.status_code, answer.json()) == (409, {
            "error": "a suite named 'taken' already exists (of project 'blog'); choose another name"})
        assert not (root / "manifests/tests/taken.yaml").exists()
    finally:
        (root / "manifests/blog-suite.yaml").unlink()


def test_a_file_qrm_serve_did_not_write_is_never_overwritten(suites_served: Server) -> None:
    hand = suites_served.root / "manifests/tests/mine.yaml"
    text = "# my own suite\nkind: TestSuite\nname: mine\nproject: shop\ncases: []\n"
    hand.write_text(text)
    try:
        answer = post(suites_served, "/projects/shop/test-suites/generate", suites_served.tokens["writer"],
                      b'{"name": "Mine", "types": ["smoke"]}')
        assert (answer.status_code, answer.json()) == (409, {
            "error": "manifests/tests/mine.yaml exists and was not written for project 'shop' by qrm serve; "
                     "choose another name"})
        assert hand.read_text() == text
    finally:
        hand.unlink()


def test_regenerating_a_named_suite_rewrites_it_and_commits_only_a_change(suites_served: Server) -> None:
    writer = suites_served.tokens["writer"]
    first = post(suites_served, "/projects/shop/test-suites/generate", writer, b'{"name": "again"}').json()
    path = suites_served.root / first["path"]
    assert (first["suite"], first["total"]) == ("again", 5)
    second = post(suites_served, "/projects/shop/test-suites/generate", writer, b'{"name": "again"}').json()
    assert (second["total"], second["written"], second["commit"]) == (5, [], None)
    assert yaml.safe_load(path.read_text())["name"] == "again"


def test_invalid_manifests_refuse_a_generation_with_their_errors_and_nothing_is_written(
        suites_served: Server) -> None:
    root = suites_served.root
    (root / "manifests/broken.yaml").write_text("kind: TestSuite\nname: broken\nproject: nowhere\ncases: []\n")
    try:
        answer = post(suites_served, "/projects/shop/test-suites/generate", suites_served.tokens["writer"],
                      b'{"name": "never"}')
        assert answer.status_code == 409, answer.text
        document = answer.json()
        assert document["error"].startswith("the workspace's manifests are invalid")
        assert [e["file"].endswith("broken.yaml") for e in document["errors"]] == [True]
        assert not (root / "manifests/tests/never.yaml").exists()
    finally:
        (root / "manifests/broken.yaml").unlink()


# --- running a suite -------------------------------------------------------------------------------------

@pytest.mark.parametrize(("suite", "body", "environment"), [
    ("shop-auto", b'{"environment": "staging"}', "staging"),
    ("shop-auto", b'{"environment_id": 2}', "staging"),
    ("shop-auto", b'{"environment_id": "1"}', "dev"),
    ("shop-auto", b'{"environment": 1}', "dev"),
], ids=["by-name", "id-alias", "id-as-text", "position"])
def test_a_run_answers_202_and_ends_with_each_cases_outcome(suites_served: Server, suite: str, body: bytes,
                                                            environment: str) -> None:
    writer, reader = suites_served.tokens["writer"], suites_served.tokens["reader"]
    post(suites_served, "/projects/shop/test-suites/generate", writer)
    answer = post(suites_served, f"/test-suites/{suite}/run", writer, body)
    assert answer.status_code == 202, answer.text
    started = answer.json()
    assert (started["status"], started["suite"], started["environment"]) == ("running", suite, environment)
    document = finished(suites_served, started["run_id"], reader)
    assert (document["status"], document["passed"], document["failed"], document["skipped"]) == (
        "failed", PASSING, FAILING, 0)
    assert [r["id"] for r in document["results"]] == [f"{p}#page" for p in PAGES]
    assert [r["id"] for r in document["results"] if r["outcome"] == "failed"] == FAILING_PAGES
    for result in document["results"]:
        assert set(result) == {"id", "name", "type", "outcome", "reason"}
        assert (result["outcome"] == "failed") == (result["reason"] != "")
    gone = next(r for r in document["results"] if r["id"] == "components/gone.q#page")
    assert gone["name"] == "Smoke: Gone loads" and gone["reason"].startswith("status 404, expected 200")
    history = cli_json(suites_served, "tests", "history", suite)  # the registry recorded the finished run
    assert history["runs"][0]["environment"] == environment


def test_concurrent_runs_of_one_suite_all_end_and_each_adds_its_history_line(suites_served: Server) -> None:
    from concurrent.futures import ThreadPoolExecutor

    writer, reader = suites_served.tokens["writer"], suites_served.tokens["reader"]
    post(suites_served, "/projects/shop/test-suites/generate", writer)
    history = suites_served.root / "reports/tests/shop-auto/history.jsonl"
    before = len(history.read_text().splitlines()) if history.exists() else 0
    bodies = [b'{"environment": "dev"}', b'{"environment": "staging"}'] * 3
    with ThreadPoolExecutor(len(bodies)) as pool:
        started = list(pool.map(lambda body: post(suites_served, "/test-suites/shop-auto/run", writer, body), bodies))
    ids = [answer.json()["run_id"] for answer in started]
    assert [answer.status_code for answer in started] == [202] * len(bodies) and len(set(ids)) == len(bodies)
    documents = [finished(suites_served, run_id, reader) for run_id in ids]
    assert [(d["status"], d["passed"], d["failed"]) for d in documents] == [("failed", PASSING, FAILING)] * len(ids)
    lines = [json.loads(line) for line in history.read_text().splitlines()[before:]]
    assert sorted(line["environment"] for line in lines) == sorted(["dev", "staging"] * 3)


def test_a_suite_whose_cases_all_pass_ends_passed(suites_served: Server) -> None:
    writer = suites_served.tokens["writer"]
    suite = suites_served.root / "manifests/tests/passing.yaml"
    suite.write_text("kind: TestSuite\nname: passing\nproject: shop\nenvironments: [dev]\ncases:\n"
                     "  - {id: home, name: home, type: smoke, request: {path: /}, expect: [{status: 200}]}\n")
    try:
        started = post(suites_served, "/test-suites/passing/run", writer).json()  # its one environment: no body
        document = finished(suites_served, started["run_id"], suites_served.tokens["reader"])
    finally:
        suite.unlink()
    assert started["environment"] == "dev"
    assert {k: document[k] for k in ("status", "passed", "failed")} == {"status": "passed", "passed": 1, "failed": 0}
    assert document["results"] == [{"id": "home", "name": "home", "type": "smoke", "outcome": "passed", "reason": ""}]


def test_a_run_that_cannot_reach_its_environment_ends_in_error_with_a_reason(suites_served: Server) -> None:
    suite = suites_served.root / "manifests/tests/unplaced.yaml"  # blog's dev has no url: and no allocated port
    suite.write_text("kind: TestSuite\nname: unplaced\nproject: blog\ncases:\n"
                     "  - {id: home, name: home, type: smoke, request: {path: /}, expect: [{status: 200}]}\n")
    try:
        started = post(suites_served, "/test-suites/unplaced/run", suites_served.tokens["writer"],
                       b'{"environment": "dev"}')
        assert started.status_code == 202, started.text
        document = finished(suites_served, started.json()["run_id"], suites_served.tokens["reader"])
    finally:
        suite.unlink()
    assert {k: document[k] for k in ("status", "passed", "failed", "results")} == {
        "status": "error", "passed": 0, "failed": 0, "results": []}
    assert document["error"] == ("service 'web' of blog/dev has no allocated port yet (run qrm apply, or give the "
                                 "environment a url:)")


@pytest.mark.parametrize(("method", "path", "body", "status", "reason"), [
    ("POST", "/projects/nope/components/scan", b"", 404,
     "unknown project 'nope'; known projects: blog, shop (or their positions, 1 to 2)"),
    ("GET", "/projects/3/components", b"", 404,
     "unknown project '3'; known projects: blog, shop (or their positions, 1 to 2)"),
    ("POST", "/projects/0/test-suites/generate", b"{}", 404,
     "unknown project '0'; known projects: blog, shop (or their positions, 1 to 2)"),
    ("POST", "/test-suites/nope/run", b'{"environment": "dev"}', 404, "unknown suite 'nope'; known suites: "),
    ("POST", "/test-suites/shop-auto/run", b'{"environment": "qa"}', 404,
     "unknown environment 'qa'; known environments: dev, staging (or their positions, 1 to 2)"),
    ("POST", "/test-suites/shop-auto/run", b'{"environment_id": 3}', 404,
     "unknown environment '3'; known environments: dev, staging (or their positions, 1 to 2)"),
    ("POST", "/test-suites/shop-auto/run", b"{}", 422,
     "body.environment: Field required (the suite runs on dev, staging: name one)"),
    ("POST", "/test-suites/shop-auto/run", b'{"environment": ["dev"]}', 422, "body.environment."),
    ("POST", "/test-suites/shop-auto/run", b"environment=dev", 422, "the body is not JSON"),
    ("GET", "/test-runs/100000", b"", 404, "unknown test run 100000"),
    ("GET", "/test-runs/run-one", b"", 422, "path.run_id: Input should be a valid integer"),
], ids=["scan-unknown-project", "components-position-past-the-end", "generate-position-zero", "run-unknown-suite",
        "run-unknown-environment", "run-environment-position-past-the-end", "run-without-environment",
        "run-environment-a-list", "run-form-body", "unknown-run", "run-id-not-a-number"])
def test_unknown_names_are_404_and_bad_bodies_422(suites_served: Server, method: str, path: str, body: bytes,
                                                  status: int, reason: str) -> None:
    post(suites_served, "/projects/shop/test-suites/generate", suites_served.tokens["writer"])  # shop-auto exists
    answer = suites_served.request(method, path, content=body,
                                   headers={"Authorization": f"Bearer {suites_served.tokens['everything']}"})
    assert answer.status_code == status, answer.text
    document = answer.json()
    assert set(document) == {"error"} and document["error"].startswith(reason)
    assert "Traceback" not in answer.text and "\n" not in document["error"]


def test_the_openapi_document_names_the_paths_and_their_bodies(suites_served: Server) -> None:
    paths = suites_served.get("/openapi.json").json()["paths"]
    assert {path: sorted(paths[path]) for path in paths if path.startswith(("/projects", "/test-"))} == {
        "/projects/{project}/components/scan": ["post"], "/projects/{project}/components": ["get"],
        "/projects/{project}/test-suites/generate": ["post"], "/test-suites/{suite}/run": ["post"],
        "/test-runs/{run_id}": ["get"]}
    generate = paths["/projects/{project}/test-suites/generate"]["post"]["requestBody"]["content"]
    assert set(generate["application/json"]["schema"]["properties"]) == {"name", "types"}
    run = paths["/test-suites/{suite}/run"]["post"]["requestBody"]["content"]
    assert set(run["application/json"]["schema"]["properties"]) == {"environment", "environment_id"}


# --- the original plan's curl lines, through the real curl ------------------------------------------------

CURL_LINES = [  # the lines 2 to 5 (line 1, allocate, is the ports part's), `localhost:8001` as given
    """curl -X POST "http://localhost:8001/projects/2/components/scan" """,
    """curl -X POST "http://localhost:8001/projects/2/test-suites/generate" -d '{"name": "Auto Suite", "types": """
    """["smoke", "api"]}'""",
    """curl -X POST "http://localhost:8001/test-suites/1/run" -d '{"environment_id": 2}'""",
    """curl "http://localhost:8001/test-runs/5" """,
]


def curl(server: Server, line: str, token: str) -> Any:
    """`line` run by the shell with the real curl, at the server's address, with only the token header added."""
    command = line.replace("http://localhost:8001", server.url).replace("curl ", f"curl -H 'X-QRM-Token: {token}' ",
                                                                         1)
    done = subprocess.run(["sh", "-c", command], capture_output=True, text=True, timeout=60, check=True)
    return json.loads(done.stdout)


def test_the_plans_curl_lines_work_as_written(tmp_path: Path) -> None:
    with suites_api.served(tmp_path) as server:  # a server of its own: run 5 is the fifth run it starts
        token = server.tokens["everything"]
        scanned = curl(server, CURL_LINES[0], token)
        assert [c["path"] for c in scanned["components"]] == PAGES and scanned["stats"]["components"] == 5
        generated = curl(server, CURL_LINES[1], token)
        assert (generated["suite"], generated["path"], generated["counts"]) == (
            "auto-suite", "manifests/tests/auto-suite.yaml", {"smoke": 5})
        for number in range(1, 5):  # runs 1 to 4, so that the plan's line starts run 5
            assert post(server, "/test-suites/shop-auto/run", token, b'{"environment": "dev"}').json()[
                "run_id"] == number
        started = curl(server, CURL_LINES[2], token)
        assert {k: started[k] for k in ("run_id", "status", "suite", "environment")} == {
            "run_id": 5, "status": "running", "suite": "auto-suite", "environment": "staging"}
        deadline = time.monotonic() + 60
        document = curl(server, CURL_LINES[3], token)
        while document["status"] == "running" and time.monotonic() < deadline:
            time.sleep(0.1)
            document = curl(server, CURL_LINES[3], token)
        assert (document["status"], document["passed"], document["failed"]) == ("failed", PASSING, FAILING)
        assert [r["id"] for r in document["results"] if r["outcome"] == "failed"] == FAILING_PAGES
        assert token not in server.log()


def test_sigterm_during_a_run_stops_the_server_cleanly_and_leaves_no_half_written_report(tmp_path: Path) -> None:
    with suites_api.served(tmp_path) as server:
        (server.root / "manifests/tests").mkdir()
        (server.root / "manifests/tests/slow.yaml").write_text(
            "kind: TestSuite\nname: slow\nproject: shop\ncases:\n"
            "  - {id: slow, name: slow, type: smoke, request: {path: /slow}, expect: [{status: 200}]}\n")
        started = post(server, "/test-suites/slow/run", server.tokens["writer"], b'{"environment": "dev"}')
        assert started.status_code == 202, started.text
        assert server.get(f"/test-runs/{started.json()['run_id']}", server.tokens["reader"]).json()["status"] == (
            "running")
        assert server.stop() == 0, server.log()
        assert not (server.root / "reports/tests/slow").exists()
        assert "Traceback" not in server.log()
