"""The History page in a real browser: the applies the registry recorded (when, revision, the revision's
author, outcome, counts) and the report commits `qrm apply --commit` made, in a real git repository."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest
from playwright.sync_api import Browser, expect

from reconciler.flows import history
from reconciler.flows.workspace import open_workspace
from tests.support import api_server
from tests.support.browser import screenshot
from tests.support.dashboard_session import served_environment, signed_in

RELATIVE = re.compile(r"^\d+ (s|min|h|d) ago$")  # how a page says when: "30 s ago", the exact time in <time>
ADA = {"GIT_AUTHOR_NAME": "Ada Lovelace", "GIT_AUTHOR_EMAIL": "ada@example.com",
       "GIT_COMMITTER_NAME": "Ada Lovelace", "GIT_COMMITTER_EMAIL": "ada@example.com"}


def git(root: Path, *args: str, env: dict[str, str] | None = None) -> str:
    done = subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, check=True,
                          env={**os.environ, **(env or {})})
    return done.stdout.strip()


@pytest.fixture(scope="module")
def committed(served: api_server.Server) -> str:
    """The served example made a git repository by Ada; then Ada adds a service and qrm applies it with
    --commit (its report commit by qrm). Returns Ada's second commit."""
    root = served.root
    (root / ".gitignore").write_text(".qrm/\ngenerated/\n")
    git(root, "init", "-q", "-b", "main")
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "the example", env=ADA)
    with (root / "manifests" / "platform.yaml").open("a") as manifest:
        manifest.write("---\nkind: Service\nname: docs\nhost: localhost\ntype: app\nprotocol: http\n")
    git(root, "commit", "-q", "-am", "a docs service", env=ADA)
    api_server.qrm(root, served_environment(served), "apply", "--yes", "--commit", "--no-refresh", "--no-tests")
    return git(root, "rev-parse", "HEAD~1")


def test_applies_and_report_commits(served: api_server.Server, browser: Browser, committed: str) -> None:
    context, page = signed_in(served, browser, "reader")
    page.get_by_role("link", name="History").click()
    expect(page.get_by_role("heading", name="History", level=1)).to_be_visible()

    applies = page.locator("section", has=page.get_by_role("heading", name="Applies")).locator("tbody tr")
    expect(applies).to_have_count(2)
    newest = [cell.inner_text() for cell in applies.nth(0).locator("td").all()]
    assert newest[0] == "2" and RELATIVE.match(newest[1]), newest[1]
    recorded = history.applies(open_workspace(served.root), 1)[0]
    assert applies.nth(0).locator("time").get_attribute("datetime") == recorded.finished_at
    assert newest[2:] == [committed[:10], "Ada Lovelace", "✔ success", "+1 created, ~0 updated, -0 deleted"]
    oldest = [cell.inner_text() for cell in applies.nth(1).locator("td").all()]
    assert oldest[2:] == ["not in git", "—", "✔ success", "+24 created, ~0 updated, -0 deleted"]

    commits = page.locator("section", has=page.get_by_role("heading", name="Report commits")).locator("tbody tr")
    expect(commits).to_have_count(1)
    report = git(served.root, "log", "-1", "--format=%H%x00%an%x00%s").split("\0")
    cells = [cell.inner_text() for cell in commits.nth(0).locator("td").all()]
    assert [cells[0], cells[2], cells[3]] == [report[0][:10], "qrm", report[2]]
    assert RELATIVE.match(cells[1]), cells[1]
    assert commits.nth(0).locator("time").get_attribute("datetime") == git(served.root, "log", "-1", "--format=%aI")
    assert report[1] == "qrm" and report[0] != committed
    screenshot(page, "history")
    context.close()
