"""Issue 13's flash bug, reproduced: the action cases `qrm tests generate` makes from a component, valid and
invalid, run by `qrm tests run` against the Flask stand-in (tests/support/quantum_server.py), whose flash
is in Flask's signed `session` cookie and on the followed page as `<div class="alert alert-...">`. They
failed with `flash None, expected "Parameter 'recipientEmail' is required"` while the server answered as
it should. Each place a flash can be read from is also taken away in turn, so each reader must work alone.
"""

from __future__ import annotations

import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
import yaml

from reconciler.core.flash import flash_from_session_cookie
from tests.support.quantum_server import EMAIL_SENT, quantum_server, unsign
from tests.support.workspace import Workspace

# The component the stand-in's /email page runs (tests/support/quantum_server.py: EMAIL_RULES, EMAIL_SENT).
EMAIL_Q = f"""\
<q:component name="SendEmail" type="page">
  <q:action name="sendEmail" method="POST">
    <q:param name="recipientEmail" type="email" required="true" />
    <q:param name="subject" type="string" minlength="3" />
    <q:redirect url="/email" flash="{EMAIL_SENT}" />
  </q:action>
  <div class="alert alert-{{flashType}}">{{flash}}</div>
  <form method="POST" action="{{application.basePath}}/email">
    <input type="hidden" name="action" value="sendEmail" />
    <input type="email" name="recipientEmail" required="required" />
    <input type="text" name="subject" minlength="3" />
  </form>
</q:component>
"""

REQUIRED = "Parameter 'recipientEmail' is required"

# The generated cases and the flash each one asserts (None: the case asserts no flash).
GENERATED: dict[str, str | None] = {
    "components/email.q#page": None,
    "components/email.q#action:sendEmail:valid": EMAIL_SENT,
    "components/email.q#action:sendEmail:missing:recipientEmail": REQUIRED,
    "components/email.q#action:sendEmail:too_short:subject": "Parameter 'subject'",
    "components/email.q#action:sendEmail:wrong_type:recipientEmail": "Parameter 'recipientEmail'",
    "components/email.q#form:1": EMAIL_SENT,
}

# A hand-written case whose flash assertion cannot pass: its failure says which flash the runner read.
PROBE = {"id": "probe", "name": "what flash the runner reads", "type": "custom",
         "request": {"method": "POST", "path": "/email", "form": {"action": "sendEmail", "subject": "Hello"}},
         "expect": [{"flash": "a flash no server sends"}]}

# Where the stand-in puts its flash: (switches of quantum_server, the id of the setup).
SETUPS: list[tuple[str, dict[str, Any]]] = [
    ("cookie-and-page", {}),
    ("cookie-only", {"pages_show_flash": False}),  # Flask's session cookie; the page shows a status line instead
    ("page-only-alert-danger", {"server_side_sessions": True}),  # the cookie is an id; <div class="alert ...">
]


@pytest.fixture(params=[s[1] for s in SETUPS], ids=[s[0] for s in SETUPS])
def server_url(request: pytest.FixtureRequest) -> Iterator[str]:
    with quantum_server("v1", **request.param) as running:
        yield running.url


def project(ws: Workspace, url: str) -> None:
    ws.manifest("mail.yaml", f"""
        kind: Project
        name: mail
        source: ../mail-app
        environments:
          dev: {{host: localhost, url: "{url}"}}
        services:
          web: {{type: app}}
        """)
    components = ws.root.parent / "mail-app" / "components"
    components.mkdir(parents=True)
    (components / "email.q").write_text(EMAIL_Q)
    ws.manifest("probe.yaml", yaml.safe_dump({"kind": "TestSuite", "name": "probe", "project": "mail",
                                              "block_on_failure": False, "cases": [PROBE]}))


def report(ws: Workspace, suite: str) -> dict[str, dict[str, Any]]:
    data = yaml.safe_load((ws.root / "reports" / "tests" / suite / "dev.yaml").read_text())
    return {r["id"]: r for r in data["results"]}


def test_generated_action_cases_pass_and_see_the_flash(workspace: Workspace, server_url: str) -> None:
    project(workspace, server_url)
    generated = workspace.qrm("tests", "generate", "mail")
    assert generated.exit_code == 0, generated.output
    suite = yaml.safe_load((workspace.root / "manifests" / "tests" / "mail.yaml").read_text())
    flashes = {c["id"]: next((a["flash"] for a in c["expect"] if "flash" in a), None) for c in suite["cases"]}
    assert flashes == GENERATED  # the cases under test, each with the flash it asserts

    result = workspace.qrm("tests", "run", "mail-auto")
    assert result.exit_code == 0, result.output
    results = report(workspace, "mail-auto")
    assert {i: (r["outcome"], r.get("reason", "")) for i, r in results.items()} == {
        i: ("passed", "") for i in GENERATED}


def test_the_flash_the_runner_reads_is_the_servers_message(workspace: Workspace, server_url: str) -> None:
    project(workspace, server_url)
    result = workspace.qrm("tests", "run", "probe")
    assert result.exit_code == 0, result.output  # the suite does not block
    probe = report(workspace, "probe")["probe"]
    assert probe["outcome"] == "failed"
    seen, _, expected = probe["reason"].partition(", expected ")
    assert expected == "'a flash no server sends'"
    assert REQUIRED in seen  # with, on cookie-only, the page's own status line


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None  # the 302 itself is what is looked at


# (form posted to /contact, the flash in the cookie, whether Flask compressed the cookie)
STAND_IN_COOKIES: list[tuple[str, str, bool]] = [
    ("name=Al", "Parameter 'name' must be at least 3 characters", True),
    ("name=Alice", "Parameter 'email' is required", False),
    ("name=Alice&email=a@b.co", "Thanks, Alice!", False),
]


@pytest.mark.parametrize(("form", "message", "compressed"), STAND_IN_COOKIES)
def test_the_stand_in_sets_flasks_own_session_cookie_in_both_forms(form: str, message: str,
                                                                  compressed: bool) -> None:
    with quantum_server() as running:
        request = urllib.request.Request(running.url + "/contact", data=form.encode(),
                                         headers={"Referer": running.url + "/contact"})
        with pytest.raises(urllib.error.HTTPError) as answer:
            urllib.request.build_opener(_NoRedirect).open(request)
    assert answer.value.code == 302
    value = answer.value.headers["Set-Cookie"].split(";", 1)[0].removeprefix("session=")
    assert value.startswith(".") is compressed and value.count(".") == 2 + compressed
    assert unsign(value)["flash"]["message"] == message  # signed with the stand-in's key by Flask's serializer
    assert flash_from_session_cookie(value) == message
