"""Plans and registry contents as text a person reads, JSON for machines, Markdown for PR comments.

Also the lock file reports/allocations.yaml and reports/state.yaml, emitted directly rather than
through a YAML dumper: one JSON flow mapping per line is valid YAML, diffs one line per entry, and
10,000 entries render in milliseconds.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from json.encoder import encode_basestring_ascii
from typing import Any

from reconciler import __version__
from reconciler.core.changes import Change, Plan
from reconciler.core.escaping import fence, markdown_inline, one_line
from reconciler.core.state import RecordedFile, RecordedService

LOCKFILE_PATH = "reports/allocations.yaml"
LOCKFILE_VERSION = 1
STATE_PATH = "reports/state.yaml"
STATE_VERSION = 1
PLAN_FORMAT_VERSION = 1
MARKDOWN_LIMIT = 60_000
# In a ```diff block GitHub colours lines by their first character: green +, red -, orange !.
_DIFF_MARK = {"create": "+", "delete": "-", "update": "! ~", "repair": "!"}

_LOCKFILE_HEADER = (
    "# Written by `qrm apply`: every allocated port, sorted by host and port.\n"
    "# This is the lock file: a fresh registry is rebuilt from it with the same ports. Do not edit.\n"
)


_LINE_ENCODER = json.JSONEncoder(separators=(", ", ": "))  # one instance: the C encoder, no per-line setup


def render_lockfile(services: Iterable[RecordedService]) -> str:
    """The lock file; each line is what json.dumps(service_to_dict(s)) gives, built field by field
    because plan renders it on every run to detect drift (10,000 lines in ~30 ms instead of ~150)."""
    lines = [_LOCKFILE_HEADER, f"version: {LOCKFILE_VERSION}\n", "allocations:\n"]
    ordered = sorted(services, key=lambda s: (s.host, s.port, s.name))
    if not ordered:
        lines[-1] = "allocations: []\n"
    q = encode_basestring_ascii
    healths: dict[int, str] = {}  # health checks are shared objects (alive in `ordered`): encode each once
    tag_lists: dict[tuple[str, ...], str] = {}

    def health(value: dict[str, Any] | None) -> str:
        text = healths.get(id(value))
        if text is None:
            text = healths[id(value)] = _LINE_ENCODER.encode(value)
        return text

    def tags(value: tuple[str, ...]) -> str:
        text = tag_lists.get(value)
        if text is None:
            text = tag_lists[value] = _LINE_ENCODER.encode(list(value))
        return text

    for s in ordered:
        lines.append(
            f'- {{"name": {q(s.name)}, "host": {q(s.host)}, "port": {int(s.port)}, "type": {q(s.type)}, '
            f'"protocol": {q(s.protocol)}, "pinned": {"true" if s.pinned else "false"}, '
            f'"health": {health(s.health)}, "tags": {tags(s.tags)}, '
            f'"project": {"null" if s.project is None else q(s.project)}, '
            f'"environment": {"null" if s.environment is None else q(s.environment)}}}\n'
        )
    return "".join(lines)


_STATE_HEADER = (
    "# Written by `qrm apply`: the secrets and generated files of the last apply, so that a fresh clone\n"
    "# (a PR check) plans against what was applied without the registry or the age key. Do not edit.\n"
    "# No secret value is here: a secret is the fingerprint of its ciphertext in secrets.enc, a file the\n"
    "# sha256 of its rendering with secrets as <secret KEY FINGERPRINT> placeholders, and each .env (which\n"
    "# is git-ignored) also that masked text, one line per line.\n"
)


def is_env_file(path: str) -> bool:
    """The generated file that holds secret values (the others only name them as ${VAR})."""
    return path.rsplit("/", 1)[-1] == ".env"


def render_state(secrets: Mapping[str, str], files: Iterable[RecordedFile]) -> str:
    """reports/state.yaml: deterministic, sorted, no timestamps, never a value or a hash of one.

    Only masked texts are hashed (for .env never the written bytes: a hash of a file that holds a
    password allows an offline guess).
    """
    q = encode_basestring_ascii
    ordered = sorted(files, key=lambda f: f.path)
    lines = [_STATE_HEADER, f"version: {STATE_VERSION}\n", "secrets:\n" if secrets else "secrets: []\n"]
    lines += [f'- {{"name": {q(name)}, "fingerprint": {q(secrets[name])}}}\n' for name in sorted(secrets)]
    lines.append("files:\n" if ordered else "files: []\n")
    lines += [f'- {{"path": {q(f.path)}, "sha256": {q(hashlib.sha256(f.masked.encode("utf-8")).hexdigest())}}}\n'
              for f in ordered]
    envs = [f for f in ordered if is_env_file(f.path)]
    lines.append("env_files:\n" if envs else "env_files: {}\n")
    for f in envs:
        lines.append(f"  {q(f.path)}:\n")
        lines += [f"  - {q(line)}\n" for line in f.masked.removesuffix("\n").split("\n")]
    return "".join(lines)


def table(headers: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    """A plain aligned text table (no box drawing, so it pastes into logs and PRs); a cell's control
    characters are escaped (escaping.one_line), so a file name cannot add a row."""
    cells = [[str(h) for h in headers]] + [[("" if c is None else one_line(str(c))) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    out = []
    for index, row in enumerate(cells):
        out.append("  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)).rstrip())
        if index == 0:
            out.append("  ".join("-" * w for w in widths))
    return "\n".join(out)


def usage_bar(used: int, total: int, width: int = 20) -> str:
    filled = 0 if total == 0 else round(width * used / total)
    if used and not filled:
        filled = 1
    return "[" + "#" * filled + "." * (width - filled) + "]"


def _describe(change: Change) -> str:
    after, before = change.after, change.before
    if change.address.startswith("service."):
        if change.action == "create" and after:
            return f"{after['host']}:{after['port']} ({after['type']}, {after['protocol']})"
        if change.action == "delete" and before:
            return f"{before['host']}:{before['port']} ({before['type']})"
        if change.action == "update" and before and after:
            parts = []
            for name in change.changed_fields():
                if name == "port":
                    parts.append(f"port {before['port']} -> {after['port']}")
                elif name == "host":
                    parts.append(f"host {before['host']} -> {after['host']}")
                else:
                    parts.append(f"{name} {_short(before.get(name))} -> {_short(after.get(name))}")
            return "; ".join(parts)
    if change.address.startswith("file.generated/"):  # which machine a file of another host is for
        host = (change.after or change.before or {}).get("host")
        return f"on {host}" if host and host != "localhost" else ""
    return ""


def _file_diff(change: Change) -> str:
    """The unified diff of a generated file change (secrets are placeholders in it, never values)."""
    if not change.address.startswith("file.") or not change.after:
        return ""
    return str(change.after.get("diff") or "")


def _diff_lines(change: Change) -> list[str]:
    """The diff's lines, each on one line: a generated file's text may hold a CR or another line break."""
    diff = _file_diff(change)
    return [one_line(line) for line in diff.removesuffix("\n").split("\n")] if diff else []


def _short(value: Any, width: int = 60) -> str:
    text = json.dumps(value, sort_keys=True) if not isinstance(value, str) else value
    return text if len(text) <= width else text[:width - 3] + "..."


def summary_line(plan: Plan) -> str:
    counts = plan.counts()
    if plan.blocked:
        return (f"Plan blocked: {len(plan.conflicts)} conflict(s), {len(plan.errors)} error(s); "
                f"nothing can be applied until they are solved.")
    if plan.empty:
        return "No changes. The registry and reports match the manifests."
    return (f"Plan: {counts['create']} to create, {counts['update']} to update, "
            f"{counts['delete']} to delete, {counts['repair']} to repair.")


def plan_text(plan: Plan) -> str:
    lines: list[str] = []
    rows = []
    for change in plan.changes:
        detail = _describe(change)
        reason = f"({change.reason})" if change.reason else ""
        rows.append((f"{change.symbol} {change.address}", detail, reason))
    if rows:
        width = max(len(r[0]) for r in rows)
        dwidth = max(len(r[1]) for r in rows)
        for (head, detail, reason), change in zip(rows, plan.changes, strict=True):
            lines.append(one_line(f"  {head.ljust(width)}  {detail.ljust(dwidth)}  {reason}".rstrip()))
            lines.extend(f"      {line}" for line in _diff_lines(change))
        lines.append("")
    for warning in plan.warnings:
        lines.append(f"warning: {one_line(warning)}")
    for conflict in plan.conflicts:
        lines.append(f"conflict: {one_line(conflict.message)}")
    for error in plan.errors:
        lines.append(f"error: {one_line(error)}")
    if plan.warnings or plan.conflicts or plan.errors:
        lines.append("")
    if not plan.refreshed:
        lines.append("note: --no-refresh: live listeners were not read; conflicts with them are not shown")
    note = recorded_note(plan)
    if note:
        lines.append(note)
    lines.append(summary_line(plan))
    return "\n".join(lines) + "\n"


def recorded_note(plan: Plan) -> str:
    """Where the recorded state came from, when it is not the registry."""
    if plan.recorded_from == "reports":
        return ("Recorded state: the committed reports (no registry here); "
                "apply restores the registry from them.")
    if plan.recorded_from == "lockfile":
        return ("Recorded state: the committed reports (the registry is empty); "
                "apply restores the registry from them.")
    return ""


def lockfile_reason(origin: str) -> str:
    """Why a listing was read from reports/allocations.yaml: RecordedState.origin "lockfile" or "reports"."""
    return "the registry is empty" if origin == "lockfile" else "no registry here"


def plan_document(plan: Plan) -> dict[str, Any]:
    """The stable JSON form of a plan (documented in README.md; bump format_version on a breaking change)."""
    counts = plan.counts()
    return {
        "format_version": PLAN_FORMAT_VERSION,
        "qrm_version": __version__,
        "desired_digest": plan.desired_digest,
        "recorded_digest": plan.recorded_digest,
        "refreshed": plan.refreshed,
        "recorded_from": plan.recorded_from,
        "filters": plan.filters,
        "summary": {**counts, "conflicts": len(plan.conflicts), "errors": len(plan.errors),
                    "services": plan.services, "blocked": plan.blocked, "empty": plan.empty},
        "changes": [c.to_dict() for c in plan.changes],
        "conflicts": [{"service": c.service, "host": c.host, "port": c.port, "message": c.message}
                      for c in plan.conflicts],
        "errors": list(plan.errors),
        "warnings": list(plan.warnings),
    }


def plan_json(plan: Plan) -> str:
    """Indented for small plans; compact above 500 changes, where indenting costs half a second."""
    document = plan_document(plan)
    return json.dumps(document, indent=2 if len(plan.changes) <= 500 else None) + "\n"


def plan_markdown(plan: Plan, limit: int = MARKDOWN_LIMIT) -> str:
    """A PR comment: summary table first, details collapsed, never longer than `limit` characters.

    What others wrote (file names, problems, file contents) is escaped: text in a line with
    escaping.markdown_inline, the diff block in a fence longer than any backtick run in it, each change
    and diff line on one line, so no name can end the block or add a line outside it."""
    counts = plan.counts()
    head = ["### qrm plan", "", summary_line(plan), "", "| | Action | Count |", "|---|---|---:|"]
    head += [f"| `{sym}` | {action} | {counts[action]} |" for action, sym in
             (("create", "+"), ("update", "~"), ("delete", "-"), ("repair", "!"))]
    head.append("")
    note = recorded_note(plan)
    if note:
        head += [f"_{note}_", ""]
    problems = [*(f"**conflict:** {markdown_inline(_short(c.message, 1_000))}" for c in plan.conflicts),
                *(f"**error:** {markdown_inline(_short(e, 1_000))}" for e in plan.errors),
                *(f"warning: {markdown_inline(_short(w, 1_000))}" for w in plan.warnings)]
    problem_budget = limit // 4  # the rest is for the changes
    for index, problem in enumerate(problems):
        line = f"- {problem}"
        if problem_budget - len(line) - 1 < 0:
            head.append(f"- ... {len(problems) - index} more (comment size limit); run `qrm plan` for all of them")
            break
        problem_budget -= len(line) + 1
        head.append(line)
    if problems:
        head.append("")
    if plan.empty:
        return "\n".join(head) + "\n"
    closing = ["</details>", ""]
    opening = [f"<details><summary>{len(plan.changes)} change(s)</summary>", ""]
    body: list[str] = []
    budget = limit - len("\n".join(head + opening + closing)) - 200
    for index, change in enumerate(plan.changes):
        reason = f" ({change.reason})" if change.reason else ""
        lines = [one_line(f"{_DIFF_MARK[change.action]} {change.address} {_describe(change)}{reason}".rstrip())]
        # nested diff lines, indented so their own +/- do not colour the summary lines
        lines += [f"    {d}" for d in _diff_lines(change)]
        size = sum(len(line) + 1 for line in lines)
        if budget - size < 0:
            body.append(f"# ... {len(plan.changes) - index} more change(s) not shown "
                        f"(comment size limit); run `qrm plan` for all of them")
            break
        budget -= size
        body += lines
    return "\n".join(head + opening + fence(body, "diff") + closing)


# --- components (qrm scan) ------------------------------------------------------------------------

COMPONENTS_REPORT_VERSION = 1
_COMPONENTS_HEADER = (
    "# Written by `qrm scan`: every component of the project's .q files, sorted by path. Do not edit.\n"
    "# Each entry is one line (a JSON flow mapping, which is YAML), so a changed component diffs as one line.\n"
)
_TOTAL_KEYS = ("components", "actions", "forms", "queries")


def component_summary(component: dict[str, Any]) -> dict[str, Any]:
    """What the scan table, totals and unparsed list need of a component (its Component.to_dict() form)."""
    actions = component.get("actions", ())
    return {
        "path": component["path"], "name": component.get("name"), "type": component.get("type"),
        "route": component.get("route"), "actions": len(actions), "forms": len(component.get("forms", ())),
        "queries": len(component.get("queries", ())) + sum(len(a.get("queries", ())) for a in actions),
        "parse": component.get("parse", "xml"), "problems": list(component.get("problems", ())),
        "served": not component.get("not_served"),
    }


def component_totals(summaries: Sequence[dict[str, Any]]) -> dict[str, int]:
    """components.totals() over component summaries."""
    return {
        "components": len(summaries),
        "actions": sum(s["actions"] for s in summaries),
        "forms": sum(s["forms"] for s in summaries),
        "queries": sum(s["queries"] for s in summaries),
        "unparsed": sum(1 for s in summaries if s["parse"] in ("fallback", "skipped")),
        "not_served": sum(1 for s in summaries if not s.get("served", True)),
    }


def totals_line(totals: dict[str, int]) -> str:
    """'4 components | 11 actions | 4 forms | 10 queries' (and '| 1 unparsed', '| 3 not served' when some are)."""
    parts = [f"{totals[key]} {key}" for key in _TOTAL_KEYS]
    if totals.get("unparsed"):
        parts.append(f"{totals['unparsed']} unparsed")
    if totals.get("not_served"):
        parts.append(f"{totals['not_served']} not served")
    return " | ".join(parts)


def components_report(project: str, source: str, summaries: Sequence[dict[str, Any]], lines: Sequence[str],
                      served: str = "components") -> str:
    """reports/components/<project>.yaml from the summaries and JSON lines of the components, sorted by path.
    served: the folder the app serves (paths.components, relative to source; "" is source itself).

    Emitted directly: the JSON of each component is the registry's text, so a rescan that changed
    nothing rebuilds the same bytes without encoding anything again.
    """
    totals = component_totals(summaries)
    q = encode_basestring_ascii
    out = [_COMPONENTS_HEADER, f"version: {COMPONENTS_REPORT_VERSION}\n", f"project: {q(project)}\n",
           f"source: {q(source)}\n", f"served: {q(served or '.')}\n", f"summary: {q(totals_line(totals))}\n",
           f"totals: {_LINE_ENCODER.encode(totals)}\n"]
    unparsed = [{"path": s["path"], "parse": s["parse"], "problems": s["problems"]}
                for s in summaries if s["parse"] in ("fallback", "skipped")]
    out.append("unparsed:\n" if unparsed else "unparsed: []\n")
    out.extend(f"- {_LINE_ENCODER.encode(u)}\n" for u in unparsed)
    out.append("components:\n" if lines else "components: []\n")
    out.extend(f"- {line}\n" for line in lines)
    return "".join(out)


def component_changes_text(changes: Sequence[dict[str, str]]) -> str:
    """The information section of `qrm plan`: components added, changed or removed since the last scan."""
    if not changes:
        return ""
    lines = ["Components (since the last scan; information, not changes to apply; run qrm scan):"]
    lines += [one_line(f"  {c['symbol']} {c['project']}: {c['path']}") for c in changes]
    return "\n".join(lines) + "\n"


def component_changes_markdown(changes: Sequence[dict[str, str]], limit: int = 200, max_chars: int = 12_000) -> str:
    """The collapsed component block of a PR comment: at most `limit` lines and about `max_chars` characters."""
    if not changes:
        return ""
    body: list[str] = []
    size = 0
    for change in changes[:limit]:
        line = one_line(f"{change['symbol']} {change['project']}: {_short(change['path'], 300)}")
        if size + len(line) + 1 > max_chars:
            break
        size += len(line) + 1
        body.append(line)
    if len(changes) > len(body):
        body.append(f"# ... {len(changes) - len(body)} more (comment size limit); run `qrm plan` for all of them")
    return "\n".join(["", f"<details><summary>{len(changes)} component(s) changed since the last scan "
                      "(information; run <code>qrm scan</code>)</summary>", "", *fence(body, "diff"),
                      "</details>", ""])
