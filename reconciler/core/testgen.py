"""Scanned components -> test cases (pure); core/suite_merge merges a regeneration into an existing suite.

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

A regeneration merges into the suite as it is: core/suite_merge.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from typing import Any, TypeVar

import re2  # linear-time matching (no I/O: allowed in core)

from reconciler.core import request_parts, templates
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
# The longest value generated: a longer minlength (3,000,000,000 ran out of memory) skips the case with the reason.
MAX_LENGTH = 10_000
_BASE_PATH_EXPR = re.compile(r"^\{\s*application\.basePath\s*\}")
_BIND = re.compile(r"(?<![:\w]):([A-Za-z_]\w*)")
_RE2_OPTIONS = re2.Options()
_RE2_OPTIONS.log_errors = False  # an unsupported pattern is a skipped case, not a line on stderr
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


class NoValue(ValueError):
    """No value can be generated for a field; the message is the reason its cases are skipped with."""


def _text(length: int, pattern: str | None) -> str:
    """A string of exactly `length` characters, matching `pattern` when one of a few simple alphabets does.
    NoValue when the length is above MAX_LENGTH, or the pattern cannot be matched in linear time."""
    if length > MAX_LENGTH:
        raise NoValue(f"a length of {length} is above the {MAX_LENGTH} characters qrm generates")
    candidates = [(alphabet * (length // len(alphabet) + 1))[:length] for alphabet in _ALPHABETS]
    if pattern:
        matches = _matcher(pattern)
        for candidate in candidates:
            if matches(candidate):
                return candidate
    return candidates[0]


def _matcher(pattern: str) -> Callable[[str], bool]:
    """Whether a text matches `pattern` (re.search semantics), checked in time linear in the text: RE2
    (no backtracking) runs it, so `^([a-z]+)+X$` cannot take exponential time as Python's re would. Python's
    syntax RE2 lacks: leading lookaheads `^(?=A)(?=B)REST` (a password's rules) are checked as `^(?:A)`,
    `^(?:B)` and `^(?:REST)`; other lookarounds and backreferences raise NoValue. A pattern Python cannot
    compile either checks nothing (any candidate is taken, as before: `qrm validate` does not judge it)."""
    try:
        re.compile(pattern)
    except (re.error, RecursionError, OverflowError):
        return lambda text: True
    parts = _lookaheads(pattern[1:]) if pattern.startswith("^(?=") else None
    parts = [f"^(?:{part})" for part in parts] if parts is not None else [pattern]
    try:
        compiled = [re2.compile(part, _RE2_OPTIONS) for part in parts]
    except re2.error:
        raise NoValue(f"pattern {pattern!r} is too complex to generate a value for (lookbehinds, backreferences and "
                      "lookaheads after the start are not checked in linear time): write the value by hand") from None
    return lambda text: all(c.search(text) is not None for c in compiled)


def _lookaheads(pattern: str) -> list[str] | None:
    """`(?=A)(?=B)REST` -> [A, B, REST]: the bodies of the leading lookahead groups, then the rest; None when
    a `|` at the top level makes the lookaheads only one alternative's rule."""
    parts: list[str] = []
    start = 0
    for index, char, depth in _structure(pattern):
        if char == "|" and depth == 0:
            return None
        if char == "(" and depth == 0 and index == start and pattern.startswith("(?=", index):
            continue
        if char == ")" and depth == 1 and pattern.startswith("(?=", start):
            parts.append(pattern[start + 3:index])
            start = index + 1
    return [*parts, pattern[start:]]


def _structure(pattern: str) -> Iterator[tuple[int, str, int]]:
    """The parentheses and bars of a pattern that are syntax (not escaped, not in a character class), each with
    its position and the group depth before it."""
    depth, index, in_class = 0, 0, False
    while index < len(pattern):
        char = pattern[index]
        if char == "\\":
            index += 2
            continue
        if in_class:
            in_class = char != "]"
        elif char == "[":
            in_class = True
            index += pattern.startswith("^", index + 1)
            index += pattern.startswith("]", index + 1)  # a `]` first in a class is a literal
        elif char in "(|)":
            yield index, char, depth
            depth += {"(": 1, ")": -1, "|": 0}[char]
        index += 1


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
    if request_parts.media_type_problem(media) is not None:  # an accept= no Content-Type can carry
        media = "application/octet-stream"
    return UploadFile(filename=request_parts.escape_controls(f"qa-{name}.{extension}"), content_type=media, size=size)


def _path(path: str) -> str:
    """A request path from a .q file or its file name, sendable: control characters percent-encoded."""
    return request_parts.escape_controls(path)


_V = TypeVar("_V")


def _names(fields: Mapping[str, _V]) -> dict[str, _V]:
    """Multipart field names from a .q file, sendable: control characters percent-encoded, as a browser sends them."""
    return {request_parts.escape_controls(name): value for name, value in fields.items()}


def _is_upload(param: Param) -> bool:
    return param.type.lower() in UPLOAD_TYPES


_WRONG_TYPE = {"email": "not-an-email", "url": "not a url", "integer": "not-a-number", "int": "not-a-number",
               "number": "not-a-number", "decimal": "not-a-number", "float": "not-a-number", "boolean": "maybe"}


# ---------------------------------------------------------------------------------------------- cases


def _values(params: Iterable[Param]) -> tuple[dict[str, str | int | float | bool], dict[str, str]]:
    """A valid value per param, and the reason per param none can be generated for (its value is then "", and
    the cases that send it are skipped with the reason)."""
    values: dict[str, str | int | float | bool] = {}
    reasons: dict[str, str] = {}
    for param in params:
        try:
            values[param.name] = valid_value(param)
        except NoValue as exc:
            values[param.name], reasons[param.name] = "", f"{param.name}: {exc}"
    return values, reasons


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
    valid, unbuilt = _values(p for p in params if not _is_upload(p))
    uploads = {p.name: upload(p.name, p.accept, p.max_size) for p in params if _is_upload(p)}

    def case(suffix: str, name: str, values: Mapping[str, str | int | float | bool],
             expect: list[Assertion], files: Mapping[str, UploadFile] = uploads, own: str | None = None,
             skip: str | None = None) -> TestCase:
        """own: the field this case sets itself (its valid value is not sent); skip: why it cannot run."""
        skip = skip or next((why for field, why in unbuilt.items() if field in values and field != own), None)
        return TestCase(id=f"{base}:{suffix}", name=f"Action {action.name}: {name}", type="action",
                        component=component.path, writes=action.writes,
                        request=TestRequest(method=method, path=_path(page), form=_action_form(action, values),
                                            files=dict(files)),
                        expect=expect, skip=skip)

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
        text, why = _text_or_reason(short.name, short.min_length - 1)
        values = {**valid, short.name: text}
        cases.append(case(f"too_short:{short.name}", f"{short.name} too short", values, rejected(short.name),
                          own=short.name, skip=why))
    long = next((p for p in textual if p.max_length is not None), None)
    if long is not None:
        assert long.max_length is not None
        text, why = _text_or_reason(long.name, long.max_length + 1)
        values = {**valid, long.name: text}
        cases.append(case(f"too_long:{long.name}", f"{long.name} too long", values, rejected(long.name),
                          own=long.name, skip=why))
    typed = next((p for p in params if not p.enum and p.type.lower() in _WRONG_TYPE), None)
    if typed is not None:
        values = {**valid, typed.name: _WRONG_TYPE[typed.type.lower()]}
        cases.append(case(f"wrong_type:{typed.name}", f"{typed.name} of the wrong type", values,
                          rejected(typed.name), own=typed.name))
    return cases


def _text_or_reason(name: str, length: int) -> tuple[str, str | None]:
    try:
        return _text(length, None), None
    except NoValue as exc:
        return "", f"{name}: {exc}"


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
    values, files, unbuilt = _form_values(form, action, multipart=method != "GET" and (form.enctype or "").lower()
                                          .startswith("multipart/form-data"))
    if action is not None:
        expect = _success(action, values, base_path)
        writes = action.writes
    else:
        expect = [_a(status_in=[200, 302])]
        writes = method != "GET"
    key = form.id or str(index)
    if method == "GET":
        request = TestRequest(method="GET", path=_path(target), query={k: str(v) for k, v in values.items()})
    else:
        request = TestRequest(method=method, path=_path(target), form=_names(values), files=_names(files))
    return TestCase(id=f"{component.path}#form:{key}", name=f"Form {key}: submit its fields", type="form",
                    component=component.path, writes=writes, request=request, expect=expect,
                    skip=next(iter(unbuilt.values()), None))


def _form_values(form: Form, action: Action | None, multipart: bool
                 ) -> tuple[dict[str, str | int | float | bool], dict[str, UploadFile], dict[str, str]]:
    """What submitting the form sends: a field named after a q:param of the action it posts to gets a value
    from that param's rules (what the server checks), any other field one from its own limits; hidden
    fields keep their value. A file field is a generated upload in a multipart form, and its file name (as
    a browser sends it) in any other. Third: the reason per field no value can be generated for (see _values)."""
    rules = {p.name: p for p in _unique_params(action)} if action is not None else {}
    values: dict[str, str | int | float | bool] = {}
    files: dict[str, UploadFile] = {}
    unbuilt: dict[str, str] = {}
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
        else:
            try:
                values[item.name] = valid_value(param) if param is not None else _field_value(item)
            except NoValue as exc:
                values[item.name], unbuilt[item.name] = "", f"{item.name}: {exc}"
    return values, files, unbuilt


def undeclared(datasource: str) -> str:
    """The skip reason of a query case on a datasource the project does not declare."""
    return f"datasource {datasource!r} is not declared: add it under the project's datasources"


def _query_case(component: Component, query: Query, types: Mapping[str, Param],
                datasources: Collection[str] | None = None) -> TestCase:
    names = query.params or tuple(dict.fromkeys(_BIND.findall(query.sql)))  # :name placeholders of the SQL
    params, unbuilt = _values(types.get(name) or Param(name) for name in names)
    assert query.datasource is not None
    skip = undeclared(query.datasource) if datasources is not None and query.datasource not in datasources else None
    skip = skip or next(iter(unbuilt.values()), None)
    return TestCase(id=f"{component.path}#query:{query.name}", name=f"Query {query.name} on {query.datasource}",
                    type="query", component=component.path, writes=query.writes,
                    request=TestRequest(datasource=query.datasource, sql=query.sql, params=params),
                    expect=[_a(no_errors=True)], skip=skip)


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
                    request=TestRequest(method=method, path=_path(path)), expect=expect)


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
            type="auth", component=component.path, request=TestRequest(method="GET", path=_path(page)),
            expect=[_a(status=302), _a(redirect=LOGIN_PATH)]))
        for action in component.actions:
            cases.append(TestCase(
                id=f"{component.path}#action:{action.name}:auth",
                name=f"Auth: action {action.name} redirects to {LOGIN_PATH} without a session", type="auth",
                component=component.path, writes=action.writes,
                request=TestRequest(method="POST", path=_path(page), form=_action_form(action, {})),
                expect=[_a(status=302), _a(redirect=LOGIN_PATH)]))
    elif page is not None:
        cases.append(TestCase(id=f"{component.path}#page", name=f"Smoke: {component.name} loads", type="smoke",
                              component=component.path, request=TestRequest(method="GET", path=_path(page)),
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


def summary(cases: Sequence[TestCase]) -> dict[str, int]:
    """Number of cases per type, in the order of the type list."""
    order = ("smoke", "auth", "action", "form", "query", "endpoint", "custom")
    counts = {kind: 0 for kind in order}
    for case in cases:
        counts[case.type] += 1
    return {kind: n for kind, n in counts.items() if n}
