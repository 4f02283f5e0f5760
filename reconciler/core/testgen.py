"""Scanned components -> test cases, and the merge of a regeneration with an existing suite (pure).

Every case has a stable id `<component path>#<element>` (e.g. `components/login.q#page`,
`components/login.q#action:login:missing:email`) and records its component. What is generated,
per component (components in path order; each kind in source order):

- `#page` smoke: a page (a component with a route) loads: 200 and no error markers;
- `#auth`: a guarded page (require_auth / require_role) without a session: 302 to /login. A guarded
  page gets `#action:NAME:auth` (its actions answer 302 to /login without a session) instead of
  smoke, action and form cases, which could not pass without a login;
- `#action:NAME:valid`: input built from the q:param / q:validate types and limits (a file param, type
  file or binary, gets a small generated upload within its accept and maxsize); the declared q:redirect
  (302, its URL, its flash) or 200 without errors. The redirect and flash are templates: `{param}` of a
  value the case sends and `{application.basePath}` (the project's base_path) are filled in, any other
  `{expression}` is left, and matches any text when the case runs (core/templates);
- `#action:NAME:missing:F`, `:too_short:F`, `:too_long:F`, `:wrong_type:F`: one each (first field
  that allows it), rejected the Quantum way: 302 back to the Referer (the page) with an error flash;
- `#form:ID` (or `#form:N`, 1-based, without an id): the form's fields, hidden ones included, valued by
  the q:param rules of the action the form runs (else by the field's own limits); file fields of a
  multipart form as uploads; the action's redirect and flash, filled as above;
- `#query:NAME`: the SQL on its datasource (queries without a datasource are left out); when the
  datasources the project declares are given and this one is not among them, the case gets `skip:`
  with the reason (it could only fail);
- `#endpoint:/path` (GET) or `#endpoint:METHOD /path`: the function's endpoint answers.

A component the server does not serve (outside paths.components: `not_served`) gets no HTTP case at all
(no page, auth, action, form or endpoint case), only its query cases.
Cases of actions, forms and queries that write data are marked `writes: true`.

A regeneration merges into the suite as it is (`merge`): per case, a three-way merge against the case
generated last time (the record, `record_text`), so hand edits survive where the generated part did not
change and every one replaced is named.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from reconciler.core import templates
from reconciler.core.components import (
    Action,
    Component,
    Form,
    FormField,
    Function,
    Param,
    Query,
    Redirect,
    page_path,
    route_for,
)
from reconciler.core.models import Assertion, TestCase, TestRequest, UploadFile

LOGIN_PATH = "/login"  # where a Quantum server sends a request without a session for a guarded page
EMAIL = "qa@example.com"
URL = "https://example.com"
DEFAULT_LENGTH = 8
_BASE_PATH_EXPR = re.compile(r"^\{\s*application\.basePath\s*\}")
_BIND = re.compile(r"(?<![:\w]):([A-Za-z_]\w*)")
_ALPHABETS = ("qatestvalue", "1234567890", "QATESTVALUE", "qa1test2", "qa test value")
UPLOAD_TYPES = ("file", "binary")  # q:param types posted as a file (multipart/form-data)
UPLOAD_SIZE = 16  # bytes of a generated upload, less when the param allows less
# Extension -> media type of the files a generated upload can be; the first of a major type is its default.
_MEDIA = {"txt": "text/plain", "csv": "text/csv", "png": "image/png", "jpg": "image/jpeg", "jpeg": "image/jpeg",
          "gif": "image/gif", "webp": "image/webp", "svg": "image/svg+xml", "pdf": "application/pdf",
          "json": "application/json", "zip": "application/zip", "mp3": "audio/mpeg", "mp4": "video/mp4"}


def component_from_dict(data: Mapping[str, Any]) -> Component:
    """A Component from its report form (Component.to_dict(): None and empty values dropped)."""

    def params(items: Iterable[Mapping[str, Any]]) -> tuple[Param, ...]:
        return tuple(Param(**{**p, "enum": tuple(p.get("enum", ()))}) for p in items)

    def queries(items: Iterable[Mapping[str, Any]]) -> tuple[Query, ...]:
        return tuple(Query(**{**q, "params": tuple(q.get("params", ()))}) for q in items)

    actions = tuple(
        Action(**{**a, "params": params(a.get("params", ())),
                  "redirects": tuple(Redirect(**r) for r in a.get("redirects", ())),
                  "queries": queries(a.get("queries", ()))})
        for a in data.get("actions", ()))
    forms = tuple(Form(**{"id": None, **f, "fields": tuple(FormField(**x) for x in f.get("fields", ()))})
                  for f in data.get("forms", ()))
    return Component(**{
        **data, "actions": actions, "queries": queries(data.get("queries", ())), "forms": forms,
        "functions": tuple(Function(**fn) for fn in data.get("functions", ())),
        "includes": tuple(data.get("includes", ())), "imports": tuple(data.get("imports", ())),
        "problems": tuple(data.get("problems", ())),
    })


# ---------------------------------------------------------------------------------------------- values


def _text(length: int, pattern: str | None) -> str:
    """A string of exactly `length` characters, matching `pattern` when one of a few simple alphabets does."""
    candidates = [(alphabet * (length // len(alphabet) + 1))[:length] for alphabet in _ALPHABETS]
    if pattern:
        try:
            compiled = re.compile(pattern)
        except re.error:
            compiled = None
        if compiled is not None:
            for candidate in candidates:
                if compiled.search(candidate) is not None:
                    return candidate
    return candidates[0]


def _length(min_length: int | None, max_length: int | None) -> int:
    length = max(min_length or 0, DEFAULT_LENGTH if max_length is None else min(DEFAULT_LENGTH, max_length))
    return max(length, 1)


def _number(low: float | None, high: float | None, integer: bool) -> int | float:
    if low is not None:
        value: float = math.ceil(low) if integer else low
    elif high is not None:
        value = min(1, math.floor(high)) if integer else min(1.5, high)
    else:
        value = 1 if integer else 1.5
    return int(value) if integer else float(value)


def valid_value(param: Param) -> str | int | float | bool:
    """A value that passes the rules of one q:param / q:validate."""
    if param.enum:
        return param.enum[0]
    kind = param.type.lower()
    if kind == "email":
        return EMAIL
    if kind == "url":
        return URL
    if kind in ("integer", "int", "number"):
        return _number(param.min, param.max, integer=True)
    if kind in ("decimal", "float"):
        return _number(param.min, param.max, integer=False)
    if kind == "boolean":
        return "true"
    return _text(_length(param.min_length, param.max_length), param.pattern)


def _field_value(item: FormField) -> str | int:
    if item.hidden or item.type == "hidden":
        return item.value or ""
    kind = item.type.lower()
    if kind == "email":
        return EMAIL
    if kind == "url":
        return URL
    if kind in ("number", "range"):
        return 1
    if kind == "checkbox":
        return item.value or "on"
    if item.value:
        return item.value
    return _text(_length(item.min_length, item.max_length), item.pattern)


def upload(name: str, accept: str | None = None, max_size: int | None = None) -> UploadFile:
    """A small file for an upload field: `qa-<name>.<ext>` of the first type `accept` allows that one can be
    named (`image/*` -> a .png, `.pdf`, `text/csv`), else a text file; at most `max_size` bytes."""
    extension, media = "txt", "text/plain"
    for entry in (e.strip().lower() for e in (accept or "").split(",")):
        if entry.startswith(".") and len(entry) > 1:
            extension, media = entry[1:], _MEDIA.get(entry[1:], "application/octet-stream")
            break
        major, _, minor = entry.partition("/")
        if not major or not minor or major == "*":
            continue
        if minor == "*":
            found = next((ext for ext, kind in _MEDIA.items() if kind.startswith(major + "/")), None)
            if found is None:
                continue
            extension, media = found, _MEDIA[found]
        else:
            extension = next((ext for ext, kind in _MEDIA.items() if kind == entry), "bin")
            media = entry
        break
    size = UPLOAD_SIZE if max_size is None else max(0, min(UPLOAD_SIZE, max_size))
    return UploadFile(filename=f"qa-{name}.{extension}", content_type=media, size=size)


def _is_upload(param: Param) -> bool:
    return param.type.lower() in UPLOAD_TYPES


_WRONG_TYPE = {"email": "not-an-email", "url": "not a url", "integer": "not-a-number", "int": "not-a-number",
               "number": "not-a-number", "decimal": "not-a-number", "float": "not-a-number", "boolean": "maybe"}


# ---------------------------------------------------------------------------------------------- cases


def _unique_params(action: Action) -> list[Param]:
    seen: dict[str, Param] = {}
    for param in action.params:
        seen.setdefault(param.name, param)
    return list(seen.values())


def _flash_error(name: str, missing: bool = False) -> str:
    """The error flash a Quantum server stores for rejected input (QUANTUM.md), as a plain substring."""
    return f"Parameter '{name}' is required" if missing else f"Parameter '{name}'"


def _a(**kwargs: Any) -> Assertion:
    return Assertion(**kwargs)


def _success(action: Action, sent: Mapping[str, object], base_path: str) -> list[Assertion]:
    """What a valid submission gets: the redirect and flash, their templates filled with what the case
    sends and the project's base_path (an expression left unfilled matches any text when run)."""
    if action.redirects:
        redirect = action.redirects[0]
        expect = [_a(status=302), _a(redirect=templates.fill(redirect.url, sent, base_path))]
        if redirect.flash:
            expect.append(_a(flash=templates.fill(redirect.flash, sent, base_path)))
        return expect
    return [_a(status=200), _a(no_errors=True)]


def _action_form(action: Action, values: Mapping[str, str | int | float | bool]) -> dict[str, str | int | float | bool]:
    form: dict[str, str | int | float | bool] = {}
    if "action" not in values:
        form["action"] = action.name  # which q:action of the page runs (as Quantum's own forms send it)
    form.update(values)
    return form


def _action_cases(component: Component, page: str, action: Action, base_path: str = "") -> list[TestCase]:
    base = f"{component.path}#action:{action.name}"
    method = action.method.upper() if action.method.upper() in ("POST", "PUT", "PATCH", "DELETE") else "POST"
    params = _unique_params(action)
    valid = {p.name: valid_value(p) for p in params if not _is_upload(p)}
    uploads = {p.name: upload(p.name, p.accept, p.max_size) for p in params if _is_upload(p)}

    def case(suffix: str, name: str, values: Mapping[str, str | int | float | bool],
             expect: list[Assertion], files: Mapping[str, UploadFile] = uploads) -> TestCase:
        return TestCase(id=f"{base}:{suffix}", name=f"Action {action.name}: {name}", type="action",
                        component=component.path, writes=action.writes,
                        request=TestRequest(method=method, path=page, form=_action_form(action, values),
                                            files=dict(files)),
                        expect=expect)

    def rejected(param: str, missing: bool = False) -> list[Assertion]:
        return [_a(status=302), _a(redirect=page), _a(flash=_flash_error(param, missing))]

    cases = [case("valid", "valid input", valid, _success(action, _action_form(action, valid), base_path))]
    required = next((p for p in params if p.required), None)
    if required is not None:
        values = {k: v for k, v in valid.items() if k != required.name}
        cases.append(case(f"missing:{required.name}", f"missing {required.name}", values,
                          rejected(required.name, missing=True),
                          {k: v for k, v in uploads.items() if k != required.name}))
    textual = [p for p in params if not p.enum and p.type.lower() in ("string", "text", "password")]
    short = next((p for p in textual if (p.min_length or 0) >= 2), None)
    if short is not None:
        assert short.min_length is not None
        values = {**valid, short.name: _text(short.min_length - 1, None)}
        cases.append(case(f"too_short:{short.name}", f"{short.name} too short", values, rejected(short.name)))
    long = next((p for p in textual if p.max_length is not None), None)
    if long is not None:
        assert long.max_length is not None
        values = {**valid, long.name: _text(long.max_length + 1, None)}
        cases.append(case(f"too_long:{long.name}", f"{long.name} too long", values, rejected(long.name)))
    typed = next((p for p in params if not p.enum and p.type.lower() in _WRONG_TYPE), None)
    if typed is not None:
        values = {**valid, typed.name: _WRONG_TYPE[typed.type.lower()]}
        cases.append(case(f"wrong_type:{typed.name}", f"{typed.name} of the wrong type", values,
                          rejected(typed.name)))
    return cases


def _form_target(form: Form, page: str) -> str:
    action = _BASE_PATH_EXPR.sub("", (form.action or "").strip())
    if action.startswith("/") and "{" not in action and "://" not in action:
        return action.split("?", 1)[0].split("#", 1)[0] or page
    return page


def _form_method(form: Form) -> str:
    return form.method.upper() if form.method.upper() in ("GET", "POST", "PUT", "PATCH", "DELETE") else "GET"


def _form_action(component: Component, page: str, form: Form) -> Action | None:
    """The q:action a form runs: the one its `action` field names, else the page's only one when it posts there."""
    named = next((str(_field_value(item)) for item in form.fields if item.name == "action"), "")
    action = next((a for a in component.actions if a.name == named), None)
    if action is None and len(component.actions) == 1 and _form_method(form) != "GET" \
            and _form_target(form, page) == page:
        action = component.actions[0]
    return action


def _form_case(component: Component, page: str, form: Form, index: int, base_path: str = "") -> TestCase:
    method = _form_method(form)
    target = _form_target(form, page)
    action = _form_action(component, page, form)
    values, files = _form_values(form, action, multipart=method != "GET" and (form.enctype or "").lower()
                                 .startswith("multipart/form-data"))
    if action is not None:
        expect = _success(action, values, base_path)
        writes = action.writes
    else:
        expect = [_a(status_in=[200, 302])]
        writes = method != "GET"
    key = form.id or str(index)
    if method == "GET":
        request = TestRequest(method="GET", path=target, query={k: str(v) for k, v in values.items()})
    else:
        request = TestRequest(method=method, path=target, form=values, files=files)
    return TestCase(id=f"{component.path}#form:{key}", name=f"Form {key}: submit its fields", type="form",
                    component=component.path, writes=writes, request=request, expect=expect)


def _form_values(form: Form, action: Action | None, multipart: bool
                 ) -> tuple[dict[str, str | int | float | bool], dict[str, UploadFile]]:
    """What submitting the form sends: a field named after a q:param of the action it posts to gets a value
    from that param's rules (what the server checks), any other field one from its own limits; hidden
    fields keep their value. A file field is a generated upload in a multipart form, and its file name (as
    a browser sends it) in any other."""
    rules = {p.name: p for p in _unique_params(action)} if action is not None else {}
    values: dict[str, str | int | float | bool] = {}
    files: dict[str, UploadFile] = {}
    for item in form.fields:
        if not item.name:
            continue
        param = rules.get(item.name)
        if item.hidden or item.type == "hidden":
            values[item.name] = _field_value(item)
        elif item.type == "file" or (param is not None and _is_upload(param)):
            file = upload(item.name, param.accept if param is not None and param.accept else item.accept,
                          param.max_size if param is not None else None)
            if multipart:
                files[item.name] = file
            else:
                values[item.name] = file.filename
        elif param is not None:
            values[item.name] = valid_value(param)
        else:
            values[item.name] = _field_value(item)
    return values, files


def undeclared(datasource: str) -> str:
    """The skip reason of a query case on a datasource the project does not declare."""
    return f"datasource {datasource!r} is not declared: add it under the project's datasources"


def _query_case(component: Component, query: Query, types: Mapping[str, Param],
                datasources: Collection[str] | None = None) -> TestCase:
    params: dict[str, Any] = {}
    names = query.params or tuple(dict.fromkeys(_BIND.findall(query.sql)))  # :name placeholders of the SQL
    for name in names:
        param = types.get(name)
        params[name] = valid_value(param) if param is not None else _text(DEFAULT_LENGTH, None)
    assert query.datasource is not None
    skip = undeclared(query.datasource) if datasources is not None and query.datasource not in datasources else None
    return TestCase(id=f"{component.path}#query:{query.name}", name=f"Query {query.name} on {query.datasource}",
                    type="query", component=component.path, writes=query.writes,
                    request=TestRequest(datasource=query.datasource, sql=query.sql, params=params),
                    expect=[_a(no_errors=True)], skip=skip)


def outdated(existing: Iterable[TestCase], generated: Iterable[TestCase], components: Iterable[Component]) -> set[str]:
    """The components whose generated cases are out of date although their file did not change, so that
    regeneration replaces their cases as for a changed file (see `merge`):

    - a component that is not served (any more) and still has generated HTTP cases (they could only fail);
    - a component whose generated query cases are skipped now for an undeclared datasource and were not, or
      the other way round (the datasource was declared or removed since). A skip reason written by hand (any
      other text) is the user's and changes nothing.
    """
    existing = list(existing)
    not_served = {c.path for c in components if not c.served}
    found = {case.component for case in existing if case.type not in ("query", "custom")
             and case.component is not None and owner(case, not_served) == case.component}
    before = {case.id: case.skip for case in existing}
    found |= {case.component for case in generated
              if case.type == "query" and case.component is not None and case.id in before
              and before[case.id] != case.skip
              and (before[case.id] is None or before[case.id] == undeclared(case.request.datasource or ""))}
    return found


def _endpoint_case(component: Component, function: Function) -> TestCase:
    assert function.endpoint is not None
    path = function.endpoint if function.endpoint.startswith("/") else "/" + function.endpoint
    method = function.method.upper()
    if method not in ("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"):
        method = "GET"
    element = path if method == "GET" else f"{method} {path}"
    expect = [_a(status=200)] if method in ("GET", "HEAD") else [_a(status_in=[200, 201, 204])]
    return TestCase(id=f"{component.path}#endpoint:{element}", name=f"Endpoint {method} {path} answers",
                    type="endpoint", component=component.path, writes=method not in ("GET", "HEAD", "OPTIONS"),
                    request=TestRequest(method=method, path=path), expect=expect)


def component_cases(component: Component, *, base_path: str = "",
                    datasources: Collection[str] | None = None) -> list[TestCase]:
    """The cases of one component, in a fixed order: page, actions, forms, queries, endpoints.
    base_path: the project's (request paths leave it out); datasources: the names the project declares
    (None: not known, no query case is skipped)."""
    if component.parse == "skipped":
        return []
    cases: list[TestCase] = []
    page = page_path(component.route, base_path) if component.route is not None and component.served else None
    guarded = component.require_auth or component.require_role is not None
    if page is not None and guarded:
        cases.append(TestCase(
            id=f"{component.path}#auth", name=f"Auth: {component.name} redirects to {LOGIN_PATH} without a session",
            type="auth", component=component.path, request=TestRequest(method="GET", path=page),
            expect=[_a(status=302), _a(redirect=LOGIN_PATH)]))
        for action in component.actions:
            cases.append(TestCase(
                id=f"{component.path}#action:{action.name}:auth",
                name=f"Auth: action {action.name} redirects to {LOGIN_PATH} without a session", type="auth",
                component=component.path, writes=action.writes,
                request=TestRequest(method="POST", path=page, form=_action_form(action, {})),
                expect=[_a(status=302), _a(redirect=LOGIN_PATH)]))
    elif page is not None:
        cases.append(TestCase(id=f"{component.path}#page", name=f"Smoke: {component.name} loads", type="smoke",
                              component=component.path, request=TestRequest(method="GET", path=page),
                              expect=[_a(status=200), _a(no_errors=True)]))
        for action in component.actions:
            cases.extend(_action_cases(component, page, action, base_path))
        for index, form in enumerate(component.forms, start=1):
            cases.append(_form_case(component, page, form, index, base_path))
    types = {p.name: p for a in component.actions for p in a.params}
    queries = [*component.queries, *(q for a in component.actions for q in a.queries)]
    cases.extend(_query_case(component, q, types, datasources) for q in queries if q.datasource)
    cases.extend(_endpoint_case(component, f) for f in component.functions if f.endpoint and component.served)
    return _deduplicated(cases)


def expectations(component: Component, case: TestCase, base_path: str = "") -> list[Assertion] | None:
    """What a generated valid-action or form case expects for the request it holds now: a hand-edited value
    it sends fills the flash and redirect templates as the generated one did. None for other cases."""
    element = case.id.partition("#")[2]
    page = page_path(component.route, base_path) if component.route is not None else route_for(component.path)
    action: Action | None = None
    if element.startswith("action:") and element.endswith(":valid"):
        action = next((a for a in component.actions if f"action:{a.name}:valid" == element), None)
    elif element.startswith("form:"):
        form = next((f for i, f in enumerate(component.forms, start=1) if f"form:{f.id or i}" == element), None)
        action = _form_action(component, page, form) if form is not None else None
    if action is None or not action.redirects:
        return None
    return _success(action, {**case.request.query, **(case.request.form or {})}, base_path)


def _deduplicated(cases: list[TestCase]) -> list[TestCase]:
    """Two elements with the same id (two queries of one name, ...): the later ones get ~2, ~3."""
    seen: dict[str, int] = {}
    out: list[TestCase] = []
    for case in cases:
        count = seen.get(case.id, 0) + 1
        seen[case.id] = count
        out.append(case if count == 1 else case.model_copy(update={"id": f"{case.id}~{count}"}))
    return out


def generate(components: Iterable[Component], *, base_path: str = "",
             datasources: Collection[str] | None = None) -> list[TestCase]:
    """Every case of every component, components in path order (base_path, datasources: see component_cases)."""
    return [case for component in sorted(components, key=lambda c: c.path)
            for case in component_cases(component, base_path=base_path, datasources=datasources)]


def case_to_dict(case: TestCase) -> dict[str, Any]:
    """A case as the manifest writes it: defaults left out, request and expect always present."""
    data: dict[str, Any] = {"id": case.id, "name": case.name, "type": case.type}
    if case.component is not None:
        data["component"] = case.component
    if case.writes:
        data["writes"] = True
    if case.skip:
        data["skip"] = case.skip
    request = case.request.model_dump(mode="json", by_alias=True, exclude_defaults=True)
    data["request"] = {"method": case.request.method, "path": case.request.path, **request}
    if case.request.datasource is not None:  # a query case: no HTTP request
        data["request"] = request
    data["expect"] = [a.model_dump(mode="json", exclude_none=True) for a in case.expect]
    if case.retries:
        data["retries"] = case.retries
    if case.timeout is not None:
        data["timeout"] = case.timeout
    return data


# ---------------------------------------------------------------------------------------------- merge


@dataclass(frozen=True)
class Merged:
    """The cases of a regenerated suite. `origin[i]` is the index in the existing list of the case cases[i]
    comes from (kept or merged: an editor changes only what differs, keeping its comments), None when new.

    changed: ids whose content differs from the existing case; kept: generated cases left as they were;
    edits_kept: ids whose hand edits survived though what is generated for them changed; notes: one sentence
    per hand edit replaced or lost (`case X: your edit of expect replaced (the component changed)`)."""

    cases: tuple[TestCase, ...]
    origin: tuple[int | None, ...]
    added: tuple[str, ...] = ()
    changed: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()
    kept: tuple[str, ...] = ()
    hand_written: tuple[str, ...] = ()
    notes: tuple[str, ...] = field(default=())
    edits_kept: tuple[str, ...] = ()
    record: tuple[TestCase, ...] = ()  # what was generated, as the base of the next merge


def owner(case: TestCase, known: Iterable[str]) -> str | None:
    """The component path a generated case belongs to; None for a hand-written case.

    A case is generated when its type is not `custom` and its id is `<path>#...` for a component
    path the generator knows (a scanned component, or one the suite was generated from).
    """
    if case.type == "custom" or "#" not in case.id:
        return None
    path = case.id.split("#", 1)[0]
    return path if path in known else None


_ABSENT: Any = object()


def same(a: Any, b: Any) -> bool:
    """Equal as the file holds them: types count (1, 1.0 and true differ), key order does not."""
    if a is _ABSENT or b is _ABSENT:
        return a is b
    return json.dumps(a, sort_keys=True, default=str) == json.dumps(b, sort_keys=True, default=str)


def _keys(ours: Mapping[str, Any], theirs: Mapping[str, Any]) -> list[str]:
    """theirs' keys in their order, each key only ours has placed after the key it follows in ours."""
    keys = list(theirs)
    previous: str | None = None
    for key in ours:
        if key not in keys:
            keys.insert(keys.index(previous) + 1 if previous is not None else 0, key)
        previous = key
    return keys


def merge_fields(base: Mapping[str, Any], ours: Mapping[str, Any], theirs: Mapping[str, Any],
                 prefix: str = "") -> tuple[dict[str, Any], list[str], list[str]]:
    """Three-way merge of one case as a dict (case_to_dict): base = what was generated last time, ours = the
    case in the file, theirs = what is generated now. Per key: unchanged by hand -> theirs; changed by hand
    and not by the generator -> ours; changed by both -> theirs, unless both are mappings, which merge key by
    key (request, request.form, ...); lists (expect) are one value. Returns the merged dict, the dotted keys
    whose hand edit was replaced and those whose hand edit was kept."""
    out: dict[str, Any] = {}
    replaced: list[str] = []
    kept: list[str] = []
    for key in _keys(ours, theirs):
        b, o, t = base.get(key, _ABSENT), ours.get(key, _ABSENT), theirs.get(key, _ABSENT)
        if same(o, b) or same(o, t):
            value = t
        elif same(t, b):
            value = o
            kept.append(prefix + key)
        elif isinstance(o, Mapping) and isinstance(t, Mapping) and (b is _ABSENT or isinstance(b, Mapping)):
            value, inner_replaced, inner_kept = merge_fields({} if b is _ABSENT else b, o, t, f"{prefix}{key}.")
            replaced.extend(inner_replaced)
            kept.extend(inner_kept)
        else:
            value = t
            replaced.append(prefix + key)
        if value is not _ABSENT:
            out[key] = value
    return out, replaced, kept


def _edits(fields: Sequence[str]) -> str:
    return f"your edit of {fields[0]}" if len(fields) == 1 else f"your edits of {', '.join(fields)}"


def merge(existing: Sequence[TestCase], generated: Sequence[TestCase], current: Iterable[str],
          changed: Iterable[str], previous: Iterable[str] = (),
          base: Mapping[str, Mapping[str, Any]] | None = None, based: Iterable[str] = (),
          refill: Callable[[TestCase], list[Assertion] | None] | None = None) -> Merged:
    """Merge a regeneration into an existing suite.

    current: the component paths scanned now; changed: those whose file changed since the last
    generation (or were never generated from); previous: the paths the suite was generated from;
    base: the cases generated last time (id -> case_to_dict), which hold for the components in `based`.

    Hand-written cases (see `owner`) are always kept, in place; generated cases of a component that no
    longer exists are removed. A component with a base merges case by case (`merge_fields`): hand edits
    survive where the generated part did not change, and each one replaced is a note; a generated case
    deleted by hand stays deleted until what is generated for it changes; a case no longer generated is
    removed (a note if it had hand edits). A component without a base (a suite from before the record,
    or one restored from elsewhere) follows the older rule: its cases are kept as they are while its file
    is unchanged, and replaced by the new ones when it changed. New ids go after the component's last case.

    refill (`expectations` of the case's component) gives the expectations of a case for the request it
    holds: when hand-edited values are kept in a request, the generated case is taken as filled with them,
    so its flash and redirect follow the edit (and `record` holds it that way).
    """
    current_set, changed_set, based_set = set(current), set(changed), set(based)
    base = base or {}
    known = current_set | set(previous)
    fresh = {case.id: case for case in generated}
    out: list[tuple[TestCase, int | None]] = []
    added: list[str] = []
    replaced: list[str] = []
    removed: list[str] = []
    kept: list[str] = []
    hand: list[str] = []
    notes: list[str] = []
    edits_kept: list[str] = []
    placed: set[str] = set()
    recorded = {case.id: case for case in generated}

    def why(path: str) -> str:
        return "the component changed" if path in changed_set else "the generated case changed"

    def edited(case: TestCase) -> bool:
        return case.id in base and not same(case_to_dict(case), base[case.id])

    for index, case in enumerate(existing):
        path = owner(case, known)
        if path is None:
            out.append((case, index))
            hand.append(case.id)
            placed.add(case.id)
            continue
        new = fresh.get(case.id) if case.id not in placed and path in current_set else None
        if new is None:
            removed.append(case.id)
            if path in based_set and edited(case):
                gone = "the component is gone" if path not in current_set else "it is no longer generated"
                notes.append(f"case {case.id}: removed with your edits ({gone})")
            continue
        placed.add(case.id)
        if path in based_set:
            ours = case_to_dict(case)
            theirs = case_to_dict(new)
            merged, lost, survived = merge_fields(base.get(case.id, {}), ours, theirs)
            if refill is not None and not same(merged.get("request"), theirs.get("request")):
                try:
                    expect = refill(TestCase.model_validate(merged))
                except ValueError:
                    expect = None
                if expect is not None and expect != new.expect:
                    new = recorded[case.id] = new.model_copy(update={"expect": expect})
                    theirs = case_to_dict(new)
                    merged, lost, survived = merge_fields(base.get(case.id, {}), ours, theirs)
            try:
                result = TestCase.model_validate(merged)
            except ValueError:  # edits that cannot stand with the new case: the new case wins
                result, lost = new, sorted(set(lost) | {k for k in ours if not same(ours[k], theirs.get(k, _ABSENT))})
            if lost:
                notes.append(f"case {case.id}: {_edits(lost)} replaced ({why(path)})")
            if survived and not same(theirs, base.get(case.id)):  # generated anew, and the edits stayed
                edits_kept.append(case.id)
        elif path in changed_set:
            result = new
        else:
            result = case
        out.append((result, index))
        (kept if same(case_to_dict(result), case_to_dict(case)) else replaced).append(case.id)
    for case in generated:
        path = case.component
        if case.id in placed or path is None:
            continue
        if path in based_set:
            if case.id in base and same(case_to_dict(case), base[case.id]):
                continue  # deleted by hand, and generated as before: it stays deleted
            if case.id in base:
                notes.append(f"case {case.id}: generated again though you had deleted it ({why(path)})")
        elif path not in changed_set:
            continue  # the older rule: an unchanged component's case missing from the suite was deleted by hand
        position = _insert_position(out, case)
        out.insert(position, (case, None))
        placed.add(case.id)
        added.append(case.id)
    return Merged(cases=tuple(c for c, _ in out), origin=tuple(i for _, i in out), added=tuple(added),
                  changed=tuple(replaced), removed=tuple(removed), kept=tuple(kept), hand_written=tuple(hand),
                  notes=tuple(notes), edits_kept=tuple(edits_kept),
                  record=tuple(recorded[case.id] for case in generated))


# ---------------------------------------------------------------------------------------------- record

RECORD_VERSION = 1
RECORD_ABOUT = ("Written by `qrm tests generate`: the cases it generated last time, against which it tells your "
                "hand edits of the suite from its own changes. Commit it with the suite; do not edit.")


@dataclass(frozen=True)
class Record:
    """What the last generation produced: the component hashes and every case (id -> case_to_dict)."""

    generated_from: Mapping[str, str]
    cases: Mapping[str, Mapping[str, Any]]


def record_text(project: str, suite: str, generated_from: Mapping[str, str], cases: Sequence[TestCase]) -> str:
    """The record as JSON, one component and one case a line (a changed case diffs as one line); JSON, not
    YAML, so that any text (an emoji in a flash) reads back exactly."""

    def block(items: list[str], opening: str, closing: str) -> str:
        return opening + ("\n" + ",\n".join(items) + "\n  " if items else "") + closing

    def dump(value: Any) -> str:
        return json.dumps(value, ensure_ascii=False, separators=(", ", ": "))

    components = [f"    {dump(path)}: {dump(sha)}" for path, sha in sorted(generated_from.items())]
    lines = [f"    {dump(case_to_dict(case))}" for case in cases]
    return ("{\n"
            f'  "about": {dump(RECORD_ABOUT)},\n  "version": {RECORD_VERSION},\n'
            f'  "project": {dump(project)},\n  "suite": {dump(suite)},\n'
            f'  "generated_from": {block(components, "{", "}")},\n'
            f'  "cases": {block(lines, "[", "]")}\n'
            "}\n")


def parse_record(text: str) -> Record:
    """The record written by record_text; ValueError saying what is wrong (line, case) otherwise."""
    try:
        data = json.loads(text)
    except ValueError as exc:  # the message names the line and column
        raise ValueError(f"not valid JSON: {exc}") from None
    if not isinstance(data, dict) or data.get("version") != RECORD_VERSION:
        raise ValueError(f"not a record of version {RECORD_VERSION}")
    generated_from = data.get("generated_from")
    items = data.get("cases")
    if not isinstance(generated_from, dict) or not all(isinstance(v, str) for v in generated_from.values()):
        raise ValueError("generated_from: expected a mapping of component path -> sha256")
    if not isinstance(items, list):
        raise ValueError("cases: expected a list")
    cases: dict[str, Mapping[str, Any]] = {}
    for number, item in enumerate(items, start=1):
        try:
            case = TestCase.model_validate(item)
        except ValidationError as exc:
            error = exc.errors()[0]
            where = ".".join(str(part) for part in error["loc"]) or "the case"
            raise ValueError(f"case {number}: {where}: {error['msg']}") from None
        cases[case.id] = case_to_dict(case)  # as the merge compares cases
    return Record(generated_from=dict(generated_from), cases=cases)


def _insert_position(out: list[tuple[TestCase, int | None]], case: TestCase) -> int:
    """After the last case of the same component; else before the first case of a later component; else last."""
    last = max((i for i, (c, _) in enumerate(out) if c.component == case.component), default=None)
    if last is not None:
        return last + 1
    assert case.component is not None
    later = next((i for i, (c, _) in enumerate(out)
                  if c.component is not None and c.type != "custom" and c.component > case.component), None)
    return len(out) if later is None else later


def summary(cases: Sequence[TestCase]) -> dict[str, int]:
    """Number of cases per type, in the order of the type list."""
    order = ("smoke", "auth", "action", "form", "query", "endpoint", "custom")
    counts = {kind: 0 for kind in order}
    for case in cases:
        counts[case.type] += 1
    return {kind: n for kind, n in counts.items() if n}
