"""`qrm apply --commit`: one report commit per apply, only what changed, never a secret.

Every test runs real git in tmp_path; HOME is a fresh folder (conftest), so no global git identity
exists unless a test sets one.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from reconciler.edges import git_repo
from reconciler.flows.reconcile import CommitOutcome, ReconcileResult, committable
from tests.support.git_repos import clones, example, git, repository, services
from tests.support.workspace import Workspace

DB_PASSWORD = "demo-blog-password"  # what the demo secrets.enc holds for quantumblog/BLOG_DB_PASSWORD


def commits(root: Path) -> list[str]:
    return git(root, "log", "--format=%H").split()


def files_of(root: Path, revision: str = "HEAD") -> set[str]:
    return set(git(root, "show", "--name-only", "--format=", revision).split())


def test_apply_commit_makes_one_report_commit_with_the_trailer(workspace: Workspace,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    ws = example(workspace, monkeypatch, gitignore=".qrm/\n")  # .env NOT ignored: qrm must still leave it out
    before = commits(ws.root)
    result = ws.qrm("apply", "--yes", "--no-refresh", "--no-tests", "--commit")
    assert result.exit_code == 0, result.output
    assert len(commits(ws.root)) == len(before) + 1
    message = git(ws.root, "log", "-1", "--format=%B")
    subject = message.splitlines()[0]
    assert subject.startswith("qrm: apply #1: ") and "created" in subject
    assert message.rstrip().endswith("Qrm-Report: true")
    assert "+ service.quantumblog-dev-web" in message
    committed = files_of(ws.root)
    assert "reports/allocations.yaml" in committed and "reports/summary.md" in committed
    assert "generated/quantumblog/dev/nginx.conf" in committed
    assert not any(path.endswith(".env") for path in committed), committed
    assert (ws.root / "generated/quantumblog/dev/.env").exists()  # written, just not committed
    everything = git(ws.root, "log", "-p", "--all")
    assert DB_PASSWORD not in everything
    assert "never committed" in result.output  # the .env it left out is named, with why


def test_apply_commit_without_changes_makes_no_commit(workspace: Workspace) -> None:
    workspace.manifest("svc.yaml", services("a", "b"))
    ws = repository(workspace)
    assert ws.qrm("apply", "--yes", "--no-refresh", "--commit").exit_code == 0
    after_first = commits(ws.root)
    again = ws.qrm("apply", "--yes", "--no-refresh", "--commit")
    assert again.exit_code == 0, again.output
    assert commits(ws.root) == after_first
    assert "Nothing to commit" in again.output


def test_the_commit_author_comes_from_qrm_yaml_else_a_default(workspace: Workspace) -> None:
    workspace.manifest("svc.yaml", services("a"))
    ws = repository(workspace)
    assert ws.qrm("apply", "--yes", "--no-refresh", "--commit").exit_code == 0
    assert git(ws.root, "log", "-1", "--format=%an <%ae>").strip() == "qrm <qrm@localhost>"  # no git identity here

    ws.write("qrm.yaml", "commit_author: Deploy Bot <deploy@example.com>\n")
    ws.manifest("svc.yaml", services("a", "b"))
    git(ws.root, "add", "-A")
    git(ws.root, "commit", "-qm", "add b; a bot commits the reports")
    assert ws.qrm("apply", "--yes", "--no-refresh", "--commit").exit_code == 0
    assert git(ws.root, "log", "-1", "--format=%an <%ae>|%cn").strip() == "Deploy Bot <deploy@example.com>|Deploy Bot"


def test_a_malformed_commit_author_is_a_located_error(workspace: Workspace) -> None:
    workspace.manifest("svc.yaml", services("a"))
    ws = repository(workspace)
    ws.write("qrm.yaml", "commit_author: deploy@example.com\n")
    git(ws.root, "add", "qrm.yaml")
    git(ws.root, "commit", "-qm", "a malformed author")
    result = ws.qrm("apply", "--yes", "--no-refresh", "--commit")
    assert result.exit_code == 1
    assert "qrm.yaml:1" in result.output and "commit_author" in result.output


def test_other_staged_work_is_left_out_of_the_report_commit(workspace: Workspace) -> None:
    workspace.manifest("svc.yaml", services("a"))
    ws = repository(workspace)
    ws.write("notes.txt", "work in progress\n")
    git(ws.root, "add", "notes.txt")
    assert ws.qrm("apply", "--yes", "--no-refresh", "--commit").exit_code == 0
    assert "notes.txt" not in files_of(ws.root)
    assert git(ws.root, "diff", "--cached", "--name-only").split() == ["notes.txt"]  # still staged


def test_a_report_file_holding_a_secret_value_is_not_committed(workspace: Workspace,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    ws = example(workspace, monkeypatch)
    ws.write("reports/debug.txt", f"someone pasted the password here: {DB_PASSWORD}\n")
    result = ws.qrm("apply", "--yes", "--no-refresh", "--no-tests", "--commit")
    assert result.exit_code == 0, result.output
    assert "reports/debug.txt: holds a secret value" in result.output
    assert DB_PASSWORD not in result.output
    assert "reports/debug.txt" not in files_of(ws.root)
    assert DB_PASSWORD not in git(ws.root, "log", "-p", "--all")


def test_apply_commit_outside_git_is_refused_before_anything_is_applied(workspace: Workspace) -> None:
    workspace.manifest("svc.yaml", services("a"))
    result = workspace.qrm("apply", "--yes", "--no-refresh", "--commit")
    assert result.exit_code == 1
    assert "not" in result.output and "git repository" in result.output
    assert not (workspace.root / ".qrm").exists()
    assert not workspace.lockfile.exists()


# --- the committed state: what a report commit records is what HEAD holds ---------------------------

@dataclass
class Edit:
    name: str
    path: str
    content: str | None  # None: the file is deleted


EDITS = [
    Edit("a changed manifest", "manifests/svc.yaml", services("a", "b")),
    Edit("a new, untracked manifest", "manifests/more.yaml", services("b")),
    Edit("a deleted manifest", "manifests/svc.yaml", None),
    Edit("a changed qrm.yaml", "qrm.yaml", "lock_timeout: 5\n"),
    Edit("an untracked secrets.enc", "secrets.enc", "# nothing yet\n"),
]


def edit(ws: Workspace, change: Edit) -> None:
    if change.content is None:
        (ws.root / change.path).unlink()
    else:
        ws.write(change.path, change.content)


@pytest.mark.parametrize("change", EDITS, ids=[e.name for e in EDITS])
def test_apply_commit_refuses_uncommitted_changes_and_applies_nothing(workspace: Workspace, change: Edit) -> None:
    workspace.manifest("svc.yaml", services("a"))
    ws = repository(workspace)
    before = commits(ws.root)
    edit(ws, change)

    result = ws.qrm("apply", "--yes", "--no-refresh", "--commit")

    assert result.exit_code == 1
    assert result.stderr.splitlines() == [
        f"error: {change.path} differ(s) from HEAD (not committed); apply --commit reconciles the committed state: "
        "commit or stash the change, or add --allow-dirty for a local experiment"]
    assert not ws.lockfile.exists() and not (ws.root / "reports").exists()  # nothing applied, nothing written
    assert commits(ws.root) == before


def test_apply_commit_applies_what_is_committed_once_it_is(workspace: Workspace) -> None:
    workspace.manifest("svc.yaml", services("a"))
    ws = repository(workspace)
    ws.manifest("svc.yaml", services("a", "b"))
    assert ws.qrm("apply", "--yes", "--no-refresh", "--commit").exit_code == 1
    git(ws.root, "commit", "-qam", "add b")
    result = ws.qrm("apply", "--yes", "--no-refresh", "--commit")
    assert result.exit_code == 0, result.output
    # The report commit records the state of the commit it follows: both services, a clean revision.
    committed = git(ws.root, "show", "HEAD:reports/allocations.yaml")
    assert '"name": "a"' in committed and '"name": "b"' in committed
    revision = git(ws.root, "rev-parse", "HEAD~1").strip()
    assert f"| Revision | `{revision[:12]}` |" in git(ws.root, "show", "HEAD:reports/summary.md")
    assert "+dirty" not in git(ws.root, "log", "-1", "--format=%B")


def test_allow_dirty_applies_the_working_tree_and_says_dirty_in_the_report(workspace: Workspace) -> None:
    workspace.manifest("svc.yaml", services("a"))
    ws = repository(workspace)
    revision = git(ws.root, "rev-parse", "HEAD").strip()
    ws.manifest("svc.yaml", services("a", "b"))

    result = ws.qrm("apply", "--yes", "--no-refresh", "--commit", "--allow-dirty")

    assert result.exit_code == 0, result.output
    assert '"name": "b"' in git(ws.root, "show", "HEAD:reports/allocations.yaml")
    assert f"| Revision | `{revision[:12]}+dirty` |" in git(ws.root, "show", "HEAD:reports/summary.md")
    message = git(ws.root, "log", "-1", "--format=%B")
    assert f"Reconciled {revision[:12]}+dirty: manifests/svc.yaml not committed (--allow-dirty)" in message
    assert "manifests/svc.yaml" not in files_of(ws.root)  # the experiment itself stays uncommitted
    assert git(ws.root, "status", "--porcelain").split() == ["M", "manifests/svc.yaml"]


def test_plain_apply_applies_the_working_tree_and_allow_dirty_needs_commit(workspace: Workspace) -> None:
    workspace.manifest("svc.yaml", services("a"))
    ws = repository(workspace)
    ws.manifest("svc.yaml", services("a", "b"))
    result = ws.qrm("apply", "--yes", "--no-refresh")  # the local experiment: no commit, no check
    assert result.exit_code == 0, result.output
    assert '"name": "b"' in ws.lockfile.read_text()
    alone = ws.qrm("apply", "--yes", "--no-refresh", "--allow-dirty")
    assert alone.exit_code != 0
    assert "--allow-dirty goes with --commit" in alone.output


def test_apply_commit_in_a_workspace_that_is_a_folder_of_a_larger_repository(tmp_path: Path) -> None:
    team = tmp_path / "ops"
    ws = Workspace(team / "fleet")
    ws.manifest("svc.yaml", services("a"))
    (team / "README.md").write_text("# ops\n")
    git(team, "init", "-q", "-b", "main")
    git(team, "add", "-A")
    git(team, "commit", "-qm", "ops repository with a fleet folder")
    result = ws.qrm("apply", "--yes", "--no-refresh", "--commit")
    assert result.exit_code == 0, result.output
    assert {"fleet/reports/allocations.yaml", "fleet/reports/summary.md"} <= files_of(team)
    (team / "fleet" / "manifests" / "svc.yaml").write_text(services("a", "b"))
    refused = ws.qrm("apply", "--yes", "--no-refresh", "--commit")
    assert refused.exit_code == 1
    assert refused.stderr.startswith("error: manifests/svc.yaml differ(s) from HEAD")


HEALTH = """# header
version: 1
checked_at: "{when}"
services:
- {{"name": "a", "host": "localhost", "port": 8000, "status": "{status}", "reason": "", "latency_ms": {ms}}}
"""


@pytest.mark.parametrize(("status", "ms", "committed"), [
    ("passing", 1.5, False),  # only latency and time changed
    ("critical", 0.8, True),  # the status changed
])
def test_the_health_report_is_committed_only_when_a_status_changes(workspace: Workspace, status: str, ms: float,
                                                                   committed: bool) -> None:
    ws = repository(workspace)
    ws.write("reports/health.yaml", HEALTH.format(when="t1", status="passing", ms=0.9))
    git(ws.root, "add", "-A")
    git(ws.root, "commit", "-qm", "health")
    ws.write("reports/health.yaml", HEALTH.format(when="t2", status=status, ms=ms))
    changed = git_repo.changed_paths(ws.root, ["reports"])
    assert changed == ["reports/health.yaml"]
    keep, _ = committable(ws.root, changed, None)
    assert (keep == ["reports/health.yaml"]) is committed


@pytest.mark.parametrize("path", [
    "generated/p/dev/.env", "reports/.env", "generated/p/dev/.env.local", "generated/p/dev/prod.env"])
def test_env_files_are_never_committable(tmp_path: Path, path: str) -> None:
    keep, skipped = committable(tmp_path, [path], None)
    assert keep == [] and skipped[0].startswith(path)


def test_only_the_listed_paths_are_committed_and_deletions_count(workspace: Workspace) -> None:
    ws = repository(workspace)
    ws.write("reports/a.yaml", "a: 1\n")
    ws.write("reports/b.yaml", "b: 1\n")
    first = git_repo.commit_paths(ws.root, ["reports/a.yaml", "reports/b.yaml"], "qrm: reports\n\nQrm-Report: true\n")
    assert first is not None and files_of(ws.root) == {"reports/a.yaml", "reports/b.yaml"}
    (ws.root / "reports" / "a.yaml").unlink()
    assert git_repo.changed_paths(ws.root, ["reports"]) == ["reports/a.yaml"]
    second = git_repo.commit_paths(ws.root, ["reports/a.yaml"], "qrm: reports\n\nQrm-Report: true\n")
    assert second is not None
    assert git(ws.root, "ls-files", "reports").split() == ["reports/b.yaml"]
    assert git_repo.commit_paths(ws.root, ["reports/b.yaml"], "nothing changed") is None


# --- the upstream ------------------------------------------------------------------------------------

def report_commit(root: Path, name: str) -> str:
    (root / "reports").mkdir(exist_ok=True)
    (root / "reports" / name).write_text(f"{name}\n")
    sha = git_repo.commit_paths(root, [f"reports/{name}"], f"qrm: {name}\n\nQrm-Report: true\n")
    assert sha is not None
    return sha


def test_a_rejected_push_rebases_the_report_commits_and_never_forces(tmp_path: Path) -> None:
    origin, dev, watcher = clones(tmp_path)
    report_commit(watcher, "one.yaml")
    (dev / "manifests" / "svc.yaml").write_text(services("a", "b"))
    git(dev, "commit", "-qam", "add b")
    git(dev, "push", "-q", "origin", "main")
    dev_head = git(dev, "rev-parse", "HEAD").strip()

    pushed = git_repo.push(watcher)

    assert pushed.pushed and pushed.attempts == 2 and pushed.rebased == 1
    subjects = git(origin, "log", "--format=%s", "main").splitlines()
    assert subjects == ["qrm: one.yaml", "add b", "first"]
    assert git(origin, "merge-base", "--is-ancestor", dev_head, "main") == ""  # dev's commit kept: no force


def test_pull_fast_forwards_and_tells_report_commits_from_others(tmp_path: Path) -> None:
    _origin, dev, watcher = clones(tmp_path)
    report_commit(dev, "from-another-watcher.yaml")
    (dev / "manifests" / "svc.yaml").write_text(services("a", "c"))
    git(dev, "commit", "-qam", "add c")
    git(dev, "push", "-q", "origin", "main")

    pulled = git_repo.fetch_fast_forward(watcher)

    assert pulled.changed and len(pulled.commits) == 2 and len(pulled.foreign) == 1
    assert "name: c" in (watcher / "manifests" / "svc.yaml").read_text()
    assert git_repo.paths_changed_between(watcher, pulled.before, pulled.after) == [
        "manifests/svc.yaml", "reports/from-another-watcher.yaml"]
    assert not git_repo.fetch_fast_forward(watcher).changed


def test_pull_refuses_to_rewrite_a_commit_that_is_not_qrms(tmp_path: Path) -> None:
    _origin, dev, watcher = clones(tmp_path)
    (watcher / "manifests" / "svc.yaml").write_text(services("a", "local"))
    git(watcher, "commit", "-qam", "a local manifest change")
    (dev / "manifests" / "svc.yaml").write_text(services("a", "remote"))
    git(dev, "commit", "-qam", "a remote change")
    git(dev, "push", "-q", "origin", "main")
    local_head = git(watcher, "rev-parse", "HEAD")
    with pytest.raises(git_repo.GitError, match="not qrm report commits"):
        git_repo.fetch_fast_forward(watcher)
    assert git(watcher, "rev-parse", "HEAD") == local_head


def test_last_change_revision_skips_report_commits(tmp_path: Path) -> None:
    _origin, dev, _watcher = clones(tmp_path)
    manifest_commit = git(dev, "rev-parse", "HEAD").strip()
    report_commit(dev, "x.yaml")
    report_commit(dev, "y.yaml")
    assert git_repo.last_change_revision(dev) == manifest_commit


def test_the_reconcile_line_says_what_happened_and_how_long_it_took() -> None:
    result = ReconcileResult("changed: manifests/a.yaml", outcome="applied",
                             counts={"create": 1, "update": 0, "delete": 0, "repair": 0},
                             tests=["tests smoke: 3 passed, 1 failed"], tests_blocking=["smoke"],
                             commit=CommitOutcome("0123456789abcdef", ["reports/summary.md"]), seconds=0.4321,
                             timings={"apply": 0.2, "commit": 0.05})
    assert result.line() == (
        "reconcile (changed: manifests/a.yaml): applied; 1 created, 0 updated, 0 deleted, 0 repaired; "
        "tests smoke: 3 passed, 1 failed; blocking suite(s) failed: smoke; committed 0123456789ab (1 file(s)) "
        "in 0.432 s (apply 0.200s, commit 0.050s)")
