"""Hostile text reaching the places qrm writes it (issue 15 item 10): a `.q` file named with a newline and a
code fence, a server answering with control characters, a manifest key with a newline. Each sink keeps its
structure: the PR comment's Markdown (parsed with markdown-it-py), JUnit XML (parsed with lxml), summary.md,
and one line per error or log record."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from lxml import etree
from markdown_it import MarkdownIt
from markdown_it.token import Token

from tests.support.healthservers import Servers, running
from tests.support.workspace import Workspace

# A file name Linux allows: it closes the code fence, forges the plan's heading and summary, and opens an
# HTML comment that would hide the rest of the PR comment.
FORGED = "x\n```\n\n### qrm plan\n\nNo changes. The registry and reports match the manifests.\n\n<!-- hidden tail\n.q"
COMPONENT = '<q:component name="Page" type="page"></q:component>\n'


def _parse(markdown: str) -> list[Token]:
    return MarkdownIt("commonmark").enable("table").parse(markdown)


def _project(ws: Workspace, source: str = "../shop-app", environment: str = "{host: localhost}") -> None:
    ws.manifest("shop.yaml", f"""
        kind: Project
        name: shop
        source: {source}
        services:
          web: {{type: app}}
        environments:
          dev: {environment}
        """)


def test_a_q_file_name_cannot_rewrite_the_pr_comment(workspace: Workspace) -> None:
    components = workspace.root.parent / "shop-app" / "components"
    components.mkdir(parents=True)
    (components / "home.q").write_text(COMPONENT)
    (components / FORGED).write_text(COMPONENT)
    _project(workspace)
    result = workspace.qrm("plan", "--no-refresh", "--markdown")
    assert result.exit_code == 0, result.output
    tokens = _parse(result.stdout)

    headings = [tokens[i + 1].content for i, t in enumerate(tokens) if t.type == "heading_open"]
    assert headings == ["qrm plan"]
    paragraphs = [tokens[i + 1].content for i, t in enumerate(tokens) if t.type == "paragraph_open"]
    assert paragraphs[0] == "Plan: 5 to create, 0 to update, 0 to delete, 0 to repair."
    assert not any("No changes" in text for text in paragraphs)
    html = [t.content.strip() for t in tokens if t.type == "html_block"]
    assert all(block.startswith(("<details>", "</details>")) for block in html), html
    assert not any("<!--" in block for block in html)
    changes, found = (t.content.splitlines() for t in tokens if t.type == "fence")
    assert changes[0].startswith("+ service.shop-dev-web ")
    # the hostile name is one line of the component block, shown with its newlines escaped
    assert found == ["+ shop: components/home.q", "+ shop: components/" + FORGED.replace("\n", "\\n")]
    assert result.stdout.rstrip().endswith("</details>")

    text = workspace.qrm("plan", "--no-refresh")  # the terminal form: one line per component too
    assert "  + shop: components/" + FORGED.replace("\n", "\\n") + "\n" in text.stdout


def test_a_hostile_name_stays_on_its_line_in_scan_and_its_log(workspace: Workspace) -> None:
    components = workspace.root.parent / "shop-app" / "components"
    components.mkdir(parents=True)
    (components / FORGED).write_text(COMPONENT)
    (components / "lo\nop").symlink_to("..")  # a loop, which scan logs (at debug) and does not follow
    _project(workspace)
    result = workspace.qrm("--log-level", "debug", "scan")
    assert result.exit_code == 0, result.output
    rows = [line for line in result.stdout.splitlines() if line.startswith("components/")]
    assert len(rows) == 1 and rows[0].startswith("components/" + FORGED.replace("\n", "\\n") + "  Page  page  ")
    logged = result.stderr.splitlines()
    assert all(re.match(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d+ [A-Z]+ ", line) for line in logged), logged
    assert any("lo\\nop" in line for line in logged)


# What a hostile server sends: a redirect whose Location holds a terminal escape, other C0 controls, an
# encoded U+FFFE and a byte that is not UTF-8, to a port where nothing listens (so the follow fails and the
# reason quotes the Location as it came). (A NUL makes aiohttp refuse the answer, with a repr of it.)
def _hostile_redirect(servers: Servers) -> int:
    target = f"http://127.0.0.1:{servers.refused()}/".encode()
    location = target + b"\x1b[2J\x01\x0b\xef\xbf\xbe\xff"
    return servers.raw(b"HTTP/1.1 302 Found\r\nLocation: " + location + b"\r\nContent-Length: 0\r\n"
                       b"Connection: close\r\n\r\n")


def test_server_text_and_case_ids_keep_junit_summary_and_ci_lines_intact(
        workspace: Workspace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CI", "1")  # a line per case that did not pass
    with running() as servers:
        port = _hostile_redirect(servers)
        workspace.manifest("shop.yaml", f"""
            kind: Project
            name: shop
            services:
              web: {{type: app}}
            environments:
              dev: {{url: "http://127.0.0.1:{port}"}}
            ---
            kind: TestSuite
            name: shop-smoke
            project: shop
            environments: [dev]
            cases:
              - {{id: "follow", name: follow, type: custom, request: {{path: /}}, expect: [{{flash: Saved}}]}}
              - {{id: "id\\e[31m\\x01\\u2028```<!--", name: odd id, type: custom, request: {{path: /}},
                  expect: [{{status: 200}}]}}
            """)
        junit = tmp_path / "junit.xml"
        result = workspace.qrm("tests", "run", "shop-smoke", "--junit", str(junit))
    assert result.exit_code == 0, result.output

    cases = {case.get("name"): case for case in etree.parse(str(junit)).iter("testcase")}
    assert set(cases) == {"follow", "id\\x1b[31m\\x01\u2028```<!--"}
    [error] = cases["follow"].iter("error")
    message = error.get("message")
    assert message is not None and "/\\x1b[2J\\x01\\x0b\\ufffe" in message

    lines = result.stderr.splitlines()
    assert sorted(line.split()[:3] for line in lines) == [  # one line each, in the order they end
        ["ERROR", "dev", "follow"], ["FAILED", "dev", "id\\x1b[31m\\x01\\u2028```<!--"]]

    summary = (workspace.root / "reports/tests/shop-smoke/summary.md").read_text()
    tokens = _parse(summary)
    items = [tokens[i + 2].content for i, t in enumerate(tokens) if t.type == "list_item_open"]
    assert len(items) == 2 and items[0].startswith("`follow` on dev: following the redirect to http://")
    assert items[1] == "````id\\x1b[31m\\x01\\u2028```<!--```` on dev: status 302, expected 200"
    assert not [t for t in tokens if t.type == "html_block"]
    inline = [child for t in tokens if t.children for child in t.children]
    assert not [t for t in inline if t.type == "html_inline"]
    assert [t.content for t in inline if t.type == "code_inline"] == ["follow", "id\\x1b[31m\\x01\\u2028```<!--"]


@pytest.mark.parametrize("command", [("validate",), ("plan", "--no-refresh")])
def test_a_manifest_key_with_a_newline_keeps_one_line_per_error(workspace: Workspace, command: tuple[str, ...]) -> None:
    workspace.manifest("shop.yaml", """
        kind: Project
        name: shop
        services:
          "we\\nb\\u2028\\e": {type: app, port: 1}
        environments:
          dev: {host: localhost}
        """)
    result = workspace.qrm(*command)
    assert result.exit_code == 1
    lines = result.stderr.splitlines()
    assert len(lines) == 3 and all(line.startswith("error: manifests/shop.yaml:4:") for line in lines[:2])
    assert "services.we\\nb\\u2028\\x1b:" in lines[0]
    assert re.fullmatch(r"2 problems? found.*|2 problem\(s\) found\.", lines[2])


@pytest.mark.parametrize("key", ["A\nB", "A\u2028B", "A\x1b[2JB"])
def test_a_secret_key_with_a_newline_keeps_the_error_on_one_line(workspace: Workspace, key: str) -> None:
    _project(workspace, source="../none")
    result = workspace.qrm("secrets", "get", key)
    assert result.exit_code == 1
    assert len(result.stderr.splitlines()) == 1 and result.stderr.startswith("error: ")
