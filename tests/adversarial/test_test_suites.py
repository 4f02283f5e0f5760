"""Hostile input to test suites: `qrm tests generate` on .q params whose limits or patterns would hang or
exhaust memory (issue 15 item 8), and `qrm tests history` / `qrm tests compare` on hostile suite names and
damaged history and report files (item 13)."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from reconciler.core import testgen
from tests.support import qapps
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
        assert f"components/signup.q#{'action:signup:' if element != 'form:1' else ''}{element} skipped: " \
               f"{reason}" in done.stdout
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


