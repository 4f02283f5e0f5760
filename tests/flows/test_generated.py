"""Generated files through plan and apply: diffs without a key, values at apply, drift, policy, removal."""

from __future__ import annotations

import json
import re
import socket
import stat
from pathlib import Path

import pytest
from dotenv import dotenv_values

from reconciler.edges import sops
from tests.support.workspace import Workspace

PROJECT = """
    kind: Project
    name: shop
    environments:
      dev:  {host: localhost}
      prod: {host: localhost, domain: shop.example.com}
    services:
      web: {type: app, health: {path: /health}}
      db:  {type: database}
    datasources:
      main: {driver: postgresql, service: db, database: shop, username: shop, password: "secret:DB_PASSWORD"}
"""
PINNED = PROJECT.replace("prod: {host: localhost,", "prod: {host: localhost, ports: {web: 8765},")
FILES = (".env", "docker-compose.yml", "nginx.conf", "quantum.config.yaml")


@pytest.fixture
def shop(workspace: Workspace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Workspace:
    """A project whose datasource password is a secret, with an age key in SOPS_AGE_KEY_FILE."""
    key, recipient = sops.generate_identity()
    key_file = tmp_path / "keys.txt"
    key_file.write_text(key + "\n")
    monkeypatch.setenv("SOPS_AGE_KEY_FILE", str(key_file))
    workspace.write(".sops.yaml", f"creation_rules:\n  - path_regex: secrets\\.enc$\n    age: {recipient}\n")
    workspace.manifest("shop.yaml", PROJECT)
    assert workspace.qrm("secrets", "set", "DB_PASSWORD", "--project", "shop", input="s3cr3t $hop\n").exit_code == 0
    return workspace


def generated(ws: Workspace, env: str, name: str) -> Path:
    return ws.root / "generated" / "shop" / env / name


def test_plan_shows_every_file_with_a_diff_and_placeholders_never_the_secret(shop: Workspace,
                                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SOPS_AGE_KEY_FILE")  # plan needs no key
    result = shop.qrm("plan", "--no-refresh")
    assert result.exit_code == 0, result.output
    for env in ("dev", "prod"):
        for name in FILES:
            assert f"+ file.generated/shop/{env}/{name}" in result.output
    assert "+DB_PASSWORD=\"<secret shop/DB_PASSWORD " in result.output
    assert "s3cr3t" not in result.output


def test_apply_writes_the_files_with_the_value_and_the_allocated_ports(shop: Workspace) -> None:
    result = shop.qrm("apply", "--yes", "--no-refresh")
    assert result.exit_code == 0, result.output
    env_file = generated(shop, "prod", ".env")
    assert stat.S_IMODE(env_file.stat().st_mode) == 0o600
    values = dotenv_values(env_file)
    assert values["DB_PASSWORD"] == "s3cr3t $hop"
    lock = (shop.root / "reports" / "allocations.yaml").read_text()
    assert f'"name": "shop-prod-web", "host": "localhost", "port": {values["WEB_PORT"]},' in lock
    assert f'"name": "shop-prod-db", "host": "localhost", "port": {values["DB_PORT"]},' in lock
    assert "s3cr3t" not in generated(shop, "prod", "quantum.config.yaml").read_text()
    assert shop.qrm("plan", "--no-refresh", "--detailed-exitcode").exit_code == 0


def test_without_the_key_apply_writes_nothing(shop: Workspace, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SOPS_AGE_KEY_FILE")
    result = shop.qrm("apply", "--yes", "--no-refresh")
    assert result.exit_code == 1
    assert "apply needs the key to write generated files with secrets; nothing was written" in result.stderr
    assert not (shop.root / "generated").exists()
    assert not (shop.root / "reports").exists()


def test_a_changed_secret_changes_the_env_file_in_the_plan_by_placeholder(shop: Workspace) -> None:
    assert shop.qrm("apply", "--yes", "--no-refresh").exit_code == 0
    assert shop.qrm("secrets", "set", "DB_PASSWORD", "--project", "shop", input="n3w\n").exit_code == 0
    plan = shop.qrm("plan", "--no-refresh")
    assert "~ secret.shop/DB_PASSWORD" in plan.output
    assert "~ file.generated/shop/dev/.env" in plan.output and "~ file.generated/shop/prod/.env" in plan.output
    assert "~ file.generated/shop/dev/nginx.conf" not in plan.output
    assert "n3w" not in plan.output and "s3cr3t" not in plan.output
    assert shop.qrm("apply", "--yes", "--no-refresh").exit_code == 0
    assert dotenv_values(generated(shop, "dev", ".env"))["DB_PASSWORD"] == "n3w"


def test_a_pinned_port_ripples_into_every_file_of_its_environment(shop: Workspace) -> None:
    assert shop.qrm("apply", "--yes", "--no-refresh").exit_code == 0
    pinned = PROJECT.replace("prod: {host: localhost,", "prod: {host: localhost, ports: {web: 8765},")
    shop.manifest("shop.yaml", pinned)
    plan = shop.qrm("plan", "--no-refresh")
    for name in FILES:
        assert f"~ file.generated/shop/prod/{name}" in plan.output, plan.output
        assert f"~ file.generated/shop/dev/{name}" not in plan.output
    assert "8765" in plan.output
    assert shop.qrm("apply", "--yes", "--no-refresh").exit_code == 0
    for name in FILES:
        assert "8765" in generated(shop, "prod", name).read_text()


def test_a_hand_edit_is_drift_that_apply_repairs(shop: Workspace) -> None:
    assert shop.qrm("apply", "--yes", "--no-refresh").exit_code == 0
    nginx = generated(shop, "dev", "nginx.conf")
    original = nginx.read_text()
    nginx.write_text(original + "# tuned by hand\n")
    plan = shop.qrm("plan", "--no-refresh", "--detailed-exitcode")
    assert plan.exit_code == 2
    assert "! file.generated/shop/dev/nginx.conf" in plan.output
    assert "edited by hand since the last apply" in plan.output
    assert shop.qrm("apply", "--yes", "--no-refresh").exit_code == 0
    assert nginx.read_text() == original


def test_policy_warn_keeps_a_hand_edit_and_says_so(shop: Workspace) -> None:
    shop.write("qrm.yaml", "generated_policy: {nginx.conf: warn}\n")
    assert shop.qrm("apply", "--yes", "--no-refresh").exit_code == 0
    nginx = generated(shop, "dev", "nginx.conf")
    edited = nginx.read_text() + "# tuned by hand\n"
    nginx.write_text(edited)
    plan = shop.qrm("plan", "--no-refresh", "--detailed-exitcode")
    assert plan.exit_code == 0, plan.output
    assert "warning: generated/shop/dev/nginx.conf was edited by hand" in plan.output
    assert shop.qrm("apply", "--yes", "--no-refresh").exit_code == 0
    assert nginx.read_text() == edited


def test_a_hand_edit_shows_in_plan_as_the_diff_that_apply_reverts(shop: Workspace) -> None:
    assert shop.qrm("apply", "--yes", "--no-refresh").exit_code == 0
    nginx = generated(shop, "dev", "nginx.conf")
    nginx.write_text(nginx.read_text().replace("keepalive 8;", "keepalive 64;"))
    plan = shop.qrm("plan", "--no-refresh")
    assert "-    keepalive 64;" in plan.output and "+    keepalive 8;" in plan.output, plan.output


def test_a_hand_edited_env_file_shows_its_diff_without_any_secret_value(shop: Workspace) -> None:
    assert shop.qrm("apply", "--yes", "--no-refresh").exit_code == 0
    env_file = generated(shop, "dev", ".env")
    env_file.write_text(env_file.read_text().replace('BASE_PATH=""', 'BASE_PATH="/tuned"') + "API_TOKEN=t0ken\n")
    plan = shop.qrm("plan", "--no-refresh")
    assert '-BASE_PATH="/tuned"' in plan.output and '+BASE_PATH=""' in plan.output, plan.output
    assert "-API_TOKEN=<value not shown>" in plan.output
    assert "s3cr3t" not in plan.output and "t0ken" not in plan.output


def test_policy_warn_keeps_a_hand_edit_that_a_manifest_change_would_overwrite(shop: Workspace) -> None:
    shop.write("qrm.yaml", "generated_policy: {nginx.conf: warn}\n")
    assert shop.qrm("apply", "--yes", "--no-refresh").exit_code == 0
    nginx = generated(shop, "prod", "nginx.conf")
    edited = nginx.read_text() + "# tuned by hand\n"
    nginx.write_text(edited)
    shop.manifest("shop.yaml", PINNED)
    plan = shop.qrm("plan", "--no-refresh")
    assert "~ file.generated/shop/prod/nginx.conf" not in plan.output
    assert ("warning: generated/shop/prod/nginx.conf was edited by hand since the last apply and the manifests "
            "change it too: writing it would lose the hand edit") in plan.output, plan.output
    applied = shop.qrm("apply", "--yes", "--no-refresh")
    assert applied.exit_code == 0, applied.output
    assert "writing it would lose the hand edit" in applied.output + applied.stderr
    assert nginx.read_text() == edited
    assert "8765" in generated(shop, "prod", ".env").read_text()  # the files without a hand edit are written


def test_policy_overwrite_says_that_a_manifest_change_loses_the_hand_edit(shop: Workspace) -> None:
    assert shop.qrm("apply", "--yes", "--no-refresh").exit_code == 0
    nginx = generated(shop, "prod", "nginx.conf")
    nginx.write_text(nginx.read_text() + "# tuned by hand\n")
    shop.manifest("shop.yaml", PINNED)
    plan = shop.qrm("plan", "--no-refresh")
    assert "~ file.generated/shop/prod/nginx.conf" in plan.output
    assert "the hand edit since the last apply is lost" in plan.output
    assert "-# tuned by hand" in plan.output
    assert shop.qrm("apply", "--yes", "--no-refresh").exit_code == 0
    assert "# tuned by hand" not in nginx.read_text() and "8765" in nginx.read_text()


def test_run_compose_points_the_containers_at_each_other_by_service_name(shop: Workspace) -> None:
    assert shop.qrm("apply", "--yes", "--no-refresh").exit_code == 0
    host_values = dotenv_values(generated(shop, "dev", ".env"))
    assert (host_values["DATASOURCE_MAIN_HOST"], host_values["HOST"]) == ("127.0.0.1", "127.0.0.1")
    shop.manifest("shop.yaml", PROJECT.replace("dev:  {host: localhost}", "dev:  {host: localhost, run: compose}"))
    plan = shop.qrm("plan", "--no-refresh")
    for name in (".env", "docker-compose.yml", "quantum.config.yaml"):
        assert f"~ file.generated/shop/dev/{name}" in plan.output, plan.output
    assert "~ file.generated/shop/dev/nginx.conf" not in plan.output  # nginx on the host: published ports
    assert shop.qrm("apply", "--yes", "--no-refresh").exit_code == 0
    values = dotenv_values(generated(shop, "dev", ".env"))
    assert (values["DATASOURCE_MAIN_HOST"], values["DATASOURCE_MAIN_PORT"], values["DB_PORT"]) == ("db", "5432", "5432")
    assert "HOST" not in values
    compose = generated(shop, "dev", "docker-compose.yml").read_text()
    assert f'"{host_values["DB_PORT"]}:5432"' in compose
    assert '- "./quantum.config.yaml:/app/quantum.config.yaml:ro"' in compose
    assert 'host: "db"\n    port: 5432\n' in generated(shop, "dev", "quantum.config.yaml").read_text()


TWO_HOSTS = "kind: Host\nname: forge\naddress: 10.10.1.40\n---\n" + PROJECT.replace(
    "prod: {host: localhost,", "prod: {host: forge,")


def test_apply_host_writes_only_that_hosts_files(shop: Workspace) -> None:
    shop.manifest("shop.yaml", TWO_HOSTS)
    plan = shop.qrm("plan", "--no-refresh")
    assert re.search(r"\+ file\.generated/shop/prod/\.env +on forge", plan.output), plan.output
    assert re.search(r"\+ file\.generated/shop/dev/\.env +\(new\)", plan.output)  # this machine's: unmarked
    on_forge = shop.qrm("apply", "--yes", "--no-refresh", "--host", "forge")
    assert on_forge.exit_code == 0, on_forge.output
    assert all(generated(shop, "prod", name).is_file() for name in FILES)
    assert not (shop.root / "generated" / "shop" / "dev").exists()
    assert "shop-dev-web" not in on_forge.output  # the other host's services are left to it
    assert dotenv_values(generated(shop, "prod", ".env"))["HOST"] == "10.10.1.40"
    # on this machine, the rest is still to do; on forge, nothing is
    assert shop.qrm("plan", "--no-refresh", "--host", "forge", "--detailed-exitcode").exit_code == 0
    rest = shop.qrm("plan", "--no-refresh", "--detailed-exitcode")
    assert rest.exit_code == 2 and "shop/prod" not in rest.output and "+ file.generated/shop/dev/.env" in rest.output
    assert shop.qrm("apply", "--yes", "--no-refresh", "--host", "localhost").exit_code == 0
    assert all(generated(shop, "dev", name).is_file() for name in FILES)
    assert shop.qrm("plan", "--no-refresh", "--detailed-exitcode").exit_code == 0


def test_apply_host_probes_that_hosts_listeners_on_this_machine(shop: Workspace) -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        busy = listener.getsockname()[1]
        pinned = TWO_HOSTS.replace("prod: {host: forge,", f"prod: {{host: forge, ports: {{web: {busy}}},")
        shop.manifest("shop.yaml", pinned)
        # run on forge, forge is this machine: the pinned port is taken by the listener here
        on_forge = shop.qrm("plan", "--host", "forge")
        assert on_forge.exit_code == 1
        assert f"port {busy} on forge is pinned by shop-prod-web but another process is listening on it" in \
            on_forge.output + on_forge.stderr
        # from this machine forge is probed over the network instead, at its own address (not here)
        assert "another process is listening" not in shop.qrm("plan", "--no-refresh").output


def test_a_saved_plan_keeps_its_host(shop: Workspace) -> None:
    shop.manifest("shop.yaml", TWO_HOSTS)
    plan_file = shop.root / "forge.plan"
    saved = shop.qrm("plan", "--no-refresh", "--host", "forge", "--out", str(plan_file))
    assert saved.exit_code == 0, saved.output
    assert json.loads(plan_file.read_text())["filters"]["host"] == ["forge"]
    refused = shop.qrm("apply", str(plan_file), "--host", "localhost")
    assert refused.exit_code != 0
    assert "a saved plan already holds its --target, --exclude, --host" in refused.output + refused.stderr
    assert shop.qrm("apply", str(plan_file)).exit_code == 0
    assert generated(shop, "prod", ".env").is_file() and not generated(shop, "dev", ".env").exists()


def test_files_lists_each_generated_file_with_its_host(shop: Workspace) -> None:
    shop.manifest("shop.yaml", TWO_HOSTS)
    assert shop.qrm("apply", "--yes", "--no-refresh", "--host", "forge").exit_code == 0
    listed = shop.qrm("files")
    assert listed.exit_code == 0, listed.output
    lines = listed.output.splitlines()
    assert lines[0].split() == ["HOST", "PATH"] and len(lines) == 1 + 2 * len(FILES)
    assert "forge      generated/shop/prod/.env" in lines
    assert "localhost  generated/shop/dev/.env  (not written here)" in lines
    only = json.loads(shop.qrm("files", "--host", "forge", "--json").output)
    assert only == [{"host": "forge", "path": f"generated/shop/prod/{name}", "present": True} for name in sorted(FILES)]
    assert "--host frog: unknown host; known hosts: forge, localhost" in shop.qrm("files", "--host", "frog").stderr


def test_apply_host_names_the_known_hosts_when_it_is_unknown(shop: Workspace) -> None:
    shop.manifest("shop.yaml", TWO_HOSTS)
    result = shop.qrm("apply", "--yes", "--no-refresh", "--host", "frog")
    assert result.exit_code == 1
    assert "--host frog: unknown host; known hosts: forge, localhost" in result.stderr


def test_a_deleted_file_is_written_again(shop: Workspace) -> None:
    assert shop.qrm("apply", "--yes", "--no-refresh").exit_code == 0
    generated(shop, "prod", "docker-compose.yml").unlink()
    plan = shop.qrm("plan", "--no-refresh")
    assert "! file.generated/shop/prod/docker-compose.yml" in plan.output and "missing" in plan.output
    assert shop.qrm("apply", "--yes", "--no-refresh").exit_code == 0
    assert generated(shop, "prod", "docker-compose.yml").is_file()


def test_removing_an_environment_deletes_its_files(shop: Workspace) -> None:
    assert shop.qrm("apply", "--yes", "--no-refresh").exit_code == 0
    shop.manifest("shop.yaml", PROJECT.replace("      prod: {host: localhost, domain: shop.example.com}\n", ""))
    plan = shop.qrm("plan", "--no-refresh")
    for name in FILES:
        assert f"- file.generated/shop/prod/{name}" in plan.output
    assert shop.qrm("apply", "--yes", "--no-refresh").exit_code == 0
    assert not any(generated(shop, "prod", name).exists() for name in FILES)
    assert generated(shop, "dev", ".env").exists()
    assert shop.qrm("plan", "--no-refresh", "--detailed-exitcode").exit_code == 0


@pytest.mark.parametrize(("flag", "name"), [("env", ".env"), ("compose", "docker-compose.yml"),
                                            ("nginx", "nginx.conf"), ("quantum", "quantum.config.yaml")])
def test_render_prints_one_file_with_secrets_masked(shop: Workspace, flag: str, name: str) -> None:
    assert shop.qrm("apply", "--yes", "--no-refresh").exit_code == 0
    result = shop.qrm("render", "--project", "shop", "--env", "prod", "--file", flag)
    assert result.exit_code == 0, result.output
    on_disk = generated(shop, "prod", name).read_text()
    if name == ".env":  # the same file, but the value is a placeholder
        def others(text: str) -> list[str]:
            return [line for line in text.splitlines() if not line.startswith("DB_PASSWORD=")]
        assert others(result.output) == others(on_disk)
        assert 'DB_PASSWORD="<secret shop/DB_PASSWORD ' in result.output
        assert "s3cr3t" not in result.output
    else:
        assert result.output == on_disk


def test_render_names_an_unknown_project_or_environment(shop: Workspace) -> None:
    assert "unknown project 'nope'" in shop.qrm("render", "-p", "nope", "-e", "dev").stderr
    assert "project 'shop' has no environment 'qa'" in shop.qrm("render", "-p", "shop", "-e", "qa").stderr


def test_a_missing_lock_file_is_repaired_beside_generated_files(shop: Workspace) -> None:
    """A kill between the registry commit and the lock file write: the next apply writes the lock file."""
    assert shop.qrm("apply", "--yes", "--no-refresh").exit_code == 0
    shop.lockfile.unlink()
    plan = shop.qrm("plan", "--no-refresh")
    assert "! file.reports/allocations.yaml" in plan.output
    result = shop.qrm("apply", "--yes", "--no-refresh")
    assert result.exit_code == 0, result.output
    assert shop.lockfile.is_file()
    assert shop.qrm("plan", "--no-refresh", "--detailed-exitcode").exit_code == 0
