"""Test-case assertions, evaluated on a response already read (pure: no sockets, no lxml).

XPath and CSS need an HTML parser, which the core may not import: the HTTP test runner
(flows/tests_http) passes edges/html_select's `select` function (kind, path, body) -> list of matched
texts, or raises ValueError for a bad expression. `flash` and `redirect` expectations are templates:
`{...}` matches any text there, as the generator leaves Quantum expressions it cannot fill (core/templates).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from reconciler.core import templates
from reconciler.core.models import Assertion, JsonPathCheck, SelectorCheck

ERROR_MARKERS = ("<title>Parse Error</title>", "<title>Runtime Error</title>", "404 - Component Not Found")

Select = Callable[[str, str, str], list[str]]


@dataclass(frozen=True)
class Response:
    """What a case saw: the first response (status, headers, body) and, after a 302, the flash."""

    status: int
    headers: dict[str, str]  # names lower-cased
    body: str
    elapsed_ms: float
    location: str | None = None
    flash: str | None = None  # the flash text read on the followed page or from the session cookie
    followed_body: str | None = None


@dataclass(frozen=True)
class Outcome:
    kind: str
    passed: bool
    message: str = ""


_STEP = re.compile(r"\.([A-Za-z_][A-Za-z0-9_-]*)|\[(\d+)\]|\[['\"]([^'\"]+)['\"]\]")


def parse_json_path(path: str) -> list[str | int]:
    """`$.a.b[0]` -> ["a", "b", 0]; ValueError on anything else."""
    if not path.startswith("$"):
        raise ValueError(f"a JSON path starts with $: {path!r}")
    steps: list[str | int] = []
    pos = 1
    while pos < len(path):
        m = _STEP.match(path, pos)
        if m is None:
            raise ValueError(f"unsupported JSON path {path!r} at {path[pos:]!r}")
        if m.group(1) is not None:
            steps.append(m.group(1))
        elif m.group(2) is not None:
            steps.append(int(m.group(2)))
        else:
            steps.append(m.group(3))
        pos = m.end()
    return steps


_MISSING = object()


def json_lookup(document: Any, steps: Sequence[str | int]) -> Any:
    node = document
    for step in steps:
        if isinstance(step, int):
            if not isinstance(node, list) or step >= len(node):
                return _MISSING
            node = node[step]
        else:
            if not isinstance(node, dict) or step not in node:
                return _MISSING
            node = node[step]
    return node


def _json_path(check: JsonPathCheck, response: Response) -> Outcome:
    try:
        document = json.loads(response.body)
    except ValueError:
        return Outcome("json_path", False, "body is not JSON")
    try:
        steps = parse_json_path(check.path)
    except ValueError as exc:
        return Outcome("json_path", False, str(exc))
    value = json_lookup(document, steps)
    exists = value is not _MISSING
    if check.exists is not None and exists != check.exists:
        return Outcome("json_path", False, f"{check.path} {'missing' if not exists else 'exists'}")
    if check.equals is not None:
        if not exists:
            return Outcome("json_path", False, f"{check.path} missing")
        if value != check.equals:
            return Outcome("json_path", False, f"{check.path} is {value!r}, expected {check.equals!r}")
    if check.exists is None and check.equals is None and not exists:
        return Outcome("json_path", False, f"{check.path} missing")
    return Outcome("json_path", True)


def _selector(kind: str, check: SelectorCheck, response: Response, select: Select | None) -> Outcome:
    if select is None:
        return Outcome(kind, False, f"{kind} assertions are not supported by this runner")
    try:
        found = select(kind, check.path, response.body)
    except ValueError as exc:
        return Outcome(kind, False, f"{kind} {check.path!r}: {exc}")
    if check.count is not None and len(found) != check.count:
        return Outcome(kind, False, f"{kind} {check.path!r} matched {len(found)}, expected {check.count}")
    if check.count is None and not found:
        return Outcome(kind, False, f"{kind} {check.path!r} matched nothing")
    if check.equals is not None and not any(text.strip() == check.equals for text in found):
        return Outcome(kind, False, f"{kind} {check.path!r}: no match equals {check.equals!r}")
    if check.contains is not None and not any(check.contains in text for text in found):
        return Outcome(kind, False, f"{kind} {check.path!r}: no match contains {check.contains!r}")
    return Outcome(kind, True)


def _short(text: str) -> str:
    return text if len(text) <= 60 else text[:57] + "..."


def evaluate(assertion: Assertion, response: Response, select: Select | None = None) -> Outcome:
    """One assertion against one response."""
    a = assertion
    if a.status is not None:
        ok = response.status == a.status
        return Outcome("status", ok, "" if ok else f"status {response.status}, expected {a.status}")
    if a.status_in is not None:
        ok = response.status in a.status_in
        return Outcome("status_in", ok, "" if ok else f"status {response.status}, expected one of {a.status_in}")
    if a.header is not None:
        for name, expected in sorted(a.header.items()):
            actual = response.headers.get(name.lower())
            if actual is None:
                return Outcome("header", False, f"header {name} missing")
            if expected not in actual:
                return Outcome("header", False, f"header {name} is {actual!r}, expected {expected!r}")
        return Outcome("header", True)
    if a.contains is not None:
        ok = a.contains in response.body
        return Outcome("contains", ok, "" if ok else f"body does not contain {_short(a.contains)!r}")
    if a.not_contains is not None:
        ok = a.not_contains not in response.body
        return Outcome("not_contains", ok, "" if ok else f"body contains {_short(a.not_contains)!r}")
    if a.regex is not None:
        try:
            ok = re.search(a.regex, response.body) is not None
        except re.error as exc:
            return Outcome("regex", False, f"bad regex {a.regex!r}: {exc}")
        return Outcome("regex", ok, "" if ok else f"body does not match {a.regex!r}")
    if a.json_path is not None:
        return _json_path(a.json_path, response)
    if a.xpath is not None:
        return _selector("xpath", a.xpath, response, select)
    if a.css is not None:
        return _selector("css", a.css, response, select)
    if a.redirect is not None:  # `{...}` in the expectation matches any text (core/templates)
        ok = response.location is not None and templates.ends_with(a.redirect, response.location)
        return Outcome("redirect", ok, "" if ok else f"redirect to {response.location!r}, expected {a.redirect!r}")
    if a.flash is not None:
        ok = response.flash is not None and templates.search(a.flash, response.flash)
        return Outcome("flash", ok, "" if ok else f"flash {response.flash!r}, expected {a.flash!r}")
    if a.max_ms is not None:
        ok = response.elapsed_ms <= a.max_ms
        return Outcome("max_ms", ok, "" if ok else f"took {response.elapsed_ms:.0f} ms, limit {a.max_ms} ms")
    if a.no_errors:
        for body in (response.body, response.followed_body or ""):
            for marker in ERROR_MARKERS:
                if marker in body:
                    return Outcome("no_errors", False, f"error page: {marker}")
        return Outcome("no_errors", True)
    return Outcome("no_errors", True)  # no_errors: false asks for nothing


def evaluate_all(assertions: Sequence[Assertion], response: Response, select: Select | None = None) -> list[Outcome]:
    return [evaluate(a, response, select) for a in assertions]
