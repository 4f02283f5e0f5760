"""The Ports page (/ui/ports) in a real browser against a real `qrm serve`: filters and search narrow the table
(with JavaScript and without), pages come from the server, reserved ports show as reserved, each range's bar has
its counts written beside it; reserving a port commits a Reservation naming the viewer in the served clone; a
read-only token sees no Reserve form, a post without the page's CSRF token is refused, a refused reservation
writes nothing; readable at a phone's width."""

from __future__ import annotations

import html
import re
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from playwright.sync_api import Browser, BrowserContext, Page, expect

from tests.support import api_server, ports_ui
from tests.support.browser import screenshot
from tests.support.git_repos import git
from tests.support.ports_ui import overflows, sign_in

ALL = ports_ui.APPS + ports_ui.DATABASES + 1  # and shop's dev web


def rows(page: Page) -> list[str]:
    """The service names of the table's rows, in order."""
    return page.locator("#allocations tbody tr td:nth-child(4)").all_inner_texts()


@pytest.mark.parametrize("javascript", [True, False])
@pytest.mark.parametrize(("host", "type", "search", "total", "first", "last"), [
    ("forge", "", "", 30, "db-000", "db-029"),
    ("", "app", "", 90, "api-000", "api-049"),
    ("", "web", "", 1, "shop-dev-web", "shop-dev-web"),
    ("", "", "api-01", 10, "api-010", "api-019"),
    ("localhost", "", "8005", 1, "api-005", "api-005"),
    ("forge", "", "api", 0, None, None),
])
def test_filters_and_search_narrow_the_table(ports_served: api_server.Server, browser: Browser, javascript: bool,
                                             host: str, type: str, search: str, total: int, first: str | None,
                                             last: str | None) -> None:
    context, page = sign_in(browser, ports_served, "reader", java_script_enabled=javascript)
    page.goto(ports_served.url + "/ui/ports")
    expect(page.locator("#count")).to_contain_text(f"{ALL} allocations, 1–50 shown")
    if host:
        page.get_by_label("Host", exact=True).select_option(host)
    if type:
        page.get_by_label("Type", exact=True).select_option(type)
    page.get_by_label("Search").fill(search)
    page.get_by_role("button", name="Filter").click()
    expect(page.locator("#count")).to_have_text(re.compile(rf"^{total} allocations?(,|$)"))
    shown = rows(page)
    if first is None:
        expect(page.locator("#allocations")).to_contain_text("No allocation matches these filters.")
    else:
        assert (shown[0], shown[-1], len(shown)) == (first, last, min(total, 50))
    sent = {key: values[0] for key, values in parse_qs(urlsplit(page.url).query).items()}
    assert sent == {k: v for k, v in {"host": host, "type": type, "q": search}.items() if v}  # a link to share
    context.close()


def test_pages_come_from_the_server_with_links(ports_served: api_server.Server, browser: Browser) -> None:
    context, page = sign_in(browser, ports_served, "reader")
    page.goto(ports_served.url + "/ui/ports")
    pager = page.get_by_role("navigation", name="Pages of allocations")
    expect(pager).to_contain_text("Page 1 of 3")
    assert rows(page)[:2] == ["db-000", "db-001"]  # by host (forge first), then port
    pager.get_by_role("link", name="Next →").click()
    expect(pager).to_contain_text("Page 2 of 3")
    expect(page.locator("#count")).to_contain_text("51–100 shown")
    assert rows(page)[0] == "api-019"  # after forge's 30, shop-dev-web (3000) and api-000 to api-018
    pager.get_by_role("link", name="Last").click()
    expect(page.locator("#count")).to_contain_text(f"101–{ALL} shown")
    expect(pager.get_by_role("link", name="Next →")).to_have_count(0)
    assert len(rows(page)) == ALL - 100
    pager.get_by_role("link", name="← Previous").click()
    expect(pager).to_contain_text("Page 2 of 3")
    context.close()


def test_reserved_ports_are_shown_as_reserved(ports_served: api_server.Server, browser: Browser) -> None:
    context, page = sign_in(browser, ports_served, "reader")
    page.goto(ports_served.url + "/ui/ports?host=localhost&type=app")
    row = page.locator("#reservations tbody tr", has_text="legacy-admin")
    expect(row).to_contain_text("8990-8995")
    expect(row).to_contain_text("the old PHP admin still listens here")
    expect(row).to_contain_text("◐ reserved")
    page.goto(ports_served.url + "/ui/ports?host=forge")
    expect(page.locator("#reservations")).to_contain_text("No reservation matches these filters.")
    context.close()


@pytest.mark.parametrize(("range_", "counts"), [
    ("localhost/app", f"{ports_ui.APPS} used · ◐ {len(ports_ui.RESERVED)} reserved · □ "
                      f"{1000 - ports_ui.APPS - len(ports_ui.RESERVED)} free"),
    ("forge/database", f"{ports_ui.DATABASES} used · ◐ 0 reserved · □ {100 - ports_ui.DATABASES} free"),
    ("localhost/web", "1 used · ◐ 0 reserved · □ 99 free"),
    ("forge/app", "0 used · ◐ 0 reserved · □ 1000 free"),
])
def test_each_range_has_a_bar_with_its_counts_written_beside_it(ports_served: api_server.Server, browser: Browser,
                                                                range_: str, counts: str) -> None:
    context, page = sign_in(browser, ports_served, "reader")
    page.goto(ports_served.url + "/ui/ports")
    card = page.locator(f'[data-range="{range_}"]')
    expect(card.locator(".counts")).to_contain_text(counts)
    used = int(counts.split()[0])
    width = card.locator(".bar .used").evaluate("e => e.style.width")
    size = 1000 if range_.endswith("app") else 100
    assert float(width.removesuffix("%")) == pytest.approx(100 * used / size, abs=0.01)
    context.close()


def test_a_read_only_token_sees_no_reserve_form(ports_served: api_server.Server, browser: Browser) -> None:
    context, page = sign_in(browser, ports_served, "reader")
    page.goto(ports_served.url + "/ui/ports")
    expect(page.get_by_role("heading", name="Allocations")).to_be_visible()
    expect(page.get_by_role("heading", name="Reserve a port")).to_have_count(0)
    expect(page.get_by_role("button", name="Reserve port")).to_have_count(0)
    answer = _post(ports_served, context, page, {"host": "localhost", "port": "8600", "reason": "mine"})
    assert answer.status_code == 403
    assert "reader has no 'write' scope" in html.unescape(answer.text)
    context.close()


def _post(server: api_server.Server, context: BrowserContext, page: Page, data: dict[str, str],
          csrf: bool = True) -> httpx.Response:
    """The reserve form's post with the browser's session cookie (and the page's CSRF token)."""
    cookie = next(c["value"] for c in context.cookies() if c["name"] == "qrm_session")
    token = page.locator('input[name="csrf"]').first.get_attribute("value")  # the sign-out form's, as every form's
    assert token
    return httpx.post(server.url + "/ui/ports/reserve", cookies={"qrm_session": cookie}, timeout=60,
                      data={**data, **({"csrf": token} if csrf else {})}, follow_redirects=False)


@pytest.mark.parametrize(("data", "status", "reason"), [
    ({"host": "localhost", "port": "8005", "reason": "x"}, 409, "localhost:8005 is allocated to api-005"),
    ({"host": "localhost", "port": "8992", "reason": "x"}, 409, "localhost:8992 is reserved already"),
    ({"host": "localhost", "port": "70000", "reason": "x"}, 422, "port: '70000' is not a port (1-65535)"),
    ({"host": "localhost", "port": "eighty", "reason": "x"}, 422, "'eighty' is not a port"),
    ({"host": "nowhere", "port": "8600", "reason": "x"}, 422, "unknown host 'nowhere'"),
    ({"host": "localhost", "port": "8600", "reason": "  "}, 422, "reason: say why"),
    ({"host": "localhost", "port": "8600", "reason": "x", "name": "Bad Name"}, 422, "name: 'Bad Name'"),
    ({"host": "localhost", "port": "8600", "reason": "x", "name": "legacy-admin"}, 409, "exists already"),
])
def test_a_refused_reservation_says_why_and_writes_nothing(ports_served: api_server.Server, browser: Browser,
                                                            data: dict[str, str], status: int, reason: str) -> None:
    head = git(ports_served.root, "rev-parse", "HEAD")
    context, page = sign_in(browser, ports_served, "everything")
    page.goto(ports_served.url + "/ui/ports")
    answer = _post(ports_served, context, page, data)
    assert answer.status_code == status
    assert 'role="alert"' in answer.text
    assert reason in html.unescape(answer.text)
    assert git(ports_served.root, "rev-parse", "HEAD") == head
    assert git(ports_served.root, "status", "--porcelain", "manifests") == ""
    context.close()


def test_a_post_without_the_pages_csrf_token_is_refused(ports_served: api_server.Server, browser: Browser) -> None:
    head = git(ports_served.root, "rev-parse", "HEAD")
    context, page = sign_in(browser, ports_served, "everything")
    page.goto(ports_served.url + "/ui/ports")
    answer = _post(ports_served, context, page, {"host": "localhost", "port": "8601", "reason": "forged"}, csrf=False)
    assert answer.status_code == 403
    assert "CSRF token is missing or wrong" in answer.text
    assert git(ports_served.root, "rev-parse", "HEAD") == head
    context.close()


def test_reserving_a_port_commits_a_reservation_naming_the_viewer(ports_served: api_server.Server,
                                                                  browser: Browser) -> None:
    context, page = sign_in(browser, ports_served, "everything", viewport={"width": 1280, "height": 800})
    page.goto(ports_served.url + "/ui/ports")
    form = page.locator("form", has=page.get_by_role("button", name="Reserve port"))
    form.get_by_label("Host").select_option("localhost")
    form.get_by_label("Port").fill("8500")
    form.get_by_label("Reason").fill("the projector demo <b>Friday</b>")
    form.get_by_role("button", name="Reserve port").click()
    expect(page.get_by_role("status")).to_contain_text("◐ reserved: reserved-localhost-8500, committed as")
    row = page.locator("#reservations tbody tr", has_text="reserved-localhost-8500")
    expect(row).to_contain_text("the projector demo <b>Friday</b>")  # shown as typed: autoescaped
    expect(row).to_contain_text("◐ reserved")
    expect(page.locator('[data-range="localhost/app"] .counts')).to_contain_text(
        f"◐ {len(ports_ui.RESERVED) + 1} reserved")
    shown = page.locator("code", has_text=re.compile(r"^[0-9a-f]{12}$")).inner_text()
    log = git(ports_served.root, "log", "-1", "--format=%H%n%an%n%s%n%b", "--name-only")
    sha, author, subject, *rest = log.splitlines()
    assert sha.startswith(shown)
    assert author == "qrm serve"
    assert subject == "qrm: reserve port 8500 on localhost (requested by everything)"
    assert "Qrm-Write: reserve reserved-localhost-8500" in rest
    assert "Qrm-Caller: everything" in rest
    assert "manifests/reservations/reserved-localhost-8500.yaml" in rest
    written = (ports_served.root / "manifests" / "reservations" / "reserved-localhost-8500.yaml").read_text()
    assert "ports: [8500]" in written or "- 8500" in written
    screenshot(page, "ports")
    context.close()


def test_the_ports_page_fits_a_phone(ports_served: api_server.Server, browser: Browser) -> None:
    context, page = sign_in(browser, ports_served, "everything", viewport={"width": 375, "height": 740})
    page.goto(ports_served.url + "/ui/ports")
    expect(page.get_by_role("button", name="Reserve port")).to_be_visible()
    assert not overflows(page)
    screenshot(page, "ports-phone")
    context.close()
