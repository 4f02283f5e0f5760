"""`qrm token create|list|revoke`: a token is printed once and only its sha256 is kept, in qrm.yaml (so
tokens are reviewed and revoked through git), with the file's comments and layout kept."""

from __future__ import annotations

import base64
import hashlib
import json
import subprocess
import sys

import pytest

from tests.support.workspace import Workspace

SETTINGS = "# fleet settings, reviewed like code\nname: fleet   # identity in the shared registry\n"


@pytest.fixture
def fleet(workspace: Workspace) -> Workspace:
    workspace.write("qrm.yaml", SETTINGS)
    return workspace


def create(ws: Workspace, name: str, *scopes: str) -> str:
    result = ws.qrm("token", "create", name, *[a for s in scopes for a in ("--scope", s)])
    assert result.exit_code == 0, result.output
    return result.stdout.strip()


def test_create_prints_the_token_once_and_stores_only_its_sha256(fleet: Workspace) -> None:
    result = fleet.qrm("token", "create", "ci", "--scope", "write", "--scope", "read")
    assert result.exit_code == 0, result.output
    token = result.stdout.strip()
    assert result.stdout == token + "\n" and token.startswith("qrm_")
    assert len(base64.urlsafe_b64decode(token[4:] + "=")) == 32  # 256 random bits
    assert "shown only now" in result.stderr and token not in result.stderr
    text = (fleet.root / "qrm.yaml").read_text()
    assert token not in text
    digest = hashlib.sha256(token.encode()).hexdigest()
    assert text.startswith(SETTINGS + "tokens:\n- {name: ci, scopes: [read, write], created: '")
    assert text.endswith(f"', sha256: {digest}}}\n")
    assert create(fleet, "other") != token


def test_list_names_scopes_and_dates_and_never_a_whole_hash(fleet: Workspace) -> None:
    tokens = {name: create(fleet, name, *scopes) for name, scopes in
              {"ci": ["read"], "deploy": ["read", "write"], "vault": ["secrets"]}.items()}
    listed = fleet.qrm("token", "list")
    assert listed.exit_code == 0
    lines = listed.stdout.splitlines()
    assert lines[0].split() == ["NAME", "SCOPES", "CREATED", "SHA256"]
    assert [line.split()[:2] for line in lines[2:]] == [["ci", "read"], ["deploy", "read,write"], ["vault", "secrets"]]
    document = json.loads(fleet.qrm("token", "list", "--json").stdout)
    assert [(t["name"], t["scopes"]) for t in document["tokens"]] == [("ci", ["read"]), ("deploy", ["read", "write"]),
                                                                      ("vault", ["secrets"])]
    for token in tokens.values():
        digest = hashlib.sha256(token.encode()).hexdigest()
        assert digest[:8] in listed.stdout and digest not in listed.stdout + json.dumps(document)
        assert token not in listed.stdout + json.dumps(document)


def test_revoke_removes_the_token_and_keeps_the_rest(fleet: Workspace) -> None:
    create(fleet, "ci")
    with_ci = (fleet.root / "qrm.yaml").read_text()
    create(fleet, "deploy", "write")
    result = fleet.qrm("token", "revoke", "deploy")
    assert result.exit_code == 0 and "token deploy revoked" in result.stdout
    assert (fleet.root / "qrm.yaml").read_text() == with_ci
    assert fleet.qrm("token", "list").stdout.count("\n") == 3


@pytest.mark.parametrize(("args", "message"), [
    (["revoke", "nope"], "error: no token named 'nope'; tokens: ci"),
    (["create", "ci"], "error: a token named 'ci' exists already; revoke it first (qrm token revoke ci) or choose "
                       "another name"),
    (["create", "New Token"], "error: invalid token name 'New Token': lower-case letters, digits, '.', '_' and '-', "
                              "starting and ending with a letter or digit"),
    (["create", "x", "--scope", "admin"], "error: unknown scope 'admin'; expected: read, write, secrets"),
], ids=["revoke-unknown", "create-twice", "bad-name", "bad-scope"])
def test_mistakes_are_one_line_and_change_nothing(fleet: Workspace, args: list[str], message: str) -> None:
    create(fleet, "ci")
    before = (fleet.root / "qrm.yaml").read_text()
    result = fleet.qrm("token", *args)
    assert (result.exit_code, result.stderr.splitlines()) == (1, [message])
    assert (fleet.root / "qrm.yaml").read_text() == before


def test_a_token_entry_edited_by_hand_wrongly_is_a_settings_error_with_its_line(fleet: Workspace) -> None:
    create(fleet, "ci")
    path = fleet.root / "qrm.yaml"
    path.write_text(path.read_text() + "- {name: ci, scopes: [root], created: x, sha256: short}\n")
    result = fleet.qrm("validate")
    assert result.exit_code == 1
    assert result.stderr.splitlines()[:2] == [
        "error: qrm.yaml:5:23: tokens.1.scopes.0: expected 'read', 'write' or 'secrets' (got 'root')",
        "error: qrm.yaml:5:42: tokens.1.sha256: String should match pattern '^[0-9a-f]{64}$' (got 'short')"]


def test_creates_at_the_same_time_all_land(fleet: Workspace) -> None:
    processes = [subprocess.Popen([sys.executable, "-m", "reconciler", "-C", str(fleet.root), "token", "create",
                                   f"t{i}"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                 for i in range(6)]
    tokens = [p.communicate(timeout=60)[0].strip() for p in processes]
    assert [p.returncode for p in processes] == [0] * 6
    listed = json.loads(fleet.qrm("token", "list", "--json").stdout)["tokens"]
    assert sorted(t["name"] for t in listed) == [f"t{i}" for i in range(6)]
    assert len(set(tokens)) == 6
    assert (fleet.root / "qrm.yaml").read_text().startswith(SETTINGS)


def test_two_tokens_of_one_name_in_qrm_yaml_are_refused(fleet: Workspace) -> None:
    create(fleet, "ci")
    path = fleet.root / "qrm.yaml"
    line = path.read_text().splitlines()[-1]
    path.write_text(path.read_text() + line + "\n")
    result = fleet.qrm("token", "list")
    assert result.exit_code == 1
    assert "token name 'ci' is used twice; each token needs its own name" in result.stderr.splitlines()[0]
