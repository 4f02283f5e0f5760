"""flows/open_registries: a long-running process opens a workspace's registry once, and opens it afresh after a
use that failed (a registry that was damaged and then repaired is used again without a restart)."""

from __future__ import annotations

import pytest

from reconciler.core.errors import RegistryError
from reconciler.flows.open_registries import close_all, kept_registry
from reconciler.flows.workspace import open_workspace
from tests.support.workspace import Workspace


def test_a_registry_is_opened_once_and_afresh_after_a_failed_use(workspace: Workspace) -> None:
    ws = open_workspace(workspace.root)
    try:
        with kept_registry(ws) as first:
            pass
        with kept_registry(ws) as again:
            assert again is first
        with pytest.raises(RegistryError), kept_registry(ws) as failing:
            assert failing is first
            raise RegistryError("the registry went away")
        with kept_registry(ws) as fresh:
            assert fresh is not first
            assert fresh.schema_version() > 0
    finally:
        close_all()
