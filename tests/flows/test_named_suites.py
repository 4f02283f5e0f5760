"""flows/named_suites (behind POST /projects/{project}/test-suites/generate) and flows/scan.last_scan, on the
fixture components in a real workspace: a named suite of some types, names and types from a request,
and the commit only in a git repository."""

from __future__ import annotations

import re

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from reconciler.core.errors import QrmError
from reconciler.core.models import NAME_PATTERN
from reconciler.flows.named_suites import UnknownCaseType, case_types, generate_named_suite, suite_name
from reconciler.flows.scan import last_scan, scan_workspace
from reconciler.flows.workspace import open_workspace
from tests.support.blog_project import blog
from tests.support.git_repos import git
from tests.support.workspace import Workspace


@pytest.mark.parametrize(("given_name", "expected"), [
    ("Auto Suite", "auto-suite"), ("  smoke  ", "smoke"), ("API v2.1!", "api-v2.1"), ("a" * 80, "a" * 63),
    ("--x--", "x"), ("Ünïcode Tests", "n-code-tests"),
])
def test_a_display_name_becomes_a_manifest_name(given_name: str, expected: str) -> None:
    assert suite_name(given_name) == expected


@given(st.text(max_size=100))
def test_a_suite_name_is_always_a_valid_manifest_name_or_refused(text: str) -> None:
    try:
        name = suite_name(text)
    except UnknownCaseType as exc:
        assert "has no letter or digit" in str(exc)
        return
    assert re.fullmatch(NAME_PATTERN, name) and len(name) <= 63


@pytest.mark.parametrize(("types", "expected"), [
    ([], []), (["api"], ["endpoint"]), (["API", "smoke"], ["smoke", "endpoint"]),
    (["form", "smoke", "form"], ["smoke", "form"]), (["query", "custom", "auth"], ["auth", "query", "custom"]),
])
def test_types_are_case_types_in_qrms_order_with_api_for_endpoint(types: list[str], expected: list[str]) -> None:
    assert case_types(types) == expected


def test_an_unknown_type_names_the_known_ones() -> None:
    with pytest.raises(UnknownCaseType, match=r"unknown case type 'e2e'; known types: smoke, auth, action, form, "
                                              r"query, endpoint, custom \(and api = endpoint\)"):
        case_types(["smoke", "e2e"])


@pytest.mark.parametrize("types", [["api"], ["smoke", "auth"], ["form", "action", "query"]])
def test_a_named_suite_holds_exactly_the_generated_cases_of_its_types(workspace: Workspace, types: list[str]) -> None:
    blog(workspace)
    ws = open_workspace(workspace.root)
    made = generate_named_suite(ws, "blog", "Picked", types)
    everything = yaml.safe_load((workspace.root / "manifests/tests/blog.yaml").read_text())["cases"]
    kinds = case_types(types)
    wanted = [c for c in everything if c["type"] in kinds]
    suite = yaml.safe_load(made.path.read_text())
    assert wanted and suite["cases"] == wanted
    assert (suite["name"], suite["project"], made.total, made.types) == ("picked", "blog", len(wanted), kinds)
    assert made.counts == {k: sum(1 for c in wanted if c["type"] == k) for k in kinds if any(
        c["type"] == k for c in wanted)}
    assert made.commit is None  # not a git repository: written, not committed
    assert workspace.qrm("validate").exit_code == 0


def test_without_a_name_or_types_it_is_the_clis_suite_and_in_git_it_is_committed(workspace: Workspace) -> None:
    blog(workspace)
    workspace.write(".gitignore", ".qrm/\n")
    git(workspace.root, "init", "-q", "-b", "main")
    git(workspace.root, "add", "-A")
    git(workspace.root, "commit", "-qm", "blog")
    made = generate_named_suite(open_workspace(workspace.root), "blog", caller="ci")
    assert (made.suite, made.path, made.types) == ("blog-auto", workspace.root / "manifests/tests/blog.yaml", [])
    assert made.commit is not None
    assert git(workspace.root, "log", "-1", "--format=%B", made.commit).strip() == (
        "qrm serve: generate test suite blog-auto of project blog\n\nRequested by token 'ci'.\n\n"
        "Qrm-Write: generate-suite blog-auto\nQrm-Caller: ci")
    assert git(workspace.root, "show", "--name-only", "--format=", made.commit).split() == [
        "manifests/tests/blog.yaml", "reports/generated-cases/blog.json"]


def test_an_unknown_project_is_an_error(workspace: Workspace) -> None:
    blog(workspace)
    with pytest.raises(QrmError, match="unknown project 'nope'; known projects: blog"):
        generate_named_suite(open_workspace(workspace.root), "nope", "x")


def test_the_last_scan_is_what_the_scan_recorded(workspace: Workspace) -> None:
    blog(workspace)
    ws = open_workspace(workspace.root)
    assert last_scan(ws, "blog")["components"] == []  # no registry yet
    scan = scan_workspace(ws, "blog")[0]
    last = last_scan(ws, "blog")
    assert (last["components"], last["stats"]) == (scan.components(), scan.totals)
    assert last["scanned_at"] is not None
