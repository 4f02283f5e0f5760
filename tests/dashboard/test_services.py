"""The Services page in a real browser against a real `qrm serve`: services that answer for real on
127.0.0.1 (tests/support/health_fleet), the Run health check button updating the table in place, a health
change another client causes arriving live over Server-Sent Events, the same button without JavaScript, the
filters, what a read-only token sees, and a phone's width."""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, Locator, Page, expect

from reconciler.server.dashboard.services import PAGE_SIZE, ago
from tests.support import api_server, health_fleet
from tests.support.browser import screenshot
from tests.support.dashboard_session import signed_in
from tests.support.health_fleet import Fleet

STATUS_CELL = re.compile(r"^(● passing|▲ warning|✖ critical|○ unknown)$")


def row(page: Page, service: str) -> Locator:
    return page.locator(f'#services-table tr[data-service="{service}"]')


def mark(page: Page) -> None:
    """A value only this document holds: still there after an action means the page was not reloaded."""
    page.evaluate("window.qrmNotReloaded = true")


def not_reloaded(page: Page) -> bool:
    return bool(page.evaluate("window.qrmNotReloaded === true"))


def subscribers(server: api_server.Server) -> int:
    count: int = server.get("/events/subscribers", server.tokens["reader"]).json()["subscribers"]
    return count


def test_run_health_check_updates_the_table_in_place(fleet_served: Fleet, browser: Browser) -> None:
    server, ports = fleet_served.server, fleet_served.ports
    context, page = signed_in(server, browser, "everything")
    page.goto(server.url + "/ui/services")
    expect(page.get_by_role("heading", name="Services")).to_be_visible()
    for name in ("admin", "api", "cache", "db"):
        expect(row(page, name)).to_contain_text(f"localhost:{ports[name]}")
        expect(row(page, name).locator(".status")).to_have_text("○ unknown")
        expect(row(page, name)).to_contain_text("never")
    mark(page)
    page.get_by_role("button", name="Run health check").click()
    expect(page.get_by_role("status")).to_contain_text("Checked 4 services: 3 passing, 0 warning, 1 critical")
    expect(row(page, "api").locator(".status")).to_have_text("● passing")
    expect(row(page, "db").locator(".status")).to_have_text("● passing")
    expect(row(page, "cache").locator(".status")).to_have_text("✖ critical")
    expect(row(page, "cache").locator(".reason")).to_have_text(f"connection refused by 127.0.0.1:{ports['cache']}")
    expect(row(page, "api").locator(".reason")).to_have_text("")  # a passing check has nothing to explain
    expect(row(page, "api")).to_contain_text(re.compile(r"\d+ s ago"))
    expect(row(page, "api")).to_contain_text(re.compile(r"(\d+|<1) ms"))
    checked = row(page, "api").locator("time")
    exact = checked.get_attribute("datetime")
    assert exact is not None and checked.get_attribute("title") == exact
    assert abs(datetime.fromisoformat(exact) - datetime.now(UTC)) < timedelta(minutes=5)
    assert not_reloaded(page)
    expect(page).to_have_url(server.url + "/ui/services")
    screenshot(page, "services")

    # the swapped-in table still follows the events: another client's round shows up in it
    fleet_served.switches["api"].status = 503
    assert httpx.post(server.url + "/resources/services/health-check", timeout=30,
                      headers={"Authorization": f"Bearer {server.tokens['writer']}"}).status_code == 200
    expect(row(page, "api").locator(".status")).to_have_text("✖ critical")
    expect(row(page, "api").locator(".reason")).to_have_text("HTTP 503")
    assert not_reloaded(page)

    page.set_viewport_size({"width": 375, "height": 800})
    expect(row(page, "cache")).to_be_visible()
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    screenshot(page, "services-phone")
    context.close()


def test_a_health_change_another_client_causes_arrives_live(fleet_served: Fleet, browser: Browser) -> None:
    server = fleet_served.server
    assert server.request("POST", "/resources/services/health-check",
                          headers={"Authorization": f"Bearer {server.tokens['writer']}"}).status_code == 200
    before = subscribers(server)  # no page open yet
    context, page = signed_in(server, browser, "reader")
    page.goto(server.url + "/ui/plan")  # the Overview it lands on is live too: leave it, and its stream closes
    deadline = time.monotonic() + 30
    while subscribers(server) > before and time.monotonic() < deadline:
        time.sleep(0.05)
    page.goto(server.url + "/ui/services")
    expect(row(page, "admin").locator(".status")).to_have_text("● passing")
    deadline = time.monotonic() + 30
    while subscribers(server) <= before and time.monotonic() < deadline:  # the page's EventSource is connected
        time.sleep(0.05)
    assert subscribers(server) > before
    mark(page)

    fleet_served.switches["admin"].status = 500
    answer = httpx.post(server.url + "/resources/services/health-check", timeout=30,
                        headers={"Authorization": f"Bearer {server.tokens['writer']}"})
    assert answer.status_code == 200, answer.text
    expect(row(page, "admin").locator(".status")).to_have_text("✖ critical")
    expect(row(page, "admin").locator(".reason")).to_have_text("HTTP 500")
    expect(row(page, "api").locator(".status")).to_have_text("● passing")
    assert not_reloaded(page)
    context.close()


def test_without_javascript_the_button_posts_a_form_and_comes_back_to_the_page(fleet_served: Fleet,
                                                                               browser: Browser) -> None:
    server = fleet_served.server
    context, page = signed_in(server, browser, "everything", java_script_enabled=False)
    page.goto(server.url + "/ui/services?type=app")
    expect(page.locator("#services-table tbody tr")).to_have_count(2)
    page.get_by_role("button", name="Run health check").click()
    expect(page).to_have_url(server.url + "/ui/services?type=app")  # the filters kept
    expect(row(page, "api").locator(".status")).to_have_text("● passing")
    expect(row(page, "admin").locator(".status")).to_have_text("● passing")
    context.close()
    answer = httpx.post(server.url + "/ui/services/health-check", data={"project": "", "type": "cache"}, timeout=30,
                        headers={"Authorization": f"Bearer {server.tokens['writer']}"}, follow_redirects=False)
    assert (answer.status_code, answer.headers["location"]) == (303, "/ui/services?type=cache")


@pytest.mark.parametrize(("chosen", "shown"), [("database", ["db"]), ("app", ["admin", "api"]), ("cache", ["cache"])])
def test_the_type_filter_is_a_plain_get_form(fleet_served: Fleet, browser: Browser, chosen: str,
                                             shown: list[str]) -> None:
    server = fleet_served.server
    context, page = signed_in(server, browser, "reader")
    page.goto(server.url + "/ui/services")
    expect(page.locator("#services-table tbody tr")).to_have_count(4)
    page.get_by_label("Type").select_option(chosen)
    page.get_by_role("button", name="Filter").click()
    expect(page).to_have_url(server.url + f"/ui/services?type={chosen}&project=")
    expect(page.locator("#services-table tbody th")).to_have_text(shown)
    context.close()


def test_the_example_workspace_s_services_show_a_glyph_and_a_word_and_never_a_secret(served: api_server.Server,
                                                                                     browser: Browser) -> None:
    context, page = signed_in(served, browser, "everything")
    page.goto(served.url + "/ui/services")
    statuses = page.locator("#services-table tbody .status")
    expect(statuses.first).to_be_visible()
    assert statuses.count() == len(served.get("/resources/services", served.tokens["reader"]).json()["services"])
    assert all(STATUS_CELL.match(text) for text in statuses.all_inner_texts())
    assert api_server.CANARY not in page.content()
    context.close()


def test_a_read_only_token_sees_no_button_and_cannot_post(served: api_server.Server, browser: Browser) -> None:
    context, page = signed_in(served, browser, "reader")
    page.goto(served.url + "/ui/services")
    expect(page.get_by_role("heading", name="Services")).to_be_visible()
    expect(page.get_by_role("button", name="Run health check")).to_have_count(0)
    expect(page.get_by_role("button", name="Filter")).to_be_visible()
    context.close()
    refused = httpx.post(served.url + "/ui/services/health-check", timeout=30,
                         headers={"Authorization": f"Bearer {served.tokens['reader']}"})
    assert refused.status_code == 403
    assert "reader has no &#39;write&#39; scope" in refused.text


def test_the_live_stream_needs_a_session(served: api_server.Server) -> None:
    answer = httpx.get(served.url + "/ui/events", timeout=30)
    assert answer.status_code == 401


NOW = datetime(2026, 12, 2, 12, 0, 0, tzinfo=UTC)


@pytest.mark.parametrize(("when", "shown"), [
    (None, "never"), ("2026-12-02T11:59:30Z", "30 s ago"), ("2026-12-02T12:00:00+00:00", "0 s ago"),
    ("2026-12-02T11:55:00+00:00", "5 min ago"), ("2026-12-02T09:00:00+00:00", "3 h ago"),
    ("2026-11-30T12:00:00+00:00", "2 d ago"), ("2026-12-02T12:00:05+00:00", "0 s ago"),  # a clock a little ahead
    ("2026-12-02T11:59:00", "1 min ago"), ("not a time", "not a time"),
])
def test_the_last_check_reads_as_a_relative_time(when: str | None, shown: str) -> None:
    assert ago(when, NOW) == shown


def test_many_services_come_a_page_at_a_time(tmp_path: Path, browser: Browser) -> None:
    with health_fleet.many(tmp_path, PAGE_SIZE + 30) as server:
        context, page = signed_in(server, browser, "reader")
        page.goto(server.url + "/ui/services?type=app")
        expect(page.locator("#services-table caption")).to_have_text(f"Services 1 to {PAGE_SIZE} of {PAGE_SIZE + 30}")
        expect(page.locator("#services-table tbody tr")).to_have_count(PAGE_SIZE)
        expect(page.locator("#services-table tbody th").first).to_have_text("svc-000")
        page.get_by_role("link", name="Next →").click()
        expect(page).to_have_url(server.url + f"/ui/services?type=app&offset={PAGE_SIZE}")
        expect(page.locator("#services-table tbody tr")).to_have_count(30)
        expect(page.locator("#services-table tbody th").first).to_have_text(f"svc-{PAGE_SIZE:03d}")
        expect(page.get_by_role("link", name="Next →")).to_have_count(0)
        page.get_by_role("link", name="← Previous").click()
        expect(page.locator("#services-table tbody th").first).to_have_text("svc-000")
        context.close()


def test_the_button_is_reachable_from_the_keyboard(fleet_served: Fleet, browser: Browser) -> None:
    server = fleet_served.server
    context, page = signed_in(server, browser, "everything")
    page.goto(server.url + "/ui/services")
    for _ in range(30):
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.textContent") == "Run health check":
            break
    else:
        pytest.fail("Tab never reached the Run health check button")
    page.keyboard.press("Enter")
    expect(row(page, "cache").locator(".status")).to_have_text("✖ critical")
    context.close()


def test_the_project_filter_shows_what_the_api_lists_for_that_project(served: api_server.Server,
                                                                      browser: Browser) -> None:
    every = served.get("/resources/services", served.tokens["reader"]).json()["services"]
    projects = sorted({s["project"] for s in every if s["project"]})
    assert projects  # the example has project services, or this test shows nothing
    context, page = signed_in(served, browser, "reader")
    for project in projects:
        page.goto(served.url + "/ui/services")
        page.get_by_label("Project").select_option(project)
        page.get_by_role("button", name="Filter").click()
        expect(page).to_have_url(served.url + f"/ui/services?type=&project={project}")
        listed = served.get(f"/resources/services?project={project}", served.tokens["reader"]).json()["services"]
        expect(page.locator("#services-table tbody th")).to_have_text([s["name"] for s in listed])
    context.close()
