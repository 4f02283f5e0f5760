"""reports/summary.md and the messages of report commits (pure).

The summary describes the state a reconcile found, never the moment it ran: no clock, no
latency, and the revision is the newest commit that is not a report commit. So two reconciles
of the same state write the same bytes, and a watcher's own report commit can never make its
next summary differ (which would commit again, and again: a loop).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from reconciler.core.escaping import markdown_inline, one_line

SUMMARY_PATH = "reports/summary.md"
REPORT_TRAILER = "Qrm-Report: true"
WRITE_TRAILER = "Qrm-Write:"  # a manifest change qrm committed for a caller (flows/writes): not a report
MAX_LISTED = 50  # changes or problems listed by name before "… and N more"


@dataclass(frozen=True)
class LastApply:
    id: int
    outcome: str
    finished_at: str | None
    revision: str | None
    counts: Mapping[str, int]


@dataclass(frozen=True)
class SummaryInput:
    workspace: str
    revision: str | None  # newest non-report commit, None outside git
    outcome: str  # applied | no changes | pending | invalid | failed
    mode: str  # "apply" or "plan only"
    pending: Mapping[str, int] | None = None  # plan counts still to apply (None when unknown)
    last_apply: LastApply | None = None
    problems: Sequence[str] = ()  # located manifest problems, or the error that stopped the reconcile
    health: Mapping[str, int] | None = None  # status -> services


def counts_phrase(counts: Mapping[str, int]) -> str:
    return (f"{counts.get('create', 0)} created, {counts.get('update', 0)} updated, "
            f"{counts.get('delete', 0)} deleted, {counts.get('repair', 0)} repaired")


def _pending_phrase(counts: Mapping[str, int]) -> str:
    total = sum(counts.values())
    if not total:
        return "none: the registry and reports match the manifests"
    return (f"{total} change(s): {counts.get('create', 0)} to create, {counts.get('update', 0)} to update, "
            f"{counts.get('delete', 0)} to delete, {counts.get('repair', 0)} to repair")


def _short(revision: str | None) -> str:
    """`abc123def456`, keeping a `+dirty` suffix (reconciled from uncommitted changes, --allow-dirty)."""
    if not revision:
        return "(not in git)"
    sha, plus, suffix = revision.partition("+")
    return f"`{sha[:12]}{plus}{suffix}`"


def _cell(text: str) -> str:
    """A table cell qrm wrote (it may hold markup: bold, a code span), kept on one line and in its cell."""
    return one_line(text).replace("|", "\\|")


def render_summary(data: SummaryInput) -> str:
    status = {
        # "applied" reads "in sync" too: what the last apply did is its own row, and the summary of
        # an apply and of the no-op reconcile after it must be the same bytes (no commit between them)
        "applied": "in sync", "no changes": "in sync", "pending": "changes pending (plan only)",
        "invalid": "**invalid manifests: the last good state is kept**", "failed": "**reconcile failed**",
    }.get(data.outcome, data.outcome)
    rows = [("Status", status), ("Revision", _short(data.revision)), ("Mode", data.mode)]
    if data.pending is not None:
        rows.append(("Pending", _pending_phrase(data.pending)))
    if data.last_apply is not None:
        last = data.last_apply
        when = f", finished {last.finished_at[:19].replace('T', ' ')} UTC" if last.finished_at else ""
        rows.append(("Last apply", f"#{last.id} {last.outcome}{when} at {_short(last.revision)}: "
                                   f"{counts_phrase(last.counts)}"))
    if data.health is not None:
        rows.append(("Health", ", ".join(f"{n} {status}" for status, n in data.health.items() if n) or "no services"))
    lines = [f"# qrm: {markdown_inline(data.workspace)}\n", "\n", "Written by qrm on every reconcile. Do not edit.\n",
             "\n", "| | |\n", "|---|---|\n"]
    lines.extend(f"| {name} | {_cell(value)} |\n" for name, value in rows)
    if data.problems:
        title = "Problems in the manifests" if data.outcome == "invalid" else "Error"
        lines.extend(["\n", f"## {title}\n", "\n"])
        lines.extend(f"- {markdown_inline(problem)}\n" for problem in data.problems[:MAX_LISTED])
        if len(data.problems) > MAX_LISTED:
            lines.append(f"- … and {len(data.problems) - MAX_LISTED} more (run `qrm validate`)\n")
    return "".join(lines)


def commit_message(subject: str, details: Sequence[str] = ()) -> str:
    """A report commit: one subject line, the details (capped), and the trailer watchers skip."""
    body = [one_line(detail) for detail in details[:MAX_LISTED]]
    if len(details) > MAX_LISTED:
        body.append(f"… and {len(details) - MAX_LISTED} more")
    parts = [subject.strip().splitlines()[0][:200]]
    if body:
        parts.append("\n".join(body))
    parts.append(REPORT_TRAILER)
    return "\n\n".join(parts) + "\n"
