"""The test generator's pure parts: uploads, form values from the action's rules, filled expectations, the
three-way merge of a regeneration and the record it is based on."""

from __future__ import annotations

from typing import Any

import pytest

from reconciler.core import suite_merge, testgen
from reconciler.core.components import Action, Component, Form, FormField, Param, Redirect, size_in_bytes
from reconciler.core.models import TestCase, UploadFile


@pytest.mark.parametrize(("text", "size"), [
    ("5MB", 5 * 1024 * 1024), ("500kb", 500 * 1024), ("1.5 MB", 1572864), ("2048", 2048), ("10B", 10),
    ("1GiB", 1024 ** 3), ("2k", 2048), (None, None), ("", None), ("big", None), ("5 TB", None),
])
def test_size_in_bytes(text: str | None, size: int | None) -> None:
    assert size_in_bytes(text) == size


@pytest.mark.parametrize(("accept", "max_size", "expected"), [
    (None, None, UploadFile(filename="qa-avatar.txt", content_type="text/plain", size=16)),
    ("image/*", None, UploadFile(filename="qa-avatar.png", content_type="image/png", size=16)),
    ("image/jpeg,image/png", None, UploadFile(filename="qa-avatar.jpg", content_type="image/jpeg", size=16)),
    (".pdf, .doc", None, UploadFile(filename="qa-avatar.pdf", content_type="application/pdf", size=16)),
    (".xyz", None, UploadFile(filename="qa-avatar.xyz", content_type="application/octet-stream", size=16)),
    ("application/x-thing", None, UploadFile(filename="qa-avatar.bin", content_type="application/x-thing", size=16)),
    ("*/*", 8, UploadFile(filename="qa-avatar.txt", content_type="text/plain", size=8)),
    ("font/*, text/csv", 5 * 1024 * 1024, UploadFile(filename="qa-avatar.csv", content_type="text/csv", size=16)),
])
def test_an_upload_respects_accept_and_max_size(accept: str | None, max_size: int | None,
                                               expected: UploadFile) -> None:
    assert testgen.upload("avatar", accept, max_size) == expected


AVATAR = Param("avatar", type="file", required=True, accept="image/*", max_size=10)
SEND = Action("send", params=(Param("recipientEmail", type="email", required=True),
                              Param("message", min_length=10, max_length=500)),
              redirects=(Redirect("{application.basePath}/sent/{recipientEmail}",
                                  "Email sent to {recipientEmail} ({uploadResult.name})"),))


def cases_of(component: Component, base_path: str = "") -> dict[str, TestCase]:
    return {c.id.partition("#")[2]: c for c in testgen.component_cases(component, base_path=base_path)}


def test_a_valid_action_case_fills_its_templates_and_leaves_the_rest() -> None:
    found = cases_of(Component(path="components/mail.q", name="Mail", route="/mail", actions=(SEND,)), "/blog")
    valid = found["action:send:valid"]
    assert valid.request.form == {"action": "send", "recipientEmail": "qa@example.com", "message": "qatestvalu"}
    assert [a.model_dump(exclude_none=True) for a in valid.expect] == [
        {"status": 302}, {"redirect": "/blog/sent/qa@example.com"},
        {"flash": "Email sent to qa@example.com ({uploadResult.name})"}]
    assert valid.request.path == "/mail"  # request paths leave base_path out: the runner adds it


def test_a_file_param_is_uploaded_and_missing_from_its_missing_case() -> None:
    upload = Action("upload", params=(AVATAR, Param("title", required=True)), redirects=(Redirect("/done"),))
    found = cases_of(Component(path="components/up.q", name="Up", route="/up", actions=(upload,)))
    valid = found["action:upload:valid"]
    assert valid.request.files == {"avatar": UploadFile(filename="qa-avatar.png", content_type="image/png", size=10)}
    assert valid.request.form == {"action": "upload", "title": "qatestva"}  # the file is not a form value
    missing = found["action:upload:missing:avatar"]
    assert missing.request.files == {}
    assert missing.request.form == valid.request.form
    assert not [k for k in found if "wrong_type:avatar" in k or "too_" in k]


def form_component(enctype: str | None, method: str = "post") -> Component:
    form = Form(id="mail", method=method.upper(), action="{application.basePath}/mail", enctype=enctype, fields=(
        FormField("action", type="hidden", hidden=True, value="send"),
        FormField("recipientEmail", type="email"),
        FormField("message", type="textarea", max_length=600),
        FormField("cc", type="text", min_length=3),
        FormField("avatar", type="file", accept=".pdf"),
    ))
    action = Action("send", params=(*SEND.params, AVATAR), redirects=SEND.redirects)
    return Component(path="components/mail.q", name="Mail", route="/mail", actions=(action,), forms=(form,))


def test_a_form_case_takes_its_values_from_the_rules_of_the_action_it_posts_to() -> None:
    case = cases_of(form_component("multipart/form-data"))["form:mail"]
    assert case.request.form == {"action": "send", "recipientEmail": "qa@example.com",
                                 "message": "qatestvalu",  # q:param minLength="10", not the field's default 8
                                 "cc": "qatestva"}  # no q:param: the field's own limits
    # the param's accept wins over the field's; its maxsize applies
    assert case.request.files == {"avatar": UploadFile(filename="qa-avatar.png", content_type="image/png", size=10)}
    assert case.expect[1].redirect == "/sent/qa@example.com"


def test_a_file_field_of_a_form_that_is_not_multipart_sends_the_file_name_as_a_browser_does() -> None:
    case = cases_of(form_component(None))["form:mail"]
    assert case.request.files == {}
    assert case.request.form is not None and case.request.form["avatar"] == "qa-avatar.png"


def _dict(**fields: Any) -> dict[str, Any]:
    return {"id": "a.q#page", "name": "n", "type": "smoke", "component": "a.q",
            "request": {"method": "GET", "path": "/a"}, "expect": [{"status": 200}], **fields}


@pytest.mark.parametrize(("base", "ours", "theirs", "merged", "replaced", "kept"), [
    pytest.param(_dict(), _dict(), _dict(name="new"), _dict(name="new"), [], [], id="not edited: theirs"),
    pytest.param(_dict(), _dict(name="mine"), _dict(), _dict(name="mine"), [], ["name"], id="edited: ours"),
    pytest.param(_dict(), _dict(name="mine"), _dict(name="new"), _dict(name="new"), ["name"], [],
                 id="both: theirs, reported"),
    pytest.param(_dict(), _dict(name="same"), _dict(name="same"), _dict(name="same"), [], [], id="same edit"),
    pytest.param(_dict(), _dict(retries=2), _dict(name="new"), _dict(name="new", retries=2), [], ["retries"],
                 id="a key added by hand stays"),
    pytest.param(_dict(writes=True), _dict(), _dict(writes=True), _dict(), [], ["writes"],
                 id="a key removed by hand stays removed"),
    pytest.param(_dict(expect=[{"status": 200}]), _dict(expect=[{"status": 201}]),
                 _dict(expect=[{"status": 200}, {"no_errors": True}]),
                 _dict(expect=[{"status": 200}, {"no_errors": True}]), ["expect"], [], id="a list is one value"),
    pytest.param(_dict(request={"method": "POST", "path": "/a", "form": {"a": "1", "b": "2"}}),
                 _dict(request={"method": "POST", "path": "/a", "form": {"a": "mine", "b": "2"}}),
                 _dict(request={"method": "POST", "path": "/a", "form": {"a": "1", "c": "3"}}),
                 _dict(request={"method": "POST", "path": "/a", "form": {"a": "mine", "c": "3"}}),
                 [], ["request.form.a"], id="mappings merge key by key"),
    pytest.param(_dict(request={"method": "POST", "path": "/a", "form": {"a": "1"}}),
                 _dict(request={"method": "POST", "path": "/a", "form": {"a": "mine"}}),
                 _dict(request={"method": "POST", "path": "/a", "form": {"a": "2"}}),
                 _dict(request={"method": "POST", "path": "/a", "form": {"a": "2"}}),
                 ["request.form.a"], [], id="nested conflict named by its path"),
    pytest.param(_dict(retries=1), _dict(retries=True), _dict(retries=1), _dict(retries=True), [], ["retries"],
                 id="types count: true is not 1"),
])
def test_merge_fields(base: dict[str, Any], ours: dict[str, Any], theirs: dict[str, Any], merged: dict[str, Any],
                      replaced: list[str], kept: list[str]) -> None:
    assert suite_merge.merge_fields(base, ours, theirs) == (merged, replaced, kept)


def test_merge_fields_keeps_the_order_of_the_keys_and_places_a_key_added_by_hand_after_its_neighbour() -> None:
    merged, _, _ = suite_merge.merge_fields(_dict(), _dict(retries=2), _dict(writes=True))
    assert list(merged) == ["id", "name", "type", "component", "request", "expect", "retries", "writes"]
    merged, _, _ = suite_merge.merge_fields({"a": 1}, {"x": 0, "a": 1}, {"a": 1, "b": 2})
    assert list(merged) == ["x", "a", "b"]


def _case(case_id: str, name: str = "x", **fields: Any) -> TestCase:
    return TestCase.model_validate({"id": case_id, "name": name, "type": "smoke",
                                    "component": case_id.partition("#")[0], **fields})


def _base(*cases: TestCase) -> dict[str, dict[str, Any]]:
    return {c.id: testgen.case_to_dict(c) for c in cases}


def test_merge_with_a_base_keeps_edits_and_names_each_one_replaced() -> None:
    base = _base(_case("a.q#one"), _case("a.q#two"), _case("a.q#gone"), _case("a.q#deleted"), _case("a.q#back"),
                 _case("b.q#page"))
    existing = [_case("a.q#one", name="edited"), _case("a.q#two", name="edited"), _case("a.q#gone", name="edited"),
                _case("b.q#page", name="edited")]
    generated = [_case("a.q#one"), _case("a.q#two", name="changed"), _case("a.q#deleted"),
                 _case("a.q#back", name="changed"), _case("a.q#new")]
    merged = suite_merge.merge(existing, generated, current={"a.q"}, changed={"a.q"}, previous={"a.q", "b.q"},
                           base=base, based={"a.q", "b.q"})
    assert [(c.id, c.name) for c in merged.cases] == [
        ("a.q#one", "edited"), ("a.q#two", "changed"), ("a.q#back", "changed"), ("a.q#new", "x")]
    assert merged.origin == (0, 1, None, None)
    assert merged.notes == (
        "case a.q#two: your edit of name replaced (the component changed)",
        "case a.q#gone: removed with your edits (it is no longer generated)",
        "case b.q#page: removed with your edits (the component is gone)",
        "case a.q#back: generated again though you had deleted it (the component changed)",
    )
    assert merged.added == ("a.q#back", "a.q#new")
    assert merged.changed == ("a.q#two",)
    assert merged.kept == ("a.q#one",)
    assert merged.removed == ("a.q#gone", "b.q#page")
    assert merged.edits_kept == ()  # a.q#one kept its edit, but nothing was generated differently for it


def test_a_component_without_a_base_follows_the_older_rule() -> None:
    existing = [_case("a.q#page", name="edited"), _case("b.q#page", name="edited")]
    generated = [_case("a.q#page"), _case("a.q#new"), _case("b.q#page"), _case("b.q#new")]
    merged = suite_merge.merge(existing, generated, current={"a.q", "b.q"}, changed={"b.q"}, previous={"a.q", "b.q"})
    assert [(c.id, c.name) for c in merged.cases] == [("a.q#page", "edited"), ("b.q#page", "x"), ("b.q#new", "x")]
    assert merged.notes == ()


def test_a_kept_form_value_fills_the_expectations_it_appears_in() -> None:
    component = form_component("multipart/form-data")
    generated = testgen.component_cases(component)
    valid = next(c for c in generated if c.id.endswith("#action:send:valid"))
    assert valid.request.form is not None
    edited = valid.model_copy(update={"request": valid.request.model_copy(
        update={"form": {**valid.request.form, "recipientEmail": "ann@example.org"}})})
    merged = suite_merge.merge([edited], generated, current={component.path}, changed=(), previous={component.path},
                           base=_base(*generated), based={component.path},
                           refill=lambda case: testgen.expectations(component, case))
    result = merged.cases[0]
    assert result.request.form == edited.request.form
    assert [a.redirect or a.flash for a in result.expect[1:]] == [
        "/sent/ann@example.org", "Email sent to ann@example.org ({uploadResult.name})"]
    assert merged.notes == ()
    recorded = next(c for c in merged.record if c.id == result.id)
    assert recorded.expect == result.expect  # the base of the next run: no edit of expect to report
    assert recorded.request == valid.request  # the generated request: the edit of it stays an edit


def test_the_record_reads_back_what_was_written() -> None:
    cases = [_case("a.q#page", name="Smoke: 😀 \u2028 {x}", writes=True), _case("b.q#page")]
    text = suite_merge.record_text("blog", "manifests/tests/blog.yaml", {"b.q": "2", "a.q": "1"}, cases)
    record = suite_merge.parse_record(text)
    assert record.generated_from == {"a.q": "1", "b.q": "2"}
    assert record.cases == _base(*cases)
    lines = text.split("\n")
    assert [line.strip() for line in lines if line.strip().startswith('"a.q"')] == ['"a.q": "1",']
    assert len([line for line in lines if line.strip().startswith('{"id": ')]) == 2  # a case a line


@pytest.mark.parametrize(("text", "message"), [
    ("{", "not valid JSON: Expecting property name enclosed in double quotes: line 1 column 2"),
    ('{"version": 2}', "not a record of version 1"),
    ('{"version": 1, "generated_from": [], "cases": []}', "generated_from: expected a mapping"),
    ('{"version": 1, "generated_from": {}, "cases": {}}', "cases: expected a list"),
    ('{"version": 1, "generated_from": {}, "cases": [{"id": "a", "name": "n", "type": "nope"}]}',
     "case 1: type: Input should be"),
])
def test_a_broken_record_says_what_is_wrong(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        suite_merge.parse_record(text)
