"""Use case behind `POST /projects/{project}/test-suites/generate {name?, types?}`: the project's suite as
`qrm tests generate` writes it, then, when a name or types are asked for, a suite of that name holding
the generated cases of those types, and a git commit of what was written that names the caller.

A named suite is manifests/tests/<name>.yaml, one TestSuite document (the name as a manifest name:
"Auto Suite" becomes auto-suite). It is rewritten whole on each generation (it holds generated cases
only: hand-written cases belong in the project's own suite, which `qrm tests generate` merges); a file
at that path that this flow did not write is never overwritten. The
workspace is validated after the write; a suite the manifests refuse is taken back and the error stands.
With `push` (qrm serve --push) the commit is pushed as a write's is: rebased onto an upstream that moved on,
never forced, taken back out when the push fails.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from reconciler.core import testgen
from reconciler.core.errors import ManifestError, QrmError
from reconciler.core.escaping import one_line
from reconciler.core.summary import WRITE_TRAILER
from reconciler.edges import files, git_repo
from reconciler.flows.desired import load_desired
from reconciler.flows.reconcile import parse_author
from reconciler.flows.tests_generate import TESTS_DIR, generate_suite
from reconciler.flows.workspace import Workspace
from reconciler.flows.writes import MAX_CALLER_LENGTH, write_lock

CASE_TYPES = ("smoke", "auth", "action", "form", "query", "endpoint", "custom")
# The original plan's word for a test of the app's API: qrm's endpoint cases (q:function endpoints).
TYPE_ALIASES = {"api": "endpoint"}
HEADER = ("# Written by qrm serve (POST /projects/{project}/test-suites/generate): the generated cases of the\n"
          "# types asked for, rewritten whole on each generation. Hand-written cases belong in the project's\n"
          "# own suite (manifests/tests/{project}.yaml), which qrm tests generate merges.\n")


class UnknownCaseType(QrmError):
    """A `types` entry that is no case type (the request is wrong, not the workspace)."""


@dataclass
class NamedSuite:
    project: str
    suite: str
    path: Path
    counts: dict[str, int]
    total: int
    types: list[str] = field(default_factory=list)  # [] = every type
    written: list[Path] = field(default_factory=list)
    commit: str | None = None  # the commit that holds them; None when nothing changed or no git repository


def suite_name(name: str) -> str:
    """A manifest name from a display name: "Auto Suite" -> "auto-suite"."""
    slug = re.sub(r"[^a-z0-9._-]+", "-", name.strip().lower()).strip("-._")
    if not slug:
        raise UnknownCaseType(f"suite name {name!r} has no letter or digit to name a suite with")
    return slug[:63].rstrip("-._")


def case_types(types: Sequence[str]) -> list[str]:
    """The case types asked for, aliases resolved, in qrm's order; an unknown one is an error naming the known."""
    wanted = set()
    for kind in types:
        kind = TYPE_ALIASES.get(kind.strip().lower(), kind.strip().lower())
        if kind not in CASE_TYPES:
            raise UnknownCaseType(f"unknown case type {kind!r}; known types: {', '.join(CASE_TYPES)} "
                                  f"(and {', '.join(f'{a} = {t}' for a, t in TYPE_ALIASES.items())})")
        wanted.add(kind)
    return [kind for kind in CASE_TYPES if kind in wanted]


def generate_named_suite(ws: Workspace, project: str, name: str | None = None, types: Sequence[str] | None = None,
                         *, caller: str = "qrm", push: bool = False) -> NamedSuite:
    """Generate `project`'s suite (as `qrm tests generate`), and a suite `name` of `types` when asked; commit
    what was written when the workspace is a git repository, with a message naming `caller`, and with `push`
    push it (as the writes of flows/writes, whose write lock it holds: one commit at a time)."""
    kinds = case_types(types or [])
    with write_lock(ws):
        return _generate(ws, project, name, kinds, caller, push)


def _generate(ws: Workspace, project: str, name: str | None, kinds: list[str], caller: str, push: bool) -> NamedSuite:
    generation = generate_suite(ws, project)
    written = [p for p, w in ((generation.path, generation.written), (generation.record, generation.record_written))
               if w]
    wanted = suite_name(name) if name is not None else generation.suite
    if wanted == generation.suite and not kinds:
        result = NamedSuite(project, generation.suite, generation.path, generation.counts, generation.total,
                            written=written)
    else:
        if wanted == generation.suite:
            raise UnknownCaseType(f"suite {wanted!r} is the project's own suite, with every type; name another "
                                  "suite to hold some types")
        desired = load_desired(ws)
        source = desired.suites[generation.suite]
        cases = [c for c in source.cases if not kinds or c.type in kinds]
        path = ws.manifests / TESTS_DIR / f"{wanted}.yaml"
        previous = files.read_text_or_none(path)
        other = desired.suites.get(wanted)
        if previous is not None and not previous.startswith(HEADER.format(project=project)):
            # a file this flow did not write (hand-written, or another project's named suite): never overwritten
            raise QrmError(f"{path.relative_to(ws.root).as_posix()} exists and was not written for project "
                           f"{project!r} by qrm serve; choose another name")
        if other is not None and (previous is None or other.project != project):
            raise QrmError(f"a suite named {wanted!r} already exists (of project {other.project!r}); choose another "
                           "name")
        document = {"kind": "TestSuite", "name": wanted, "project": project, "auto_run": False,
                    "block_on_failure": source.block_on_failure, "environments": list(source.environments),
                    "cases": [testgen.case_to_dict(c) for c in cases]}
        text = HEADER.format(project=project) + yaml.safe_dump(document, sort_keys=False, allow_unicode=True,
                                                               width=4096)
        if files.write_atomic(path, text, root=ws.root):
            written.append(path)
        try:
            load_desired(ws)
        except ManifestError:
            if previous is None:
                files.remove(path, root=ws.root)
            else:
                files.write_atomic(path, previous, root=ws.root)
            raise
        result = NamedSuite(project, wanted, path, testgen.summary(cases), len(cases), types=kinds, written=written)
    if written and git_repo.is_repository(ws.root):
        result.commit = _commit(ws, result, kinds, caller, written, push)
    return result


def _commit(ws: Workspace, made: NamedSuite, kinds: list[str], caller: str, written: list[Path],
            push: bool) -> str | None:
    """Commit what the generation wrote (trailers as flows/writes' commits, so a --push rebases it onto an
    upstream that moved on like any write); with `push`, push it. A push that fails takes the commit back
    out (it never left the clone: the files are as before the call) and is the generation's error."""
    what = f"suite {made.suite}" + (f" ({', '.join(kinds)})" if kinds else "")
    who = one_line(caller)[:MAX_CALLER_LENGTH] or "unknown"
    message = (f"qrm serve: generate test {what} of project {made.project}\n\nRequested by token {caller!r}.\n\n"
               f"{WRITE_TRAILER} generate-suite {made.suite}\nQrm-Caller: {who}\n")
    author = parse_author(ws.settings.commit_author)
    sha = git_repo.commit_paths(ws.root, [str(p) for p in written], message, author)
    if sha is None or not push:
        return sha
    try:
        git_repo.push(ws.root, author=author)
    except QrmError as exc:
        if git_repo.drop_last_commit(ws.root, sha):
            raise QrmError(f"the push failed, the generated suite's commit was taken back (nothing was written): "
                           f"{exc}") from None
        raise QrmError(f"the generated suite is committed ({sha[:12]}) but the push failed: {exc}") from None
    return (git_repo.head_revision(ws.root) or sha).removesuffix("+dirty")
