"""Every dashboard page of the navigation, in a real browser: each form control has an accessible name
(Chromium's own accessibility tree), Tab reaches the skip link and then the navigation, and nothing overflows
sideways at a phone's width (375 px) or at 1280x800.

Pages are added in parallel: the walk covers the NAVIGATION entries the dashboard has a route for now (a page
not built yet would be a 404), and at least the overview, plan, secrets and history pages."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi import FastAPI
from playwright.sync_api import Browser, Page, expect
from starlette.routing import Match

from reconciler.server import dashboard
from reconciler.server.dashboard.render import NAVIGATION
from tests.support import api_server
from tests.support.dashboard_session import signed_in

# the roles of controls a person operates, each of which must have a name a screen reader can say
CONTROL_ROLES = {"button", "checkbox", "combobox", "listbox", "menuitem", "radio", "searchbox", "slider",
                 "spinbutton", "switch", "textbox"}
VIEWPORTS = {"phone": {"width": 375, "height": 800}, "desktop": {"width": 1280, "height": 800}}


def built_pages() -> list[tuple[str, str]]:
    """The (path, label) of NAVIGATION that the dashboard has a page for."""
    app = FastAPI()
    dashboard.install(app)

    def routed(path: str) -> bool:  # as the app would route a GET of it (FULL: path and method match)
        scope = {"type": "http", "method": "GET", "path": path, "root_path": "", "headers": [], "query_string": b""}
        return any(route.matches(scope)[0] == Match.FULL for route in app.router.routes)

    return [(path, label) for path, label in NAVIGATION if routed(path)]


PAGES = built_pages()


def unnamed_controls(page: Page) -> list[str]:
    """The controls of the page (by role) whose accessible name is empty, from Chromium's accessibility tree."""
    session = page.context.new_cdp_session(page)
    try:
        nodes: list[dict[str, Any]] = session.send("Accessibility.getFullAXTree")["nodes"]
    finally:
        session.detach()
    found = []
    for node in nodes:
        role = node.get("role", {}).get("value")
        if node.get("ignored") or role not in CONTROL_ROLES:
            continue
        if not str(node.get("name", {}).get("value", "")).strip():
            found.append(f"{role} (node {node.get('backendDOMNodeId')})")
    return found


def overflow(page: Page) -> int:
    """How many pixels the page is wider than the window (0 when nothing sticks out sideways)."""
    extra: int = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
    return extra


def test_the_walk_covers_the_overview_and_the_plan_secrets_and_history_pages() -> None:
    assert {"/ui/", "/ui/plan", "/ui/secrets", "/ui/history"} <= {path for path, _ in PAGES}


@pytest.mark.parametrize(("html", "unnamed"), [
    ("<label for=a>Host</label><input id=a><button>Go</button>", []),
    ("<input aria-label=Search><select title=Type><option>app</option></select>", []),
    ("<input id=a><button></button>", ["textbox", "button"]),
    ("<label>Type <select><option></option></select></label><input type=checkbox>", ["checkbox"]),
    ("<input type=hidden name=csrf value=x><button aria-hidden=true></button>", []),
])
def test_the_name_check_finds_unnamed_controls(browser: Browser, html: str, unnamed: list[str]) -> None:
    page = browser.new_page()
    page.set_content(f"<!doctype html><html lang=en><title>t</title><body>{html}</body></html>")
    assert [found.split(" ")[0] for found in unnamed_controls(page)] == unnamed
    page.close()


@pytest.fixture(scope="module")
def pending(served: api_server.Server) -> api_server.Server:
    """The served example with a service added, so the plan page has changes and file diffs to lay out."""
    manifest = served.root / "manifests" / "quantumblog.yaml"
    manifest.write_text(manifest.read_text().replace("  cache:   {type: cache, protocol: tcp}\n",
                                                     "  cache:   {type: cache, protocol: tcp}\n"
                                                     "  search:  {type: app}\n"))
    return served


@pytest.mark.parametrize("viewport", VIEWPORTS)
@pytest.mark.parametrize(("path", "label"), PAGES)
def test_every_page_is_named_keyboard_reachable_and_fits(pending: api_server.Server, browser: Browser, path: str,
                                                         label: str, viewport: str) -> None:
    context, page = signed_in(pending, browser, "everything", viewport=VIEWPORTS[viewport])
    page.goto(pending.url + path)
    expect(page).to_have_title(f"{label} · qrm")
    page.evaluate("document.querySelectorAll('details').forEach(d => { d.open = true; })")  # opened, they fit too

    assert unnamed_controls(page) == []

    focused = []
    for _ in range(2 + len(NAVIGATION)):
        page.keyboard.press("Tab")
        focused.append(page.evaluate("document.activeElement.textContent.trim()"))
    assert focused == ["Skip to content", "qrm", *(name for _, name in NAVIGATION)]
    for _ in range(1 + len(NAVIGATION)):  # back over the navigation and the brand to the skip link
        page.keyboard.press("Shift+Tab")
    assert page.evaluate("document.activeElement.textContent.trim()") == "Skip to content"
    page.keyboard.press("Enter")
    assert page.evaluate("document.activeElement.id") == "main"

    assert overflow(page) <= 0, f"{path} is {overflow(page)} px wider than {VIEWPORTS[viewport]['width']} px"
    context.close()
