"""The Overview page (/ui/) in a real browser against a real `qrm serve`: the workspace's sync state from the plan,
the last apply with its revision and author, the suites whose latest run failed and the services not passing,
each a glyph and a word; readable at a phone's width."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from playwright.sync_api import Browser, expect

from tests.support import api_server
from tests.support.browser import screenshot
from tests.support.dashboard_session import signed_in
from tests.support.git_repos import git
from tests.support.health_fleet import Fleet
from tests.support.ports_ui import overflows, sign_in
from tests.support.webhooks import hooked, services, wait_for


def test_the_cards_say_in_sync_the_last_apply_the_failing_suite_and_the_critical_services(
        ports_served: api_server.Server, browser: Browser) -> None:
    applied = git(ports_served.root, "rev-list", "--max-parents=0", "HEAD").strip()  # HEAD when it was applied
    context, page = sign_in(browser, ports_served, "reader", viewport={"width": 1280, "height": 800})
    expect(page.locator("#sync")).to_contain_text("● in sync")
    last = page.locator("#last-apply")
    expect(last).to_contain_text("● success")
    expect(last).to_contain_text(applied[:12])
    expect(last).to_contain_text("Dev")  # the author of that commit
    expect(page.locator("#failing-suites")).to_contain_text("✖ 1 failing")
    expect(page.locator("#failing-suites")).to_contain_text("shop-smoke on dev: 1 of 2 failed")
    services = page.locator("#unhealthy")
    expect(services).to_contain_text("not passing")
    first = services.locator("li").first  # critical ones first, by name; nothing listens on their ports
    expect(first).to_contain_text("✖ critical")
    expect(first).to_contain_text("connection refused by 127.0.0.1:")
    expect(services.locator("li").last).to_contain_text("more")  # 8 are listed, the rest counted
    screenshot(page, "overview")
    context.close()


def _add_service(root: Path) -> Callable[[], None]:
    extra = root / "manifests" / "extra.yaml"
    extra.write_text("kind: Service\nname: extra\ntype: app\n")
    return extra.unlink


def _edit_lockfile(root: Path) -> Callable[[], None]:
    lockfile = root / "reports" / "allocations.yaml"
    before = lockfile.read_text()
    lockfile.write_text(before + "# edited by hand\n")
    return lambda: lockfile.write_text(before)


def _break_manifest(root: Path) -> Callable[[], None]:
    broken = root / "manifests" / "broken.yaml"
    broken.write_text("kind: Service\nname: Not_A_Name\ntype: app\n")
    return broken.unlink


@pytest.mark.parametrize(("change", "shown", "detail"), [
    (_add_service, "▲ 1 change pending", "1 to create"),
    (_edit_lockfile, "◆ drift", "1 to repair"),
    (_break_manifest, "✖ invalid manifests", "broken.yaml"),
])
def test_a_change_since_the_apply_shows_on_the_sync_card(ports_served: api_server.Server, browser: Browser,
                                                         change: Callable[[Path], Callable[[], None]], shown: str,
                                                         detail: str) -> None:
    context, page = sign_in(browser, ports_served, "reader")
    undo = change(ports_served.root)
    try:
        page.reload()
        expect(page.locator("#sync")).to_contain_text(shown)
        expect(page.locator("#sync")).to_contain_text(detail)
    finally:
        undo()
    page.reload()
    expect(page.locator("#sync")).to_contain_text("● in sync")
    context.close()


def test_a_reconcile_of_the_watch_loop_shows_on_the_overview_without_reloading(tmp_path: Path,
                                                                              browser: Browser) -> None:
    """A developer pushes a commit; `qrm serve --watch` pulls and applies it, and its `reconcile` lines make the
    open page fetch its cards: the last apply is the pushed revision, the workspace in sync, the page the same."""
    with hooked(tmp_path, "--watch", "--interval", "0.3") as h:
        wait_for("the start reconcile", lambda: "reconcile (start): applied" in h.server.log(), h.server)
        h.server.tokens = {"ops": h.token}
        context, page = signed_in(h.server, browser, "ops")
        fetches: list[str] = []
        page.on("request", lambda r: fetches.append(r.url) if "/ui/overview/cards" in r.url else None)
        first = git(h.dev, "rev-parse", "HEAD").strip()
        expect(page.locator("#last-apply")).to_contain_text(first[:12])
        page.evaluate("window.stillThisPage = true")  # gone if the page reloads
        assert fetches == []  # nothing happened yet, so nothing was fetched

        pushed = h.push(services("a", "b"), "add b")
        expect(page.locator("#last-apply")).to_contain_text(pushed[:12], timeout=60_000)
        expect(page.locator("#sync")).to_contain_text("● in sync")
        assert page.evaluate("window.stillThisPage") is True
        assert fetches, "the cards changed without a fetch of /ui/overview/cards"
        context.close()


def test_a_health_round_run_elsewhere_shows_on_the_services_card_without_reloading(fleet_served: Fleet,
                                                                                    browser: Browser) -> None:
    """Nothing listens on `cache`: a health round started through the API makes it critical, and its `health`
    event makes the open Overview fetch its cards."""
    server = fleet_served.server
    context, page = signed_in(server, browser, "reader")
    card = page.locator("#unhealthy")
    expect(card).to_contain_text("4 services, 4 not checked yet")
    page.evaluate("window.stillThisPage = true")
    answer = server.request("POST", "/resources/services/health-check",
                            headers={"Authorization": f"Bearer {server.tokens['writer']}"})
    assert answer.status_code == 200, answer.text
    expect(card).to_contain_text("✖ 1 not passing", timeout=30_000)
    expect(card.locator("li")).to_contain_text("cache")
    expect(card).to_contain_text("4 services.")  # every one checked now
    assert page.evaluate("window.stillThisPage") is True
    context.close()


def test_the_overview_fits_a_phone(ports_served: api_server.Server, browser: Browser) -> None:
    context, page = sign_in(browser, ports_served, "reader", viewport={"width": 375, "height": 740})
    expect(page.locator("#last-apply")).to_contain_text("success")
    assert not overflows(page)
    screenshot(page, "overview-phone")
    context.close()


@pytest.mark.parametrize("path", ["/ui/", "/ui/ports"])
def test_no_secret_value_is_on_the_pages(served: api_server.Server, browser: Browser, path: str) -> None:
    """The example's prod database password (CANARY) is in its secrets.enc and .env files, never on a page."""
    context, page = sign_in(browser, served, "everything")
    page.goto(served.url + path)
    expect(page.get_by_role("heading", level=1)).to_have_text("Overview" if path == "/ui/" else "Ports")
    assert api_server.CANARY not in page.content()
    context.close()
