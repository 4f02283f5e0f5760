"""flows/watch.pull on a clone that a killed replica left behind: an unpushed report commit and report files
written but never committed. The fast-forward would fail on them on every interval (a replica that leads
from there would reconcile a stale commit); the pull commits them as the reconcile would have, drops them
where the upstream changed the same files, and fast-forwards."""

from __future__ import annotations

from pathlib import Path

from reconciler.edges import git_repo
from reconciler.flows.watch import pull
from reconciler.flows.workspace import open_workspace
from tests.support.git_repos import clones, git, services


def report_commit(root: Path, name: str, text: str) -> None:
    (root / "reports").mkdir(exist_ok=True)
    (root / "reports" / name).write_text(text)
    assert git_repo.commit_paths(root, [f"reports/{name}"], f"qrm: {name}\n\nQrm-Report: true\n")


def test_a_pull_gets_past_report_files_a_killed_reconcile_left_uncommitted(tmp_path: Path) -> None:
    _origin, dev, killed = clones(tmp_path)
    report_commit(killed, "health.yaml", "health: of the killed replica\n")  # committed, never pushed
    (killed / "reports" / "health.yaml").write_text("health: written just before the SIGKILL\n")
    (killed / "reports" / "state.yaml").write_text("state: new, never committed\n")
    report_commit(dev, "health.yaml", "health: of the replica that leads now\n")
    (dev / "manifests" / "svc.yaml").write_text(services("a", "b"))
    git(dev, "commit", "-qam", "add b")
    git(dev, "push", "-q", "origin", "main")
    said: list[str] = []

    changed = pull(open_workspace(killed), said.append)

    assert changed == ["manifests/svc.yaml"], said
    assert "name: b" in (killed / "manifests" / "svc.yaml").read_text()
    assert (killed / "reports" / "health.yaml").read_text() == "health: of the replica that leads now\n"
    assert git_repo.changed_paths(killed, ["reports", "manifests"]) == []
    # state.yaml is committed (then dropped: it never reached the upstream); health.yaml, whose statuses did not
    # change (a report commit leaves those out), is put back as committed.
    assert said[0] == "committed 1 report file(s) left uncommitted (reports/state.yaml) to pull past them"
    assert not any(line.startswith("pull failed") for line in said), said


def test_a_pull_that_fails_for_another_reason_says_so_once(tmp_path: Path) -> None:
    _origin, dev, watcher = clones(tmp_path)
    (watcher / "manifests" / "svc.yaml").write_text(services("a", "local"))
    git(watcher, "commit", "-qam", "a local manifest change")
    (watcher / "reports").mkdir()
    (watcher / "reports" / "state.yaml").write_text("state: left\n")
    (dev / "manifests" / "svc.yaml").write_text(services("a", "remote"))
    git(dev, "commit", "-qam", "a remote change")
    git(dev, "push", "-q", "origin", "main")
    said: list[str] = []

    assert pull(open_workspace(watcher), said.append) == []

    failed = [line for line in said if line.startswith("pull failed")]
    assert len(failed) == 1 and "not qrm report commits" in failed[0], said
