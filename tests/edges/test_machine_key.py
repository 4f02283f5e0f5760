"""This machine's qrm key (edges/machine_key): made once, private, outside the workspace, shared by
concurrent first users, and a damaged file is a clear error, never silently replaced."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from reconciler.core.errors import QrmError
from reconciler.edges import machine_key


def env_for(tmp_path: Path) -> dict[str, str]:
    return {"HOME": str(tmp_path / "home"), "XDG_CONFIG_HOME": str(tmp_path / "config")}


def test_read_never_creates_and_ensure_creates_once(tmp_path: Path) -> None:
    env = env_for(tmp_path)
    assert machine_key.read_key(env) is None
    assert not (tmp_path / "config").exists()
    key = machine_key.ensure_key(env)
    assert len(key) == machine_key.KEY_BYTES
    path = tmp_path / "config" / "qrm" / "machine.key"
    assert machine_key.key_file(env) == path
    assert path.read_text() == key.hex() + "\n"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600 and stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert machine_key.ensure_key(env) == key == machine_key.read_key(env)


def test_without_xdg_config_home_it_is_under_home(tmp_path: Path) -> None:
    assert machine_key.key_file({"HOME": str(tmp_path)}) == tmp_path / ".config" / "qrm" / "machine.key"


@pytest.mark.parametrize("content", ["", "zz" * 32, "ab" * 31, "ab" * 33, "AB" * 32 + "\n", "ab" * 32 + "\n\n"],
                         ids=["empty", "not-hex", "short", "long", "upper-case", "extra-line"])
def test_a_damaged_key_is_refused_and_kept(tmp_path: Path, content: str) -> None:
    env = env_for(tmp_path)
    path = machine_key.key_file(env)
    path.parent.mkdir(parents=True)
    path.write_text(content)
    for call in (machine_key.read_key, machine_key.ensure_key):
        with pytest.raises(QrmError) as caught:
            call(env)
        assert str(caught.value) == (f"{path}: not a qrm machine key (64 hex digits); move it away: qrm apply makes "
                                     "a new one")
    assert path.read_text() == content


def test_a_config_folder_that_is_a_file_is_one_clear_error(tmp_path: Path) -> None:
    env = env_for(tmp_path)
    (tmp_path / "config").write_text("a file where the folder should be")
    for call in (machine_key.read_key, machine_key.ensure_key):
        with pytest.raises(QrmError) as caught:
            call(env)
        assert str(caught.value) == f"cannot read qrm's machine key {machine_key.key_file(env)}: Not a directory"


def test_concurrent_first_users_agree_on_one_key(tmp_path: Path) -> None:
    """Six processes making the key at once: one writes it, all use it, no temporary file is left."""
    env = {**os.environ, **env_for(tmp_path)}
    code = "from reconciler.edges import machine_key; print(machine_key.ensure_key().hex())"
    runs = [subprocess.Popen([sys.executable, "-c", code], env=env, stdout=subprocess.PIPE, text=True)
            for _ in range(6)]
    keys = {run.communicate(timeout=30)[0].strip() for run in runs}
    assert all(run.returncode == 0 for run in runs)
    assert len(keys) == 1 and len(keys.pop()) == 64
    assert [p.name for p in (tmp_path / "config" / "qrm").iterdir()] == ["machine.key"]
