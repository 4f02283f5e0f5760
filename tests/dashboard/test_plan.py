"""The Plan page in a real browser: "in sync" on the applied example; after a manifest edit and a hand edit of
a generated .env, the changes grouped by kind with a glyph and a word each, and each file's masked diff in a
collapsible <details>: the prod password (CANARY) never on the page."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, expect

from tests.support import api_server
from tests.support.browser import screenshot
from tests.support.dashboard_session import signed_in


def test_the_applied_example_is_in_sync(served: api_server.Server, browser: Browser) -> None:
    context, page = signed_in(served, browser, "reader")
    page.get_by_role("navigation", name="Dashboard").get_by_role("link", name="Plan").click()
    expect(page).to_have_url(served.url + "/ui/plan")
    expect(page.get_by_role("heading", name="● in sync")).to_be_visible()
    expect(page.get_by_text("No changes. The registry and reports match the manifests.")).to_be_visible()
    for word in ("+ create: 0", "~ update: 0", "- delete: 0", "! repair: 0"):
        expect(page.locator(".plan-counts")).to_contain_text(word)
    expect(page.locator("details")).to_have_count(0)
    context.close()


@pytest.fixture
def edited(served: api_server.Server) -> Iterator[Path]:
    """A new service `search` in the quantumblog project, and a hand-added line holding CANARY in prod's .env;
    both undone afterwards."""
    manifest = served.root / "manifests" / "quantumblog.yaml"
    env_file = served.root / "generated" / "quantumblog" / "prod" / ".env"
    before = manifest.read_text(), env_file.read_text()
    manifest.write_text(before[0].replace("  cache:   {type: cache, protocol: tcp}\n",
                                          "  cache:   {type: cache, protocol: tcp}\n  search:  {type: app}\n"))
    env_file.write_text(before[1] + f"LEAKED={api_server.CANARY}\n")
    try:
        yield env_file
    finally:
        manifest.write_text(before[0])
        env_file.write_text(before[1])


def test_pending_changes_are_grouped_by_kind_with_masked_diffs(served: api_server.Server, browser: Browser,
                                                               edited: Path) -> None:
    context, page = signed_in(served, browser, "reader")
    page.goto(served.url + "/ui/plan")
    expect(page.get_by_role("heading", name="◐ 12 change(s) pending")).to_be_visible()
    expect(page.locator(".plan-counts")).to_contain_text("+ create: 3")
    expect(page.locator(".plan-counts")).to_contain_text("~ update: 9")
    services = page.locator("section", has=page.get_by_role("heading", name="Services (3)"))
    expect(services.get_by_role("listitem")).to_contain_text(
        [f"+ create service.quantumblog-{e}-search localhost:" for e in ("dev", "prod", "staging")])
    files = page.locator("section", has=page.get_by_role("heading", name="Generated files (9)"))
    prod_env = files.get_by_role("listitem").filter(has_text="file.generated/quantumblog/prod/.env")
    expect(prod_env).to_contain_text("~ update")
    diff = prod_env.locator("details")
    expect(diff.locator("pre")).not_to_be_visible()  # collapsed until opened
    diff.get_by_text("Diff of generated/quantumblog/prod/.env").click()
    expect(diff.locator("pre")).to_be_visible()
    expect(diff.locator("pre")).to_contain_text('+SEARCH_PORT="')
    expect(diff.locator("pre")).to_contain_text("-LEAKED=<value not shown>")
    for _ in range(8):  # open the other eight, the first closed one each time
        files.locator("details:not([open]) summary").first.click()
    expect(files.locator("details:not([open])")).to_have_count(0)
    screenshot(page, "plan")
    assert api_server.CANARY not in page.content()
    assert api_server.CANARY in edited.read_text()  # the secret was on disk: the page masked it
    context.close()
