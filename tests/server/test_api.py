"""`qrm serve` as its users call it: a real uvicorn process over the bundled example (tests/conftest.py's
`served`), every read endpoint through it, the token and scope matrix, and errors as JSON reasons.

The example is applied, its prod database password is api_server.CANARY, and it has the tokens of
api_server.TOKENS (reader: read; writer: write; keeper: secrets; trusted: read+secrets; everything).
"""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from click.testing import CliRunner

from reconciler.cli import cli
from tests.support import api_server
from tests.support.api_server import CANARY, Server

# Every read endpoint, with the scope it needs.
READ_PATHS = [
    "/resources/ports",
    "/resources/ports?host=localhost&type=app&limit=2&offset=1",
    "/resources/ports/ranges",
    "/resources/ports/check/8001?host=localhost",
    "/resources/services",
    "/resources/services?service_type=app&project=quantumblog",
    "/resources/secrets",
    "/plan?refresh=false",
    "/resources/generate/env/quantumblog?environment=prod",
    "/resources/generate/docker-compose/quantumblog?environment=dev",
]


def cli_json(server: Server, *args: str) -> Any:
    env = api_server.environment(server.root.parent / "home")
    return json.loads(api_server.qrm(server.root, env, *args, "--json"))


# --- the token and scope matrix ------------------------------------------------------------------------

@pytest.mark.parametrize("path", READ_PATHS)
@pytest.mark.parametrize(("token", "status"), [
    (None, 401), ("wrong", 401), ("reader", 200), ("writer", 403), ("keeper", 403), ("trusted", 200),
    ("everything", 200),
], ids=["no-token", "wrong-token", "read", "write-only", "secrets-only", "read+secrets", "all-scopes"])
def test_every_read_path_needs_a_token_with_the_read_scope(served: Server, path: str, token: str | None,
                                                           status: int) -> None:
    presented = None if token is None else served.tokens.get(token, "qrm_not-a-token-of-this-workspace")
    answer = served.get(path, presented)
    assert answer.status_code == status, answer.text
    document = answer.json()
    if status != 200:
        assert set(document) == {"error"} and "\n" not in document["error"]
        if presented is not None:
            assert presented not in answer.text
    if status == 401:
        assert answer.headers["www-authenticate"] == "Bearer"
    if status == 403:
        scopes = ", ".join(api_server.TOKENS[str(token)])
        assert document["error"] == f"token {token!r} has no 'read' scope (it has: {scopes})"


def test_the_token_also_comes_in_x_qrm_token(served: Server) -> None:
    assert served.get("/resources/secrets", headers={"X-QRM-Token": served.tokens["reader"]}).status_code == 200
    assert served.get("/resources/secrets", headers={"X-QRM-Token": "qrm_wrong"}).status_code == 401


@pytest.mark.parametrize("header", ["Basic cmVhZGVyOnB3", "Bearer", "Token abc", "bearer"])
def test_an_authorization_header_without_a_bearer_token_is_401(served: Server, header: str) -> None:
    answer = served.get("/resources/ports", headers={"Authorization": header})
    assert answer.status_code == 401 and "needs a token" in answer.json()["error"]


def test_health_needs_no_token(served: Server) -> None:
    answer = served.get("/health")
    assert (answer.status_code, answer.json()) == (200, {"status": "ok"})


def test_a_revoked_token_is_refused_from_the_next_request_on(served: Server) -> None:
    env = api_server.environment(served.root.parent / "home")
    token = api_server.qrm(served.root, env, "token", "create", "short-lived").strip()
    assert served.get("/resources/ports", token).status_code == 200
    api_server.qrm(served.root, env, "token", "revoke", "short-lived")
    answer = served.get("/resources/ports", token)
    assert answer.status_code == 401
    assert answer.json() == {"error": "the token is not known (revoked, mistyped, or of another workspace)"}


# --- what each endpoint answers: the CLI's documents ---------------------------------------------------

def test_ports_are_the_cli_list_a_page_at_a_time_with_the_total(served: Server) -> None:
    everything = cli_json(served, "ports", "list")["allocations"]
    token = served.tokens["reader"]
    first = served.get("/resources/ports", token).json()
    assert first["total"] == len(everything) == 10 and first["allocations"] == everything
    assert (first["source"], first["workspace"], first["limit"], first["offset"]) == (
        "registry", "served-example", 100, 0)
    pages = [served.get(f"/resources/ports?limit=3&offset={offset}", token).json() for offset in range(0, 12, 3)]
    assert [row for page in pages for row in page["allocations"]] == everything
    assert {page["total"] for page in pages} == {10}


@pytest.mark.parametrize(("query", "wanted"), [
    ("type=database", lambda r: r["type"] == "database"),
    ("host=localhost&type=app", lambda r: r["host"] == "localhost" and r["type"] == "app"),
    ("project=quantumblog", lambda r: r.get("project") == "quantumblog"),
    ("project=quantumblog&type=cache", lambda r: r.get("project") == "quantumblog" and r["type"] == "cache"),
], ids=["type", "host-and-type", "project", "project-and-type"])
def test_ports_filter_by_host_project_and_type(served: Server, query: str, wanted: Any) -> None:
    everything = cli_json(served, "ports", "list")["allocations"]
    answer = served.get(f"/resources/ports?{query}", served.tokens["reader"]).json()
    expected = [r for r in everything if wanted(r)]
    assert expected and answer["allocations"] == expected and answer["total"] == len(expected)


def test_ranges_are_the_cli_ranges(served: Server) -> None:
    answer = served.get("/resources/ports/ranges", served.tokens["reader"]).json()
    assert answer == {"ranges": cli_json(served, "ports", "ranges")}


@pytest.mark.parametrize(("port", "free"), [(8001, False), (8092, False), (8500, True)],
                         ids=["allocated", "reserved", "free"])
def test_check_says_whether_a_port_is_free_and_why_not(served: Server, port: int, free: bool) -> None:
    answer = served.get(f"/resources/ports/check/{port}?host=localhost", served.tokens["reader"]).json()
    runner = CliRunner().invoke(cli, ["-C", str(served.root), "ports", "check", str(port), "--json"],
                                env=api_server.environment(served.root.parent / "home"))
    assert answer == json.loads(runner.stdout)
    assert answer["free"] is free and (answer["reasons"] == []) is free


def test_services_are_the_cli_list_filtered_by_type_and_project(served: Server) -> None:
    everything = cli_json(served, "services", "list")["services"]
    token = served.tokens["reader"]
    assert served.get("/resources/services", token).json() == {"source": "registry", "total": len(everything),
                                                                "services": everything}
    apps = served.get("/resources/services?service_type=app&project=quantumblog", token).json()["services"]
    assert [s["name"] for s in apps] == ["quantumblog-dev-web", "quantumblog-prod-web", "quantumblog-staging-web"]


def test_secrets_are_names_scopes_and_dates_never_values(served: Server) -> None:
    answer = served.get("/resources/secrets", served.tokens["everything"])
    assert answer.json() == cli_json(served, "secrets", "list")
    assert [s["key"] for s in answer.json()["secrets"]] == ["quantumblog/BLOG_DB_PASSWORD",
                                                             "quantumblog/prod/BLOG_DB_PASSWORD"]
    assert CANARY not in answer.text


def test_the_plan_is_the_document_of_qrm_plan_json(served: Server) -> None:
    answer = served.get("/plan?refresh=false", served.tokens["reader"]).json()
    assert answer == cli_json(served, "plan", "--no-refresh")
    assert answer["format_version"] == 1 and answer["summary"]["empty"] is True


@pytest.mark.parametrize(("token", "masked"), [("reader", True), ("trusted", False), ("everything", False)])
def test_env_is_masked_unless_the_token_has_the_secrets_scope(served: Server, token: str, masked: bool) -> None:
    answer = served.get("/resources/generate/env/quantumblog?environment=prod", served.tokens[token])
    document = answer.json()
    assert (document["project"], document["environment"], document["file"], document["masked"]) == (
        "quantumblog", "prod", ".env", masked)
    line = next(x for x in document["content"].splitlines() if x.startswith("BLOG_DB_PASSWORD="))
    if masked:
        assert CANARY not in answer.text
        assert line.startswith('BLOG_DB_PASSWORD="<secret quantumblog/prod/BLOG_DB_PASSWORD ')
        env = api_server.environment(served.root.parent / "home")
        assert document["content"] == api_server.qrm(served.root, env, "render", "--project", "quantumblog",
                                                     "--env", "prod", "--file", "env")
    else:
        assert line == f'BLOG_DB_PASSWORD="{CANARY}"'
        assert document["content"] == (served.root / "generated/quantumblog/prod/.env").read_text()


def test_docker_compose_is_the_generated_file(served: Server) -> None:
    document = served.get("/resources/generate/docker-compose/quantumblog?environment=dev",
                          served.tokens["everything"]).json()
    assert document["content"] == (served.root / "generated/quantumblog/dev/docker-compose.yml").read_text()
    assert CANARY not in json.dumps(document)


# --- errors: JSON reasons, never a traceback -------------------------------------------------------------

@pytest.mark.parametrize(("path", "status", "reason"), [
    ("/resources/generate/env/nope?environment=prod", 404, "unknown project 'nope'; known projects: quantumblog"),
    ("/resources/generate/env/quantumblog?environment=qa", 404,
     "project 'quantumblog' has no environment 'qa'; known environments: dev, prod, staging"),
    ("/resources/generate/docker-compose/nope?environment=dev", 404,
     "unknown project 'nope'; known projects: quantumblog"),
    ("/resources/ports?host=forge", 404, "unknown host 'forge'; known hosts: localhost"),
    ("/resources/ports?project=nope", 404, "unknown project 'nope'; known projects: quantumblog"),
    ("/resources/ports/check/8001?host=forge", 404, "unknown host 'forge'; known hosts: localhost"),
    ("/resources/services?project=nope", 404, "unknown project 'nope'; known projects: quantumblog"),
    ("/resources/ports/check/70000", 422, "path.port: Input should be less than or equal to 65535"),
    ("/resources/ports/check/eighty", 422, "path.port: Input should be a valid integer, unable to parse string "
                                           "as an integer"),
    ("/resources/ports?limit=0", 422, "query.limit: Input should be greater than or equal to 1"),
    ("/resources/ports?offset=-1", 422, "query.offset: Input should be greater than or equal to 0"),
    ("/resources/generate/env/quantumblog", 422, "query.environment: Field required"),
    ("/no/such/path", 404, "no such path: /no/such/path"),
])
def test_bad_requests_get_a_status_and_a_one_line_reason(served: Server, path: str, status: int,
                                                         reason: str) -> None:
    answer = served.get(path, served.tokens["everything"])
    assert (answer.status_code, answer.json()) == (status, {"error": reason})


def test_a_body_over_one_megabyte_is_refused_with_413(served: Server) -> None:
    answer = served.request("POST", "/resources/ports", content=b"x" * (1024 * 1024 + 1),
                            headers={"Authorization": f"Bearer {served.tokens['reader']}"})
    assert (answer.status_code, answer.json()) == (413, {"error": "the request body is larger than the limit of "
                                                                  "1048576 bytes"})
    assert served.request("POST", "/resources/ports", content=b"x" * 1024).status_code == 405  # the limit, not all


def test_the_access_log_has_one_json_line_per_request_with_the_token_name_never_the_token(served: Server) -> None:
    served.get("/resources/ports/ranges?marker=access-log-test", served.tokens["trusted"])
    served.get("/resources/ports/ranges", "qrm_wrong-token")
    wanted = [{"method": "GET", "path": "/resources/ports/ranges", "status": 200, "token": "trusted"},
              {"method": "GET", "path": "/resources/ports/ranges", "status": 401, "token": None}]
    # The server writes a request's line once its answer has gone out: on a loaded machine the client can
    # read the log before that, so wait (a few seconds at most) for both lines.
    deadline = time.monotonic() + 10
    while True:
        lines = [line for line in served.log().splitlines() if " reconciler.server.access: " in line]
        entries = [json.loads(line.split(" reconciler.server.access: ", 1)[1]) for line in lines]
        seen = [{k: e[k] for k in ("method", "path", "status", "token")} for e in entries
                if e["path"] == "/resources/ports/ranges"]
        if all(w in seen for w in wanted) or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert all(w in seen for w in wanted), seen
    assert all(isinstance(e["duration_ms"], float) for e in entries)
    log = served.log()
    assert not any(token in log for token in served.tokens.values())
    assert CANARY not in log and "Traceback" not in log
