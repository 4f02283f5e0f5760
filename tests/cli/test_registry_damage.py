"""A registry that cannot be read or created, through the CLI as a separate process: every error is
one line on stderr naming the file and the fix, exit code 1, no traceback; and the fix works.

Real damage to real files: random bytes, a truncated database, a directory where the file should
be, a file where a folder should be, and read-only folders (a read-only bind mount in a private
mount namespace, so the test means the same as root, for whom permission bits do not count).
"""

from __future__ import annotations

import json
import random
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.support.workspace import Workspace

REBUILD = "move it away and run qrm apply, which rebuilds it from reports/allocations.yaml"
ELSEWHERE = "or name another registry with --registry URL (or QRM_REGISTRY)"


def applied(workspace: Workspace) -> Path:
    """A workspace with two services applied; its private registry file."""
    workspace.manifest("svc.yaml", "kind: Service\nname: api\nhost: localhost\ntype: app\n---\n"
                                   "kind: Service\nname: web\nhost: localhost\ntype: app\n")
    result = workspace.qrm("apply", "--yes", "--no-refresh", "--no-tests")
    assert result.exit_code == 0, result.output
    db = workspace.root / ".qrm" / "registry.db"
    assert db.is_file()
    return db


def garbage(db: Path) -> None:
    db.write_bytes(random.Random(8).randbytes(8192))


def truncated_to_its_header(db: Path) -> None:
    db.write_bytes(db.read_bytes()[:100])


def truncated_to_half(db: Path) -> None:
    data = db.read_bytes()
    db.write_bytes(data[:len(data) // 2])


def a_directory(db: Path) -> None:
    db.unlink()
    (db / "registry.db").mkdir(parents=True)


DAMAGES = [
    pytest.param(garbage, "is not a SQLite database (corrupt?)", id="random-bytes"),
    pytest.param(truncated_to_its_header, "is damaged (database disk image is malformed)", id="truncated-to-100-bytes"),
    pytest.param(truncated_to_half, "is damaged (database disk image is malformed)", id="truncated-to-half"),
    pytest.param(a_directory, "is a directory, not a SQLite database", id="a-directory"),
]
COMMANDS = [
    pytest.param(("plan", "--no-refresh"), id="plan"),
    pytest.param(("apply", "--yes", "--no-refresh", "--no-tests"), id="apply"),
    pytest.param(("ports", "list"), id="ports-list"),
    pytest.param(("services", "list"), id="services-list"),
]


def damage(db: Path, how: Callable[[Path], None]) -> None:
    for journal in (db.with_name("registry.db-wal"), db.with_name("registry.db-shm")):
        journal.unlink(missing_ok=True)
    how(db)


def assert_one_line(done: subprocess.CompletedProcess[str], expected: str) -> None:
    assert done.returncode == 1, (done.stdout, done.stderr)
    assert "Traceback" not in done.stderr
    assert done.stderr.splitlines() == [f"error: {expected}"], done.stderr


@pytest.mark.parametrize("command", COMMANDS)
@pytest.mark.parametrize(("how", "problem"), DAMAGES)
def test_a_damaged_private_registry_is_one_line_naming_the_file_and_the_rebuild(
        workspace: Workspace, how: Callable[[Path], None], problem: str, command: tuple[str, ...]) -> None:
    db = applied(workspace)
    damage(db, how)
    assert_one_line(workspace.qrm_process(*command), f"{db} {problem}: {REBUILD}")


@pytest.mark.parametrize(("how", "problem"), DAMAGES)
def test_the_fix_the_message_gives_rebuilds_the_registry_with_the_same_ports(
        workspace: Workspace, how: Callable[[Path], None], problem: str) -> None:
    db = applied(workspace)
    before = json.loads(workspace.qrm("ports", "list", "--json").output)
    damage(db, how)
    db.rename(db.with_name("registry.db.damaged"))  # "move it away"

    done = workspace.qrm_process("apply", "--yes", "--no-refresh", "--no-tests")
    assert done.returncode == 0, done.stderr
    assert db.is_file()
    after = workspace.qrm_process("ports", "list", "--json")
    assert after.returncode == 0, after.stderr
    assert json.loads(after.stdout) == before
    assert before["source"] == "registry"
    assert [(a["name"], a["port"]) for a in before["allocations"]] == [("api", 8000), ("web", 8001)]


def test_a_damaged_registry_asked_for_json_is_a_json_document(workspace: Workspace) -> None:
    db = applied(workspace)
    damage(db, garbage)
    done = workspace.qrm_process("ports", "list", "--json")
    assert done.returncode == 1, done.stderr
    assert json.loads(done.stdout) == {"errors": [{"file": None, "line": None, "column": None, "field": None,
                                                   "message": f"{db} is not a SQLite database (corrupt?): {REBUILD}"}]}
    assert "Traceback" not in done.stderr


def test_a_shared_sqlite_registry_that_is_damaged_says_each_workspace_rebuilds_its_rows(
        workspace: Workspace, tmp_path: Path) -> None:
    applied(workspace)
    shared = tmp_path / "shared.db"
    garbage(shared)
    done = workspace.qrm_process("--registry", f"sqlite:///{shared}", "ports", "list")
    assert_one_line(done, f"{shared} is not a SQLite database (corrupt?): move it away and run qrm apply in each "
                          "workspace that uses it, which rebuilds that workspace's rows from its "
                          "reports/allocations.yaml")


def test_a_registry_below_a_file_names_the_file(workspace: Workspace, tmp_path: Path) -> None:
    applied(workspace)
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    done = workspace.qrm_process("--registry", f"sqlite:///{blocker}/qrm/registry.db", "apply", "--yes",
                                 "--no-refresh", "--no-tests")
    assert_one_line(done, f"cannot create the registry {blocker}/qrm/registry.db: {blocker} is a file, not a "
                          f"folder: move it away, {ELSEWHERE}")


def test_a_qrm_file_where_the_state_folder_should_be_is_one_line(workspace: Workspace) -> None:
    applied(workspace)
    state = workspace.root / ".qrm"
    shutil.rmtree(state)
    state.write_text("")
    done = workspace.qrm_process("apply", "--yes", "--no-refresh", "--no-tests")
    assert_one_line(done, f"cannot create the apply lock {state}/apply.lock: {state} is a file, not a folder")


# --- read-only folders ----------------------------------------------------------------------------


def _can_mount_read_only() -> bool:
    if shutil.which("unshare") is None:
        return False
    folder = Path(__file__).parent
    return subprocess.run(["unshare", "-rm", "mount", "--bind", "-o", "ro", folder, folder],
                          capture_output=True).returncode == 0


needs_mount_namespace = pytest.mark.skipif(not _can_mount_read_only(),
                                           reason="needs unshare -rm (user and mount namespaces)")


def qrm_with_read_only(folder: Path, ws: Workspace, *args: str) -> subprocess.CompletedProcess[str]:
    """qrm as a separate process that sees `folder` on a read-only file system (a bind mount in its
    own mount namespace: the folder stays writable for everything else)."""
    script = 'mount --bind -o ro "$1" "$1" && shift && exec "$@"'
    return subprocess.run(["unshare", "-rm", "sh", "-c", script, "sh", str(folder), sys.executable, "-m",
                           "reconciler", "-C", str(ws.root), *args], capture_output=True, text=True, timeout=60)


@needs_mount_namespace
def test_a_registry_folder_that_cannot_be_created_is_one_line(workspace: Workspace, tmp_path: Path) -> None:
    applied(workspace)
    read_only = tmp_path / "read-only"
    read_only.mkdir()
    db = read_only / "qrm" / "registry.db"
    done = qrm_with_read_only(read_only, workspace, "--registry", f"sqlite:///{db}", "apply", "--yes",
                              "--no-refresh", "--no-tests")
    assert_one_line(done, f"cannot create the folder of the registry {db}: Read-only file system: "
                          f"make {read_only} writable, {ELSEWHERE}")
    assert not (read_only / "qrm").exists()


@needs_mount_namespace
@pytest.mark.parametrize("command", [("plan", "--no-refresh"), ("ports", "list")], ids=["plan", "ports-list"])
def test_a_registry_in_a_read_only_folder_is_one_line(workspace: Workspace, command: tuple[str, ...]) -> None:
    db = applied(workspace)
    done = qrm_with_read_only(db.parent, workspace, *command)
    assert_one_line(done, f"{db}: its folder {db.parent} is not writable (unable to open database file; SQLite "
                          f"writes its journal beside the database): make {db.parent} writable, {ELSEWHERE}")


@needs_mount_namespace
def test_apply_in_a_read_only_workspace_is_one_line(workspace: Workspace) -> None:
    applied(workspace)
    done = qrm_with_read_only(workspace.root, workspace, "apply", "--yes", "--no-refresh", "--no-tests")
    lock = workspace.root / ".qrm" / "apply.lock"
    assert_one_line(done, f"cannot create the apply lock {lock}: Read-only file system ({lock})")
