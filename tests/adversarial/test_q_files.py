"""Hostile .q files and source folders (issue 15, items 2 and 9): what a pull request can carry into the
folders `qrm scan`, `qrm plan` (the PR check) and `qrm tests generate` read.

Item 2: every regular expression run over a file's (or a server's) text runs in linear time. A quadratic
reader took 45 s on a 40 KB file; each hostile text here is 256 KB, scanned in a subprocess with a 30 s
timeout. A quadratic reader needs minutes to hours for it, a linear one well under a second: the bound is far
from both, so the tests neither depend on the machine's speed nor assert a time.

Item 9: a symbolic link loop named *.q, a FIFO named *.q and a folder that cannot be listed are problems of
the scan, reported like any component's problems with paths relative to the source folder (never the
machine's absolute path); scan, plan and tests generate go on with the other files.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from reconciler.core import templates
from reconciler.core.components import Component
from reconciler.edges.q_components import scan_file
from tests.support.hostile_q import FAMILIES
from tests.support.workspace import Workspace

SIZE = 256 * 1024
BOUND = 30  # seconds: a linear scan of SIZE takes well under one, the quadratic one took minutes


def run_bounded(code: str, *args: str) -> str:
    """Run `code` in a fresh Python process (this checkout's reconciler) with the bound; its standard output."""
    try:
        done = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=BOUND,
                              env={**os.environ})
    except subprocess.TimeoutExpired:
        pytest.fail(f"not done within {BOUND} s: quadratic (or worse) on hostile input")
    assert done.returncode == 0, done.stderr
    return done.stdout


SCAN = """
import sys
from pathlib import Path
from reconciler.edges.q_components import scan_file
component = scan_file(Path(sys.argv[1]), "components/hostile.q")
print(component.parse)
print(component.problems[0] if component.problems else "")
"""


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_a_hostile_q_file_is_read_within_the_bound(family: str, tmp_path: Path) -> None:
    text = FAMILIES[family](SIZE)
    assert len(text) > SIZE * 0.9
    path = tmp_path / "hostile.q"
    path.write_text(text)
    parse, first_problem = run_bounded(SCAN, str(path)).splitlines()
    assert parse in ("xml", "repaired", "fallback")  # read, never skipped (it is under the size limit)
    if parse != "xml":
        assert re.match(r"line \d+: ", first_problem), first_problem  # and what was repaired is reported


def test_the_line_based_reader_still_finds_what_a_hostile_file_names() -> None:
    """The look-behind that made the fallback linear still finds each attribute from its first character."""
    component = scan_text('<!DOCTYPE x>\n<q:component name="Shop" type="page">\n'
                          '<q:action name="buy" method="post" data-x:y.z="1"/>\n<form id=\'f\' method="post">\n')
    assert component.parse == "fallback"
    assert (component.name, component.type) == ("Shop", "page")
    assert [(a.name, a.method) for a in component.actions] == [("buy", "POST")]
    assert [(f.id, f.method) for f in component.forms] == [("f", "POST")]


def test_elements_nested_deeper_than_lxml_reads_go_to_the_line_based_reader_with_the_reason() -> None:
    component = scan_text('<q:component name="Deep">\n' + "<div>" * 300 + '<q:action name="go"/>')
    assert component.parse == "fallback"
    assert "line 2: elements nested more than 255 deep; repair given up" in component.problems
    assert [a.name for a in component.actions] == ["go"]


def scan_text(text: str) -> Component:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "x.q"
        path.write_text(text)
        return scan_file(path, "components/x.q")


# Other readers of file and server text: the quantum.config.yaml ${VAR:default} references, maxsize= sizes,
# qrm.yaml's commit_author, the flash candidates of a server's page, and the {…} templates of flash= and url=
# matched against a server's answer. Each took minutes (templates: hours) on a few hundred KB.
OTHER_READERS = {
    "a config value of ${a: without }": (
        "from reconciler.core.app_config import app_config\n"
        "config, problems = app_config({'datasources': {'db': {'host': '${a:' * 65536, 'password': '${a:' * 65536}}},"
        " 'quantum.config.yaml', 'blog')\nprint(len(config.datasources['db'].host or ''), len(problems))",
        "262144 0"),  # no reference without its }: the text as written
    "a maxsize of spaces": (
        "from reconciler.core.components import size_in_bytes\n"
        "print(size_in_bytes('1' + ' ' * 262144 + 'x'), size_in_bytes(' 5 ' + ' ' * 262144 + 'MB '))",
        "None 5242880"),
    "a commit_author of spaces": (
        "from reconciler.flows.reconcile import parse_author\n"
        "name, email = parse_author('qrm' + ' ' * 262144 + 'x <q@x.org>')\nprint(len(name), email)",
        "262148 q@x.org"),
    "a page of class= without >": (
        "from reconciler.core.flash import flash_from_page\nprint(flash_from_page('alert' + '<p class=' * 32768))",
        "None"),
    "a page of class= with a flash word after the >": (
        "from reconciler.core.flash import flash_from_page\n"
        "print(flash_from_page('<p class=' * 32768 + '><b>alert</b><div class=\"flash\">Saved</div>'))",
        "Saved"),
    "a redirect template against a long Location": (
        "from reconciler.core import templates\nprint(templates.ends_with('a{x}b{y}c', 'ab' * 131072))",
        "False"),
    "a flash template against a long flash": (
        "from reconciler.core import templates\nprint(templates.search('a{x}b{y}c{z}d', 'abc' * 87381))",
        "False"),
}


@pytest.mark.parametrize("case", sorted(OTHER_READERS))
def test_other_readers_of_file_and_server_text_are_linear(case: str) -> None:
    code, expected = OTHER_READERS[case]
    assert run_bounded(code).strip() == expected


def regex_search(template: str, text: str, suffix: bool) -> bool:
    """The matching templates did with a regular expression (polynomial on a long text), as the reference."""
    body = "".join(".*?" if expression else re.escape(part) for expression, part in templates.parts(template))
    return re.compile(f"(?:{body})\\Z" if suffix else body, re.S).search(text) is not None


@given(st.text("ab{}x", max_size=12), st.text("abx{}", max_size=12))
def test_templates_match_as_the_regular_expression_did(template: str, text: str) -> None:
    assert templates.search(template, text) == regex_search(template, text, False)
    assert templates.ends_with(template, text) == regex_search(template, text, True)


# --- item 9: what the scan cannot read ----------------------------------------------------------------------

PROJECT = """\
kind: Project
name: blog
source: app
environments:
  dev: {host: localhost}
"""
PAGE = '<q:component name="Home" type="page">\n  <p>Home</p>\n</q:component>\n'


def blog(workspace: Workspace) -> Path:
    workspace.manifest("blog.yaml", PROJECT)
    workspace.write("app/components/index.q", PAGE)
    return workspace.root / "app" / "components"


def report(workspace: Workspace) -> tuple[str, dict[str, dict[str, object]]]:
    text = (workspace.root / "reports" / "components" / "blog.yaml").read_text()
    document = yaml.safe_load(text)
    return text, {c["path"]: c for c in document["components"]}


def test_a_symlink_loop_named_q_is_a_problem_and_scan_plan_and_tests_generate_go_on(workspace: Workspace) -> None:
    components = blog(workspace)
    (components / "loop.q").symlink_to("loop.q")
    scanned = workspace.qrm("scan")  # in-process, exceptions not caught: a traceback would fail the test
    assert scanned.exit_code == 0, scanned.output
    assert ("problems in components/loop.q (skipped): line 0: unreadable: Too many levels of symbolic links"
            in scanned.output)
    text, found = report(workspace)
    assert found["components/loop.q"]["problems"] == ["line 0: unreadable: Too many levels of symbolic links"]
    assert found["components/index.q"]["parse"] == "xml"
    assert str(workspace.root) not in text
    planned = workspace.qrm("plan")
    assert planned.exit_code == 0, planned.output
    generated = workspace.qrm("tests", "generate", "blog")
    assert generated.exit_code == 0, generated.output
    suite = (workspace.root / "manifests" / "tests" / "blog.yaml").read_text()
    assert "/index" in suite or "path: /" in suite  # the readable page still has its smoke case


def test_a_fifo_named_q_is_never_opened_and_is_reported(workspace: Workspace) -> None:
    """Opening a FIFO blocks until a writer comes: the scan must not even try (a subprocess with the bound)."""
    components = blog(workspace)
    os.mkfifo(components / "pipe.q")
    done = workspace.qrm_process("scan", timeout=BOUND)
    assert done.returncode == 0, done.stderr
    assert "problems in components/pipe.q (skipped): line 0: not a regular file (a FIFO); not read" in done.stdout
    assert report(workspace)[1]["components/index.q"]["parse"] == "xml"


def without_root_bypass() -> list[str]:
    """The command prefix under which root cannot read a chmod 000 folder, [] for another user."""
    if os.geteuid() != 0:
        return []
    setpriv = shutil.which("setpriv")
    caps = "-dac_override,-dac_read_search"
    # util-linux's setpriv is in every Debian; a machine where it cannot drop the capabilities fails
    # here, loudly, rather than skipping the case.
    assert setpriv is not None, "setpriv (util-linux) is needed to run qrm as root without CAP_DAC_OVERRIDE"
    dropped = subprocess.run([setpriv, f"--inh-caps={caps}", f"--bounding-set={caps}", "true"],
                             capture_output=True, text=True)
    assert dropped.returncode == 0, f"setpriv cannot drop {caps}: {dropped.stderr}"
    return [setpriv, f"--inh-caps={caps}", f"--bounding-set={caps}"]


def test_a_folder_that_cannot_be_read_is_a_problem_with_its_relative_path(workspace: Workspace) -> None:
    """chmod 000 does not stop root, who is exempt from permission checks through two capabilities
    (CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH). CI runs as root, so there qrm runs under setpriv without them: it
    stays uid 0, owner of the folder, and the kernel's real permission check refuses it (EACCES), exactly as
    it refuses a user. As another user, chmod alone does it."""
    components = blog(workspace)
    workspace.write("app/components/private/secret.q", PAGE)
    (components / "private").chmod(0)
    try:
        done = subprocess.run([*without_root_bypass(), sys.executable, "-m", "reconciler", "-C", str(workspace.root),
                               "scan"], capture_output=True, text=True, timeout=BOUND, env={**os.environ})
    finally:
        (components / "private").chmod(0o755)
    assert done.returncode == 0, done.stderr
    reason = "line 0: folder cannot be read: Permission denied; its .q files are not scanned"
    assert f"problems in components/private (skipped): {reason}" in done.stdout
    text, found = report(workspace)
    assert found["components/private"]["problems"] == [reason]
    assert "components/private/secret.q" not in found and found["components/index.q"]["parse"] == "xml"
    assert str(workspace.root) not in text and "Traceback" not in done.stderr


def test_a_folder_too_deep_to_name_is_a_problem_and_the_scan_goes_on(workspace: Workspace) -> None:
    """A real condition under which listing a folder fails for any user, root included: its path is longer than
    the system accepts (PATH_MAX, 4096 bytes on Linux; ENAMETOOLONG). Such folders are made one level at a
    time, relative to the one above (dir_fd), as a checkout can make them."""
    components = blog(workspace)
    level = "d" * 200
    descriptor = os.open(components, os.O_DIRECTORY)
    try:
        for _ in range(25):  # 25 x 201 bytes: over 4096
            os.mkdir(level, dir_fd=descriptor)
            below = os.open(level, os.O_DIRECTORY, dir_fd=descriptor)
            os.close(descriptor)
            descriptor = below
        with open(os.open("deep.q", os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=descriptor), "w") as handle:
            handle.write(PAGE)
    finally:
        os.close(descriptor)
    scanned = workspace.qrm("scan")
    assert scanned.exit_code == 0, scanned.output
    text, found = report(workspace)
    unlisted = [path for path, c in found.items() if c["parse"] == "skipped"]
    assert len(unlisted) == 1 and unlisted[0].startswith(f"components/{level}/{level}/")
    assert found[unlisted[0]]["problems"] == [
        "line 0: folder cannot be read: File name too long; its .q files are not scanned"]
    assert found["components/index.q"]["parse"] == "xml"
    assert str(workspace.root) not in text


def test_an_unreadable_file_is_reported_without_the_machines_path(tmp_path: Path) -> None:
    (tmp_path / "gone.q").symlink_to(tmp_path / "nowhere.q")
    component = scan_file(tmp_path / "gone.q", "components/gone.q")
    assert component.problems == ("line 0: unreadable: No such file or directory",)
