"""`qrm validate`: every mistake in a manifest is named by file, line, column, field and what was expected."""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass

import pytest

from tests.support.paths import FIXTURES, REPO
from tests.support.workspace import Workspace

BAD = FIXTURES / "bad"
KINDS = "Host, PortRange, Reservation, Service, Project, TestSuite, Notifier, Alert"


@dataclass(frozen=True)
class Mistake:
    fixture: str  # one file under tests/fixtures/bad/, with exactly this one mistake
    line: int
    column: int | None  # None: the column of a YAML syntax error is the parser's, not a key's
    message: str  # a part of the message: what is wrong and what was expected
    field: str  # "" when the problem is the whole document or the YAML syntax

    def __str__(self) -> str:
        return self.fixture.removesuffix(".yaml")


MISTAKES = [
    # YAML itself
    Mistake("bad_indentation.yaml", 7, None, "mapping values are not allowed in this context; check the indentation",
            ""),
    Mistake("unclosed_flow_mapping.yaml", 5, None,
            "did not find expected ',' or '}' (while parsing a flow mapping that starts on line 4, column 9)", ""),
    Mistake("duplicate_key.yaml", 6, 1, "found duplicate key 'port'", ""),
    Mistake("document_is_list.yaml", 1, 1, f"a manifest document must be a mapping with a 'kind' (one of {KINDS})",
            ""),
    # kind
    Mistake("missing_kind.yaml", 1, 1, f"missing 'kind'; expected one of: {KINDS}", "kind"),
    Mistake("unknown_kind.yaml", 1, 1, f"unknown kind 'Servise'; expected one of: {KINDS}", "kind"),
    # unknown fields, with the fields that are allowed there
    Mistake("unknown_top_level_field.yaml", 5, 1, "unknown field 'prot'; expected one of: kind, name, host, type, "
            "port, preferred_port, protocol, health, tags", "prot"),
    Mistake("unknown_health_field.yaml", 7, 3, "unknown field 'retries'; expected one of: path, interval, timeout, "
            "success_before_passing, failures_before_critical", "health.retries"),
    Mistake("unknown_environment_field.yaml", 8, 5, "unknown field 'domian'; expected one of: host, domain, tls, "
            "protected, url, ports, run, tls_certificate, tls_certificate_key", "environments.prod.domian"),
    # values of one document
    Mistake("port_wrong_type.yaml", 4, 1, "expected a whole number (got 'eighty')", "port"),
    Mistake("port_out_of_range.yaml", 4, 1, "expected a number no greater than 65535 (got 70000)", "port"),
    Mistake("reservation_port_out_of_range.yaml", 4, 18,
            'expected a port number from 1 to 65535 or a span "START-END" (got 65536)', "ports.2"),
    Mistake("portrange_start_after_end.yaml", 3, 1, "start 8999 is greater than end 8000", "start"),
    Mistake("port_and_preferred_port.yaml", 5, 1, "give either port (pinned) or preferred_port, not both",
            "preferred_port"),
    Mistake("tls_certificate_without_key.yaml", 4, 3, "tls_certificate is set, so tls_certificate_key must be too",
            "environments.prod.tls_certificate_key"),
    Mistake("tls_certificate_without_tls.yaml", 6, 5, "tls_certificate is set but tls is false",
            "environments.prod.tls_certificate"),
    Mistake("environment_name_not_lower_case.yaml", 5, 3, "expected a name of lower-case letters, digits, '.', '_' "
            "and '-' that starts and ends with a letter or digit (got 'Staging')", "environments.Staging"),
    Mistake("bad_duration.yaml", 6, 3, "expected a duration such as 500ms, 30s, 2m or 1h30m (got '30 seconds')",
            "health.interval"),
    Mistake("datasource_plain_password.yaml", 13, 5, "expected a secret reference secret:NAME",
            "datasources.blog-db.password"),
    Mistake("assertion_two_keys.yaml", 18, 9, "an assertion has exactly one of status, status_in, header, contains, "
            "not_contains, regex, json_path, xpath, css, redirect, flash, max_ms, no_errors; "
            "got ['contains', 'no_errors']", "cases.0.expect.1"),
    # rules between documents
    Mistake("duplicate_service_name.yaml", 7, 1, "duplicate service name 'quantum-admin' (first defined at "
            "manifests/duplicate_service_name.yaml:2:1)", "name"),
    Mistake("duplicate_host_name.yaml", 6, 1, "duplicate Host name 'forge' (first defined at "
            "manifests/duplicate_host_name.yaml:2:1)", "name"),
    Mistake("service_unknown_host.yaml", 3, 1, "unknown host 'forge'; known hosts: localhost (add a Host)", "host"),
    Mistake("environment_unknown_host.yaml", 5, 10, "unknown host 'forge'; known hosts: localhost (add a Host)",
            "environments.prod.host"),
    Mistake("reservation_unknown_host.yaml", 3, 1, "unknown host 'forge'; known hosts: localhost (add a Host)",
            "host"),
    Mistake("overlapping_ranges.yaml", 10, 1, "range app-high 8400-8999 overlaps range app-low 8000-8499 "
            "(manifests/overlapping_ranges.yaml) for type 'app' on host '*'", "start"),
    Mistake("port_pinned_twice.yaml", 9, 1, "port 8001 on host 'localhost' is pinned by both 'quantum-admin' and "
            "'quantum-api'", "port"),
    Mistake("pinned_port_reserved.yaml", 9, 1, "port 8080 on host 'localhost' is reserved (the old PHP admin)",
            "port"),
    Mistake("pinned_port_in_reserved_span.yaml", 9, 1, "port 8093 on host 'localhost' is reserved (legacy tools)",
            "port"),
    Mistake("unknown_port_type.yaml", 3, 1, "unknown port type 'elastic'; expected one of: app, cache, database, "
            "queue, web", "type"),
    Mistake("project_service_unknown_port_type.yaml", 9, 12, "unknown port type 'elastic'; expected one of: app, "
            "cache, database, queue, web", "services.search.type"),
    Mistake("environment_pin_unknown_service.yaml", 6, 13, "unknown project service 'wbe'; expected one of: web",
            "environments.dev.ports.wbe"),
    Mistake("datasource_unknown_service.yaml", 11, 5, "unknown project service 'blogdb'; expected one of: "
            "blog-db, web", "datasources.blog-db.service"),
    Mistake("testsuite_unknown_project.yaml", 3, 1, "unknown project 'quantumblgo'; known projects: (none)",
            "project"),
    Mistake("testsuite_unknown_environment.yaml", 12, 21, "project 'quantumblog' has no environment 'prod'; "
            "expected one of: dev, staging", "environments.1"),
    Mistake("testsuite_duplicate_case_id.yaml", 17, 5, "duplicate test case id 'components/login.q#page'",
            "cases.1.id"),
]
# A few of every sort (YAML, unknown field, value, cross-reference) checked in the --json form too.
JSON_MISTAKES = [m for m in MISTAKES if m.fixture in {
    "unclosed_flow_mapping.yaml", "missing_kind.yaml", "unknown_health_field.yaml", "port_out_of_range.yaml",
    "port_and_preferred_port.yaml", "environment_pin_unknown_service.yaml", "testsuite_unknown_environment.yaml",
}]


def with_fixture(workspace: Workspace, fixture: str) -> Workspace:
    shutil.copy(BAD / fixture, workspace.root / "manifests" / fixture)
    return workspace


def error_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith("error: ")]


def test_every_fixture_is_in_the_table_once() -> None:
    listed = [m.fixture for m in MISTAKES]
    assert len(listed) == len(set(listed))
    assert sorted(listed) == sorted(p.name for p in BAD.glob("*.yaml"))
    assert len(JSON_MISTAKES) == 7


@pytest.mark.parametrize("mistake", MISTAKES, ids=str)
def test_validate_names_file_line_column_field_and_what_was_expected(workspace: Workspace, mistake: Mistake) -> None:
    result = with_fixture(workspace, mistake.fixture).qrm("validate")
    assert result.exit_code == 1, result.output
    errors = error_lines(result.stderr)
    assert len(errors) == 1, result.stderr
    where = f"error: manifests/{mistake.fixture}:{mistake.line}:"
    if mistake.column is not None:
        where += f"{mistake.column}:"
    assert errors[0].startswith(where), errors[0]
    located = errors[0].removeprefix(where)
    if mistake.column is None:
        located = located.split(":", 1)[1]  # the parser's column
    field = f" {mistake.field}:" if mistake.field else ""
    assert located.startswith(f"{field} "), errors[0]
    assert mistake.message in located, errors[0]
    assert "1 problem(s) found." in result.stderr


@pytest.mark.parametrize("mistake", JSON_MISTAKES, ids=str)
def test_validate_json_gives_file_line_column_field_and_message(workspace: Workspace, mistake: Mistake) -> None:
    result = with_fixture(workspace, mistake.fixture).qrm("validate", "--json")
    assert result.exit_code == 1, result.output
    document = json.loads(result.stdout)
    assert document["valid"] is False
    [problem] = document["problems"]
    assert problem["file"] == f"manifests/{mistake.fixture}"
    assert problem["line"] == mistake.line
    if mistake.column is not None:
        assert problem["column"] == mistake.column
    else:
        assert isinstance(problem["column"], int)
    assert problem["field"] == mistake.field
    assert mistake.message in problem["message"]


def test_a_plain_password_is_never_repeated_in_the_error(workspace: Workspace) -> None:
    with_fixture(workspace, "datasource_plain_password.yaml")
    assert "hunter2" in (workspace.root / "manifests" / "datasource_plain_password.yaml").read_text()
    for args in (("validate",), ("validate", "--json"), ("plan", "--no-refresh")):
        result = workspace.qrm(*args)
        assert result.exit_code == 1, result.output
        assert "secret:NAME" in result.output
        assert "hunter2" not in result.output


def test_a_document_of_plain_text_beside_a_bad_document_is_located_too(workspace: Workspace) -> None:
    workspace.manifest("notes.yaml", """
        kind: Service
        name: quantum-admin
        type: app
        prot: 8001
        ---
        remember to add the admin service
    """)
    result = workspace.qrm("validate", "--json")
    assert result.exit_code == 1, result.output
    problems = json.loads(result.stdout)["problems"]
    assert [(p["line"], p["field"]) for p in problems] == [(4, "prot"), (6, "")]
    assert "must be a mapping with a 'kind'" in problems[1]["message"]


def test_a_value_that_fits_no_alternative_is_one_problem_listing_them_all(workspace: Workspace) -> None:
    workspace.manifest("suite.yaml", """
        kind: TestSuite
        name: quantumblog-auto
        project: quantumblog
        cases:
          - id: components/signup.q#form
            name: "Form: signup"
            type: form
            request: {method: POST, path: /signup, form: {tags: [a, b]}}
    """)
    result = workspace.qrm("validate", "--json")
    problems = [p for p in json.loads(result.stdout)["problems"] if p["field"] == "cases.0.request.form.tags"]
    assert len(problems) == 1, problems
    assert problems[0]["message"] == "expected a valid string, a whole number, a valid number or a valid boolean"


ODD_YAML = [
    ("list as a key", "kind: Service\nname: api\ntype: app\n[a, b]: 1\n", 4,
     "invalid YAML: found a list or mapping used as a key"),
    ("merge of a number", "kind: Service\nname: api\ntype: app\n<<: 5\n", 4,
     "invalid YAML: expected a mapping or a list of mappings after <<"),
    ("number as a key", "kind: Service\nname: api\ntype: app\n80: http\n", 4, "80:"),
    ("list as kind", "kind: [Service]\nname: api\ntype: app\n", 1, "unknown kind ['Service']; expected one of:"),
]


@pytest.mark.parametrize(("text", "line", "message"), [case[1:] for case in ODD_YAML],
                         ids=[case[0] for case in ODD_YAML])
def test_odd_yaml_is_a_located_problem_not_a_crash(workspace: Workspace, text: str, line: int, message: str) -> None:
    (workspace.root / "manifests" / "odd.yaml").write_text(text)
    result = workspace.qrm("validate")
    assert result.exit_code == 1, result.output
    [error] = error_lines(result.stderr)
    assert error.startswith(f"error: manifests/odd.yaml:{line}:"), error
    assert message in error


# --- all problems at once, and nothing written while any is left -------------------------------------

THREE_MISTAKES = {
    "admin.yaml": """
        kind: Service
        name: quantum-admin
        type: app
        prot: 8001
        ---
        kind: Service
        name: quantum-api
        type: app
        port: "eighty"
    """,
    "blog.yaml": """
        kind: Project
        name: quantumblog
        environments:
          dev: {host: localhost}
          prod: {host: forge}
        services:
          web: {type: app}
    """,
}
THREE_ERRORS = [
    "error: manifests/admin.yaml:4:1: prot: unknown field 'prot'",
    "error: manifests/admin.yaml:9:1: port: expected a whole number (got 'eighty')",
    "error: manifests/blog.yaml:5:10: environments.prod.host: unknown host 'forge'",
]


def broken(workspace: Workspace) -> Workspace:
    for name, text in THREE_MISTAKES.items():
        workspace.manifest(name, text)
    return workspace


def assert_the_three_errors(output: str) -> None:
    errors = error_lines(output)
    assert len(errors) == 3, output
    for line, expected in zip(errors, THREE_ERRORS, strict=True):
        assert line.startswith(expected), (line, expected)


def test_validate_reports_every_problem_of_every_file_at_once(workspace: Workspace) -> None:
    result = broken(workspace).qrm("validate")
    assert result.exit_code == 1
    assert_the_three_errors(result.stderr)
    assert "3 problem(s) found." in result.stderr
    as_json = broken(workspace).qrm("validate", "--json")
    assert as_json.exit_code == 1
    assert [(p["file"], p["line"]) for p in json.loads(as_json.stdout)["problems"]] == [
        ("manifests/admin.yaml", 4), ("manifests/admin.yaml", 9), ("manifests/blog.yaml", 5)]


def workspace_files(workspace: Workspace) -> dict[str, bytes]:
    return {p.relative_to(workspace.root).as_posix(): p.read_bytes() for p in workspace.root.rglob("*")
            if p.is_file() and ".qrm" not in p.relative_to(workspace.root).parts}


@pytest.mark.parametrize("command", [("plan",), ("plan", "--no-refresh"), ("apply", "--yes"),
                                     ("apply", "--yes", "--no-refresh")], ids=" ".join)
def test_plan_and_apply_refuse_an_invalid_workspace_and_write_nothing(workspace: Workspace,
                                                                      command: tuple[str, ...]) -> None:
    workspace.manifest("hello.yaml", """
        kind: Service
        name: hello
        type: app
    """)
    first = workspace.qrm("apply", "--yes", "--no-refresh")
    assert first.exit_code == 0, first.output
    registry_before = workspace.qrm("ports", "list", "--json").stdout
    assert '"name": "hello"' in registry_before
    broken(workspace)
    files_before = workspace_files(workspace)

    result = workspace.qrm(*command)

    assert result.exit_code == 1, result.output
    assert_the_three_errors(result.stderr)
    assert "nothing was changed" in result.stderr
    assert workspace_files(workspace) == files_before
    assert workspace.qrm("ports", "list", "--json").stdout == registry_before


def test_apply_on_a_new_invalid_workspace_writes_no_reports(workspace: Workspace) -> None:
    result = broken(workspace).qrm("apply", "--yes", "--no-refresh")
    assert result.exit_code == 1
    assert_the_three_errors(result.stderr)
    assert not workspace.lockfile.exists()
    assert not (workspace.root / "reports").exists()
    assert not (workspace.root / "generated").exists()


# --- a valid workspace ---------------------------------------------------------------------------------

def test_the_bundled_example_is_valid(workspace: Workspace) -> None:
    for path in (REPO / "manifests").glob("*.yaml"):
        shutil.copy(path, workspace.root / "manifests" / path.name)
    shutil.copy(REPO / "secrets.enc", workspace.root / "secrets.enc")  # its secret: references resolve
    result = workspace.qrm("validate")
    assert result.exit_code == 0, result.output
    assert result.stderr == ""
    assert result.stdout.startswith("Valid: ")
    as_json = workspace.qrm("validate", "--json")
    assert as_json.exit_code == 0
    assert json.loads(as_json.stdout) == {"valid": True, "errors": [], "problems": []}


def test_a_secret_reference_that_resolves_nowhere_names_the_file_line_and_the_scopes_looked_in(
        workspace: Workspace) -> None:
    for path in (REPO / "manifests").glob("*.yaml"):
        shutil.copy(path, workspace.root / "manifests" / path.name)
    result = workspace.qrm("validate")  # no secrets.enc at all
    assert result.exit_code == 1
    assert "manifests/quantumblog.yaml:16:13: " in result.stderr
    assert "datasources.blog-db.password: secret BLOG_DB_PASSWORD is not set" in result.stderr
    assert "qrm secrets set BLOG_DB_PASSWORD --project quantumblog" in result.stderr


def test_a_duplicate_in_another_file_names_the_line_of_the_first(workspace: Workspace) -> None:
    workspace.manifest("a.yaml", "# the platform team's\nkind: Service\nname: api\ntype: app\n")
    workspace.manifest("b.yaml", "kind: Host\nname: forge\naddress: 10.0.0.1\n---\n"
                                 "kind: Project\nname: shop\nenvironments: {prod: {host: forge}}\n"
                                 "services: {web: {type: app}}\n---\nkind: Service\nname: api\ntype: app\n")
    result = workspace.qrm("validate")
    assert result.exit_code == 1
    assert ("error: manifests/b.yaml:11:1: name: duplicate service name 'api' (first defined at "
            "manifests/a.yaml:3:1)") in result.stderr.splitlines()
