"""Use case `qrm tests generate PROJECT`: scan the project, generate its cases, merge, write the suite.

The suite is manifests/tests/<project>.yaml, one TestSuite document named `<project>-auto`. A new
file gets environments = the project's non-protected environments, auto_run false and
block_on_failure true. An existing file is edited in place through ruamel.yaml's round trip: a case
is changed only where its merged content differs, so comments, key order and hand edits survive;
`generated_from` records the sha256 of each component file the cases came from.

reports/generated-cases/<project>.json (committed, as the suite is) records every case generated, the
base of the next run's three-way merge: what differs from it in the suite is a hand edit
(suite_merge.merge has the rules). Both files are written atomically, and only when they change.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from reconciler.core import suite_merge, testgen
from reconciler.core.errors import QrmError
from reconciler.core.models import Assertion, TestCase
from reconciler.edges import files
from reconciler.flows.desired import load_desired
from reconciler.flows.scan import scan_workspace
from reconciler.flows.workspace import Workspace

TESTS_DIR = "tests"
RECORDS_DIR = "reports/generated-cases"
HEADER = ("# Written by `qrm tests generate`; edit freely: hand-written cases (type custom, or an id that is\n"
          "# not <component path>#...) are always kept, and hand edits of generated cases survive while what\n"
          "# is generated for them does not change (reports/generated-cases/ records it: commit it too).\n")


@dataclass
class Generation:
    project: str
    suite: str
    path: Path
    counts: dict[str, int]
    total: int
    added: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)
    hand_written: list[str] = field(default_factory=list)
    written: bool = False
    created: bool = False
    notes: list[str] = field(default_factory=list)  # hand edits replaced or lost; skipped query cases; app notes
    edits_kept: list[str] = field(default_factory=list)  # ids whose hand edits survived
    record: Path = Path()
    record_written: bool = False


def suite_path(ws: Workspace, project: str) -> Path:
    return ws.manifests / TESTS_DIR / f"{project}.yaml"


def record_path(ws: Workspace, project: str) -> Path:
    return ws.root / RECORDS_DIR / f"{project}.json"


def _read_record(path: Path) -> suite_merge.Record | None:
    text = files.read_text_or_none(path)
    if text is None:
        return None
    try:
        return suite_merge.parse_record(text)
    except ValueError as exc:
        raise QrmError(f"{path}: {exc}; restore it from git, or remove it (then hand edits of cases of changed "
                       "components are replaced, as with a suite generated before the record)") from None


def _yaml() -> Any:
    from ruamel.yaml import YAML

    yaml = YAML(typ="rt")
    yaml.preserve_quotes = True
    yaml.width = 4096
    yaml.indent(mapping=2, sequence=4, offset=2)
    return yaml


def _plain(value: Any) -> Any:
    """ruamel's round-trip containers as plain dicts and lists (for validation)."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def _commented(value: Any) -> Any:
    from ruamel.yaml.comments import CommentedMap, CommentedSeq

    if isinstance(value, dict):
        out = CommentedMap()
        for k, v in value.items():
            out[k] = _commented(v)
        return out
    if isinstance(value, list):
        seq = CommentedSeq()
        seq.extend(_commented(v) for v in value)
        if value and all(not isinstance(v, (dict, list)) for v in value):
            seq.fa.set_flow_style()
        return seq
    return value


def _flow_expect(item: Any) -> Any:
    """expect items as one-line flow maps: `- {status: 200}`."""
    for assertion in item.get("expect", []):
        if hasattr(assertion, "fa"):
            assertion.fa.set_flow_style()
    return item


def _patch(node: Any, old: dict[str, Any], new: dict[str, Any]) -> None:
    """Edit a case's YAML node from `old` (what it held) to `new`, touching only the keys that differ (and
    inside mappings, only their keys that differ), so that the comments on the rest stay."""
    for key in [k for k in old if k not in new]:
        if key in node:
            del node[key]
    for position, (key, value) in enumerate(new.items()):
        before = old.get(key)
        if key in old and suite_merge.same(before, value):
            continue
        if isinstance(value, dict) and isinstance(before, dict) and isinstance(node.get(key), dict):
            _patch(node[key], before, value)
            continue
        fresh = _commented(value)
        if key == "expect":
            fresh = _flow_expect({"expect": fresh})["expect"]
        if key in node:
            node[key] = fresh
            continue
        previous = next((k for k in reversed(list(new)[:position]) if k in node), None)
        node.insert(list(node).index(previous) + 1 if previous is not None else 0, key, fresh)


def generate_suite(ws: Workspace, project: str) -> Generation:
    desired = load_desired(ws)
    if project not in desired.projects:
        known = ", ".join(sorted(desired.projects)) or "(none)"
        raise QrmError(f"unknown project {project!r}; known projects: {known}")
    spec = desired.projects[project]
    scan = scan_workspace(ws, project)[0]  # incremental: only changed files are parsed
    components = [testgen.component_from_dict(data) for data in scan.components()]
    shas = {c.path: c.sha256 for c in components if c.parse != "skipped"}
    declared = set(spec.datasources) | set(scan.app.datasources)  # the Project's and the app's quantum.config.yaml
    generated = testgen.generate(components, base_path=spec.base_path, datasources=declared)
    path = suite_path(ws, project)
    record_file = record_path(ws, project)
    # Both files checked before either is read or written (no symlink leads out of the workspace).
    files.check_all_inside(ws.root, [record_file] + ([path] if files.within(ws.root, path) else []))
    text = files.read_text_or_none(path)
    yaml = _yaml()
    if text is None:
        doc: Any = _commented({
            "kind": "TestSuite", "name": f"{project}-auto", "project": project, "auto_run": False,
            "block_on_failure": True,
            "environments": sorted(n for n, e in spec.environments.items() if not e.protected),
            "cases": [], "generated_from": {}})
        previous: dict[str, str] = {}
        existing: list[TestCase] = []
    else:
        try:
            documents = [d for d in yaml.load_all(text) if d is not None]
        except Exception as exc:
            raise QrmError(f"{path}: not readable YAML ({exc}); fix or remove it, then generate again") from None
        if len(documents) != 1 or not isinstance(documents[0], dict) or documents[0].get("kind") != "TestSuite":
            raise QrmError(f"{path}: expected exactly one TestSuite document")
        doc = documents[0]
        previous = {str(k): str(v) for k, v in (doc.get("generated_from") or {}).items()}
        try:
            existing = [TestCase.model_validate(_plain(c)) for c in doc.get("cases") or []]
        except ValidationError as exc:
            raise QrmError(f"{path}: a case is not valid ({exc.errors()[0]['msg']}); run `qrm validate`") from None
    changed = {p for p, sha in shas.items() if previous.get(p) != sha or not sha}
    changed |= suite_merge.outdated(existing, generated, components) & set(shas)
    record = _read_record(record_file) if text is not None else None
    # The record is the base of a component's cases only when it was written with the suite as it is:
    # a suite restored from elsewhere (an older commit) has other hashes, and follows the older rule.
    based = {p for p, sha in previous.items() if record is not None and sha and record.generated_from.get(p) == sha}
    by_path = {c.path: c for c in components}

    def refill(case: TestCase) -> list[Assertion] | None:
        component = by_path.get(case.component or "")
        return testgen.expectations(component, case, spec.base_path) if component is not None else None

    merged = suite_merge.merge(existing, generated, shas, changed, previous,
                           base=record.cases if record is not None else None, based=based, refill=refill)

    old_nodes = list(doc.get("cases") or [])
    cases = doc.get("cases")
    if cases is None or not hasattr(cases, "ca"):
        cases = _commented([])
        doc["cases"] = cases
    new_nodes = []
    for case, origin in zip(merged.cases, merged.origin, strict=True):
        if origin is None:
            new_nodes.append(_flow_expect(_commented(testgen.case_to_dict(case))))
            continue
        node = old_nodes[origin]
        _patch(node, testgen.case_to_dict(existing[origin]), testgen.case_to_dict(case))
        new_nodes.append(node)
    if cases.fa.flow_style():
        cases.fa.set_block_style()  # `cases: []` written by hand: the cases go one per block item
    del cases[:]
    cases.extend(new_nodes)
    record = _commented(dict(sorted(shas.items())))
    if "generated_from" in doc:
        doc["generated_from"] = record
    else:
        doc.insert(len(doc), "generated_from", record)
    out = io.StringIO()
    yaml.dump(doc, out)
    written = files.write_atomic(path, (HEADER if text is None else "") + out.getvalue(),
                                 root=files.within(ws.root, path))
    where = path.relative_to(ws.root).as_posix() if path.is_relative_to(ws.root) else str(path)
    record_written = files.write_atomic(record_file, suite_merge.record_text(project, where, shas, merged.record),
                                        root=ws.root)
    return Generation(
        project=project, suite=str(doc.get("name", f"{project}-auto")), path=path,
        counts=testgen.summary(merged.cases), total=len(merged.cases), added=list(merged.added),
        changed=list(merged.changed), removed=list(merged.removed), kept=list(merged.kept),
        hand_written=list(merged.hand_written), written=written, created=text is None,
        notes=list(merged.notes) + _notes(merged.cases, scan.app.notes, generated), edits_kept=list(merged.edits_kept),
        record=record_file, record_written=record_written)



def _notes(cases: Sequence[TestCase], app_notes: Sequence[str], generated: Sequence[TestCase]) -> list[str]:
    """What a user should know of the suite: its query cases skipped per undeclared datasource, the generated
    cases skipped because no value could be generated for a field (a pattern too complex, a length above
    testgen.MAX_LENGTH), and the notes of the app's quantum.config.yaml (a password there is ignored)."""
    skipped: dict[str, int] = {}
    unbuilt: list[str] = []
    for case in cases:
        if case.type == "query" and case.skip and case.skip == testgen.undeclared(case.request.datasource or ""):
            skipped[case.skip] = skipped.get(case.skip, 0) + 1
    ids = {case.id for case in cases}
    for case in generated:
        if case.skip and case.id in ids and case.skip != testgen.undeclared(case.request.datasource or ""):
            unbuilt.append(f"{case.id} skipped: {case.skip}")
    return ([f"{count} query case(s) skipped: {reason}" for reason, count in sorted(skipped.items())] + unbuilt
            + list(app_notes))
