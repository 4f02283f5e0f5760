"""Hostile manifests and qrm.yaml: YAML alias bombs, deep nesting, and host addresses that are not addresses.

Each case writes the hostile file a pull request could carry into a real workspace and runs qrm as a user
does; what is asserted is what a user sees: one error line naming file and line (and field), the exit code of
an invalid workspace, no traceback, and nothing large written to .qrm/cache.
"""

from __future__ import annotations

import json

import pytest

from tests.support.workspace import Workspace


def error_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith("error: ")]


# --- Host.address: a host name or an IP address, nothing else ---------------------------------------

BAD_ADDRESSES = [
    ("newline", '"10.0.0.1\\nQRM_INJECTED=1"'),
    ("semicolon", '"db.example; rm -rf /"'),
    ("braces", '"${HOME}"'),
    ("space", '"db example"'),
    ("label starting with a dash", "-db.example"),
    ("label of 64 characters", "a" * 64 + ".example"),
    ("underscore", "db_1.example"),
    ("empty label", "db..example"),
    ("url", '"http://db.example"'),
    ("ipv6 in brackets", '"[::1]"'),
]


@pytest.mark.parametrize("address", [case[1] for case in BAD_ADDRESSES], ids=[case[0] for case in BAD_ADDRESSES])
def test_a_host_address_that_is_no_host_name_or_ip_is_a_located_problem(workspace: Workspace, address: str) -> None:
    workspace.manifest("hosts.yaml", f"kind: Host\nname: edge\ndescription: the edge box\naddress: {address}\n")
    result = workspace.qrm("validate")
    assert result.exit_code == 1, result.output
    [error] = error_lines(result.stderr)
    assert error.startswith("error: manifests/hosts.yaml:4:1: address: expected a host name"), error
    assert "IPv4 or IPv6 address" in error
    assert "Traceback" not in result.output


GOOD_ADDRESSES = ["10.10.1.40", "::1", "fe80::1%eth0", "2001:db8::17", "localhost", "db-1.internal.example",
                  "db.example.", "a" * 63 + ".example", "xn--bcher-kva.example"]


@pytest.mark.parametrize("address", GOOD_ADDRESSES)
def test_host_names_and_ip_addresses_are_accepted(workspace: Workspace, address: str) -> None:
    workspace.manifest("hosts.yaml", f"kind: Host\nname: edge\naddress: {json.dumps(address)}\n")
    result = workspace.qrm("validate")
    assert result.exit_code == 0, result.output
