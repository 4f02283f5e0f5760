"""`qrm init DIR`: a new workspace that plans and applies as it is, and refuses to scaffold twice."""

from __future__ import annotations

import json
import shlex
import subprocess
from pathlib import Path

import jsonschema
import pytest
import yaml
from click.testing import CliRunner, Result

from reconciler.cli import cli
from reconciler.core.schema import MODELINE, json_schemas
from tests.support.paths import REPO
from tests.support.workspace import Workspace

README = REPO / "README.md"


def qrm(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


@pytest.fixture
def new(tmp_path: Path) -> Workspace:
    root = tmp_path / "Team Fleet"
    result = qrm("init", str(root))
    assert result.exit_code == 0, result.output
    return Workspace(root)


def test_init_creates_settings_an_example_manifest_gitignore_and_schemas(new: Workspace) -> None:
    root = new.root
    assert sorted(p.relative_to(root).as_posix() for p in root.rglob("*")
                  if p.is_file() and ".git" not in p.relative_to(root).parts) == sorted(
        ["qrm.yaml", "manifests/services.yaml", ".gitignore", ".gitattributes", ".sops.yaml",
         *(f"schemas/{name}" for name in json_schemas())])
    assert yaml.safe_load((root / "qrm.yaml").read_text()) == {"name": "team-fleet"}
    example = (root / "manifests" / "services.yaml").read_text()
    assert example.splitlines()[0] == MODELINE == "# yaml-language-server: $schema=../schemas/manifest.schema.json"
    assert ".qrm/" in (root / ".gitignore").read_text().splitlines()
    for name, content in json_schemas().items():
        assert (root / "schemas" / name).read_text() == content


def test_init_says_what_it_created_and_what_to_run_next(tmp_path: Path) -> None:
    root = tmp_path / "fleet"
    result = qrm("init", str(root))
    assert result.exit_code == 0
    assert f"created {root / 'qrm.yaml'}" in result.output
    assert f"created {root / 'manifests' / 'services.yaml'}" in result.output
    assert f"Next: qrm -C {root} plan" in result.output


def test_the_scaffolded_files_fit_their_schemas(new: Workspace) -> None:
    schemas = new.root / "schemas"
    settings = jsonschema.Draft202012Validator(json.loads((schemas / "qrm.schema.json").read_text()))
    assert settings.is_valid(yaml.safe_load((new.root / "qrm.yaml").read_text()))
    manifest = jsonschema.Draft202012Validator(json.loads((schemas / "manifest.schema.json").read_text()))
    for document in yaml.safe_load_all((new.root / "manifests" / "services.yaml").read_text()):
        assert manifest.is_valid(document)


def test_a_new_workspace_validates_plans_and_applies_its_example_service(new: Workspace) -> None:
    valid = qrm("-C", str(new.root), "validate")
    assert valid.exit_code == 0, valid.output
    assert valid.output.startswith("Valid: 1 services")

    planned = qrm("-C", str(new.root), "plan")
    assert planned.exit_code == 0, planned.output
    assert "+ service.hello" in planned.output
    assert "Plan: 1 to create, 0 to update, 0 to delete, 0 to repair." in planned.output

    applied = qrm("-C", str(new.root), "apply", "--yes")
    assert applied.exit_code == 0, applied.output
    assert "Apply complete: 1 created" in applied.output
    assert '"name": "hello"' in new.lockfile.read_text()

    again = qrm("-C", str(new.root), "plan", "--detailed-exitcode")
    assert again.exit_code == 0, again.output


def test_init_refuses_a_workspace_that_already_has_manifests(new: Workspace) -> None:
    example = new.root / "manifests" / "services.yaml"
    example.write_text(example.read_text().replace("name: hello", "name: my-service"))
    before = {p: p.read_bytes() for p in new.root.rglob("*") if p.is_file()}

    second = qrm("init", str(new.root))

    assert second.exit_code == 1
    assert second.stderr.strip() == (f"error: {new.root / 'manifests'} already has manifests; "
                                     "qrm init only scaffolds a new workspace")
    assert {p: p.read_bytes() for p in new.root.rglob("*") if p.is_file()} == before


def test_init_in_an_existing_repository_keeps_its_gitignore(tmp_path: Path) -> None:
    root = tmp_path / "repo"
    root.mkdir()
    (root / ".gitignore").write_text("node_modules/\n*.log")
    (root / "README.md").write_text("# ops\n")
    assert qrm("init", str(root)).exit_code == 0
    lines = (root / ".gitignore").read_text().splitlines()
    assert lines[:2] == ["node_modules/", "*.log"]
    assert ".qrm/" in lines
    assert (root / "README.md").read_text() == "# ops\n"
    assert qrm("init", str(root)).exit_code == 1
    assert (root / ".gitignore").read_text().count(".qrm/") == 1


@pytest.mark.parametrize("command", [("validate",), ("plan",), ("apply", "--yes")], ids=" ".join)
def test_an_unknown_setting_in_qrm_yaml_is_named_with_its_line(new: Workspace, command: tuple[str, ...]) -> None:
    new.write("qrm.yaml", """
        # qrm settings
        name: team-fleet
        registyr: postgresql://qrm@db.example/qrm
    """)
    result = qrm("-C", str(new.root), *command)
    assert result.exit_code == 1, result.output
    assert ("error: qrm.yaml:3:1: registyr: unknown setting 'registyr'; expected one of: name, registry, "
            "lock_timeout, commit_author, generated_policy, tokens, public_url") in result.stderr.splitlines()
    assert not new.lockfile.exists()


def test_a_bad_setting_value_in_qrm_yaml_says_what_was_expected(new: Workspace) -> None:
    new.write("qrm.yaml", """
        name: team-fleet
        lock_timeout: -5
    """)
    result = qrm("-C", str(new.root), "validate")
    assert result.exit_code == 1
    assert "error: qrm.yaml:2:1: lock_timeout: expected a number no less than 0 (got -5)" in result.stderr


# --- git: init makes (or joins) a repository set up for secrets.enc; setup-git does it for any clone ------

def git(root: Path, *args: str) -> str:
    done = subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout


def local_config(root: Path) -> dict[str, str]:
    """This clone's own git config entries about qrm (never the global or system ones)."""
    done = subprocess.run(["git", "-C", str(root), "config", "--local", "--get-regexp", r"qrm"],
                          capture_output=True, text=True, timeout=60)
    return dict(line.split(" ", 1) for line in done.stdout.splitlines())


def readme_git_setup() -> tuple[str, dict[str, str]]:
    """The .gitattributes line and the `git config` lines of README's secrets section, as a user copies them."""
    text = README.read_text()
    attributes = text.split("# .gitattributes\n", 1)[1].split("\n", 1)[0]
    configs = {}
    for line in text.splitlines():
        if line.startswith("git config ") and "qrm-secrets" in line:
            _, _, key, value = shlex.split(line)
            configs[key] = value
    return attributes, configs


def test_init_makes_a_git_repository_set_up_as_the_readme_says(new: Workspace) -> None:
    attributes, configs = readme_git_setup()
    assert git(new.root, "rev-parse", "--show-toplevel").strip() == str(new.root)
    assert (new.root / ".gitattributes").read_text().splitlines() == [attributes]
    assert local_config(new.root) == configs == {
        "merge.qrm-secrets.name": "qrm secrets.enc merge",
        "merge.qrm-secrets.driver": "qrm secrets merge-driver %O %A %B",
        "diff.qrm-secrets.textconv": "qrm secrets textconv"}
    assert git(new.root, "check-attr", "merge", "diff", "--", "secrets.enc").splitlines() == [
        "secrets.enc: merge: qrm-secrets", "secrets.enc: diff: qrm-secrets"]


def test_init_inside_a_repository_joins_it(tmp_path: Path) -> None:
    outer = tmp_path / "ops"
    outer.mkdir()
    git(outer, "init", "-q")
    result = qrm("init", str(outer / "fleet"))
    assert result.exit_code == 0, result.output
    assert "created a git repository" not in result.output
    assert not (outer / "fleet" / ".git").exists()  # no repository nested in the team's repository
    assert git(outer / "fleet", "rev-parse", "--show-toplevel").strip() == str(outer)
    assert "merge.qrm-secrets.driver" in local_config(outer)


def test_setup_git_sets_up_a_fresh_clone_once(new: Workspace, tmp_path: Path) -> None:
    git(new.root, "add", ".")
    git(new.root, "-c", "user.name=Dev", "-c", "user.email=dev@example.com", "commit", "-qm", "workspace")
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", str(new.root), str(clone)], check=True, timeout=60)
    assert local_config(clone) == {}  # git config is per clone: a clone has none of it

    first = qrm("-C", str(clone), "secrets", "setup-git")
    assert first.exit_code == 0, first.output
    assert first.output.splitlines() == [
        "configured git's qrm-secrets merge driver and textconv in this clone "
        "(merge.qrm-secrets.name, merge.qrm-secrets.driver, diff.qrm-secrets.textconv)"]
    assert local_config(clone) == readme_git_setup()[1]
    assert git(clone, "status", "--porcelain") == ""  # the committed .gitattributes was already right

    again = qrm("-C", str(clone), "secrets", "setup-git")
    assert again.exit_code == 0
    assert again.output.startswith("This clone is already set up")
    assert local_config(clone) == readme_git_setup()[1]


def test_setup_git_adds_the_attribute_to_an_existing_gitattributes(new: Workspace) -> None:
    (new.root / ".gitattributes").write_text("*.png binary")
    result = qrm("-C", str(new.root), "secrets", "setup-git")
    assert result.exit_code == 0, result.output
    assert (new.root / ".gitattributes").read_text() == "*.png binary\nsecrets.enc merge=qrm-secrets diff=qrm-secrets\n"


def test_setup_git_outside_a_repository_says_so_and_changes_nothing(tmp_path: Path) -> None:
    (tmp_path / "manifests").mkdir()  # a workspace, but not (yet) in git
    result = qrm("-C", str(tmp_path), "secrets", "setup-git")
    assert result.exit_code == 1
    assert result.stderr.strip() == f"error: {tmp_path} is not in a git repository; clone it, or run `git init` first"
    assert [p.name for p in tmp_path.iterdir()] == ["manifests"]
