"""/openapi.json of a running `qrm serve` describes what each endpoint answers: every operation has a 200 or
202 body with a schema that says something, every 4xx/5xx is the one error shape, and real answers of the
real server (reads of the bundled example, writes of a git workspace, refusals) validate against the schema
the document gives for their path, method and status."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import httpx
import jsonschema
import pytest

from tests.support.api_server import Server

METHODS = ("get", "post", "put", "patch", "delete")
# The endpoints issue 16 lists.
ISSUE = {"GET /resources/ports", "GET /resources/ports/ranges", "GET /resources/ports/check/{port}",
         "POST /resources/ports/allocate", "POST /resources/ports/release", "GET /resources/secrets",
         "POST /resources/secrets", "GET /resources/services", "POST /resources/services/health-check",
         "GET /resources/generate/env/{project}", "GET /resources/generate/docker-compose/{project}",
         "POST /projects/{project}/components/scan", "GET /projects/{project}/components",
         "POST /projects/{project}/test-suites/generate", "POST /test-suites/{suite}/run", "GET /test-runs/{run_id}",
         "GET /plan", "POST /apply", "GET /health", "GET /events", "POST /hooks/github", "POST /hooks/gitlab",
         "POST /hooks/generic"}


@pytest.fixture(scope="module")
def document(served: Server) -> dict[str, Any]:
    answer = served.get("/openapi.json")
    assert answer.status_code == 200
    found: dict[str, Any] = answer.json()
    return found


def operations(document: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, item in document["paths"].items():
        for method, operation in item.items():
            if method in METHODS:
                yield path, method, operation


def resolved(document: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        name = schema["$ref"].removeprefix("#/components/schemas/")
        schema = document["components"]["schemas"][name]
    return schema


def success(operation: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """The operation's 200 or 202 answer: its media type and schema."""
    status = next(s for s in ("200", "202") if s in operation["responses"])
    content = operation["responses"][status]["content"]
    assert len(content) == 1, content
    media, body = next(iter(content.items()))
    return media, body["schema"]


def test_every_operation_documents_a_body_for_its_success(document: dict[str, Any]) -> None:
    seen = set()
    for path, method, operation in operations(document):
        media, schema = success(operation)
        schema = resolved(document, schema)
        if media == "application/json":
            for choice in [resolved(document, s) for s in schema.get("anyOf", [schema])]:  # a hook's answers vary
                assert choice.get("type") == "object" and choice.get("properties"), (method, path, choice)
                assert choice.get("required"), (method, path, "no field is said to be always there")
        else:
            assert (path, media, schema["type"]) == ("/events", "text/event-stream", "string")
        seen.add(f"{method.upper()} {path}")
    assert seen >= ISSUE  # and the events, the hooks


def test_every_error_an_operation_lists_is_the_error_shape(document: dict[str, Any]) -> None:
    error = document["components"]["schemas"]["Error"]
    assert error["required"] == ["error"] and error["properties"]["error"]["type"] == "string"
    for path, method, operation in operations(document):
        codes = [code for code in operation["responses"] if code[0] in "45"]
        assert codes, (method, path)
        for code in codes:
            schema = operation["responses"][code]["content"]["application/json"]["schema"]
            assert schema == {"$ref": "#/components/schemas/Error"}, (method, path, code, schema)
            assert operation["responses"][code]["description"]
        if (path != "/health" and not path.startswith("/hooks/")) or path == "/hooks/status":
            assert {"401", "403"} <= set(codes), (method, path)  # every path but these needs a token


def check(document: dict[str, Any], method: str, template: str, answer: httpx.Response) -> None:
    """`answer` (to `method` on the path `template`) validates against the document's schema for its status."""
    operation = document["paths"][template][method]
    status = str(answer.status_code)
    assert status in operation["responses"], (method, template, status, answer.text)
    schema = operation["responses"][status]["content"]["application/json"]["schema"]
    jsonschema.validate(answer.json(), {**schema, "components": document["components"]},
                        cls=jsonschema.Draft202012Validator)


READS = [
    ("/health", "/health", None),
    ("/resources/ports", "/resources/ports?limit=3", "reader"),
    ("/resources/ports/ranges", "/resources/ports/ranges", "reader"),
    ("/resources/ports/check/{port}", "/resources/ports/check/8001", "reader"),
    ("/resources/services", "/resources/services", "reader"),
    ("/resources/secrets", "/resources/secrets", "reader"),
    ("/plan", "/plan?refresh=false", "reader"),
    ("/resources/generate/env/{project}", "/resources/generate/env/quantumblog?environment=prod", "reader"),
    ("/resources/generate/docker-compose/{project}", "/resources/generate/docker-compose/quantumblog?environment=dev",
     "reader"),
    ("/projects/{project}/components", "/projects/quantumblog/components", "reader"),
    ("/hooks/status", "/hooks/status", "reader"),
    ("/events/subscribers", "/events/subscribers", "reader"),
    # the errors: no token, a token without the scope, an unknown project, a bad parameter, an unknown run
    ("/resources/ports", "/resources/ports", None),
    ("/resources/ports", "/resources/ports", "writer"),
    ("/resources/services", "/resources/services?project=nope", "reader"),
    ("/resources/ports", "/resources/ports?limit=0", "reader"),
    ("/test-runs/{run_id}", "/test-runs/999", "reader"),
]


@pytest.mark.parametrize(("template", "path", "token"), READS)
def test_real_read_answers_validate_against_their_schema(served: Server, document: dict[str, Any], template: str,
                                                        path: str, token: str | None) -> None:
    answer = served.get(path, served.tokens[token] if token else None)
    check(document, "get", template, answer)


def test_real_scan_and_generate_answers_validate_against_their_schema(served: Server,
                                                                      document: dict[str, Any]) -> None:
    headers = {"Authorization": f"Bearer {served.tokens['everything']}"}
    scanned = served.request("POST", "/projects/quantumblog/components/scan", headers=headers)
    assert scanned.status_code == 200, scanned.text
    check(document, "post", "/projects/{project}/components/scan", scanned)
    check(document, "get", "/projects/{project}/components",
          served.get("/projects/quantumblog/components", served.tokens["reader"]))
    generated = served.request("POST", "/projects/quantumblog/test-suites/generate", headers=headers)
    assert generated.status_code == 200, generated.text
    check(document, "post", "/projects/{project}/test-suites/generate", generated)
    refused = served.request("POST", "/projects/quantumblog/test-suites/generate", headers=headers,
                             content=b'{"types": ["moon"]}')
    assert refused.status_code == 422
    check(document, "post", "/projects/{project}/test-suites/generate", refused)


def test_real_write_answers_validate_against_their_schema(writes_served: Server) -> None:
    document = writes_served.get("/openapi.json").json()
    tokens = writes_served.tokens

    def post(path: str, token: str, body: dict[str, Any] | None = None) -> httpx.Response:
        return writes_served.request("POST", path, content=json.dumps(body or {}).encode(),
                                     headers={"Authorization": f"Bearer {tokens[token]}"}, timeout=120)

    allocated = post("/resources/ports/allocate", "writer", {"service_name": "documented", "port_type": "app",
                                                             "host": "forge"})
    assert allocated.status_code == 200, allocated.text
    check(document, "post", "/resources/ports/allocate", allocated)
    clash = post("/resources/ports/allocate", "writer", {"service_name": "documented", "port_type": "app",
                                                         "host": "localhost"})
    assert clash.status_code == 409 and clash.json()["field"] == "service_name"
    check(document, "post", "/resources/ports/allocate", clash)
    released = post("/resources/ports/release", "writer", {"service_name": "documented", "host": "forge"})
    assert released.status_code == 200, released.text
    check(document, "post", "/resources/ports/release", released)
    secret = post("/resources/secrets", "keeper", {"key": "DOCUMENTED", "value": "not-shown"})
    assert secret.status_code == 200, secret.text
    check(document, "post", "/resources/secrets", secret)
    round_ = post("/resources/services/health-check", "writer")
    assert round_.status_code == 200, round_.text
    check(document, "post", "/resources/services/health-check", round_)
    applied = post("/apply", "writer", {"refresh": False})
    assert applied.status_code == 200, applied.text
    check(document, "post", "/apply", applied)


def test_a_real_test_run_validates_against_its_schema_while_running_and_finished(suites_served: Server) -> None:
    document = suites_served.get("/openapi.json").json()
    headers = {"Authorization": f"Bearer {suites_served.tokens['writer']}"}
    assert suites_served.request("POST", "/projects/shop/test-suites/generate", headers=headers).status_code == 200
    started = suites_served.request("POST", "/test-suites/shop-auto/run", headers=headers,
                                    content=b'{"environment": "dev"}')
    assert started.status_code == 202, started.text
    check(document, "post", "/test-suites/{suite}/run", started)
    deadline = time.monotonic() + 120
    while True:
        run = suites_served.get(f"/test-runs/{started.json()['run_id']}", suites_served.tokens["reader"])
        check(document, "get", "/test-runs/{run_id}", run)
        if run.json()["status"] != "running":
            break
        assert time.monotonic() < deadline, run.text
        time.sleep(0.1)
    assert run.json()["results"]  # a finished run's cases were validated too
