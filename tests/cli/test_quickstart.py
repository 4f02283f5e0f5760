"""README's "Quick start in your own repository", run as written: each line of its shell block(s), in
order, by bash in a fresh folder with its own HOME (so the age key and git config are the test's),
with `qrm` on PATH as the set-up leaves it. The README can then never drift from what works."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from tests.support.paths import REPO

SECTION = "## Quick start in your own repository"
FAILED = "quickstart-command-failed:"


def quickstart_commands() -> list[str]:
    """The command lines of the section's ```sh blocks, verbatim (comments included: bash drops them)."""
    text = REPO.joinpath("README.md").read_text()
    section = text.split(SECTION + "\n", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"^```sh\n(.*?)^```$", section, re.DOTALL | re.MULTILINE)
    return [line for block in blocks for line in block.splitlines() if line.strip()]


def script(commands: list[str]) -> str:
    """Each command as written, then a check that names it when it fails (set -e would not say which)."""
    checked = []
    for number, command in enumerate(commands, 1):
        checked.append(f"{command}\nstatus=$?\nif [ $status -ne 0 ]; then echo '{FAILED} {number}' >&2; "
                       "exit $status; fi")
    return "set -o pipefail\n" + "\n".join(checked) + "\n"


def test_the_quick_start_block_is_there_and_ends_with_a_report_commit() -> None:
    commands = quickstart_commands()
    assert commands[0].startswith("qrm init my-fleet")
    assert any(command.startswith("git add .") for command in commands)
    assert commands[-1].startswith("qrm apply --yes --commit")


def test_the_readme_quick_start_runs_as_written(tmp_path: Path) -> None:
    commands = quickstart_commands()
    home = tmp_path / "home"
    home.mkdir()
    env = {
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",  # qrm as .venv/bin/qrm
        "HOME": str(home), "XDG_CONFIG_HOME": str(home / ".config"),
        "GIT_CONFIG_NOSYSTEM": "1",
        # the user's own git identity, which `git commit` in the block needs (a new HOME has none)
        "GIT_AUTHOR_NAME": "Ops", "GIT_AUTHOR_EMAIL": "ops@example.com",
        "GIT_COMMITTER_NAME": "Ops", "GIT_COMMITTER_EMAIL": "ops@example.com",
        "PYTHONPATH": os.environ.get("PYTHONPATH", ""), "LANG": "C.UTF-8",
    }
    done = subprocess.run(["bash", "-c", script(commands)], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=300)
    failed = re.search(rf"{FAILED} (\d+)", done.stderr)
    assert done.returncode == 0 and failed is None, (
        f"README quick start: `{commands[int(failed.group(1)) - 1] if failed else '?'}` failed:\n"
        f"{done.stdout}\n{done.stderr}")

    fleet = tmp_path / "my-fleet"

    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", str(fleet), *args], capture_output=True, text=True, env=env,
                              check=True).stdout

    assert "Qrm-Report: true" in git("log", "-1", "--format=%B")  # apply --commit made its report commit
    assert '"name": "hello"' in git("show", "HEAD:reports/allocations.yaml")
    assert git("status", "--porcelain") == ""  # everything it wrote is committed or ignored
    assert (home / ".config" / "sops" / "age" / "keys.txt").is_file()  # init's age key, in this HOME only
