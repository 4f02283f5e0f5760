"""git_repo's log readers for the dashboard's History page, on real repositories: report commits only
(the Qrm-Report trailer), newest first, and the authors of known commits."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from reconciler.core.summary import commit_message
from reconciler.edges import git_repo


def git(root: Path, *args: str, name: str = "Ada") -> str:
    env = {**os.environ, "GIT_AUTHOR_NAME": name, "GIT_AUTHOR_EMAIL": "a@example.com", "GIT_COMMITTER_NAME": name,
           "GIT_COMMITTER_EMAIL": "a@example.com"}
    return subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, check=True,
                          env=env).stdout.strip()


def test_outside_git_there_is_no_log(tmp_path: Path) -> None:
    assert git_repo.report_log(tmp_path) is None
    assert git_repo.commit_authors(tmp_path, ["0" * 40]) == {}


def test_only_report_commits_newest_first_and_known_authors(tmp_path: Path) -> None:
    git(tmp_path, "init", "-q", "-b", "main")
    assert git_repo.report_log(tmp_path) is None  # no commit yet
    made = []
    for index, (message, name) in enumerate([("a manifest", "Ada"), (commit_message("qrm: reports 1"), "qrm"),
                                             ("Qrm-Report: true is only mentioned", "Bob"),
                                             (commit_message("qrm: reports 2"), "qrm")]):
        (tmp_path / f"f{index}").write_text(str(index))
        git(tmp_path, "add", "-A")
        git(tmp_path, "commit", "-q", "-m", message, name=name)
        made.append(git(tmp_path, "rev-parse", "HEAD"))
    log = git_repo.report_log(tmp_path)
    assert log is not None
    assert [(c.sha, c.author, c.subject) for c in log] == [(made[3], "qrm", "qrm: reports 2"),
                                                          (made[1], "qrm", "qrm: reports 1")]
    assert [c.sha for c in git_repo.report_log(tmp_path, limit=1) or []] == [made[3]]
    assert git_repo.commit_authors(tmp_path, [made[0], made[2], made[0], "f" * 40]) == {made[0]: "Ada",
                                                                                         made[2]: "Bob"}
