"""PR checks: `qrm plan` in a fresh clone of an applied, committed workspace, with no key, no hosts and no
registry, reads what was applied from the committed reports and shows only what the pull request changes.

Real git repositories in tmp_path (clones, branches, commits), the bundled example project, no mocks.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from reconciler.core.report import MARKDOWN_LIMIT
from reconciler.flows.init import GITIGNORE
from tests.support.paths import REPO
from tests.support.workspace import Workspace

DEMO_KEY = REPO / "examples" / "demo-age-key.txt"
WORKFLOW = REPO / "examples" / "github-actions" / "qrm.yml"
ENVS = ("dev", "staging", "prod")
FILES = (".env", "docker-compose.yml", "nginx.conf", "quantum.config.yaml")
NEW_SECRET = "n3w-Pr0d-pa55word-that-must-never-show"


def git(cwd: Path, *args: str) -> str:
    done = subprocess.run(
        ["git", "-c", "user.name=qrm tests", "-c", "user.email=qrm@tests.invalid", "-c", "commit.gpgsign=false",
         "-c", "init.defaultBranch=main", *args],
        cwd=cwd, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, f"git {' '.join(args)}: {done.stderr}"
    return done.stdout


def commit_all(root: Path, message: str) -> None:
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", message)


def clone(source: Path, target: Path, branch: str = "main") -> Workspace:
    git(source.parent, "clone", "-q", "--branch", branch, str(source), str(target))
    return Workspace(target)


def with_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SOPS_AGE_KEY_FILE", str(DEMO_KEY))


def without_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SOPS_AGE_KEY_FILE", raising=False)
    monkeypatch.delenv("SOPS_AGE_KEY", raising=False)


def env_files(env: str) -> set[str]:
    return {f"file.generated/quantumblog/{env}/{name}" for name in FILES}


def plan_json(ws: Workspace) -> dict[str, Any]:
    result = ws.qrm("plan", "--no-refresh", "--json")
    assert result.exit_code == 0, result.output
    document: dict[str, Any] = json.loads(result.output)
    return document


def addresses(document: dict[str, Any]) -> set[str]:
    return {c["address"] for c in document["changes"]}


@pytest.fixture
def applied(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Workspace:
    """The bundled example, applied (with the demo key), scanned and committed on main, as CI would have left it."""
    root = tmp_path / "origin"
    root.mkdir()
    for name in ("manifests", "examples"):
        shutil.copytree(REPO / name, root / name)
    for name in ("secrets.enc", ".sops.yaml"):
        shutil.copy(REPO / name, root / name)
    (root / ".gitignore").write_text(GITIGNORE)  # what `qrm init` writes: .qrm/ and generated/**/.env
    ws = Workspace(root)
    git(root, "init", "-q")
    with_key(monkeypatch)
    result = ws.qrm("apply", "--yes", "--no-refresh", "--no-tests")
    assert result.exit_code == 0, result.output
    without_key(monkeypatch)
    assert ws.qrm("scan").exit_code == 0
    commit_all(root, "applied")
    tracked = set(git(root, "ls-files").split())
    assert {"reports/allocations.yaml", "reports/state.yaml", "reports/components/quantumblog.yaml",
            "generated/quantumblog/prod/nginx.conf"} <= tracked
    assert not any(p.endswith(".env") or p.startswith(".qrm/") for p in tracked), tracked
    return ws


def pull_request(applied: Workspace, tmp_path: Path, name: str, change: Any) -> Workspace:
    """A branch with `change(worktree)` committed, then a fresh clone of that branch (no registry, no .env)."""
    work = clone(applied.root, tmp_path / f"{name}-work")
    git(work.root, "checkout", "-q", "-b", name)
    change(work)
    commit_all(work.root, name)
    git(work.root, "push", "-q", "origin", name)
    return clone(applied.root, tmp_path / f"{name}-check", branch=name)


# --- (a) nothing changed -------------------------------------------------------------------------------------

def test_a_fresh_clone_of_an_applied_workspace_plans_no_changes_without_key_or_registry(
        applied: Workspace, tmp_path: Path) -> None:
    check = clone(applied.root, tmp_path / "check")
    assert not (check.root / "generated/quantumblog/prod/.env").exists()  # git-ignored: the clone has none
    assert (check.root / "generated/quantumblog/prod/nginx.conf").exists()

    result = check.qrm("plan", "--no-refresh", "--detailed-exitcode")
    assert result.exit_code == 0, result.output
    assert "Recorded state: the committed reports (no registry here)" in result.output
    assert "No changes." in result.output
    markdown = check.qrm("plan", "--no-refresh", "--markdown", "--detailed-exitcode")
    assert markdown.exit_code == 0, markdown.output
    assert "No changes." in markdown.output and "<details>" not in markdown.output
    document = plan_json(check)
    assert document["recorded_from"] == "reports"
    assert document["changes"] == [] and document["components"] == []
    assert not (check.root / ".qrm" / "registry.db").exists()  # plan never creates a registry

    # The working copy it was cloned from has a registry: the same plan, recorded from it.
    assert plan_json(applied)["recorded_from"] == "registry"
    assert plan_json(applied)["changes"] == []


def test_the_state_report_holds_fingerprints_and_masked_texts_never_a_value_or_a_hash_of_env_bytes(
        applied: Workspace, monkeypatch: pytest.MonkeyPatch) -> None:
    with_key(monkeypatch)
    value = applied.qrm("secrets", "get", "BLOG_DB_PASSWORD", "--project", "quantumblog", "--env", "prod").output
    value = value.rstrip("\n")
    assert value
    report = (applied.root / "reports/state.yaml").read_text()
    assert value not in report
    env_bytes = (applied.root / "generated/quantumblog/prod/.env").read_bytes()
    assert hashlib.sha256(env_bytes).hexdigest() not in report  # the written .env (with the value) is never hashed
    assert "<secret quantumblog/prod/BLOG_DB_PASSWORD " in report  # its masked text is there
    data = yaml.safe_load(report)
    assert [s["name"] for s in data["secrets"]] == ["quantumblog/BLOG_DB_PASSWORD", "quantumblog/prod/BLOG_DB_PASSWORD"]
    assert len(data["files"]) == 12 and sorted(data["env_files"]) == [f"generated/quantumblog/{e}/.env"
                                                                      for e in sorted(ENVS)]
    assert not re.search(r"\d{4}-\d\d-\d\dT", report)  # no timestamps: an apply that changes nothing keeps it


# --- (b) a service added and a port pinned -------------------------------------------------------------------

ADDED = """
---
kind: Service
name: reports-api
host: localhost
type: app
protocol: http
"""


def test_a_pr_that_adds_a_service_and_pins_a_port_shows_exactly_those_and_the_files_of_that_environment(
        applied: Workspace, tmp_path: Path) -> None:
    def change(work: Workspace) -> None:
        platform = work.root / "manifests/platform.yaml"
        platform.write_text(platform.read_text() + ADDED)
        project = work.root / "manifests/quantumblog.yaml"
        text = project.read_text()
        pinned = text.replace("staging: {host: localhost}", "staging: {host: localhost, ports: {web: 8010}}")
        assert pinned != text
        project.write_text(pinned)

    check = pull_request(applied, tmp_path, "pin-staging", change)
    document = plan_json(check)
    assert addresses(document) == {"service.reports-api", "service.quantumblog-staging-web"} | env_files("staging")
    by_address = {c["address"]: c for c in document["changes"]}
    assert by_address["service.reports-api"]["action"] == "create"
    web = by_address["service.quantumblog-staging-web"]
    assert (web["action"], web["after"]["port"]) == ("update", 8010)
    assert all(by_address[a]["action"] == "update" for a in env_files("staging"))
    assert "8010" in by_address["file.generated/quantumblog/staging/nginx.conf"]["after"]["diff"]
    assert check.qrm("plan", "--no-refresh", "--detailed-exitcode").exit_code == 2


# --- (c) a secret changed ------------------------------------------------------------------------------------

def test_a_pr_that_changes_a_secret_shows_it_and_that_environments_env_and_never_the_value(
        applied: Workspace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with_key(monkeypatch)
    old = applied.qrm("secrets", "get", "BLOG_DB_PASSWORD", "--project", "quantumblog", "--env", "prod").output
    old = old.rstrip("\n")
    assert old

    def change(work: Workspace) -> None:
        done = work.qrm("secrets", "set", "BLOG_DB_PASSWORD", "--project", "quantumblog", "--env", "prod",
                        input=NEW_SECRET + "\n")
        assert done.exit_code == 0, done.output

    check = pull_request(applied, tmp_path, "rotate-prod-password", change)
    without_key(monkeypatch)
    document = plan_json(check)
    name = "quantumblog/prod/BLOG_DB_PASSWORD"
    assert addresses(document) == {f"secret.{name}", "file.generated/quantumblog/prod/.env"}
    text = check.qrm("plan", "--no-refresh").output
    assert re.search(rf"^\s*~ secret\.{re.escape(name)}\b.*\(secret changed\)", text, re.M), text
    markdown = check.qrm("plan", "--no-refresh", "--markdown").output
    json_text = check.qrm("plan", "--no-refresh", "--json").output
    for output in (text, markdown, json_text):
        assert NEW_SECRET not in output and old not in output
        assert f"<secret {name} " in output  # the .env diff shows the placeholder with the new fingerprint


# --- (d) a component changed ---------------------------------------------------------------------------------

def test_a_pr_that_changes_one_component_lists_only_that_component(applied: Workspace, tmp_path: Path) -> None:
    def change(work: Workspace) -> None:
        login = work.root / "examples/quantumblog/components/login.q"
        login.write_text(login.read_text() + "\n<!-- a changed login page -->\n")

    check = pull_request(applied, tmp_path, "login", change)
    document = plan_json(check)
    assert document["changes"] == []
    assert document["components"] == [{"project": "quantumblog", "path": "components/login.q", "change": "changed",
                                       "symbol": "~"}]
    assert check.qrm("plan", "--no-refresh", "--detailed-exitcode").exit_code == 0  # information only
    assert "~ quantumblog: components/login.q" in check.qrm("plan", "--no-refresh", "--markdown").output


# --- (e) an older workspace without reports/state.yaml -------------------------------------------------------

def test_without_a_state_report_plan_still_works_and_plans_secrets_and_files_as_new(
        applied: Workspace, tmp_path: Path) -> None:
    git(applied.root, "rm", "-q", "reports/state.yaml")
    commit_all(applied.root, "as an older qrm left it")
    check = clone(applied.root, tmp_path / "check")
    document = plan_json(check)
    assert document["recorded_from"] == "reports"
    actions = {c["address"]: c["action"] for c in document["changes"]}
    assert actions == {"secret.quantumblog/BLOG_DB_PASSWORD": "create", "secret.quantumblog/prod/BLOG_DB_PASSWORD":
                       "create", **{a: "create" for env in ENVS for a in env_files(env)}}
    assert check.qrm("plan", "--no-refresh", "--detailed-exitcode").exit_code == 2
    # Where the registry is (the working copy), the missing report is repaired by the next apply.
    assert addresses(plan_json(applied)) == {"file.reports/state.yaml"}


def test_an_emptied_registry_is_restored_from_the_reports_rewriting_only_a_missing_env(
        applied: Workspace, monkeypatch: pytest.MonkeyPatch) -> None:
    shutil.rmtree(applied.root / ".qrm")
    (applied.root / "generated/quantumblog/dev/.env").unlink()
    with_key(monkeypatch)
    result = applied.qrm("apply", "--yes", "--no-refresh", "--no-tests", "--json")
    assert result.exit_code == 0, result.output
    document = json.loads(result.output)
    assert document["recorded_from"] == "lockfile"
    assert addresses(document) == {"registry", "file.generated/quantumblog/dev/.env"}
    assert git(applied.root, "status", "--porcelain") == ""  # no committed file was rewritten
    assert (applied.root / "generated/quantumblog/dev/.env").exists()
    again = applied.qrm("plan", "--no-refresh", "--detailed-exitcode")
    assert again.exit_code == 0, again.output


def test_a_plan_saved_in_a_clone_without_registry_is_applied_there_restoring_the_registry(
        applied: Workspace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    check = clone(applied.root, tmp_path / "check")
    plan_file = tmp_path / "clone.plan.json"
    saved = check.qrm("plan", "--no-refresh", "--out", str(plan_file))
    assert saved.exit_code == 0 and json.loads(plan_file.read_text())["recorded_from"] == "reports"
    with_key(monkeypatch)
    result = check.qrm("apply", str(plan_file), "--no-tests", "--json")
    assert result.exit_code == 0, result.output
    # It also makes the repairs only an existing registry shows: the registry, and each missing .env.
    assert addresses(json.loads(result.output)) == {"registry"} | {f"file.generated/quantumblog/{e}/.env"
                                                                   for e in ENVS}
    assert git(check.root, "status", "--porcelain") == ""
    assert plan_json(check)["changes"] == []


# --- (f) the comment size limit ------------------------------------------------------------------------------

def test_the_markdown_of_a_10000_service_change_touching_every_file_stays_under_the_comment_limit(
        workspace: Workspace) -> None:
    ranges = "---\n".join(f"kind: PortRange\nname: t{i}\nstart: {10000 + 3000 * i}\nend: {12999 + 3000 * i}\n"
                          f"host: '*'\n" for i in range(4))
    envs = "\n".join(f"  e{i:04d}: {{host: localhost}}" for i in range(2500))
    services = "\n".join(f"  s{i}: {{type: t{i}, protocol: http}}" for i in range(4))
    source = workspace.root / "app" / "components"
    source.mkdir(parents=True)
    for i in range(400):  # components changed too, with long paths: both parts share the limit
        (source / f"{'long-component-name-' * 8}{i:04d}.q").write_text(f"<q:component name='C{i}'/>\n")
    workspace.manifest("ranges.yaml", ranges)
    workspace.manifest("big.yaml", f"kind: Project\nname: big\nsource: app\nenvironments:\n{envs}\n"
                                   f"services:\n{services}\n")
    result = workspace.qrm("plan", "--no-refresh", "--markdown")
    assert result.exit_code == 0, result.output[-2000:]
    text = result.output
    assert len(text) < MARKDOWN_LIMIT, len(text)
    assert text.startswith("### qrm plan\n\nPlan: 20000 to create")  # the summary table comes next
    table = text.index("| `+` | create | 20000 |")  # 10,000 services and 10,000 generated files
    assert table < text.index("<details>") < text.index("</details>")
    assert re.search(r"\d+ more change\(s\) not shown", text)
    assert "component(s) changed since the last scan" in text and re.search(r"\d+ more \(comment size limit\)", text)


# --- (g) the GitHub Actions workflow -------------------------------------------------------------------------

def workflow() -> dict[Any, Any]:
    data = yaml.safe_load(WORKFLOW.read_text())
    assert isinstance(data, dict)
    return data


def test_the_github_actions_workflow_has_a_pr_plan_job_and_a_main_apply_job() -> None:
    data = workflow()
    triggers = data["on"] if "on" in data else data[True]  # PyYAML reads the key `on` as a boolean
    assert "pull_request" in triggers and triggers["push"]["branches"] == ["main"]
    jobs = data["jobs"]
    plan_job = next(j for j in jobs.values() if "pull_request" in j.get("if", ""))
    apply_job = next(j for j in jobs.values() if "push" in j.get("if", ""))
    assert plan_job["permissions"]["pull-requests"] == "write"
    plan_runs = " ".join(s.get("run", "") for s in plan_job["steps"])
    assert "qrm plan --markdown --no-refresh" in plan_runs
    assert "SOPS_AGE_KEY" not in json.dumps(plan_job)  # a PR check needs no key
    assert any("github-script" in s.get("uses", "") for s in plan_job["steps"])  # posts or updates the comment
    assert any(s.get("if") == "steps.plan.outputs.exitcode == '1'" for s in plan_job["steps"])
    apply_step = next(s for s in apply_job["steps"] if "qrm apply" in s.get("run", ""))
    assert "qrm apply --yes --commit" in apply_step["run"] and "git push" in apply_step["run"]
    assert "secrets.SOPS_AGE_KEY" in apply_step["env"]["SOPS_AGE_KEY"]
    assert "QRM_REGISTRY" in apply_step["env"]
    assert apply_job["permissions"]["contents"] == "write"


def run_plan_step(ws: Workspace, tmp_path: Path) -> tuple[subprocess.CompletedProcess[str], dict[str, str]]:
    """The workflow's `qrm plan` step as the runner runs it (bash -e), in the clone, qrm from .venv/bin on PATH."""
    jobs = workflow()["jobs"]
    plan_job = next(j for j in jobs.values() if "pull_request" in j.get("if", ""))
    step = next(s for s in plan_job["steps"] if "qrm plan" in s.get("run", ""))
    script = tmp_path / "plan-step.sh"
    script.write_text(step["run"])
    output = tmp_path / "github-output"
    output.write_text("")
    runner_temp = tmp_path / "runner-temp"
    runner_temp.mkdir(exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("SOPS_AGE_")}
    env |= {"PATH": f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}", "GITHUB_OUTPUT": str(output),
            "RUNNER_TEMP": str(runner_temp), **{k: str(v) for k, v in (step.get("env") or {}).items()
                                                if "${{" not in str(v)}}
    done = subprocess.run(["bash", "--noprofile", "--norc", "-eo", "pipefail", str(script)], cwd=ws.root, env=env,
                          capture_output=True, text=True, timeout=120)
    outputs = dict(line.split("=", 1) for line in output.read_text().splitlines() if "=" in line)
    return done, outputs


def test_the_workflows_plan_step_runs_in_a_fresh_clone_without_key_or_registry(
        applied: Workspace, tmp_path: Path) -> None:
    assert Path(sys.executable).parent.joinpath("qrm").exists()
    check = clone(applied.root, tmp_path / "check")
    done, outputs = run_plan_step(check, tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert outputs.get("exitcode") == "0", (outputs, done.stdout, done.stderr)
    comment = (check.root / "qrm-plan.md").read_text()
    assert comment.startswith("### qrm plan") and "No changes." in comment
    assert not (check.root / ".qrm" / "registry.db").exists()

    # A PR with a change: the step still succeeds (the comment is posted); its exit code says 2.
    (check.root / "manifests/extra.yaml").write_text(ADDED.removeprefix("\n---\n"))
    done, outputs = run_plan_step(check, tmp_path)
    assert done.returncode == 0 and outputs.get("exitcode") == "2", (outputs, done.stdout, done.stderr)
    assert "service.reports-api" in (check.root / "qrm-plan.md").read_text()

    # Invalid manifests: exit 1, which the job's last step turns into a failed check.
    (check.root / "manifests/extra.yaml").write_text("kind: Service\nname: broken\n")
    done, outputs = run_plan_step(check, tmp_path)
    assert outputs.get("exitcode") == "1", (outputs, done.stdout, done.stderr)
