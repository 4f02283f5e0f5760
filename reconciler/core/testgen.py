"""Scanned components -> test cases, and the merge of a regeneration with an existing suite (pure).

Every case has a stable id `<component path>#<element>` (e.g. `components/login.q#page`,
`components/login.q#action:login:missing:email`) and records its component. What is generated,
per component (components in path order; each kind in source order):

- `#page` smoke: a page (a component with a route) loads: 200 and no error markers;
- `#auth`: a guarded page (require_auth / require_role) without a session: 302 to /login. A guarded
  page gets `#action:NAME:auth` (its actions answer 302 to /login without a session) instead of
  smoke, action and form cases, which could not pass without a login;
- `#action:NAME:valid`: input built from the q:param / q:validate types and limits; the declared
  q:redirect (302, its URL, its flash) or 200 without errors;
- `#action:NAME:missing:F`, `:too_short:F`, `:too_long:F`, `:wrong_type:F`: one each (first field
  that allows it), rejected the Quantum way: 302 back to the Referer (the page) with an error flash;
- `#form:ID` (or `#form:N`, 1-based, without an id): the form's fields, hidden ones included;
- `#query:NAME`: the SQL on its datasource (queries without a datasource are left out); when the
  datasources the project declares are given and this one is not among them, the case gets `skip:`
  with the reason (it could only fail);
- `#endpoint:/path` (GET) or `#endpoint:METHOD /path`: the function's endpoint answers.

A component the server does not serve (outside paths.components: `not_served`) gets no HTTP case at all
(no page, auth, action, form or endpoint case), only its query cases.
Cases of actions, forms and queries that write data are marked `writes: true`.
"""

from __future__ import annotations

import math
import re
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from reconciler.core.components import Action, Component, Form, FormField, Function, Param, Query, Redirect, page_path
from reconciler.core.models import Assertion, TestCase, TestRequest

LOGIN_PATH = "/login"  # where a Quantum server sends a request without a session for a guarded page
EMAIL = "qa@example.com"
URL = "https://example.com"
DEFAULT_LENGTH = 8
_BASE_PATH_EXPR = re.compile(r"^\{\s*application\.basePath\s*\}")
_BIND = re.compile(r"(?<![:\w]):([A-Za-z_]\w*)")
_ALPHABETS = ("qatestvalue", "1234567890", "QATESTVALUE", "qa1test2", "qa test value")


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


def _success(action: Action) -> list[Assertion]:
    if action.redirects:
        redirect = action.redirects[0]
        expect = [_a(status=302), _a(redirect=redirect.url)]
        if redirect.flash:
            expect.append(_a(flash=redirect.flash))
        return expect
    return [_a(status=200), _a(no_errors=True)]


def _action_form(action: Action, values: Mapping[str, str | int | float | bool]) -> dict[str, str | int | float | bool]:
    form: dict[str, str | int | float | bool] = {}
    if "action" not in values:
        form["action"] = action.name  # which q:action of the page runs (as Quantum's own forms send it)
    form.update(values)
    return form


def _action_cases(component: Component, page: str, action: Action) -> list[TestCase]:
    base = f"{component.path}#action:{action.name}"
    method = action.method.upper() if action.method.upper() in ("POST", "PUT", "PATCH", "DELETE") else "POST"
    params = _unique_params(action)
    valid = {p.name: valid_value(p) for p in params}

    def case(suffix: str, name: str, values: Mapping[str, str | int | float | bool],
             expect: list[Assertion]) -> TestCase:
        return TestCase(id=f"{base}:{suffix}", name=f"Action {action.name}: {name}", type="action",
                        component=component.path, writes=action.writes,
                        request=TestRequest(method=method, path=page, form=_action_form(action, values)),
                        expect=expect)

    def rejected(param: str, missing: bool = False) -> list[Assertion]:
        return [_a(status=302), _a(redirect=page), _a(flash=_flash_error(param, missing))]

    cases = [case("valid", "valid input", valid, _success(action))]
    required = next((p for p in params if p.required), None)
    if required is not None:
        values = {k: v for k, v in valid.items() if k != required.name}
        cases.append(case(f"missing:{required.name}", f"missing {required.name}", values,
                          rejected(required.name, missing=True)))
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


def _form_case(component: Component, page: str, form: Form, index: int) -> TestCase:
    values = {item.name: _field_value(item) for item in form.fields if item.name}
    method = form.method.upper() if form.method.upper() in ("GET", "POST", "PUT", "PATCH", "DELETE") else "GET"
    target = _form_target(form, page)
    named = str(values.get("action", ""))
    action = next((a for a in component.actions if a.name == named), None)
    if action is None and len(component.actions) == 1 and method != "GET" and target == page:
        action = component.actions[0]
    if action is not None:
        expect = _success(action)
        writes = action.writes
    else:
        expect = [_a(status_in=[200, 302])]
        writes = method != "GET"
    key = form.id or str(index)
    if method == "GET":
        request = TestRequest(method="GET", path=target, query={k: str(v) for k, v in values.items()})
    else:
        request = TestRequest(method=method, path=target, form=values)
    return TestCase(id=f"{component.path}#form:{key}", name=f"Form {key}: submit its fields", type="form",
                    component=component.path, writes=writes, request=request, expect=expect)


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
            cases.extend(_action_cases(component, page, action))
        for index, form in enumerate(component.forms, start=1):
            cases.append(_form_case(component, page, form, index))
    types = {p.name: p for a in component.actions for p in a.params}
    queries = [*component.queries, *(q for a in component.actions for q in a.queries)]
    cases.extend(_query_case(component, q, types, datasources) for q in queries if q.datasource)
    cases.extend(_endpoint_case(component, f) for f in component.functions if f.endpoint and component.served)
    return _deduplicated(cases)


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
    """The cases of a regenerated suite. `origin[i]` is the index of cases[i] in the existing list when it
    is kept as it was (so an editor can keep its comments), None when it is new or replaced."""

    cases: tuple[TestCase, ...]
    origin: tuple[int | None, ...]
    added: tuple[str, ...] = ()
    changed: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()
    kept: tuple[str, ...] = ()
    hand_written: tuple[str, ...] = ()
    notes: tuple[str, ...] = field(default=())


def owner(case: TestCase, known: Iterable[str]) -> str | None:
    """The component path a generated case belongs to; None for a hand-written case.

    A case is generated when its type is not `custom` and its id is `<path>#...` for a component
    path the generator knows (a scanned component, or one the suite was generated from).
    """
    if case.type == "custom" or "#" not in case.id:
        return None
    path = case.id.split("#", 1)[0]
    return path if path in known else None


def merge(existing: Sequence[TestCase], generated: Sequence[TestCase], current: Iterable[str],
          changed: Iterable[str], previous: Iterable[str] = ()) -> Merged:
    """Merge a regeneration into an existing suite.

    current: the component paths scanned now; changed: those whose file changed since the last
    generation (or were never generated from); previous: the paths the suite was generated from.
    Rules: hand-written cases (see `owner`) are always kept, in place. A generated case of an
    unchanged component is kept as it is (hand edits survive, and a generated case deleted by hand
    stays deleted). Generated cases of a changed component are replaced by the new ones (new ids
    added after that component's last case, ids no longer generated removed). Generated cases of a
    component that no longer exists are removed.
    """
    current_set, changed_set = set(current), set(changed)
    known = current_set | set(previous)
    fresh = {case.id: case for case in generated}
    out: list[tuple[TestCase, int | None]] = []
    added: list[str] = []
    replaced: list[str] = []
    removed: list[str] = []
    kept: list[str] = []
    hand: list[str] = []
    placed: set[str] = set()
    for index, case in enumerate(existing):
        path = owner(case, known)
        if path is None:
            out.append((case, index))
            hand.append(case.id)
            placed.add(case.id)
        elif path not in current_set:
            removed.append(case.id)
        elif path not in changed_set:
            out.append((case, index))
            kept.append(case.id)
            placed.add(case.id)
        elif case.id in fresh and case.id not in placed:
            new = fresh[case.id]
            if new == case:
                out.append((case, index))
                kept.append(case.id)
            else:
                out.append((new, None))
                replaced.append(case.id)
            placed.add(case.id)
        else:
            removed.append(case.id)
    for case in generated:
        if case.id in placed or case.component not in changed_set:
            continue
        position = _insert_position(out, case)
        out.insert(position, (case, None))
        placed.add(case.id)
        added.append(case.id)
    return Merged(cases=tuple(c for c, _ in out), origin=tuple(i for _, i in out), added=tuple(added),
                  changed=tuple(replaced), removed=tuple(removed), kept=tuple(kept), hand_written=tuple(hand))


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
