"""The merge of a regeneration into an existing suite (pure): per case, a three-way merge against the
case generated last time (the record, `record_text`, kept in reports/generated-cases/), so hand edits
survive where the generated part did not change and every one replaced is named.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from reconciler.core.components import Component
from reconciler.core.models import Assertion, TestCase
from reconciler.core.testgen import case_to_dict, undeclared


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
