"""Attacks on the files qrm writes (issue 15, items 4, 15 and 18), each reproduced for real.

- A symlink committed to git (git stores symlinks) under generated/, reports/, schemas/ or .qrm/,
  or in place of a file qrm writes, must not take a write or a delete out of the workspace: the
  command refuses with one line naming the symlink, before it writes anything.
- A generated file's mode is part of drift (a `.env` readable by others is repaired to 0600), and
  an apply whose registry commit fails leaves the generated files as they were.
- A full disk is one line naming the file, and the old file is kept.
"""

from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path

import pytest

from reconciler.edges import files, sops
from tests.support.full_disk import full_disk, qrm_with_file_size_limit
from tests.support.git_repos import git
from tests.support.pgserver import PgDatabase
from tests.support.workspace import Workspace

PROJECT = """
    kind: Project
    name: shop
    environments:
      dev:  {host: localhost}
      prod: {host: localhost}
    services:
      web: {type: app}
      db:  {type: database}
    datasources:
      main: {driver: postgresql, service: db, database: shop, username: shop, password: "secret:DB_PASSWORD"}
"""
FILES = (".env", "docker-compose.yml", "nginx.conf", "quantum.config.yaml")
SECRET = "s3cr3t-canary"


@pytest.fixture
def shop(workspace: Workspace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Workspace:
    """A project with a secret in its .env, an age key in SOPS_AGE_KEY_FILE, in a git repository."""
    key, recipient = sops.generate_identity()
    key_file = tmp_path / "keys.txt"
    key_file.write_text(key + "\n")
    monkeypatch.setenv("SOPS_AGE_KEY_FILE", str(key_file))
    workspace.write(".sops.yaml", f"creation_rules:\n  - path_regex: secrets\\.enc$\n    age: {recipient}\n")
    workspace.write(".gitignore", ".qrm/\ngenerated/**/.env\n")
    workspace.manifest("shop.yaml", PROJECT)
    assert workspace.qrm("secrets", "set", "DB_PASSWORD", "--project", "shop", input=SECRET + "\n").exit_code == 0
    git(workspace.root, "init", "-q", "-b", "main")
    git(workspace.root, "add", "-A")
    git(workspace.root, "commit", "-qm", "shop")
    return workspace


def one_error_line(stderr: str) -> str:
    """The single line a failing command prints: no traceback, nothing else."""
    lines = stderr.strip().splitlines()
    assert "Traceback" not in stderr
    assert len(lines) == 1, stderr
    assert lines[0].startswith("error: "), stderr
    return lines[0]


def listing(folder: Path) -> dict[str, bytes]:
    """Every file under a folder with its bytes (the outside target must stay exactly so)."""
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def clone_with_symlink(ws: Workspace, tmp_path: Path, link: str, target: Path) -> Workspace:
    """Commit a symlink `link` -> `target` (as a contributor's branch would carry it) and check out a
    fresh clone of it: git itself makes the symlink there."""
    path = ws.root / link
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.is_dir() and not path.is_symlink():
        subprocess.run(["rm", "-rf", str(path)], check=True)
    elif path.exists() or path.is_symlink():
        path.unlink()
    path.symlink_to(target)
    git(ws.root, "add", "--force", "--", link)  # --force: a .env link is in a git-ignored place
    git(ws.root, "commit", "-qm", f"symlink {link}")
    clone = tmp_path / f"clone-{len(list(tmp_path.glob('clone-*')))}"
    subprocess.run(["git", "clone", "-q", str(ws.root), str(clone)], check=True, capture_output=True)
    assert (clone / link).is_symlink()
    return Workspace(clone)


# --- item 4: symlinks never take a write or a delete out of the workspace ---------------------------

@pytest.mark.parametrize(("link", "shown"), [
    ("generated", "generated"),  # the whole folder
    ("generated/shop", "generated/shop"),  # a project's folder
    ("generated/shop/prod", "generated/shop/prod"),  # one environment's (dev's files must not be written either)
    ("reports", "reports"),  # the lock file's and state.yaml's folder
])
def test_apply_refuses_a_symlinked_folder_and_writes_nothing(shop: Workspace, tmp_path: Path, link: str,
                                                              shown: str) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "keep.txt").write_text("the user's own file\n")
    clone = clone_with_symlink(shop, tmp_path, link, outside)
    before = listing(outside)

    result = clone.qrm_process("apply", "--yes", "--no-refresh")

    assert result.returncode == 1
    line = one_error_line(result.stderr)
    assert line.startswith(f"error: {shown} is a symlink (to {outside})"), line
    assert "nothing was written" in line
    assert listing(outside) == before  # no .env (or anything else) landed outside
    # Nothing written inside either (dev's files neither when only prod's folder is a symlink).
    written = [os.path.join(d, f) for d, _, names in os.walk(clone.root) if ".git" not in d for f in names]
    assert [p for p in written if "/generated/" in p or "/reports/" in p] == []
    # Nothing half-applied: the registry holds no service, so a plan still shows every change.
    assert "+ service.shop-dev-web" in clone.qrm("plan", "--no-refresh").output


@pytest.mark.parametrize("name", [".env", "nginx.conf"])
def test_apply_refuses_a_generated_file_that_is_a_symlink(shop: Workspace, tmp_path: Path, name: str) -> None:
    victim = tmp_path / "victim"
    victim.write_text("the user's own file\n")
    clone = clone_with_symlink(shop, tmp_path, f"generated/shop/dev/{name}", victim)

    result = clone.qrm_process("apply", "--yes", "--no-refresh")

    assert result.returncode == 1
    line = one_error_line(result.stderr)
    assert line.startswith(f"error: generated/shop/dev/{name} is a symlink (to {victim})"), line
    assert victim.read_text() == "the user's own file\n"
    assert (clone.root / "generated" / "shop" / "dev" / name).is_symlink()  # not replaced either


def test_plan_never_reads_a_generated_file_through_a_symlink(shop: Workspace, tmp_path: Path) -> None:
    """A hand-edited file's diff shows its text on disk: through a symlink that would put another
    file's content (here a stand-in for /etc/shadow) into a plan, a log or a PR comment."""
    assert shop.qrm("apply", "--yes", "--no-refresh").exit_code == 0
    victim = tmp_path / "shadow"
    victim.write_text("root:$6$not-for-the-plan$:19000:0:99999:7:::\n")
    conf = shop.root / "generated" / "shop" / "dev" / "nginx.conf"
    conf.unlink()
    conf.symlink_to(victim)

    plan = shop.qrm("plan", "--no-refresh")

    assert "! file.generated/shop/dev/nginx.conf" in plan.output
    assert "not-for-the-plan" not in plan.output
    result = shop.qrm_process("apply", "--yes", "--no-refresh")
    assert result.returncode == 1
    assert one_error_line(result.stderr).startswith(f"error: generated/shop/dev/nginx.conf is a symlink (to {victim})")
    assert "not-for-the-plan" in victim.read_text()


def test_removing_an_environment_never_deletes_through_a_symlink(shop: Workspace, tmp_path: Path) -> None:
    """The files of a removed environment are deleted by apply: with the environment's folder swapped
    for a symlink, the same names outside would go."""
    assert shop.qrm("apply", "--yes", "--no-refresh").exit_code == 0
    outside = tmp_path / "outside"
    outside.mkdir()
    for name in FILES:
        (outside / name).write_text(f"the user's own {name}\n")
    before = listing(outside)
    prod = shop.root / "generated" / "shop" / "prod"
    subprocess.run(["rm", "-rf", str(prod)], check=True)
    prod.symlink_to(outside)
    shop.manifest("shop.yaml", PROJECT.replace("      prod: {host: localhost}\n", ""))

    result = shop.qrm_process("apply", "--yes", "--no-refresh")

    assert result.returncode == 1
    line = one_error_line(result.stderr)
    assert line.startswith(f"error: generated/shop/prod is a symlink (to {outside})"), line
    assert "refuses to delete" in line and "nothing was deleted" in line
    assert listing(outside) == before
    assert "- service.shop-prod-web" in shop.qrm("plan", "--no-refresh").output  # the registry kept prod


@pytest.mark.parametrize(("command", "link", "is_folder"), [
    (("plan", "--no-refresh", "--out", "{ws}/plan.json"), "plan.json", False),  # the saved plan file
    (("schema",), "schemas", True),
    (("validate",), ".qrm", True),  # the registry, locks and caches
    (("apply", "--yes", "--no-refresh"), ".qrm/cache", True),
    (("apply", "--yes", "--no-refresh"), "reports/state.yaml", False),
])
def test_every_writer_refuses_a_symlink(shop: Workspace, tmp_path: Path, command: tuple[str, ...], link: str,
                                        is_folder: bool) -> None:
    outside = tmp_path / "outside"
    if is_folder:
        outside.mkdir()
    else:
        outside.write_text("the user's own file\n")
    before = listing(outside) if is_folder else {"": outside.read_bytes()}
    if link.startswith(".qrm"):  # .qrm/ is git-ignored: planted in the clone itself
        clone = shop
        subprocess.run(["rm", "-rf", str(shop.root / link)], check=True)
        (shop.root / link).parent.mkdir(parents=True, exist_ok=True)
        (shop.root / link).symlink_to(outside)
    else:
        clone = clone_with_symlink(shop, tmp_path, link, outside)

    result = clone.qrm_process(*(part.format(ws=clone.root) for part in command))

    assert result.returncode == 1, result.stdout
    line = one_error_line(result.stderr)
    assert line.startswith(f"error: {link} is a symlink (to {outside})"), line
    assert (listing(outside) if is_folder else {"": outside.read_bytes()}) == before


REPORTING = """
    kind: Project
    name: shop
    source: app
    environments:
      dev: {host: localhost, url: "http://127.0.0.1:9"}
    services:
      web: {type: app}
    ---
    kind: TestSuite
    name: gate
    project: shop
    cases:
      - {id: home, name: home, type: smoke, request: {path: /}, expect: [{status: 200}]}
"""


@pytest.mark.parametrize(("command", "link"), [
    (("scan",), "reports/components"),
    (("tests", "run", "gate"), "reports/tests"),  # checked before a case runs
    (("tests", "run", "gate"), "reports/tests/gate/history.jsonl"),
    (("tests", "generate", "shop"), "reports/generated-cases"),  # the suite file is not written either
    (("tests", "generate", "shop"), "manifests/tests"),
    (("services", "health"), "reports"),
    (("apply", "--yes", "--no-refresh", "--commit", "--no-tests"), "reports/summary.md"),
])
def test_every_report_writer_refuses_a_symlink(workspace: Workspace, tmp_path: Path, command: tuple[str, ...],
                                               link: str) -> None:
    workspace.manifest("shop.yaml", REPORTING)
    workspace.write("app/components/index.q", '<q:component name="Index"><h1>Home</h1></q:component>\n')
    workspace.write(".gitignore", ".qrm/\n")
    git(workspace.root, "init", "-q", "-b", "main")
    git(workspace.root, "add", "-A")
    git(workspace.root, "commit", "-qm", "shop")
    assert workspace.qrm("apply", "--yes", "--no-refresh", "--no-tests").exit_code == 0
    outside = tmp_path / "outside"
    is_folder = not link.endswith((".md", ".jsonl"))
    if is_folder:
        outside.mkdir()
    else:
        outside.write_text("the user's own file\n")
    before = listing(outside) if is_folder else {"": outside.read_bytes()}
    clone = clone_with_symlink(workspace, tmp_path, link, outside)

    result = clone.qrm_process(*command)

    assert result.returncode == 1, result.stdout
    line = one_error_line(result.stderr)
    assert line.startswith(f"error: {link} is a symlink (to {outside})"), line
    assert (listing(outside) if is_folder else {"": outside.read_bytes()}) == before
    if command[:2] == ("tests", "generate"):
        assert not (clone.root / "manifests" / "tests" / "shop.yaml").is_file()
    if command[0] == "apply":  # refused before it applied anything
        assert not (clone.root / "generated").exists()
        assert "+ service.shop-dev-web" in clone.qrm("plan", "--no-refresh").output


@pytest.mark.parametrize("depth", range(4))
def test_write_atomic_refuses_a_symlink_at_any_depth(tmp_path: Path, depth: int) -> None:
    root, outside = tmp_path / "ws", tmp_path / "outside"
    parts = ["reports", "tests", "suite", "dev.yaml"]
    (root / "/".join(parts[:-1])).mkdir(parents=True)
    outside.mkdir()
    link = root / "/".join(parts[:depth + 1])
    if link.is_dir():
        subprocess.run(["rm", "-rf", str(link)], check=True)
    link.symlink_to(outside)
    target = root / "/".join(parts)
    with pytest.raises(files.OutsideWorkspaceError, match=f"^{'/'.join(parts[:depth + 1])} is a symlink"):
        files.write_atomic(target, "x", root=root)
    with pytest.raises(files.OutsideWorkspaceError):
        files.remove(target, root=root)
    assert list(outside.iterdir()) == []


# --- item 15: modes are drift; a failed apply leaves the files as they were --------------------------

@pytest.mark.parametrize(("name", "mode", "restored"), [
    (".env", 0o644, 0o600),  # readable by every user of the machine: it holds the password
    (".env", 0o640, 0o600),
    ("nginx.conf", 0o600, 0o644),  # qrm writes the others 0644
    ("docker-compose.yml", 0o666, 0o644),
])
def test_a_changed_mode_is_drift_and_apply_restores_it(shop: Workspace, name: str, mode: int,
                                                       restored: int) -> None:
    assert shop.qrm("apply", "--yes", "--no-refresh").exit_code == 0
    path = shop.root / "generated" / "shop" / "dev" / name
    content = path.read_bytes()
    path.chmod(mode)

    plan = shop.qrm("plan", "--no-refresh", "--detailed-exitcode")
    assert plan.exit_code == 2, plan.output
    assert f"file.generated/shop/dev/{name}" in plan.output
    assert f"mode {mode:04o}, not {restored:04o}" in plan.output
    assert SECRET not in plan.output

    assert shop.qrm("apply", "--yes", "--no-refresh").exit_code == 0
    assert stat.S_IMODE(path.stat().st_mode) == restored
    assert path.read_bytes() == content
    assert shop.qrm("plan", "--no-refresh", "--detailed-exitcode").exit_code == 0


def test_a_failed_registry_commit_leaves_the_generated_files_as_they_were(shop: Workspace,
                                                                          pg_database: PgDatabase) -> None:
    """A real fault: the PostgreSQL registry refuses the apply's commit (its role lost the right to
    insert into the apply history, as when an administrator revokes it or the database turns
    read-only mid-apply). Plan (reads only) still works; the commit fails after the files were written."""
    shop.write("qrm.yaml", f"registry: {pg_database.url_with_password}\n")
    assert shop.qrm("apply", "--yes", "--no-refresh").exit_code == 0
    generated = shop.root / "generated"
    before = {path: (data, stat.S_IMODE((generated / path).stat().st_mode))
              for path, data in listing(generated).items()}
    assert shop.qrm("secrets", "set", "DB_PASSWORD", "--project", "shop", input="new-password\n").exit_code == 0
    shop.manifest("shop.yaml", PROJECT.replace("      db:  {type: database}\n",
                                               "      db:  {type: database}\n      cache: {type: app}\n"))
    server = pg_database.server
    server.psql(f"REVOKE INSERT ON ALL TABLES IN SCHEMA public FROM {server.role}", database=pg_database.name)

    result = shop.qrm_process("apply", "--yes", "--no-refresh")

    assert result.returncode == 1
    assert "permission denied" in one_error_line(result.stderr)
    after = {path: (data, stat.S_IMODE((generated / path).stat().st_mode)) for path, data in listing(generated).items()}
    assert after == before  # the old password, no file of the new service, the same modes
    server.psql(f"GRANT INSERT ON ALL TABLES IN SCHEMA public TO {server.role}", database=pg_database.name)
    assert shop.qrm("apply", "--yes", "--no-refresh").exit_code == 0
    assert "new-password" in (generated / "shop" / "dev" / ".env").read_text()


def test_a_write_failing_half_way_puts_back_the_files_written_before_it(shop: Workspace,
                                                                      pg_database: PgDatabase) -> None:
    """A real fault in the middle of apply's writes: the disk fills after dev's .env was rewritten with
    the new password and before prod's (RLIMIT_FSIZE between the two files' sizes: the kernel refuses
    the larger one; the registry is PostgreSQL, whose writes no file size limit touches)."""
    shop.write("qrm.yaml", f"registry: {pg_database.url_with_password}\n")
    shop.manifest("shop.yaml", PROJECT.replace("prod: {host: localhost}",
                                               "prod: {host: localhost, domain: shop.example.com}"))
    assert shop.qrm("apply", "--yes", "--no-refresh").exit_code == 0
    generated = shop.root / "generated"
    before = {path: (data, stat.S_IMODE((generated / path).stat().st_mode))
              for path, data in listing(generated).items()}
    new = "n3w-p4ssw0rd!"
    assert len(new) == len(SECRET)  # the rewritten files keep their sizes
    assert shop.qrm("secrets", "set", "DB_PASSWORD", "--project", "shop", input=new + "\n").exit_code == 0
    dev, prod = (len(before[f"shop/{env}/.env"][0]) for env in ("dev", "prod"))
    assert dev < prod

    result = qrm_with_file_size_limit(shop.root, (dev + prod) // 2, "apply", "--yes", "--no-refresh")

    assert result.returncode == 1
    line = one_error_line(result.stderr)
    assert line.startswith(f"error: cannot write generated/shop/prod/.env: {os.strerror(27)}"), line
    after = {path: (data, stat.S_IMODE((generated / path).stat().st_mode)) for path, data in listing(generated).items()}
    assert after == before  # dev/.env holds the old password again
    assert shop.qrm("apply", "--yes", "--no-refresh").exit_code == 0
    assert new in (generated / "shop" / "dev" / ".env").read_text()


# --- item 18: a full disk is one line, and the old file is kept ---------------------------------------

REGISTRY_FILE = ".qrm/registry.db"


@pytest.mark.parametrize(("command", "stdin", "registry_elsewhere", "file"), [
    (("secrets", "set", "DB_PASSWORD", "--project", "shop"), "another-password\n", False, "secrets.enc"),
    (("apply", "--yes", "--no-refresh"), None, False, REGISTRY_FILE),  # the lock file, then the registry
    (("apply", "--yes", "--no-refresh"), None, True, "generated/shop/dev/.env"),
    (("services", "health"), None, True, "reports/health.yaml"),
])
def test_a_full_disk_is_one_line_naming_the_file_and_the_old_file_stays(
        shop: Workspace, tmp_path: Path, command: tuple[str, ...], stdin: str | None, registry_elsewhere: bool,
        file: str) -> None:
    """tests/support/full_disk.py: the workspace on a tmpfs filled to the last byte (ENOSPC), or, where
    the container may not mount, under RLIMIT_FSIZE 0 (EFBIG); the kernel refuses the writes either way.
    `registry_elsewhere`: the SQLite registry on another (not full) disk, so the workspace's own
    writes are the first to fail (under RLIMIT_FSIZE, which holds for every file, the registry's are)."""
    if registry_elsewhere:
        shop.write("qrm.yaml", f"registry: sqlite:///{tmp_path / 'registry.db'}\n")
    assert shop.qrm("apply", "--yes", "--no-refresh").exit_code == 0
    assert shop.qrm("services", "health").exit_code in (0, 3)
    # A change for apply to write: a new password.
    assert shop.qrm("secrets", "set", "DB_PASSWORD", "--project", "shop", input="changed\n").exit_code == 0
    (shop.root / "generated" / "shop" / "dev" / ".env").unlink()  # and a file to restore
    with full_disk(shop.root, tmp_path) as disk:
        before = listing(disk.root)

        result = disk.qrm(*command, input=stdin)

        assert result.returncode == 1, result.stdout
        line = one_error_line(result.stderr)
        if registry_elsewhere and disk.mechanism == "rlimit":
            file = "registry.db"
        assert file in line, line
        if "registry.db" in file:  # SQLite's own words for a failing write
            assert "disk I/O error" in line or "database or disk is full" in line, line
        else:
            assert os.strerror(28) in line or os.strerror(27) in line, line  # ENOSPC (tmpfs) or EFBIG (rlimit)
        after = listing(disk.root)
        assert {p: d for p, d in after.items() if not p.startswith((".qrm/", ".filler"))} == {
            p: d for p, d in before.items() if not p.startswith((".qrm/", ".filler"))}
