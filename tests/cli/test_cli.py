"""qrm as a user runs it: the CLI against real SQLite files, real sockets and real git repos.

Tests that are not about live state pass --no-refresh, so listeners opened by other tests
running at the same time cannot change which ports are handed out.
"""

from __future__ import annotations

import json
import random
import re
import shutil
import socket
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import yaml

from reconciler.edges import probes
from reconciler.edges.registry import Registry
from tests.support.workspace import Workspace

# --- helpers -------------------------------------------------------------------------------------


def services(*names: str, type: str = "app", host: str = "localhost") -> str:
    """Service documents, one per name."""
    return "---\n".join(f"kind: Service\nname: {name}\nhost: {host}\ntype: {type}\n" for name in names)


def port_range(name: str, start: int, end: int, host: str = "*", type: str | None = None) -> str:
    return (f"kind: PortRange\nname: {name}\nstart: {start}\nend: {end}\nhost: '{host}'\n"
            + (f"type: {type}\n" if type else ""))


def registry_url(ws: Workspace) -> str:
    return f"sqlite:///{ws.root / '.qrm' / 'registry.db'}"


def recorded_ports(ws: Workspace, url: str | None = None) -> dict[str, int]:
    """name -> port as the registry holds it ({} when there is no registry file)."""
    url = url or registry_url(ws)
    if not Path(url.removeprefix("sqlite:///")).exists():
        return {}
    registry = Registry(url)
    try:
        return {name: svc.port for name, svc in registry.recorded_services().items()}
    finally:
        registry.close()


def lockfile_entries(ws: Workspace) -> list[dict[str, object]]:
    data = yaml.safe_load(ws.lockfile.read_text())
    assert data["version"] == 1
    return list(data["allocations"])


def free_block(size: int) -> int:
    """The first port of `size` consecutive ports nothing listens on, below the ephemeral range."""
    low, high = probes.ephemeral_range() or (32768, 60999)
    listening = probes.local_listeners()
    spans = [(10000, low - size)] if low - size > 10000 else [(high + 1, 65535 - size)]
    rng = random.Random()
    for _ in range(500):
        start = rng.randrange(*spans[0])
        if not any(p in listening for p in range(start, start + size)):
            return start
    pytest.fail("no free block of ports found on this machine")


@contextmanager
def listening(address: str, port: int) -> Iterator[socket.socket]:
    """A real TCP listener on address:port for the duration of the block."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((address, port))
        sock.listen(16)
        yield sock
    finally:
        sock.close()


def summary_lines(output: str) -> list[str]:
    return [line for line in output.splitlines()
            if line.startswith(("Plan:", "Plan blocked:", "No changes."))]


# --- plan output -------------------------------------------------------------------------------


def test_plan_text_lists_each_new_service_with_its_address_and_ends_with_one_summary_line(
        workspace: Workspace) -> None:
    workspace.manifest("svc.yaml", services("api", "web"))
    result = workspace.qrm("plan", "--no-refresh")
    assert result.exit_code == 0, result.output
    assert re.search(r"^\s*\+ service\.api\s+localhost:8000\b", result.output, re.M), result.output
    assert re.search(r"^\s*\+ service\.web\s+localhost:8001\b", result.output, re.M), result.output
    assert summary_lines(result.output) == ["Plan: 2 to create, 0 to update, 0 to delete, 0 to repair."]
    assert result.output.rstrip().splitlines()[-1] == summary_lines(result.output)[0]


def test_plan_json_is_a_versioned_document_with_summary_counts_and_changes(workspace: Workspace) -> None:
    workspace.manifest("svc.yaml", services("api", "web"))
    result = workspace.qrm("plan", "--json", "--no-refresh")
    assert result.exit_code == 0, result.output
    document = json.loads(result.output)
    assert document["format_version"] == 1
    assert document["summary"]["create"] == 2
    assert (document["summary"]["update"], document["summary"]["delete"], document["summary"]["repair"]) == (0, 0, 0)
    assert document["summary"]["blocked"] is False
    by_address = {c["address"]: c for c in document["changes"]}
    assert set(by_address) == {"service.api", "service.web"}
    api = by_address["service.api"]
    assert (api["action"], api["symbol"], api["before"]) == ("create", "+", None)
    assert (api["after"]["host"], api["after"]["port"], api["after"]["type"]) == ("localhost", 8000, "app")


def test_plan_markdown_puts_the_summary_table_first_and_collapses_the_details(workspace: Workspace) -> None:
    workspace.manifest("svc.yaml", services("api", "web"))
    result = workspace.qrm("plan", "--markdown", "--no-refresh")
    assert result.exit_code == 0, result.output
    text = result.output
    table_at, details_at = text.index("| `+` | create | 2 |"), text.index("<details>")
    assert table_at < details_at
    assert "</details>" in text[details_at:]
    assert "service.api" in text[details_at:] and "service.web" in text[details_at:]
    assert "not shown" not in text


def test_plan_markdown_of_3000_services_stays_under_the_pr_comment_limit_with_a_truncation_note(
        workspace: Workspace) -> None:
    workspace.manifest("ranges.yaml", port_range("app", 20000, 29999))
    workspace.manifest("svc.yaml", services(*(f"svc-{i:04d}" for i in range(3000))))
    result = workspace.qrm("plan", "--markdown", "--no-refresh")
    assert result.exit_code == 0, result.output[-2000:]
    text = result.output
    assert len(text) < 60_000
    assert text.index("| `+` | create | 3000 |") < text.index("<details>") < text.index("</details>")
    assert re.search(r"\d+ more change\(s\) not shown", text)
    assert "service.svc-0000" in text


def test_detailed_exitcode_is_2_with_changes_and_0_without(workspace: Workspace) -> None:
    workspace.manifest("svc.yaml", services("api"))
    assert workspace.qrm("plan", "--no-refresh", "--detailed-exitcode").exit_code == 2
    assert workspace.qrm("plan", "--no-refresh").exit_code == 0  # without the flag, changes are not an error
    assert workspace.qrm("apply", "--yes", "--no-refresh").exit_code == 0
    again = workspace.qrm("plan", "--no-refresh", "--detailed-exitcode")
    assert again.exit_code == 0, again.output


# --- saved plans -------------------------------------------------------------------------------


def test_a_saved_plan_is_applied_exactly_as_saved(workspace: Workspace, tmp_path: Path) -> None:
    workspace.manifest("svc.yaml", services("api", "web"))
    plan_file = tmp_path / "api.plan.json"
    planned = workspace.qrm("plan", "--no-refresh", "--target", "api", "--out", str(plan_file))
    assert planned.exit_code == 0, planned.output
    saved = json.loads(plan_file.read_text())
    assert [c["address"] for c in saved["changes"]] == ["service.api"]

    applied = workspace.qrm("apply", str(plan_file))
    assert applied.exit_code == 0, applied.output
    assert "Apply complete: 1 created" in applied.output
    assert recorded_ports(workspace) == {"api": saved["changes"][0]["after"]["port"]}
    assert [e["name"] for e in lockfile_entries(workspace)] == ["api"]
    # web was not part of the saved plan, so it is still to be created.
    later = workspace.qrm("plan", "--no-refresh")
    assert "+ service.web" in later.output and "service.api" not in later.output


def test_a_saved_plan_is_refused_after_a_manifest_edit(workspace: Workspace, tmp_path: Path) -> None:
    workspace.manifest("svc.yaml", services("api"))
    plan_file = tmp_path / "p.json"
    assert workspace.qrm("plan", "--no-refresh", "--out", str(plan_file)).exit_code == 0
    workspace.manifest("svc.yaml", services("api", "web"))

    result = workspace.qrm("apply", str(plan_file))
    assert result.exit_code == 1
    assert "stale" in result.output and "manifests changed" in result.output
    assert recorded_ports(workspace) == {}
    assert not workspace.lockfile.exists()


def test_a_saved_plan_is_refused_after_another_apply_changed_the_registry(
        workspace: Workspace, tmp_path: Path) -> None:
    workspace.manifest("svc.yaml", services("api"))
    plan_file = tmp_path / "p.json"
    assert workspace.qrm("plan", "--no-refresh", "--out", str(plan_file)).exit_code == 0
    assert workspace.qrm("apply", "--yes", "--no-refresh").exit_code == 0
    lockfile_before = workspace.lockfile.read_bytes()

    result = workspace.qrm("apply", str(plan_file))
    assert result.exit_code == 1
    assert "stale" in result.output and "registry changed" in result.output
    registry = Registry(registry_url(workspace))
    try:
        assert registry.count_applies() == 1
    finally:
        registry.close()
    assert workspace.lockfile.read_bytes() == lockfile_before


def test_a_saved_plan_is_refused_when_a_process_now_listens_on_a_port_it_hands_out(
        workspace: Workspace, tmp_path: Path) -> None:
    start = free_block(10)
    workspace.manifest("ranges.yaml", port_range("app", start, start + 9))
    workspace.manifest("svc.yaml", services("api"))
    plan_file = tmp_path / "p.json"
    planned = workspace.qrm("plan", "--out", str(plan_file))  # refreshes: reads live listeners
    assert planned.exit_code == 0, planned.output
    port = json.loads(plan_file.read_text())["changes"][0]["after"]["port"]

    with listening("127.0.0.1", port):
        result = workspace.qrm("apply", str(plan_file))
    assert result.exit_code == 1
    assert "stale" in result.output and "live state changed" in result.output
    assert recorded_ports(workspace) == {}
    assert not workspace.lockfile.exists()


# --- apply -------------------------------------------------------------------------------------


def test_apply_without_yes_off_a_terminal_refuses_and_applies_nothing(workspace: Workspace) -> None:
    workspace.manifest("svc.yaml", services("api"))
    result = workspace.qrm("apply", "--no-refresh", input="y\n")  # CliRunner's stdin is not a tty
    assert result.exit_code == 1
    assert "apply needs --yes" in result.output
    assert recorded_ports(workspace) == {}
    assert not workspace.lockfile.exists()


def test_a_usage_error_exits_1_from_the_command_line(workspace: Workspace) -> None:
    result = workspace.qrm_process("plan", "--no-such-option")
    assert result.returncode == 1, (result.stdout, result.stderr)
    assert "No such option" in result.stderr
    assert "Traceback" not in result.stderr


def test_removing_a_service_releases_its_port_for_the_next_new_service(workspace: Workspace) -> None:
    workspace.manifest("svc.yaml", services("a", "b", "c"))
    assert workspace.qrm("apply", "--yes", "--no-refresh").exit_code == 0
    assert recorded_ports(workspace) == {"a": 8000, "b": 8001, "c": 8002}

    workspace.manifest("svc.yaml", services("a", "c"))
    planned = workspace.qrm("plan", "--no-refresh")
    assert re.search(r"^\s*- service\.b\b.*releases localhost:8001", planned.output, re.M), planned.output
    assert workspace.qrm("apply", "--yes", "--no-refresh").exit_code == 0
    assert recorded_ports(workspace) == {"a": 8000, "c": 8002}

    workspace.manifest("svc.yaml", services("a", "c", "d"))
    assert workspace.qrm("apply", "--yes", "--no-refresh").exit_code == 0
    assert recorded_ports(workspace) == {"a": 8000, "c": 8002, "d": 8001}


def test_an_exhausted_range_blocks_plan_and_apply_naming_range_host_and_count(workspace: Workspace) -> None:
    workspace.manifest("ranges.yaml", port_range("app", 8000, 8001))
    workspace.manifest("svc.yaml", services("a", "b", "c"))
    planned = workspace.qrm("plan", "--no-refresh")
    assert planned.exit_code == 1
    message = "range app 8000-8001 on host localhost has no free port left for 1 of the 3 app services"
    assert message in planned.output

    applied = workspace.qrm("apply", "--yes", "--no-refresh")
    assert applied.exit_code == 1
    assert message in applied.output and "nothing was applied" in applied.output
    assert recorded_ports(workspace) == {}
    assert not workspace.lockfile.exists()


def test_a_pinned_port_held_by_a_live_process_is_a_conflict(workspace: Workspace) -> None:
    start = free_block(5)
    busy = start + 2
    workspace.manifest("ranges.yaml", port_range("app", start, start + 4))
    workspace.manifest("svc.yaml", f"kind: Service\nname: pinned\ntype: app\nport: {busy}\n")
    with listening("127.0.0.1", busy):
        planned = workspace.qrm("plan")
        applied = workspace.qrm("apply", "--yes")
    assert planned.exit_code == 1
    assert f"port {busy} on localhost is pinned by pinned but another process is listening on it" in planned.output
    assert applied.exit_code == 1
    assert str(busy) in applied.output
    assert recorded_ports(workspace) == {}
    assert not workspace.lockfile.exists()


def test_registry_option_points_at_another_sqlite_file(workspace: Workspace, tmp_path: Path) -> None:
    other = tmp_path / "other.db"
    url = f"sqlite:///{other}"
    workspace.manifest("svc.yaml", services("api"))
    result = workspace.qrm("--registry", url, "apply", "--yes", "--no-refresh")
    assert result.exit_code == 0, result.output
    assert recorded_ports(workspace, url) == {"api": 8000}
    assert not (workspace.root / ".qrm" / "registry.db").exists()
    listed = workspace.qrm("--registry", url, "ports", "list", "--json")
    assert json.loads(listed.output)["source"] == "registry"


def test_apply_history_records_success_without_a_revision_outside_git(workspace: Workspace) -> None:
    workspace.manifest("svc.yaml", services("api"))
    assert workspace.qrm("apply", "--yes", "--no-refresh").exit_code == 0
    registry = Registry(registry_url(workspace))
    try:
        [record] = registry.history()
    finally:
        registry.close()
    assert record.outcome == "success"
    assert record.revision is None
    assert record.summary["counts"]["create"] == 1


def test_apply_history_records_the_git_head_revision(workspace: Workspace) -> None:
    workspace.manifest("svc.yaml", services("api"))

    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", str(workspace.root), "-c", "user.name=qrm test",
                               "-c", "user.email=qrm@example.invalid", "-c", "commit.gpgsign=false", *args],
                              check=True, capture_output=True, text=True).stdout.strip()

    git("init", "-q")
    git("add", "manifests")
    git("commit", "-q", "-m", "desired state")
    head = git("rev-parse", "HEAD")

    assert workspace.qrm("apply", "--yes", "--no-refresh").exit_code == 0
    registry = Registry(registry_url(workspace))
    try:
        [record] = registry.history()
    finally:
        registry.close()
    assert (record.outcome, record.revision) == ("success", head)


def test_a_deleted_registry_is_rebuilt_from_the_lock_file_with_the_same_ports(workspace: Workspace) -> None:
    workspace.manifest("svc.yaml", services("a", "b", "c"))
    assert workspace.qrm("apply", "--yes", "--no-refresh").exit_code == 0
    workspace.manifest("svc.yaml", services("b", "c"))  # afresh, b and c would get 8000 and 8001
    assert workspace.qrm("apply", "--yes", "--no-refresh").exit_code == 0
    lockfile = workspace.lockfile.read_bytes()

    shutil.rmtree(workspace.root / ".qrm")
    # No registry: plan reads what was applied from the committed reports, so nothing changes.
    planned = workspace.qrm("plan", "--no-refresh", "--detailed-exitcode")
    assert planned.exit_code == 0, planned.output
    assert "Recorded state: the committed reports (no registry here)" in planned.output
    assert not re.search(r"^\s*! registry\b", planned.output, re.M), planned.output
    assert not (workspace.root / ".qrm" / "registry.db").exists()  # plan never creates one
    # apply creates an empty registry and restores it from them.
    applied = workspace.qrm("apply", "--yes", "--no-refresh")
    assert applied.exit_code == 0, applied.output
    assert re.search(r"^\s*! registry\b.*restored from reports/allocations\.yaml", applied.output, re.M), applied.output
    assert recorded_ports(workspace) == {"b": 8001, "c": 8002}
    assert workspace.lockfile.read_bytes() == lockfile
    again = workspace.qrm("plan", "--no-refresh", "--detailed-exitcode")
    assert again.exit_code == 0, again.output


def test_the_lock_file_is_sorted_by_host_and_port_and_deterministic(workspace: Workspace, tmp_path: Path) -> None:
    hosts = "kind: Host\nname: zeta\naddress: 10.0.0.2\n---\nkind: Host\nname: alpha\naddress: 10.0.0.1\n"
    pinned = "".join(f"---\nkind: Service\nname: {name}\nhost: {host}\ntype: app\nport: {port}\n"
                     for name, host, port in [("aa-last", "zeta", 8999), ("zz-first", "alpha", 8000),
                                              ("mm-mid", "localhost", 8500)])
    workspace.manifest("all.yaml", hosts + "---\n" + services("web", "api", host="zeta") + "---\n"
                       + services("db", type="database") + pinned)
    assert workspace.qrm("apply", "--yes", "--no-refresh").exit_code == 0
    entries = lockfile_entries(workspace)
    keys = [(e["host"], e["port"]) for e in entries]
    assert keys == sorted(keys)  # type: ignore[type-var]
    assert len(entries) == 6
    assert keys[0] == ("alpha", 8000) and keys[-1] == ("zeta", 8999)

    # The same desired state, split into files differently, gives the same bytes.
    other = Workspace(tmp_path / "other")
    other.manifest("1-pinned.yaml", pinned.removeprefix("---\n"))
    other.manifest("2-hosts.yaml", hosts)
    other.manifest("3-services.yaml", services("db", type="database") + "---\n" + services("api", "web", host="zeta"))
    assert other.qrm("apply", "--yes", "--no-refresh").exit_code == 0
    assert other.lockfile.read_bytes() == workspace.lockfile.read_bytes()


# --- ports -------------------------------------------------------------------------------------


def test_ports_list_shows_a_table_and_json(workspace: Workspace) -> None:
    workspace.manifest("svc.yaml", services("api") + "---\n" + services("db", type="database"))
    assert workspace.qrm("apply", "--yes", "--no-refresh").exit_code == 0

    table = workspace.qrm("ports", "list")
    assert table.exit_code == 0
    lines = table.output.splitlines()
    assert lines[0].split()[:3] == ["HOST", "PORT", "SERVICE"]
    assert re.search(r"^localhost\s+5400\s+db\s+database\s+tcp\b", table.output, re.M), table.output
    assert re.search(r"^localhost\s+8000\s+api\s+app\s+http\b", table.output, re.M), table.output

    as_json = json.loads(workspace.qrm("ports", "list", "--json").output)
    assert as_json["source"] == "registry"
    assert [(a["name"], a["host"], a["port"]) for a in as_json["allocations"]] == [
        ("db", "localhost", 5400), ("api", "localhost", 8000)]


def test_ports_ranges_shows_use_of_every_range_with_a_bar(workspace: Workspace) -> None:
    workspace.manifest("svc.yaml", services("api", "web"))
    assert workspace.qrm("apply", "--yes", "--no-refresh").exit_code == 0
    result = workspace.qrm("ports", "ranges")
    assert result.exit_code == 0
    assert re.search(r"^localhost\s+app 8000-8999: 2 used, 998 free\s+\[#\.{19}\]$", result.output, re.M), \
        result.output
    assert re.search(r"^localhost\s+database 5400-5499: 0 used, 100 free\s+\[\.{20}\]$", result.output, re.M), \
        result.output
    assert len(result.output.splitlines()) == 5  # the five default ranges on the one host


def test_ports_check_exits_0_for_a_free_port(workspace: Workspace) -> None:
    port = free_block(1)
    result = workspace.qrm("ports", "check", str(port))
    assert result.exit_code == 0, result.output
    assert f"localhost:{port} is free" in result.output


def test_ports_check_names_the_service_a_port_is_allocated_to(workspace: Workspace) -> None:
    workspace.manifest("svc.yaml", services("api"))
    assert workspace.qrm("apply", "--yes", "--no-refresh").exit_code == 0
    result = workspace.qrm("ports", "check", "8000")
    assert result.exit_code == 1
    assert "allocated to api" in result.output


def test_ports_check_gives_the_reason_of_a_reservation(workspace: Workspace) -> None:
    port = free_block(1)
    workspace.manifest("reserved.yaml", f"kind: Reservation\nports: [{port}]\nreason: kept for the vpn\n")
    result = workspace.qrm("ports", "check", str(port), "--host", "localhost")
    assert result.exit_code == 1
    assert "reserved (kept for the vpn)" in result.output


def test_ports_check_sees_a_listening_process(workspace: Workspace) -> None:
    port = free_block(1)
    with listening("127.0.0.1", port):
        result = workspace.qrm("ports", "check", str(port))
    assert result.exit_code == 1
    assert "a process is listening on it" in result.output


def test_ports_check_of_an_unknown_host_is_an_error(workspace: Workspace) -> None:
    result = workspace.qrm("ports", "check", "8000", "--host", "nowhere")
    assert result.exit_code == 1
    assert "unknown host 'nowhere'" in result.output


# --- a second host, probed over TCP --------------------------------------------------------------

REMOTE = "127.0.0.2"  # a second loopback address: Linux routes all of 127/8 to lo


def test_a_new_service_on_another_host_skips_a_port_something_listens_on(workspace: Workspace) -> None:
    start = free_block(5)
    workspace.manifest("h2.yaml", f"kind: Host\nname: h2\naddress: {REMOTE}\n---\n"
                       + port_range("app-h2", start, start + 4, host="h2", type="app"))
    workspace.manifest("svc.yaml", services("web", host="h2"))
    with listening(REMOTE, start):
        result = workspace.qrm("plan", "--json")
    assert result.exit_code == 0, result.output
    [change] = json.loads(result.output)["changes"]
    assert (change["address"], change["after"]["host"], change["after"]["port"]) == ("service.web", "h2", start + 1)


def test_a_service_pinned_to_a_busy_port_on_another_host_is_a_conflict(workspace: Workspace) -> None:
    start = free_block(5)
    workspace.manifest("h2.yaml", f"kind: Host\nname: h2\naddress: {REMOTE}\n---\n"
                       + port_range("app-h2", start, start + 4, host="h2", type="app"))
    workspace.manifest("svc.yaml", f"kind: Service\nname: web\nhost: h2\ntype: app\nport: {start}\n")
    with listening(REMOTE, start):
        result = workspace.qrm("plan")
    assert result.exit_code == 1
    assert f"port {start} on h2 is pinned by web but another process is listening on it" in result.output
