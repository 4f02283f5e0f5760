"""Hostile input to test suites: `qrm tests generate` on .q params whose limits or patterns would hang or
exhaust memory (issue 15 item 8), and `qrm tests history` / `qrm tests compare` on hostile suite names and
damaged history and report files (item 13)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
import yaml

from reconciler.core import testgen
from tests.support import qapps
from tests.support.quantum_server import Running, quantum_server
from tests.support.shop_suite import manifests
from tests.support.workspace import Workspace

HOSTILE = """\
<q:component name="Signup" type="page">
  <q:action name="signup" method="POST">
    <q:param name="code" type="string" required="true" {attributes} />
    <q:param name="email" type="email" required="true" />
  </q:action>
  <form method="POST"><input type="hidden" name="action" value="signup">
    <input name="code" {attributes}><input type="email" name="email"></form>
</q:component>
"""


def _project(ws: Workspace, attributes: str) -> None:
    ws.manifest("shop.yaml", """
        kind: Project
        name: shop
        source: ../shop-app
        environments:
          dev: {host: localhost}
        """)
    qapps.write(ws.root.parent / "shop-app", "components/signup.q", HOSTILE.format(attributes=attributes))


# (the param's attributes, the cases skipped with their reason, the cases generated as usual)
GENERATION_ATTACKS = [
    pytest.param('minlength="34" pattern="^([a-z]+)+X$"', {}, ["valid", "too_short:code", "form:1"],
                 id="exponential-pattern"),
    pytest.param('minlength="3000000000"',
                 {"valid": "code: a length of 3000000000 is above the 10000 characters qrm generates",
                  "too_short:code": "code: a length of 2999999999 is above the 10000 characters qrm generates",
                  "form:1": "code: a length of 3000000000 is above the 10000 characters qrm generates"},
                 ["missing:code"], id="length-3e9"),
    pytest.param('maxlength="3000000000"',
                 {"too_long:code": "code: a length of 3000000001 is above the 10000 characters qrm generates"},
                 ["valid", "form:1"], id="maxlength-3e9"),
    pytest.param(r'pattern="^(\w+)\1$"',
                 {"valid": "code: pattern '^(\\\\w+)\\\\1$' is too complex to generate a value for"},
                 ["missing:code"], id="backreference"),
]


@pytest.mark.parametrize(("attributes", "skipped", "generated"), GENERATION_ATTACKS)
def test_tests_generate_bounds_lengths_and_patterns(workspace: Workspace, attributes: str,
                                                     skipped: dict[str, str], generated: list[str]) -> None:
    """Formerly a hang (an exponential regex over each candidate) or a MemoryError (a 3 GB string): now the
    command ends, and a case no value can be generated for is written skipped, with the reason, and noted."""
    _project(workspace, attributes)
    done = workspace.qrm_process("tests", "generate", "shop", timeout=30)
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    suite = yaml.safe_load((workspace.root / "manifests/tests/shop.yaml").read_text())
    cases: dict[str, dict[str, Any]] = {}
    for case in suite["cases"]:
        element = case["id"].partition("#")[2]
        cases[element.removeprefix("action:signup:")] = case
    for element, reason in skipped.items():
        assert cases[element]["skip"].startswith(reason), cases[element]
        note = f"note: components/signup.q#{'action:signup:' if element != 'form:1' else ''}{element} skipped: {reason}"
        assert [line for line in done.stdout.splitlines() if line.startswith(note)] == [note + cases[element]["skip"][
            len(reason):]]  # once, on one line
    for element in generated:
        assert "skip" not in cases[element], cases[element]
    for case in cases.values():  # nothing sent is longer than the bound
        values = [*case["request"].get("form", {}).values(), *case["request"].get("query", {}).values()]
        assert all(len(str(value)) <= testgen.MAX_LENGTH + 1 for value in values)


def test_exponential_pattern_gets_a_value_of_its_length(workspace: Workspace) -> None:
    """The pattern is checked without backtracking: the valid value still has the minlength asked for."""
    _project(workspace, 'minlength="34" pattern="^([a-z]+)+X$"')
    assert workspace.qrm("tests", "generate", "shop").exit_code == 0
    suite = yaml.safe_load((workspace.root / "manifests/tests/shop.yaml").read_text())
    valid = next(c for c in suite["cases"] if c["id"].endswith("#action:signup:valid"))
    assert len(valid["request"]["form"]["code"]) == 34




# --- tests history / tests compare (item 13) ---------------------------------------------------------

SUITE_DIR = "reports/tests/shop-smoke"


@pytest.fixture(scope="module")
def servers() -> Iterator[tuple[Running, Running]]:
    with quantum_server("v1") as dev, quantum_server("v2") as staging:
        yield dev, staging


@pytest.fixture
def ran(workspace: Workspace, servers: tuple[Running, Running]) -> Workspace:
    """Two runs of shop-smoke on dev and staging, then a fresh clone: no registry, the committed reports."""
    workspace.manifest("shop.yaml", manifests(servers[0].url, servers[1].url))
    for _ in range(2):
        assert workspace.qrm("tests", "run", "shop-smoke").exit_code == 0
    (workspace.root / ".qrm" / "registry.db").unlink()
    return workspace


@pytest.mark.parametrize("command", ["history", "compare"])
@pytest.mark.parametrize("suite", ["../../x", "../tests/shop-smoke", "/etc", "x/../../../x", "shop-smoke\n", "."])
def test_a_suite_argument_is_a_name_never_a_path(ran: Workspace, command: str, suite: str) -> None:
    planted = ran.root / "x"  # what ../../x from reports/tests reaches: a history qrm must not read
    planted.mkdir()
    (planted / "history.jsonl").write_text('{"suite": "x", "environment": "planted", "passed": 9}\n')
    (planted / "planted.yaml").write_text("environment: planted\n")
    result = ran.qrm("tests", command, suite)
    assert result.exit_code == 1
    assert result.output == f"error: suite {suite!r} is not a suite name: expected a name of lower-case letters, " \
        "digits, '.', '_' and '-' that starts and ends with a letter or digit, at most 63 characters\n"


DAMAGED_LINES = [
    pytest.param(b'{"suite": "shop-smoke", "environment": "dev", "pass', "not JSON (Unterminated string starting at)",
                 id="truncated"),
    pytest.param(b'{"suite": "shop-smoke", "environment": "dev", "passed": "many"}', "expected a count, got 'many'",
                 id="wrong-type"),
    pytest.param(b'{"suite": "shop-smoke", "environment": ["dev"]}', "environment, suite and time must be strings",
                 id="wrong-environment"),
    pytest.param(b'{"suite": "shop-smoke", "environment": "dev", "flaky": 3}', "flaky: expected a list of case ids",
                 id="wrong-flaky"),
    pytest.param(b'{"suite": "shop-smoke", "environment": "dev", "duration": NaN}', "duration: expected seconds",
                 id="nan"),
    pytest.param(b"[1, 2]", "expected an object, got list", id="a-list"),
    pytest.param(b"\x00\xff\xfe\x89PNG\r\x1a\x80garbage", "not JSON (Expecting value)", id="binary"),
    pytest.param(b"[" * 100_000, "not JSON", id="deep"),
]


@pytest.mark.parametrize(("line", "why"), DAMAGED_LINES)
def test_history_skips_a_damaged_line_and_shows_the_rest(ran: Workspace, line: bytes, why: str) -> None:
    history = ran.root / SUITE_DIR / "history.jsonl"
    good = history.read_bytes().splitlines(keepends=True)
    assert len(good) == 4  # two runs on two environments
    history.write_bytes(b"".join([good[0], line + b"\n", *good[1:]]))
    result = ran.qrm("tests", "history", "shop-smoke", "--json")
    assert result.exit_code == 0
    doc = json.loads(result.stdout)
    assert len(doc["runs"]) == 4
    [problem] = doc["problems"]
    assert problem.startswith(f"{SUITE_DIR}/history.jsonl:2: damaged line skipped ({why}")
    assert "\n" not in problem
    assert result.stderr == f"warning: {problem}\n"
    text = ran.qrm("tests", "history", "shop-smoke")
    assert text.exit_code == 0 and "4 runs (from reports/tests/shop-smoke/history.jsonl)" in text.stdout


DAMAGED_REPORTS = [
    pytest.param("environment: staging\ncounts: {passed: 2\n", ":3: damaged report skipped (not YAML: ",
                 id="truncated"),
    pytest.param("environment: staging\ncounts: [1, 2]\n", ": damaged report skipped (environment, counts or "
                 "results of the wrong type)", id="wrong-type"),
    pytest.param("environment: staging\nresults: [{id: 3}]\n", ": damaged report skipped (a result without a "
                 "string id and outcome)", id="wrong-result"),
    pytest.param("- just a list\n", ": damaged report skipped (expected a mapping, got list)", id="a-list"),
    pytest.param("a: &a [x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]\n"
                 "c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]\n",
                 ":2: damaged report skipped (not YAML: an alias, which qrm's reports never hold)", id="alias-bomb"),
    pytest.param("ok: 1\n\x00\x01binary\x02", ":2: damaged report skipped (not YAML: character #x0000 at position 6: "
                 "special characters are not allowed)", id="binary"),
]


@pytest.mark.parametrize(("content", "why"), DAMAGED_REPORTS)
def test_compare_skips_a_damaged_report_and_shows_the_rest(ran: Workspace, content: str, why: str) -> None:
    (ran.root / SUITE_DIR / "staging.yaml").write_text(content)
    result = ran.qrm("tests", "compare", "shop-smoke", "--json")
    assert result.exit_code == 0
    doc = json.loads(result.stdout)
    assert list(doc["environments"]) == ["dev"]
    assert doc["environments"]["dev"]["passed"] == 3
    [problem] = doc["problems"]
    assert problem.startswith(f"{SUITE_DIR}/staging.yaml{why}")
    assert "\n" not in problem
    assert result.stderr == f"warning: {problem}\n"


def test_a_run_appends_to_a_damaged_history(ran: Workspace) -> None:
    """tests run keeps the history it finds, damaged lines included (they stay reported), and adds its lines."""
    history = ran.root / SUITE_DIR / "history.jsonl"
    history.write_bytes(history.read_bytes() + b"\xff\xfe garbage\n")
    assert ran.qrm("tests", "run", "shop-smoke").exit_code == 0
    (ran.root / ".qrm" / "registry.db").unlink()  # what a fresh clone reads
    doc = json.loads(ran.qrm("tests", "history", "shop-smoke", "--json").stdout)
    assert len(doc["runs"]) == 6
    assert doc["problems"] == [f"{SUITE_DIR}/history.jsonl:5: damaged line skipped (not JSON (Expecting value))"]
