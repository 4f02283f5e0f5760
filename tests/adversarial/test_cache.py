"""A hostile `.qrm/cache/`: files planted where qrm keeps its caches (a tarball, a shared folder, a CI cache
restored from another job) must neither run code nor change what qrm plans.

Before: `.qrm/cache/desired.pickle` was unpickled whenever its first lines named the (predictable) key of
the workspace, so a planted one ran code on `qrm plan`; and an entry of `.qrm/cache/manifests.json` whose
sha256 matched a manifest's was used as that file's documents, so a planted service was planned. Both
files are now signed with a key kept outside the workspace ($XDG_CACHE_HOME/qrm/cache-key), and a file
whose signature does not verify is a cache miss.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import stat
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.support.workspace import Workspace

SERVICE = "kind: Service\nname: api\ntype: app\n"


class RunsCode:
    """What a hostile pickle holds: unpickling it calls os.system."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return os.system, (f"touch {self.marker}",)


def planned(workspace: Workspace) -> str:
    result = workspace.qrm("plan", "--no-refresh")
    assert result.exit_code == 0, result.output
    assert "Traceback" not in result.output
    return result.output


@pytest.fixture
def cached(workspace: Workspace) -> Workspace:
    """A workspace whose caches a first plan wrote."""
    workspace.manifest("api.yaml", SERVICE)
    planned(workspace)
    assert (workspace.root / ".qrm" / "cache" / "desired.pickle").is_file()
    assert (workspace.root / ".qrm" / "cache" / "manifests.json").is_file()
    return workspace


def desired_pickle(ws: Workspace) -> Path:
    return ws.root / ".qrm" / "cache" / "desired.pickle"


def manifests_json(ws: Workspace) -> Path:
    return ws.root / ".qrm" / "cache" / "manifests.json"


def test_a_planted_pickle_in_the_old_format_runs_no_code(cached: Workspace, tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    # The attack as found: the format line, the key (every manifest's sha256 and the code's: predictable),
    # then a pickle that runs a command.
    path = desired_pickle(cached)
    cache_key = path.read_bytes().split(b"\n")[1]  # the content key: the second line, before and now
    path.write_bytes(b"qrm-state-cache-1\n" + cache_key + b"\n" + pickle.dumps(RunsCode(marker)))
    output = planned(cached)
    assert not marker.exists()
    assert "service.api" in output


def test_a_planted_pickle_with_a_copied_signature_runs_no_code(cached: Workspace, tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    path = desired_pickle(cached)
    good = path.read_bytes()
    header, _, _ = good.partition(b"\n\x80")  # everything before the pickle's protocol byte
    path.write_bytes(header + b"\n" + pickle.dumps(RunsCode(marker), protocol=pickle.HIGHEST_PROTOCOL))
    output = planned(cached)
    assert not marker.exists()
    assert "service.api" in output


def ghost_entries(ws: Workspace) -> dict[str, object]:
    """manifests.json's files, with a service that is in no manifest added to api.yaml's documents."""
    sha = hashlib.sha256((ws.root / "manifests" / "api.yaml").read_bytes()).hexdigest()
    documents = [{"kind": "Service", "name": "api", "type": "app"},
                 {"kind": "Service", "name": "ghost", "type": "app", "port": 8999}]
    return {"manifests/api.yaml": {"sha256": sha, "documents": documents}}


@pytest.mark.parametrize("form", ["old format", "new format, copied signature"])
def test_a_planted_manifests_json_entry_plans_no_service_that_is_in_no_manifest(cached: Workspace,
                                                                               form: str) -> None:
    desired_pickle(cached).unlink()  # so the parsed-document cache is what plan reads
    body = json.dumps({"version": 1, "files": ghost_entries(cached)})
    if form == "old format":
        manifests_json(cached).write_text(body)
    else:
        signature = manifests_json(cached).read_text().split("\n", 1)[0]
        manifests_json(cached).write_text(signature + "\n" + body)
    output = planned(cached)
    assert "ghost" not in output
    assert "service.api" in output


def test_the_signing_key_is_private_and_outside_the_workspace(cached: Workspace) -> None:
    key = Path(os.environ["XDG_CACHE_HOME"]) / "qrm" / "cache-key"
    assert key.is_file()
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert stat.S_IMODE(key.parent.stat().st_mode) == 0o700
    assert not any(p.name == "cache-key" for p in cached.root.rglob("*"))
    assert key.read_text().strip() not in desired_pickle(cached).read_bytes().decode("latin-1")


def test_an_unchanged_workspace_still_plans_from_the_caches(cached: Workspace) -> None:
    before = desired_pickle(cached).read_bytes()
    result = cached.qrm("--log-level", "debug", "plan", "--no-refresh")
    assert result.exit_code == 0, result.output
    assert "desired state from cache" in result.output
    assert desired_pickle(cached).read_bytes() == before


def test_without_a_usable_key_folder_qrm_works_without_caches(workspace: Workspace, tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    blocked = tmp_path / "not-a-folder"
    blocked.write_text("a file where the cache folder would be")
    monkeypatch.setenv("XDG_CACHE_HOME", str(blocked))
    workspace.manifest("api.yaml", SERVICE)
    assert "service.api" in planned(workspace)
    assert "service.api" in planned(workspace)
    assert not desired_pickle(workspace).exists() and not manifests_json(workspace).exists()


def world_writable(key: Path, elsewhere: Path) -> None:
    key.write_text("ab" * 32 + "\n")
    key.chmod(0o666)


def symlinked(key: Path, elsewhere: Path) -> None:
    elsewhere.write_text("ab" * 32 + "\n")
    key.symlink_to(elsewhere)


def damaged(key: Path, elsewhere: Path) -> None:
    key.write_text("not hex\n")


@pytest.mark.parametrize("spoil", [world_writable, symlinked, damaged])
def test_a_key_file_others_could_have_written_turns_the_caches_off(
        workspace: Workspace, tmp_path: Path, spoil: Callable[[Path, Path], None]) -> None:
    key = Path(os.environ["XDG_CACHE_HOME"]) / "qrm" / "cache-key"
    key.parent.mkdir(parents=True, mode=0o700)
    spoil(key, tmp_path / "elsewhere")
    workspace.manifest("api.yaml", SERVICE)
    assert "service.api" in planned(workspace)
    assert not desired_pickle(workspace).exists() and not manifests_json(workspace).exists()
