"""secrets.enc in git: qrm's merge driver and textconv, configured as the README says, in real
repositories in tmp_path. git runs them as separate processes, with the age key in its environment.

    .gitattributes:  secrets.enc merge=qrm-secrets diff=qrm-secrets
    git config merge.qrm-secrets.name "qrm secrets.enc merge"
    git config merge.qrm-secrets.driver "qrm secrets merge-driver %O %A %B"
    git config diff.qrm-secrets.textconv "qrm secrets textconv"
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pyrage
import pytest

from reconciler.core.errors import SecretsError
from reconciler.edges import sops
from tests.support.workspace import Workspace

QRM = f"{shlex.quote(sys.executable)} -m reconciler"  # `qrm`, as this checkout runs it
GITATTRIBUTES = "secrets.enc merge=qrm-secrets diff=qrm-secrets\n"


def git(repo: Path, *args: str, ok: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True, timeout=60,
                            env={**os.environ, "GIT_CONFIG_NOSYSTEM": "1", "GIT_AUTHOR_NAME": "t",
                                 "GIT_AUTHOR_EMAIL": "t@example.com", "GIT_COMMITTER_NAME": "t",
                                 "GIT_COMMITTER_EMAIL": "t@example.com", "GIT_MERGE_AUTOEDIT": "no"})
    if ok:
        assert result.returncode == 0, result.stdout + result.stderr
    return result


@pytest.fixture
def repo(workspace: Workspace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Workspace:
    """A workspace that is a git repository with qrm's merge driver and textconv, and an age key."""
    identity, recipient = sops.generate_identity()
    key_file = tmp_path / "keys.txt"
    key_file.write_text(identity + "\n")
    monkeypatch.setenv("SOPS_AGE_KEY_FILE", str(key_file))  # in git's environment, so in the driver's too
    root = workspace.root
    workspace.write(".sops.yaml", f"creation_rules:\n  - path_regex: secrets\\.enc$\n    age: {recipient}\n")
    workspace.write(".gitattributes", GITATTRIBUTES)
    # the project its scoped secrets belong to (set refuses a scope the manifests do not declare)
    workspace.write("manifests/quantumblog.yaml", "kind: Project\nname: quantumblog\nenvironments:\n"
                    "  dev: {host: localhost}\n")
    workspace.write(".gitignore", ".qrm/\n")  # qrm's private state and caches, as qrm init ignores them
    git(root, "init", "-q", "-b", "main")
    git(root, "config", "merge.qrm-secrets.name", "qrm secrets.enc merge")
    git(root, "config", "merge.qrm-secrets.driver", f"{QRM} secrets merge-driver %O %A %B")
    git(root, "config", "diff.qrm-secrets.textconv", f"{QRM} secrets textconv")
    git(root, "add", ".sops.yaml", ".gitattributes", ".gitignore", "manifests")
    git(root, "commit", "-q", "-m", "qrm secrets in git")
    return workspace


def change(ws: Workspace, changes: dict[str, str | None]) -> None:
    """Set (a value) or remove (None) secrets: NAME or project/NAME."""
    for scoped, value in changes.items():
        *project, name = scoped.split("/")
        scope = ["--project", project[0]] if project else []
        if value is None:
            result = ws.qrm("secrets", "rm", name, *scope)
        else:
            result = ws.qrm("secrets", "set", name, *scope, input=value)
        assert result.exit_code == 0, result.output


def commit(ws: Workspace, message: str) -> None:
    git(ws.root, "add", "-A")
    git(ws.root, "commit", "-q", "-m", message)


def decrypted(path: Path) -> dict[str, str]:
    """The plaintext of a secrets.enc, after its MAC is verified."""
    encrypted = sops.read_file(path)
    assert encrypted is not None
    return sops.decrypt(encrypted, sops.load_identities())


def branches(ws: Workspace, base: dict[str, str | None], ours: dict[str, str | None],
             theirs: dict[str, str | None]) -> None:
    """main gets `ours` and branch `theirs` gets `theirs`, both on top of `base`; main is checked out."""
    if base:
        change(ws, base)
        commit(ws, "base")
    git(ws.root, "switch", "-q", "-c", "theirs")
    change(ws, theirs)
    commit(ws, "theirs")
    git(ws.root, "switch", "-q", "main")
    change(ws, ours)
    commit(ws, "ours")


@dataclass
class MergeCase:
    name: str
    base: dict[str, str | None]
    ours: dict[str, str | None]
    theirs: dict[str, str | None]
    merged: dict[str, str] = field(default_factory=dict)  # what the file holds after the merge
    conflicts: list[str] = field(default_factory=list)  # when it stops


BASE: dict[str, str | None] = {"quantumblog/DB_PASSWORD": "db-0", "API_TOKEN": "token-0", "SMTP_PASSWORD": "smtp-0"}
MERGES = [
    MergeCase("different secrets changed", BASE, {"quantumblog/DB_PASSWORD": "db-ours"}, {"API_TOKEN": "token-theirs"},
              merged={"quantumblog/DB_PASSWORD": "db-ours", "API_TOKEN": "token-theirs", "SMTP_PASSWORD": "smtp-0"}),
    MergeCase("one adds, the other removes", BASE, {"quantumblog/NEW": "new-ours"}, {"SMTP_PASSWORD": None},
              merged={"quantumblog/DB_PASSWORD": "db-0", "API_TOKEN": "token-0", "quantumblog/NEW": "new-ours"}),
    MergeCase("the same change on both sides", BASE, {"API_TOKEN": "token-1", "quantumblog/DB_PASSWORD": "db-ours"},
              {"API_TOKEN": "token-1"},
              merged={"quantumblog/DB_PASSWORD": "db-ours", "API_TOKEN": "token-1", "SMTP_PASSWORD": "smtp-0"}),
    MergeCase("both branches create secrets.enc", {}, {"A_OURS": "a"}, {"B_THEIRS": "b"},
              merged={"A_OURS": "a", "B_THEIRS": "b"}),
    # A conflict keeps our value for the conflicting secret and every other change of both sides.
    MergeCase("the same secret changed differently", BASE, {"quantumblog/DB_PASSWORD": "db-ours"},
              {"quantumblog/DB_PASSWORD": "db-theirs", "API_TOKEN": "token-theirs"},
              merged={"quantumblog/DB_PASSWORD": "db-ours", "API_TOKEN": "token-theirs", "SMTP_PASSWORD": "smtp-0"},
              conflicts=["quantumblog/DB_PASSWORD"]),
    MergeCase("changed on one side, removed on the other", BASE, {"API_TOKEN": "token-ours"}, {"API_TOKEN": None},
              merged={"quantumblog/DB_PASSWORD": "db-0", "API_TOKEN": "token-ours", "SMTP_PASSWORD": "smtp-0"},
              conflicts=["API_TOKEN"]),
    MergeCase("added on both sides with different values", BASE, {"NEW": "new-ours"}, {"NEW": "new-theirs"},
              merged={**{k: v for k, v in BASE.items() if v is not None}, "NEW": "new-ours"},
              conflicts=["NEW"]),
]


@pytest.mark.parametrize("case", MERGES, ids=[m.name for m in MERGES])
def test_git_merges_secrets_enc_by_secret(repo: Workspace, case: MergeCase) -> None:
    branches(repo, case.base, case.ours, case.theirs)
    merge = git(repo.root, "merge", "--no-edit", "theirs", ok=False)
    path = repo.root / "secrets.enc"
    if not case.conflicts:
        assert merge.returncode == 0, merge.stdout + merge.stderr
        assert decrypted(path) == case.merged  # MAC verified
        assert git(repo.root, "status", "--porcelain").stdout == ""
        assert "<<<<<<<" not in path.read_text()
        return
    assert merge.returncode != 0
    assert f"secrets changed differently on both sides: {', '.join(case.conflicts)}" in merge.stderr
    assert "CONFLICT" in merge.stdout
    assert "<<<<<<<" not in path.read_text()  # a whole, valid file: never conflict markers in ciphertext
    assert decrypted(path) == case.merged  # MAC verified
    assert git(repo.root, "status", "--porcelain").stdout == "UU secrets.enc\n"

    # Resolved as the message says: set the value, then commit.
    change(repo, {case.conflicts[0]: "resolved"})
    commit(repo, "merged")
    assert decrypted(path)[case.conflicts[0]] == "resolved"


def test_without_the_driver_git_cannot_merge_two_different_changes(repo: Workspace) -> None:
    git(repo.root, "config", "--remove-section", "merge.qrm-secrets")  # git's own line merge
    branches(repo, BASE, {"quantumblog/DB_PASSWORD": "db-ours"}, {"API_TOKEN": "token-theirs"})
    merge = git(repo.root, "merge", "--no-edit", "theirs", ok=False)
    assert merge.returncode != 0
    assert "CONFLICT (content): Merge conflict in secrets.enc" in merge.stdout


def test_conflict_markers_left_by_a_merge_without_the_driver_are_named_with_the_fix(
        repo: Workspace, monkeypatch: pytest.MonkeyPatch) -> None:
    repo.manifest("blog.yaml", """
        kind: Project
        name: quantumblog
        environments: {dev: {host: localhost}}
        services: {db: {type: app}}
        datasources: {main: {driver: postgresql, service: db, database: blog, password: "secret:DB_PASSWORD"}}
    """)
    git(repo.root, "config", "--remove-section", "merge.qrm-secrets")  # a clone nobody set up: git's line merge
    branches(repo, BASE, {"quantumblog/DB_PASSWORD": "db-ours"}, {"API_TOKEN": "token-theirs"})
    merge = git(repo.root, "merge", "--no-edit", "theirs", ok=False)
    assert "CONFLICT (content): Merge conflict in secrets.enc" in merge.stdout
    text = (repo.root / "secrets.enc").read_text()
    marker = next(n for n, line in enumerate(text.splitlines(), 1) if line.startswith("<<<<<<< "))

    listed = repo.qrm("secrets", "list")
    assert listed.exit_code == 1
    assert listed.stderr.splitlines() == [
        f"error: secrets.enc: git conflict markers (line {marker}): a git merge ran without qrm's merge driver (it "
        "merges secrets.enc by secret); run `qrm secrets setup-git` once in this clone, then `git checkout --merge "
        "-- secrets.enc` to merge it again with the driver (or `git merge --abort` and merge again), then `git add "
        "secrets.enc` and commit"]
    checked = repo.qrm("validate")
    assert checked.exit_code == 1
    assert f"secrets.enc: git conflict markers (line {marker})" in checked.stderr
    assert "DB_PASSWORD is not set" not in checked.stderr  # the secret is there; the file is what is broken

    # The fix, as the message says it: qrm on git's PATH, set up this clone, merge the file again, commit.
    monkeypatch.setenv("PATH", f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    assert repo.qrm("secrets", "setup-git").exit_code == 0
    git(repo.root, "checkout", "--merge", "--", "secrets.enc")
    assert decrypted(repo.root / "secrets.enc") == {
        "quantumblog/DB_PASSWORD": "db-ours", "API_TOKEN": "token-theirs", "SMTP_PASSWORD": "smtp-0"}
    git(repo.root, "add", "secrets.enc")
    git(repo.root, "commit", "-q", "--no-edit")
    assert repo.qrm("secrets", "list").exit_code == 0


def changed_lines(diff: str) -> list[str]:
    return [line for line in diff.splitlines()
            if line[:1] in "+-" and not line.startswith(("+++", "---"))]


def test_git_diff_shows_the_changed_secret_with_its_value_when_the_key_is_at_hand(
        repo: Workspace, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sops, "utc_now", lambda: "2026-05-01T00:00:00Z")
    change(repo, BASE)
    commit(repo, "base")
    monkeypatch.setattr(sops, "utc_now", lambda: "2026-05-02T00:00:00Z")
    change(repo, {"API_TOKEN": "token-1"})
    raw = git(repo.root, "diff", "--no-textconv", "secrets.enc").stdout
    assert len(changed_lines(raw)) == 8  # the value, its timestamp, lastmodified and the MAC, - and +
    assert changed_lines(git(repo.root, "diff", "secrets.enc").stdout) == [
        "-API_TOKEN: 'token-0'", "+API_TOKEN: 'token-1'"]


def test_git_diff_without_a_key_names_the_changed_secret_and_shows_no_value(
        repo: Workspace, monkeypatch: pytest.MonkeyPatch) -> None:
    change(repo, BASE)
    commit(repo, "base")
    change(repo, {"quantumblog/DB_PASSWORD": "db-1"})
    monkeypatch.delenv("SOPS_AGE_KEY_FILE")  # git and textconv run without any key
    diff = git(repo.root, "diff", "secrets.enc").stdout
    lines = changed_lines(diff)
    assert [line.split(":")[0] for line in lines] == ["-quantumblog/DB_PASSWORD", "+quantumblog/DB_PASSWORD"]
    assert all(line.split(": ", 1)[1].startswith("<encrypted ") for line in lines)
    assert " API_TOKEN: <encrypted " in diff  # unchanged names are context
    for value in ("db-0", "db-1", "token-0", "smtp-0"):
        assert value not in diff


# --- who can read, and with which data key, merges too ------------------------------------------------

def data_key_and_readers(path: Path) -> tuple[bytes, set[str]]:
    encrypted = sops.read_file(path)
    assert encrypted is not None
    return (sops.unwrap_data_key(encrypted, sops.load_identities()),
            {stanza["recipient"] for stanza in encrypted.metadata["age"]})


def can_read(path: Path, identity: str) -> bool:
    encrypted = sops.read_file(path)
    assert encrypted is not None
    try:
        sops.decrypt(encrypted, [pyrage.x25519.Identity.from_str(identity)])
    except SecretsError:
        return False
    return True


@pytest.mark.parametrize("side", ["ours", "theirs"])
def test_a_rotation_on_one_branch_survives_a_change_on_the_other(repo: Workspace, side: str) -> None:
    change(repo, BASE)
    commit(repo, "base")
    base_key, _ = data_key_and_readers(repo.root / "secrets.enc")
    git(repo.root, "switch", "-q", "-c", "theirs")
    if side == "theirs":
        assert repo.qrm("secrets", "rotate").exit_code == 0
    else:
        change(repo, {"API_TOKEN": "token-theirs"})
    commit(repo, "theirs")
    git(repo.root, "switch", "-q", "main")
    if side == "ours":
        assert repo.qrm("secrets", "rotate").exit_code == 0
    else:
        change(repo, {"API_TOKEN": "token-ours"})
    commit(repo, "ours")
    rotated_key, _ = data_key_and_readers(repo.root / "secrets.enc") if side == "ours" else \
        data_key_and_readers_at(repo, "theirs")

    git(repo.root, "merge", "--no-edit", "theirs")
    path = repo.root / "secrets.enc"
    merged_key, _ = data_key_and_readers(path)
    assert merged_key == rotated_key != base_key
    assert decrypted(path)["API_TOKEN"] == f"token-{'theirs' if side == 'ours' else 'ours'}"
    merged_file = sops.read_file(path)
    assert merged_file is not None
    assert merged_file.rotated_at() is not None


def data_key_and_readers_at(ws: Workspace, revision: str) -> tuple[bytes, set[str]]:
    copy = ws.root.parent / f"{revision}.enc"
    copy.write_text(git(ws.root, "show", f"{revision}:secrets.enc").stdout)
    return data_key_and_readers(copy)


@pytest.mark.parametrize("side", ["ours", "theirs"])
def test_a_reader_removed_on_one_branch_stays_removed_after_a_change_on_the_other(
        repo: Workspace, side: str, tmp_path: Path) -> None:
    alice = repo.root.joinpath(".sops.yaml").read_text().split("age: ")[1].strip()
    bob_identity, bob = sops.generate_identity()
    carol_identity, carol = sops.generate_identity()

    def readers(*recipients: str) -> None:
        repo.write(".sops.yaml", f"creation_rules:\n  - path_regex: secrets\\.enc$\n    age: {','.join(recipients)}\n")
        assert repo.qrm("secrets", "updatekeys").exit_code == 0

    change(repo, BASE)
    readers(alice, bob)
    commit(repo, "base: alice and bob read")
    git(repo.root, "switch", "-q", "-c", "theirs")
    if side == "theirs":
        readers(alice, carol)  # bob leaves, carol joins
    else:
        change(repo, {"API_TOKEN": "token-theirs"})
    commit(repo, "theirs")
    git(repo.root, "switch", "-q", "main")
    if side == "ours":
        readers(alice, carol)
    else:
        change(repo, {"API_TOKEN": "token-ours"})
    commit(repo, "ours")

    git(repo.root, "merge", "--no-edit", "theirs")
    path = repo.root / "secrets.enc"
    assert data_key_and_readers(path)[1] == {alice, carol}
    assert not can_read(path, bob_identity)
    assert can_read(path, carol_identity)
    assert decrypted(path)["API_TOKEN"] == f"token-{'theirs' if side == 'ours' else 'ours'}"
