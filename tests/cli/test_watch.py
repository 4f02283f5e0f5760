"""`qrm watch` as a user runs it: a real process, real git repositories, a bare origin.

Each test waits on what a user would look at (the origin's log and files, the watcher's output)
with generous deadlines; nothing here asserts how fast it happened.
"""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.support.git_repos import clones, example, git, repository, services
from tests.support.watcher import Watcher, head, is_report, shown, wait_for
from tests.support.workspace import Workspace


@pytest.fixture
def watchers() -> Iterator[Callable[..., Watcher]]:
    started: list[Watcher] = []

    def start(root: Path, *args: str) -> Watcher:
        watcher = Watcher(root, *args)
        started.append(watcher)
        return watcher

    yield start
    for watcher in started:
        if watcher.process.poll() is None:
            watcher.process.kill()
            watcher.process.wait()


def push_change(dev: Path, content: str, message: str) -> str:
    git(dev, "pull", "-q", "--ff-only", "origin", "main")
    (dev / "manifests" / "svc.yaml").write_text(content)
    git(dev, "commit", "-qam", message)
    git(dev, "push", "-q", "origin", "main")
    return head(dev, "HEAD")


def allocated(origin: Path) -> str:
    return shown(origin, "reports/allocations.yaml")


def test_watch_applies_pushed_changes_pushes_reports_and_survives_a_bad_commit(
        tmp_path: Path, watchers: Callable[..., Watcher]) -> None:
    origin, dev, workspace = clones(tmp_path)
    # Ports nothing on this machine listens on (below 1024, where no test binds): a health check that starts
    # passing because another test's server took port 8000 is a real change the watcher commits, and this
    # test counts commits.
    (dev / "manifests" / "range.yaml").write_text("kind: PortRange\nname: app\nstart: 901\nend: 999\n")
    git(dev, "add", "-A")
    git(dev, "commit", "-qm", "app ports no test listens on")
    git(dev, "push", "-q", "origin", "main")
    git(workspace, "pull", "-q", "--ff-only")
    watcher = watchers(workspace, "--apply", "--pull", "--interval", "0.3")

    wait_for("the first report commit on origin", lambda: '"name": "a"' in allocated(origin), watcher)
    assert is_report(origin)
    assert '"port": 901' in allocated(origin), allocated(origin)

    change = push_change(dev, services("a", "b"), "add b")
    wait_for("b's allocation on origin", lambda: '"name": "b"' in allocated(origin), watcher)
    assert is_report(origin)
    assert git(origin, "merge-base", "--is-ancestor", change, "main") == ""  # on top of the change, not forced
    wait_for("the reconcile line naming the change", lambda: "pulled: manifests/svc.yaml" in watcher.output, watcher)

    # No loop: its own report commits do not wake it, so the origin stays where it is.
    settled = head(origin)
    time.sleep(3)
    assert head(origin) == settled, git(origin, "log", "--format=%h %s", "-5", "main")

    push_change(dev, services("a", "b") + "colour: red\n", "a typo")
    wait_for("the invalid manifests in summary.md",
             lambda: "invalid manifests" in shown(origin, "reports/summary.md"), watcher)
    summary = shown(origin, "reports/summary.md")
    assert "manifests/svc.yaml:" in summary and "colour" in summary
    assert '"name": "b"' in allocated(origin)  # the last good state is kept

    push_change(dev, services("a", "b", "c"), "fix the typo, add c")
    wait_for("c's allocation on origin", lambda: '"name": "c"' in allocated(origin), watcher)
    wait_for("a clean summary", lambda: "invalid" not in shown(origin, "reports/summary.md"), watcher)
    assert "| Status | in sync |" in shown(origin, "reports/summary.md")

    wait_for("the reconcile line of the fix", lambda: watcher.output.count("pulled: manifests/svc.yaml") >= 3, watcher)
    assert watcher.stop(signal.SIGTERM) == 0
    assert "watch stopped" in watcher.output
    steps = [line for line in watcher.lines if "reconcile (" in line]
    assert steps  # one line per reconcile: what woke it, what happened, how long it took
    for line in steps:
        assert re.search(r"reconcile \((start|interval|changed: .+|pulled: .+)\): "
                         r"(applied|no changes|pending|invalid|failed)\b.* in \d+\.\d{3} s\b", line), line
    assert any("reconcile (" in line and ": invalid; 1 problem(s): manifests/svc.yaml:" in line for line in steps)


def test_watch_rescans_changed_components_and_ignores_its_own_reports(
        workspace: Workspace, monkeypatch: pytest.MonkeyPatch, watchers: Callable[..., Watcher]) -> None:
    ws = example(workspace, monkeypatch)
    watcher = watchers(ws.root, "--apply", "--interval", "60")
    wait_for("the first report commit", lambda: is_report(ws.root, "HEAD"), watcher)
    started = head(ws.root, "HEAD")
    assert (ws.root / "reports/components/quantumblog.yaml").exists()

    page = ws.root / "examples/quantumblog/components/login.q"
    page.write_text(page.read_text().replace("</q:component>", "<p>new text</p>\n</q:component>", 1))
    wait_for("a report commit for the changed component", lambda: head(ws.root, "HEAD") != started, watcher)
    changed_files = git(ws.root, "show", "--name-only", "--format=", "HEAD").split()
    assert "reports/components/quantumblog.yaml" in changed_files
    # The line comes once the step is over, a moment after its commit.
    wait_for("the reconcile line naming the file", lambda: "changed: examples/quantumblog/components/login.q"
             in watcher.output, watcher)

    # Its own kind of files (reports/, generated/) and a save that changes nothing do not wake it.
    settled, reconciles = head(ws.root, "HEAD"), watcher.output.count("reconcile (")
    (ws.root / "reports" / "summary.md").write_text("edited by hand\n")
    (ws.root / "generated" / "notes.txt").write_text("scratch\n")
    page.write_text(page.read_text())
    time.sleep(2)
    assert watcher.output.count("reconcile (") == reconciles, watcher.output
    assert head(ws.root, "HEAD") == settled

    second = subprocess.run([sys.executable, "-m", "reconciler", "-C", str(ws.root), "watch"],
                            capture_output=True, text=True, timeout=60)
    assert second.returncode == 1
    assert "another qrm watch is running" in second.stderr

    assert watcher.stop(signal.SIGINT) == 0


def test_watch_without_apply_only_plans_and_reports(tmp_path: Path, watchers: Callable[..., Watcher]) -> None:
    _origin, _dev, workspace = clones(tmp_path)
    watcher = watchers(workspace, "--interval", "60", "--no-commit")
    wait_for("the first summary", lambda: (workspace / "reports" / "summary.md").exists(), watcher)
    summary = (workspace / "reports" / "summary.md").read_text()
    assert "changes pending (plan only)" in summary and "1 to create" in summary
    assert not (workspace / "reports" / "allocations.yaml").exists()  # nothing applied
    assert not is_report(workspace, "HEAD")  # --no-commit
    assert watcher.stop() == 0


def test_watch_apply_reconciles_commits_and_reports_a_broken_working_tree_edit_as_such(
        workspace: Workspace, watchers: Callable[..., Watcher]) -> None:
    workspace.manifest("svc.yaml", services("a"))
    ws = repository(workspace)
    watcher = watchers(ws.root, "--apply", "--interval", "0.5")
    wait_for("the first report commit", lambda: is_report(ws.root, "HEAD"), watcher)
    settled = head(ws.root, "HEAD")

    ws.manifest("svc.yaml", services("a") + "colour: red\n")  # saved, not committed, and broken
    wait_for("the dirty line", lambda: "dirty; 1 problem(s): manifests/svc.yaml differ(s) from HEAD" in watcher.output,
             watcher)
    time.sleep(1.5)  # a few more intervals: still nothing reconciled, written or committed
    assert head(ws.root, "HEAD") == settled
    assert "invalid" not in shown(ws.root, "reports/summary.md", "HEAD")  # the valid commit is not blamed
    assert "invalid" not in (ws.root / "reports" / "summary.md").read_text()

    ws.manifest("svc.yaml", services("a", "b"))
    git(ws.root, "commit", "-qam", "add b")
    change = head(ws.root, "HEAD")
    wait_for("b applied and committed", lambda: '"name": "b"' in shown(ws.root, "reports/allocations.yaml", "HEAD"),
             watcher)
    assert f"| Revision | `{change[:12]}` |" in shown(ws.root, "reports/summary.md", "HEAD")
    assert watcher.stop() == 0


def test_an_unexpected_failure_is_one_line_without_its_message_and_the_watcher_goes_on(
        tmp_path: Path, watchers: Callable[..., Watcher]) -> None:
    _origin, _dev, workspace = clones(tmp_path)
    watcher = watchers(workspace, "--interval", "0.3", "--no-commit")
    wait_for("the first summary", lambda: (workspace / "reports" / "summary.md").exists(), watcher)
    secrets = workspace / "secrets.enc"
    saved = secrets.read_bytes() if secrets.exists() else None
    if saved is not None:
        secrets.unlink()
    secrets.mkdir()  # what no layer anticipates: an OSError from deep inside a reconcile
    failed = f"failed: {secrets}: Is a directory; retrying on the next change or interval"
    wait_for("the failure line", lambda: any(failed in line for line in watcher.lines), watcher)
    secrets.rmdir()
    if saved is not None:
        secrets.write_bytes(saved)
    seen = len(watcher.lines)
    wait_for("a reconcile after the repair",
             lambda: any("reconcile" in line and "failed" not in line for line in watcher.lines[seen:]), watcher)
    assert "Traceback" not in watcher.output
    assert watcher.stop() == 0
