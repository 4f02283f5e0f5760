"""qrm tests generate: the cases generated from real scanned fixture components, and regeneration."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

from reconciler.core import suite_merge, testgen
from reconciler.core.components import Component, Param, Query
from reconciler.core.models import TestCase
from tests.support import qapps
from tests.support.blog_project import FIXTURES, blog
from tests.support.workspace import Workspace

SUITE = "manifests/tests/blog.yaml"


def generate(ws: Workspace) -> str:
    result = ws.qrm("tests", "generate", "blog")
    assert result.exit_code == 0, result.output
    return result.output


def suite(ws: Workspace) -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((ws.root / SUITE).read_text())
    return data


def cases(ws: Workspace) -> dict[str, dict[str, Any]]:
    return {case["id"]: case for case in suite(ws)["cases"]}


@pytest.fixture
def generated(workspace: Workspace) -> Workspace:
    blog(workspace)
    generate(workspace)
    return workspace


# The ids and types generated per component, in file order.
EXPECTED_IDS: dict[str, list[tuple[str, str]]] = {
    "components/admin/dashboard.q": [
        ("#auth", "auth"), ("#action:deletePost:auth", "auth"), ("#query:removePost", "query")],
    "components/api.q": [
        ("#query:allPosts", "query"), ("#query:insertPost", "query"),
        ("#endpoint:/api/posts", "endpoint"), ("#endpoint:POST /api/posts", "endpoint")],
    "components/login.q": [
        ("#page", "smoke"), ("#action:login:valid", "action"), ("#action:login:missing:email", "action"),
        ("#action:login:too_short:password", "action"), ("#action:login:too_long:password", "action"),
        ("#action:login:wrong_type:email", "action"), ("#form:login-form", "form"), ("#query:authUser", "query")],
    "components/posts/index.q": [("#page", "smoke"), ("#query:recentPosts", "query")],
    "components/shared/header.q": [],  # a partial: no route, nothing to request
}

VALID_LOGIN = {"action": "login", "email": "qa@example.com", "password": "qatestva", "username": "qatestva",
               "age": 18, "plan": "free"}

# Full cases (as written to the file) of some elements.
EXPECTED_CASES: dict[str, dict[str, Any]] = {
    "components/login.q#page": {
        "name": "Smoke: LoginPage loads", "type": "smoke", "component": "components/login.q",
        "request": {"method": "GET", "path": "/login"}, "expect": [{"status": 200}, {"no_errors": True}]},
    "components/login.q#action:login:valid": {
        "name": "Action login: valid input", "type": "action", "component": "components/login.q",
        "request": {"method": "POST", "path": "/login", "form": VALID_LOGIN},
        "expect": [{"status": 302}, {"redirect": "/admin"}, {"flash": "Welcome back!"}]},
    "components/login.q#action:login:missing:email": {
        "name": "Action login: missing email", "type": "action", "component": "components/login.q",
        "request": {"method": "POST", "path": "/login",
                    "form": {k: v for k, v in VALID_LOGIN.items() if k != "email"}},
        "expect": [{"status": 302}, {"redirect": "/login"}, {"flash": "Parameter 'email' is required"}]},
    "components/login.q#action:login:too_short:password": {
        "name": "Action login: password too short", "type": "action", "component": "components/login.q",
        "request": {"method": "POST", "path": "/login", "form": {**VALID_LOGIN, "password": "qatestv"}},
        "expect": [{"status": 302}, {"redirect": "/login"}, {"flash": "Parameter 'password'"}]},
    "components/login.q#action:login:wrong_type:email": {
        "name": "Action login: email of the wrong type", "type": "action", "component": "components/login.q",
        "request": {"method": "POST", "path": "/login", "form": {**VALID_LOGIN, "email": "not-an-email"}},
        "expect": [{"status": 302}, {"redirect": "/login"}, {"flash": "Parameter 'email'"}]},
    "components/login.q#form:login-form": {
        "name": "Form login-form: submit its fields", "type": "form", "component": "components/login.q",
        "request": {"method": "POST", "path": "/login",
                    "form": {"action": "login", "email": "qa@example.com", "password": "qatestva"}},
        "expect": [{"status": 302}, {"redirect": "/admin"}, {"flash": "Welcome back!"}]},
    "components/login.q#query:authUser": {
        "name": "Query authUser on blog-db", "type": "query", "component": "components/login.q",
        "request": {"datasource": "blog-db", "sql": "SELECT id, password_hash FROM users WHERE email = :email",
                    "params": {"email": "qa@example.com"}},
        "expect": [{"no_errors": True}]},
    "components/admin/dashboard.q#auth": {
        "name": "Auth: AdminDashboard redirects to /login without a session", "type": "auth",
        "component": "components/admin/dashboard.q", "request": {"method": "GET", "path": "/admin/dashboard"},
        "expect": [{"status": 302}, {"redirect": "/login"}]},
    "components/admin/dashboard.q#action:deletePost:auth": {
        "name": "Auth: action deletePost redirects to /login without a session", "type": "auth",
        "component": "components/admin/dashboard.q", "writes": True,
        "request": {"method": "POST", "path": "/admin/dashboard", "form": {"action": "deletePost"}},
        "expect": [{"status": 302}, {"redirect": "/login"}]},
    "components/api.q#query:insertPost": {
        "name": "Query insertPost on blog-db", "type": "query", "component": "components/api.q", "writes": True,
        "request": {"datasource": "blog-db", "sql": "INSERT INTO posts (title) VALUES (:title)",
                    "params": {"title": "qatestva"}},
        "expect": [{"no_errors": True}]},
    "components/api.q#endpoint:/api/posts": {
        "name": "Endpoint GET /api/posts answers", "type": "endpoint", "component": "components/api.q",
        "request": {"method": "GET", "path": "/api/posts"}, "expect": [{"status": 200}]},
    "components/posts/index.q#page": {
        "name": "Smoke: PostList loads", "type": "smoke", "component": "components/posts/index.q",
        "request": {"method": "GET", "path": "/posts"}, "expect": [{"status": 200}, {"no_errors": True}]},
}

WRITES = {"components/admin/dashboard.q#action:deletePost:auth", "components/admin/dashboard.q#query:removePost",
          "components/api.q#query:insertPost", "components/api.q#endpoint:POST /api/posts"}


def test_the_suite_document(generated: Workspace) -> None:
    data = suite(generated)
    assert data["kind"] == "TestSuite"
    assert data["name"] == "blog-auto"
    assert data["project"] == "blog"
    assert data["environments"] == ["dev", "staging"]  # prod is protected
    assert data["auto_run"] is False
    assert data["block_on_failure"] is True
    assert set(data["generated_from"]) == set(EXPECTED_IDS)


def test_the_ids_and_types_per_component_in_order(generated: Workspace) -> None:
    expected = [(path + element, kind) for path in sorted(EXPECTED_IDS) for element, kind in EXPECTED_IDS[path]]
    assert [(c["id"], c["type"]) for c in suite(generated)["cases"]] == expected
    for case in suite(generated)["cases"]:
        assert case["component"] == case["id"].split("#")[0]


@pytest.mark.parametrize("case_id", sorted(EXPECTED_CASES))
def test_the_exact_case(generated: Workspace, case_id: str) -> None:
    assert cases(generated)[case_id] == {"id": case_id, **EXPECTED_CASES[case_id]}


def test_too_long_is_one_past_the_limit(generated: Workspace) -> None:
    form = cases(generated)["components/login.q#action:login:too_long:password"]["request"]["form"]
    assert len(form["password"]) == 256
    assert {k: v for k, v in form.items() if k != "password"} == {k: v for k, v in VALID_LOGIN.items()
                                                                    if k != "password"}


def test_writes_marks_exactly_the_cases_that_change_data(generated: Workspace) -> None:
    assert {i for i, c in cases(generated).items() if c.get("writes")} == WRITES


def test_ids_and_file_are_stable_across_runs(generated: Workspace) -> None:
    first = (generated.root / SUITE).read_text()
    output = generate(generated)
    assert "0 added, 0 changed, 0 removed, 17 kept" in output
    assert "unchanged: manifests/tests/blog.yaml" in output
    assert (generated.root / SUITE).read_text() == first


def test_qrm_validate_accepts_the_generated_file(generated: Workspace) -> None:
    result = generated.qrm("validate")
    assert result.exit_code == 0, result.output
    assert "1 test suites" in result.output


def test_the_summary_counts_each_type(workspace: Workspace) -> None:
    blog(workspace)
    output = generate(workspace)
    assert "blog-auto: 17 cases: smoke 2, auth 2, action 5, form 1, query 5, endpoint 2" in output
    assert "17 added, 0 changed, 0 removed, 0 kept" in output
    assert "created manifests/tests/blog.yaml" in output


HAND_CASE = """\
  # checked by hand: the health endpoint
  - id: health
    name: Health answers
    type: custom
    request: {method: GET, path: /health}
    expect: [{status: 200}]
"""


def test_regeneration_keeps_hand_work_and_takes_what_the_generator_changed(generated: Workspace) -> None:
    path = generated.root / SUITE
    text = path.read_text()
    # A hand edit of a case of an unchanged component, with a comment.
    text = text.replace("    name: 'Smoke: PostList loads'\n",
                        "    name: 'Smoke: the post list'  # renamed by hand\n")
    # A hand-written case, with a comment of its own.
    text = text.replace("cases:\n", "cases:\n" + HAND_CASE, 1)
    # A hand edit of a case of the component about to change, whose generated part does not change: kept.
    text = text.replace("    name: 'Smoke: LoginPage loads'\n", "    name: edited by hand  # mine\n")
    path.write_text(text)
    components = generated.root.parent / "blog-app" / "components"
    login = components / "login.q"
    login.write_text(login.read_text().replace('flash="Welcome back!"', 'flash="Hello again"')
                     .replace('<q:validate field="age" type="integer" min_length="1" min="18" max="120" />', ""))
    shutil.rmtree(components / "admin")

    output = generate(generated)
    after = path.read_text()
    assert "# checked by hand: the health endpoint" in after
    assert "# renamed by hand" in after
    assert "    name: edited by hand  # mine\n" in after
    found = cases(generated)
    assert found["health"]["type"] == "custom"
    assert next(iter(found)) == "health"  # hand-written cases stay where they were
    assert found["components/posts/index.q#page"]["name"] == "Smoke: the post list"
    valid = found["components/login.q#action:login:valid"]
    assert valid["expect"][-1] == {"flash": "Hello again"}
    assert "age" not in valid["request"]["form"]
    assert not [i for i in found if i.startswith("components/admin/")]
    assert "components/admin/dashboard.q" not in suite(generated)["generated_from"]
    # login: 5 action cases (age gone) and the form (new flash) changed, its page kept; admin: 3 removed
    assert "0 added, 6 changed, 3 removed, 8 kept, 1 hand-written kept" in output
    assert "replaced" not in output  # no hand edit was in the way
    assert generated.qrm("validate").exit_code == 0


def edit(ws: Workspace, relative: str, old: str, new: str, case: str | None = None) -> None:
    """Replace one exact piece of a file (there once; in the suite, once in the case of that id), as a person
    edits it."""
    path = ws.root / relative
    text = path.read_text()
    start = 0 if case is None else text.index(f"  - id: {case}\n")
    end = len(text) if case is None else text.find("\n  - id: ", start + 1) % (len(text) + 1) + 1
    assert text.count(old, start, end) == 1, (old, text[start:end])
    at = text.index(old, start, end)
    path.write_text(text[:at] + new + text[at + len(old):])


LOGIN = "../blog-app/components/login.q"
VALID = "components/login.q#action:login:valid"


def test_an_edit_the_generator_also_changed_is_replaced_and_named(generated: Workspace) -> None:
    edit(generated, SUITE, "      - {flash: Welcome back!}\n", "      - {flash: 'Welcome back, friend!'}  # mine\n",
         VALID)
    edit(generated, SUITE, "        username: qatestva\n", "        username: alice  # a real user\n", VALID)
    generate(generated)  # the component did not change: both edits stay
    assert cases(generated)[VALID]["expect"][-1] == {"flash": "Welcome back, friend!"}

    edit(generated, LOGIN, 'flash="Welcome back!"', 'flash="Hello again, {username}!"')
    output = generate(generated)
    assert f"case {VALID}: your edit of expect replaced (the component changed)" in output
    valid = cases(generated)[VALID]
    assert valid["expect"] == [{"status": 302}, {"redirect": "/admin"}, {"flash": "Hello again, alice!"}]
    assert valid["request"]["form"]["username"] == "alice"  # kept, and it fills the new flash
    assert "        username: alice  # a real user\n" in (generated.root / SUITE).read_text()
    assert f"hand edits kept in 1 regenerated case(s): {VALID}" in output

    result = generated.qrm("tests", "generate", "blog", "--json")
    document = json.loads(result.output)
    assert document["notes"] == [] and document["changed"] == []  # nothing new: nothing to say
    assert document["record"] == "reports/generated-cases/blog.json"


def test_the_notes_are_in_the_json_output(generated: Workspace) -> None:
    edit(generated, SUITE, "      - {flash: Welcome back!}\n", "      - {flash: 'Hi'}\n", VALID)
    edit(generated, LOGIN, 'flash="Welcome back!"', 'flash="Hello"')
    result = generated.qrm("tests", "generate", "blog", "--json")
    assert result.exit_code == 0, result.output
    document = json.loads(result.output)
    assert document["notes"] == [f"case {VALID}: your edit of expect replaced (the component changed)"]
    assert VALID in document["changed"]
    assert document["record_written"] is True


def test_hand_edits_survive_a_fresh_clone(generated: Workspace) -> None:
    """The record is committed with the suite: without the registry (.qrm is not in git) edits still tell."""
    edit(generated, SUITE, "    name: 'Smoke: LoginPage loads'\n", "    name: mine\n")
    edit(generated, SUITE, "      - {flash: Welcome back!}\n", "      - {flash: 'Hi'}\n", VALID)
    shutil.rmtree(generated.root / ".qrm")
    edit(generated, LOGIN, 'flash="Welcome back!"', 'flash="Hello"')
    output = generate(generated)
    assert cases(generated)["components/login.q#page"]["name"] == "mine"
    assert f"case {VALID}: your edit of expect replaced (the component changed)" in output


def test_without_the_record_a_changed_component_gets_its_cases_anew(generated: Workspace) -> None:
    """A suite written before the record (or whose record was removed) follows the older rule."""
    (generated.root / "reports/generated-cases/blog.json").unlink()
    edit(generated, SUITE, "    name: 'Smoke: LoginPage loads'\n", "    name: mine\n")
    edit(generated, SUITE, "    name: 'Smoke: PostList loads'\n", "    name: also mine\n")
    edit(generated, LOGIN, 'flash="Welcome back!"', 'flash="Hello"')
    output = generate(generated)
    assert cases(generated)["components/login.q#page"]["name"] == "Smoke: LoginPage loads"  # replaced, silently
    assert cases(generated)["components/posts/index.q#page"]["name"] == "also mine"  # unchanged component
    assert "replaced" not in output
    assert (generated.root / "reports/generated-cases/blog.json").exists()  # from now on, edits tell


def test_a_suite_restored_from_an_older_generation_is_not_merged_against_a_newer_record(
        generated: Workspace) -> None:
    old = (generated.root / SUITE).read_text()
    edit(generated, LOGIN, 'flash="Welcome back!"', 'flash="Hello"')
    generate(generated)
    (generated.root / SUITE).write_text(old.replace("    name: 'Smoke: LoginPage loads'\n", "    name: mine\n"))
    output = generate(generated)  # the suite's generated_from is not the record's: the older rule
    assert cases(generated)["components/login.q#page"]["name"] == "Smoke: LoginPage loads"
    assert cases(generated)[VALID]["expect"][-1] == {"flash": "Hello"}
    assert "replaced" not in output


def test_a_broken_record_is_an_error_that_names_it(generated: Workspace) -> None:
    record = generated.root / "reports/generated-cases/blog.json"
    record.write_text(record.read_text().replace('"type": "auth"', '"type": "authy"', 1))
    result = generated.qrm("tests", "generate", "blog")
    assert result.exit_code == 1
    assert "reports/generated-cases/blog.json: case 1: type: Input should be" in result.output
    assert "restore it from git, or remove it" in result.output


QUERY = "components/posts/index.q#query:recentPosts"
POSTS = "../blog-app/components/posts/index.q"


def test_a_generated_case_deleted_by_hand_stays_deleted_until_what_is_generated_for_it_changes(
        generated: Workspace) -> None:
    path = generated.root / SUITE
    data = suite(generated)
    kept = [c for c in data["cases"] if c["id"] != QUERY]
    path.write_text(yaml.safe_dump({**data, "cases": kept}, sort_keys=False))
    generate(generated)
    assert QUERY not in cases(generated)
    edit(generated, POSTS, "<h2>{recentPosts.title}</h2>", "<h3>{recentPosts.title}</h3>")
    output = generate(generated)  # the component changed, its query did not
    assert QUERY not in cases(generated)
    assert "0 added" in output
    edit(generated, POSTS, "ORDER BY published_at DESC", "ORDER BY published_at DESC LIMIT 10")
    output = generate(generated)
    assert f"case {QUERY}: generated again though you had deleted it (the component changed)" in output
    ids = list(cases(generated))
    assert ids.index(QUERY) == ids.index("components/posts/index.q#page") + 1


def test_a_case_no_longer_generated_is_removed_and_its_edits_named(generated: Workspace) -> None:
    case_id = "components/login.q#action:login:too_long:password"
    edit(generated, SUITE, "    expect:\n", "    retries: 2\n    expect:\n", case_id)
    edit(generated, LOGIN, 'maxlength="255" />\n    <q:validate', '/>\n    <q:validate')
    output = generate(generated)
    assert case_id not in cases(generated)
    assert f"case {case_id}: removed with your edits (it is no longer generated)" in output


def test_a_new_component_gets_its_cases(generated: Workspace) -> None:
    components = generated.root.parent / "blog-app" / "components"
    (components / "about.q").write_text('<q:component name="About" type="page"><p>About</p></q:component>\n')
    output = generate(generated)
    assert "1 added, 0 changed, 0 removed, 17 kept" in output
    ids = list(cases(generated))
    assert ids[ids.index("components/about.q#page") + 1] == "components/admin/dashboard.q#auth"


def test_an_unknown_project_is_an_error(workspace: Workspace) -> None:
    blog(workspace)
    result = workspace.qrm("tests", "generate", "nope")
    assert result.exit_code == 1
    assert "unknown project 'nope'" in result.output


# ------------------------------------------------------------ templates, uploads and form values, end to end

CONTACT_Q = """\
<q:component name="ContactPage" type="page">
  <q:action name="sendEmail" method="POST">
    <q:param name="recipientEmail" type="email" required="true" />
    <q:param name="message" type="string" minLength="10" maxLength="500" />
    <q:param name="attachment" type="file" accept="application/pdf" maxsize="1MB" />
    <q:redirect url="{application.basePath}/admin" flash="Email sent successfully to {recipientEmail}!" />
  </q:action>
  <form id="contact" method="POST" action="{application.basePath}/contact" enctype="multipart/form-data">
    <input type="hidden" name="action" value="sendEmail">
    <input type="email" name="recipientEmail" required>
    <textarea name="message"></textarea>
    <input type="file" name="attachment" accept=".txt">
    <button type="submit">Send</button>
  </form>
</q:component>
"""
AVATAR_Q = """\
<q:component name="AvatarUpload">
  <q:action name="uploadAvatar" method="POST">
    <q:param name="avatar" type="file" required="true" accept="image/*" maxSize="8" />
    <q:file action="upload" file="{avatar}" destination="./uploads/avatars/" result="uploadResult" />
    <q:redirect url="/profile" flash="Avatar uploaded: {uploadResult.filename}" />
  </q:action>
</q:component>
"""


def mail_project(ws: Workspace, base_path: str = "/blog", url: str | None = None,
                 components: dict[str, str] | None = None) -> Path:
    """A project `mail` (base_path, its dev environment at `url` if given) with the given .q files."""
    ws.manifest("mail.yaml", yaml.safe_dump({
        "kind": "Project", "name": "mail", "source": "../mail-app", "base_path": base_path,
        "environments": {"dev": {"host": "localhost", **({"url": url} if url else {})}}}))
    folder = ws.root.parent / "mail-app" / "components"
    for relative, text in (components or {"contact.q": CONTACT_Q, "profile/avatar.q": AVATAR_Q}).items():
        (folder / relative).parent.mkdir(parents=True, exist_ok=True)
        (folder / relative).write_text(text)
    return folder


def mail_cases(ws: Workspace) -> dict[str, dict[str, Any]]:
    result = ws.qrm("tests", "generate", "mail")
    assert result.exit_code == 0, result.output
    data = yaml.safe_load((ws.root / "manifests/tests/mail.yaml").read_text())
    return {case["id"].partition("#")[2] if case["id"].startswith("components/contact.q") else case["id"]: case
            for case in data["cases"]}


PDF = {"filename": "qa-attachment.pdf", "content_type": "application/pdf"}  # size 16: the default, left out


def test_generated_expectations_fill_what_the_case_sends_and_the_base_path(workspace: Workspace) -> None:
    mail_project(workspace)
    found = mail_cases(workspace)
    valid = found["action:sendEmail:valid"]
    assert valid["request"] == {
        "method": "POST", "path": "/contact",  # the runner adds base_path to request paths
        "form": {"action": "sendEmail", "recipientEmail": "qa@example.com", "message": "qatestvalu"},
        "files": {"attachment": PDF}}
    assert valid["expect"] == [{"status": 302}, {"redirect": "/blog/admin"},
                               {"flash": "Email sent successfully to qa@example.com!"}]
    avatar = found["components/profile/avatar.q#action:uploadAvatar:valid"]
    assert avatar["expect"][2] == {"flash": "Avatar uploaded: {uploadResult.filename}"}  # a wildcard when run
    assert avatar["request"]["files"] == {"avatar": {"filename": "qa-avatar.png", "content_type": "image/png",
                                                     "size": 8}}  # maxSize="8"
    missing = found["components/profile/avatar.q#action:uploadAvatar:missing:avatar"]
    assert "files" not in missing["request"]
    assert missing["expect"][2] == {"flash": "Parameter 'avatar' is required"}
    assert workspace.qrm("validate").exit_code == 0


def test_a_form_case_sends_what_the_action_accepts(workspace: Workspace) -> None:
    mail_project(workspace)
    form = mail_cases(workspace)["form:contact"]
    assert form["request"] == {
        "method": "POST", "path": "/contact",
        "form": {"action": "sendEmail", "recipientEmail": "qa@example.com",
                 "message": "qatestvalu"},  # the action's minLength="10", not 8 characters
        "files": {"attachment": PDF}}  # multipart: an upload, typed by the q:param (accept, maxsize)
    assert form["expect"] == [{"status": 302}, {"redirect": "/blog/admin"},
                              {"flash": "Email sent successfully to qa@example.com!"}]
    assert len(form["request"]["form"]["message"]) >= 10


def test_a_new_base_path_reaches_the_expectations_not_edited_by_hand(workspace: Workspace) -> None:
    mail_project(workspace)
    mail_cases(workspace)
    edit(workspace, "manifests/tests/mail.yaml", "      - {redirect: /blog/admin}\n",
         "      - {redirect: /blog/admin/inbox}\n", "components/contact.q#form:contact")
    mail_project(workspace, base_path="/mail")
    result = workspace.qrm("tests", "generate", "mail")
    found = mail_cases(workspace)
    assert found["action:sendEmail:valid"]["expect"][1] == {"redirect": "/mail/admin"}
    assert found["form:contact"]["expect"][1] == {"redirect": "/mail/admin"}
    assert ("case components/contact.q#form:contact: your edit of expect replaced (the generated case changed)"
            in result.output)


CONTACT_STAND_IN_Q = """\
<q:component name="Contact" type="page">
  <q:action name="contact" method="POST">
    <q:param name="name" type="string" required="true" minLength="3" />
    <q:param name="email" type="email" required="true" />
    <q:redirect url="{application.basePath}/thanks" flash="Thanks, {name}!" />
  </q:action>
</q:component>
"""


def test_a_generated_suite_passes_against_a_server_that_fills_its_templates(workspace: Workspace) -> None:
    """The stand-in answers the contact action as Quantum does: `Thanks, <name>!`, rejected input back."""
    from tests.support.quantum_server import quantum_server

    with quantum_server() as server:
        mail_project(workspace, base_path="", url=server.url, components={"contact.q": CONTACT_STAND_IN_Q})
        valid = mail_cases(workspace)["action:contact:valid"]
        assert valid["expect"][1:] == [{"redirect": "/thanks"}, {"flash": "Thanks, qatestva!"}]
        result = workspace.qrm("tests", "run", "mail-auto", "--env", "dev")
    assert result.exit_code == 0, result.output
    # page, valid (302 to /thanks, "Thanks, qatestva!"), missing, too short and wrong type: all as generated
    assert "mail-auto on dev: 5 passed, 0 failed, 0 errors, 0 skipped" in result.output


# ------------------------------------------------------------------------------------- pure functions


@pytest.mark.parametrize(("param", "value"), [
    (Param("e", type="email"), "qa@example.com"),
    (Param("u", type="url"), "https://example.com"),
    (Param("n", type="integer", min=18, max=120), 18),
    (Param("n", type="integer", max=0), 0),
    (Param("n", type="integer"), 1),
    (Param("d", type="decimal", min=0.5), 0.5),
    (Param("b", type="boolean"), "true"),
    (Param("p", enum=("free", "pro")), "free"),
    (Param("s", min_length=2, max_length=4), "qate"),
    (Param("s", min_length=12), "qatestvalueq"),
    (Param("s", pattern=r"^\d+$"), "12345678"),
    (Param("s", pattern=r"^[A-Z]+$", max_length=3), "QAT"),
    (Param("s", pattern=r"^(?=.*\d)(?=.*[a-z])[a-z0-9]{8,}$"), "qa1test2"),  # leading lookaheads, checked by RE2
    (Param("s", pattern=r"^(?=[^]()]+$)(?=.*\d)[a-z0-9]{8}"), "12345678"),  # brackets and parens in a lookahead
    (Param("s", pattern=r"[unclosed"), "qatestva"),  # not a pattern at all: nothing to match
])
def test_valid_values_follow_type_and_limits(param: Param, value: object) -> None:
    assert testgen.valid_value(param) == value


@pytest.mark.parametrize(("param", "reason"), [
    (Param("s", min_length=3_000_000_000), "a length of 3000000000 is above the 10000 characters qrm generates"),
    (Param("s", pattern=r"^(\w)\1$"), "pattern '^(\\\\w)\\\\1$' is too complex to generate a value for"),
    (Param("s", pattern=r"(?<=q)a"), "pattern '(?<=q)a' is too complex to generate a value for"),
    # `|` at the top: the lookahead is one alternative's rule, not split off, so RE2 sees it
    (Param("s", pattern=r"^(?=x)y|[a-z]"), "pattern '^(?=x)y|[a-z]' is too complex to generate a value for"),
])
def test_no_value_for_a_huge_length_or_an_unsupported_pattern(param: Param, reason: str) -> None:
    with pytest.raises(testgen.NoValue) as raised:
        testgen.valid_value(param)
    assert str(raised.value).startswith(reason)


def test_component_from_dict_round_trips() -> None:
    from reconciler.edges import q_components
    from reconciler.flows.scan import plain

    component = q_components.scan_file(FIXTURES / "login.q", "components/login.q", "")
    assert testgen.component_from_dict(plain(component)) == component


def _case(case_id: str, component: str | None = None, kind: str = "smoke", name: str = "x") -> TestCase:
    return TestCase(id=case_id, name=name, type=kind, component=component)  # type: ignore[arg-type]


def test_merge_rules() -> None:
    existing = [_case("a.q#page", "a.q", name="hand edit"), _case("mine"), _case("b.q#page", "b.q"),
                _case("b.q#gone", "b.q"), _case("c.q#page", "c.q"), _case("x.q#custom", kind="custom")]
    generated = [_case("a.q#page", "a.q"), _case("a.q#new", "a.q"), _case("b.q#page", "b.q", name="new"),
                 _case("b.q#added", "b.q")]
    merged = suite_merge.merge(existing, generated, current={"a.q", "b.q"}, changed={"b.q"},
                           previous={"a.q", "b.q", "c.q"})
    assert [c.id for c in merged.cases] == ["a.q#page", "mine", "b.q#page", "b.q#added", "x.q#custom"]
    assert merged.cases[0].name == "hand edit"
    assert merged.cases[2].name == "new"
    assert merged.origin == (0, 1, 2, None, 5)  # b.q#page is edited in place: its comments stay
    assert merged.added == ("b.q#added",)
    assert merged.changed == ("b.q#page",)
    assert merged.removed == ("b.q#gone", "c.q#page")
    assert merged.kept == ("a.q#page",)
    assert merged.hand_written == ("mine", "x.q#custom")


def test_generation_is_deterministic() -> None:
    components = [Component(path="components/z.q", name="Z", route="/z"),
                  Component(path="components/a.q", name="A", route="/a")]
    first = testgen.generate(components)
    assert [c.id for c in first] == ["components/a.q#page", "components/z.q#page"]
    assert testgen.generate(list(reversed(components))) == first


# ------------------------------------------------------------------------- the served folder, skipped queries

def upstream(ws: Workspace, config: bool, datasources: str = "blog-db: {driver: sqlite, database: blog.db}") -> str:
    """Project `blog` (base_path /quantum-blog) on the upstream shape; returns the served folder."""
    ws.manifest("blog.yaml", f"""
        kind: Project
        name: blog
        source: ../blog-app
        base_path: /quantum-blog
        environments:
          dev: {{host: localhost}}
        datasources:
          {datasources}
        """)
    return qapps.write_app(ws.root.parent / "blog-app", config)


UNDECLARED = "datasource '{}' is not declared: add it under the project's datasources"


@pytest.mark.parametrize("config", [False, True], ids=["no-config", "config-serves-src-components"])
def test_not_served_files_get_no_http_case_and_undeclared_datasources_are_skipped(workspace: Workspace,
                                                                                   config: bool) -> None:
    served = upstream(workspace, config)
    output = generate(workspace)
    found = cases(workspace)
    by_component: dict[str, list[str]] = {}
    for case_id, case in found.items():
        by_component.setdefault(case["component"], []).append(case_id.split("#", 1)[1])
    assert by_component == {
        # not served: only their query cases, skipped, since nothing declares their datasources
        "examples/demo.q": ["query:everything"],
        "projects/other-app/components/index.q": ["query:tasks"],
        f"{served}/api.q": ["endpoint:/api/posts"],
        f"{served}/blog/post.q": ["page", "action:comment:valid", "action:comment:missing:body",
                                  "action:comment:too_short:body", "query:comments", "query:addComment"],
        f"{served}/index.q": ["page", "query:recent"],
    }
    assert found[f"{served}/blog/post.q#page"]["request"] == {"method": "GET", "path": "/blog/post"}
    assert found[f"{served}/index.q#page"]["request"] == {"method": "GET", "path": "/"}  # base_path: the runner's
    skips = {case_id: case.get("skip") for case_id, case in found.items() if case["type"] == "query"}
    app_db = None if config else UNDECLARED.format("app-db")  # declared in the app's quantum.config.yaml only
    assert skips == {
        "examples/demo.q#query:everything": UNDECLARED.format("default"),
        "projects/other-app/components/index.q#query:tasks": UNDECLARED.format("tasks-db"),
        f"{served}/blog/post.q#query:comments": app_db, f"{served}/blog/post.q#query:addComment": app_db,
        f"{served}/index.q#query:recent": None,
    }
    assert f"note: 1 query case(s) skipped: {UNDECLARED.format('default')}" in output.splitlines()
    assert workspace.qrm("validate").exit_code == 0


def test_regeneration_removes_http_cases_of_files_that_are_not_served(workspace: Workspace) -> None:
    """A suite generated before the served folder was known (the issue: page cases for examples/) loses them."""
    upstream(workspace, config=False)
    generate(workspace)
    path = workspace.root / SUITE
    stale = ("  - id: examples/demo.q#page\n    name: 'Smoke: Demo loads'\n    type: smoke\n"
             "    component: examples/demo.q\n    request: {method: GET, path: /examples/demo}\n"
             "    expect: [{status: 200}]\n")
    path.write_text(path.read_text().replace("cases:\n", "cases:\n" + stale, 1))
    assert "examples/demo.q#page" in cases(workspace)
    output = generate(workspace)
    assert "examples/demo.q#page" not in cases(workspace)
    assert "examples/demo.q#query:everything" in cases(workspace)
    assert "0 added, 0 changed, 1 removed" in output


def test_declaring_the_datasource_clears_the_skip_on_regeneration(workspace: Workspace) -> None:
    upstream(workspace, config=False)
    generate(workspace)
    path = workspace.root / SUITE
    # a skip reason of the user's own on another case survives everything
    path.write_text(path.read_text().replace(
        "    component: projects/other-app/components/index.q\n",
        "    component: projects/other-app/components/index.q\n    skip: the other team runs it\n"
        "    # kept by hand\n", 1).replace(
        "    skip: \"datasource 'tasks-db' is not declared: add it under the project's datasources\"\n", "", 1))
    assert cases(workspace)["projects/other-app/components/index.q#query:tasks"]["skip"] == "the other team runs it"
    upstream(workspace, config=False, datasources="{blog-db: {driver: sqlite, database: blog.db}, "
                                                  "default: {driver: sqlite, database: demo.db}}")
    generate(workspace)
    found = cases(workspace)
    assert "skip" not in found["examples/demo.q#query:everything"]
    assert found["projects/other-app/components/index.q#query:tasks"]["skip"] == "the other team runs it"
    assert "# kept by hand" in path.read_text()
    upstream(workspace, config=False)  # and removed again: skipped again
    generate(workspace)
    assert cases(workspace)["examples/demo.q#query:everything"]["skip"] == UNDECLARED.format("default")


def test_known_datasources_skip_nothing_when_not_given() -> None:
    component = Component(path="components/a.q", name="A", route="/a",
                          queries=(Query("q", datasource="nowhere", sql="SELECT 1"),))
    def skips(**kwargs: Any) -> list[tuple[str, str | None]]:
        return [(c.type, c.skip) for c in testgen.generate([component], **kwargs)]

    assert skips() == [("smoke", None), ("query", None)]
    assert skips(datasources={"db"}) == [("smoke", None), ("query", UNDECLARED.format("nowhere"))]
    assert skips(datasources={"nowhere"}) == [("smoke", None), ("query", None)]
