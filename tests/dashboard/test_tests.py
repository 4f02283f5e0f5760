"""The Tests pages in a real browser against a real `qrm serve` (tests/support/tests_pages: shop's dev and staging
on two Quantum stand-ins, where one case passes on dev and fails on staging): the suites list, a suite's case
table, history and environment cards, the Run button and a run page that follows the run to its end without
reloading, a read-only token without the button, a phone's width, and the page without JavaScript."""

from __future__ import annotations

import html
import re
from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, Page, expect

from reconciler.flows import test_runs
from reconciler.flows.workspace import open_workspace
from reconciler.server.dashboard.suites import ELSEWHERE_EVERY
from tests.support import api_server
from tests.support.browser import screenshot
from tests.support.dashboard_session import signed_in as sign_in
from tests.support.tests_pages import OUTCOMES

WORDS = {"passed": "✔ passed", "failed": "✖ failed", "error": "⚠ error", "skipped": "○ skipped",
         "not run": "– not run"}
RUN_URL = re.compile(r".*/ui/test-runs/(\d+)$")
DEV_COUNTS = "3 passed, 2 failed, 1 skipped of 6"  # home, about, flaky pass; missing fails, slow errors
PHONE = {"width": 375, "height": 740}


@pytest.fixture
def everything(tests_served: api_server.Server, browser: Browser) -> Iterator[Page]:
    context, page = sign_in(tests_served, browser, "everything")
    yield page
    context.close()


def row(page: Page, table: str, header: str) -> list[str]:
    """The texts of the cells of the row whose header is `header`, in `table` (a CSS selector)."""
    found = page.locator(f"{table} tbody tr").filter(has=page.get_by_role("rowheader", name=header))
    expect(found).to_have_count(1)
    return [" ".join(text.split()) for text in found.locator("td").all_inner_texts()]


def test_the_suites_list_shows_each_suite_with_its_last_result_per_environment(everything: Page,
                                                                                tests_served: api_server.Server
                                                                                ) -> None:
    everything.get_by_role("link", name="Tests").click()
    expect(everything).to_have_url(tests_served.url + "/ui/tests")
    expect(everything.get_by_role("heading", name="Tests", exact=True)).to_be_visible()
    smoke = row(everything, "table", "shop-smoke")
    assert smoke[:3] == ["shop", "6", "no"]
    assert re.search(r"staging: ✖ failed 2/6 passed", smoke[3]), smoke  # run once before the server started
    assert row(everything, "table", "shop-pages") == ["shop", "2", "yes: a failure blocks apply", "dev: – not run"]
    screenshot(everything, "tests")
    everything.get_by_role("link", name="shop-smoke").click()
    expect(everything.get_by_role("heading", name="shop-smoke")).to_be_visible()


def test_a_suites_page_shows_each_case_with_its_type_and_last_result_per_environment(
        everything: Page, tests_served: api_server.Server) -> None:
    everything.goto(tests_served.url + "/ui/tests/shop-smoke")
    headers = everything.locator("table.cases thead th").all_inner_texts()
    assert headers == ["Case", "Type", "dev", "staging"]
    types = {"home": "smoke", "about": "smoke", "flaky": "custom", "missing": "smoke", "slow": "endpoint",
             "signed-in": "auth"}
    for case, (dev, staging) in OUTCOMES.items():
        cells = everything.locator("table.cases tbody tr").filter(
            has=everything.locator("th small", has_text=re.compile(f"^{case}$")))
        assert [" ".join(t.split()) for t in cells.locator("td").all_inner_texts()] == [
            types[case], WORDS[dev], WORDS[staging]], case
    screenshot(everything, "suite")


def test_the_comparison_cards_give_each_environments_pass_rate_and_the_cases_that_differ(
        everything: Page, tests_served: api_server.Server) -> None:
    everything.goto(tests_served.url + "/ui/tests/shop-smoke")
    # passed over the cases that ran: dev 3 of 5, staging 2 of 5 (home fails there); the skipped case does not count
    for environment, rate in (("dev", "60%"), ("staging", "40%")):
        card = everything.get_by_role("region", name=environment)
        expect(card.locator(".rate")).to_have_text(f"{rate} passed")
    differing = everything.locator("table.differing tbody tr")
    expect(differing).to_have_count(1)
    assert [" ".join(t.split()) for t in differing.first.locator("th, td").all_inner_texts()] == [
        "home", WORDS["passed"], WORDS["failed"]]


# In every page of the browser: how many server-sent events made htmx act (htmx:sseMessage: on a run page only
# its own run's and `reset`), the count at each fetch of a run's progress, and why its event stream closed. The
# count is read in a microtask: htmx counts an event (htmx:sseMessage) just after the fetch it triggers starts.
SSE_RECORDER = """
window.sseMessages = 0; window.progressFetches = []; window.sseClosed = null;
document.addEventListener("htmx:sseMessage", () => { window.sseMessages += 1; });
document.addEventListener("htmx:beforeRequest", (e) => {
  if (e.detail.pathInfo.requestPath.endsWith("/progress")) {
    queueMicrotask(() => window.progressFetches.push(window.sseMessages));
  }
});
document.addEventListener("htmx:sseClose", (e) => { window.sseClosed = e.detail.type; });
"""


def test_the_run_button_opens_a_run_page_that_follows_the_run_by_its_events_to_its_end_without_reloading(
        everything: Page, tests_served: api_server.Server) -> None:
    everything.add_init_script(SSE_RECORDER)
    progress_requests: list[str] = []
    everything.on("request", lambda r: progress_requests.append(r.url) if r.url.endswith("/progress") else None)
    everything.goto(tests_served.url + "/ui/tests/shop-smoke")
    before = everything.locator("table.history tbody tr").count()
    everything.get_by_label("Environment").select_option("dev")
    everything.get_by_role("button", name="Run").click()
    expect(everything).to_have_url(RUN_URL)
    url = everything.url
    run_id = RUN_URL.match(url).group(1)  # type: ignore[union-attr]
    expect(everything.get_by_role("heading", name=f"Run {run_id}: shop-smoke on dev")).to_be_visible()
    summary = everything.locator(".run-summary")
    everything.evaluate("window.stillThisPage = true")  # gone if the page reloads
    # the slow case keeps it running for three seconds: the cases that ended before it appear while it runs
    expect(everything.locator("table.run-cases tbody tr").first).to_be_visible(timeout=20_000)
    expect(summary).to_contain_text(re.compile(r"◌ running\s+\d+ passed, \d+ failed, \d+ skipped so far"))
    expect(summary).to_contain_text("✖ failed", timeout=20_000)
    expect(summary).to_contain_text(DEV_COUNTS)
    assert everything.url == url
    assert everything.evaluate("window.stillThisPage") is True

    # every fetch of the progress came after a new event of this run, none in between (the three seconds of the
    # slow case had no event: a poll would fetch there), and the page stopped listening when the run finished
    fetched_after = everything.evaluate("window.progressFetches")
    assert fetched_after, "the page never fetched its progress"
    assert fetched_after == sorted(set(fetched_after)) and fetched_after[0] >= 1, fetched_after
    assert len(progress_requests) == len(fetched_after)
    assert everything.evaluate("window.sseClosed") == "message"
    assert all(f"/ui/test-runs/{run_id}/progress" in u for u in progress_requests), progress_requests

    # failures first, each with its reason; every case with its attempts and their messages
    headings = everything.locator("#run-progress h2").all_inner_texts()
    assert headings == ["Failures (2)", "Other cases (4)"]
    failures = everything.locator("table.failures tbody tr")
    assert [" ".join(t.split()) for t in failures.locator("td:first-child").all_inner_texts()] == [
        WORDS["failed"], WORDS["error"]]
    expect(failures.nth(0)).to_contain_text("status 404, expected 200")
    expect(failures.nth(1)).to_contain_text("timed out after 3s")
    flaky = everything.locator("table.run-cases tbody tr").filter(has_text="Flaky page")
    attempts = [" ".join(t.split()) for t in flaky.locator("ol.attempts > li").all_inner_texts()]
    assert len(attempts) == 2
    assert attempts[0].startswith("attempt 1: ✖ failed HTTP 500") and "status 500, expected 200" in attempts[0]
    assert attempts[1].startswith("attempt 2: ✔ passed HTTP 200")
    screenshot(everything, "test-run")

    everything.get_by_role("link", name="shop-smoke").click()
    history = everything.locator("table.history tbody tr")
    expect(history).to_have_count(before + 1)
    newest = [" ".join(t.split()) for t in history.first.locator("td").all_inner_texts()]
    assert newest[:2] == [f"run {run_id}", "dev"]
    assert newest[3] == "✖ failed 3/6"


def test_a_suites_page_shows_a_run_started_elsewhere_in_its_history_when_it_finishes_without_reloading(
        everything: Page, tests_served: api_server.Server) -> None:
    everything.goto(tests_served.url + "/ui/tests/shop-smoke")
    history = everything.locator("table.history tbody tr")
    before = history.count()
    everything.evaluate("window.stillThisPage = true")
    started = tests_served.request("POST", "/test-suites/shop-smoke/run", json={"environment": "staging"},
                                   headers={"Authorization": f"Bearer {tests_served.tokens['everything']}"})
    assert started.status_code == 202, started.text
    run_id = started.json()["run_id"]
    expect(history).to_have_count(before + 1, timeout=20_000)
    newest = [" ".join(t.split()) for t in history.first.locator("td").all_inner_texts()]
    assert newest[:2] == [f"run {run_id}", "staging"]
    assert everything.evaluate("window.stillThisPage") is True


def test_the_page_of_a_run_another_replica_runs_reads_it_again_until_it_ends_and_then_stops(
        everything: Page, tests_served: api_server.Server) -> None:
    """A run in the registry that this server does not run (as another replica's): its events never reach this
    server's bus, so its page reads it every few seconds, and stops once it has ended."""
    ws = open_workspace(tests_served.root)
    run_id = test_runs.start_run(ws, "shop-smoke", "dev", lease=120)
    fetches: list[str] = []
    everything.on("request", lambda r: fetches.append(r.url) if r.url.endswith("/progress") else None)
    everything.goto(f"{tests_served.url}/ui/test-runs/{run_id}")
    summary = everything.locator(".run-summary")
    expect(summary).to_contain_text("◌ running")
    everything.evaluate("window.stillThisPage = true")
    test_runs.end_run(ws, run_id, "error", "its replica stopped")
    expect(summary).to_contain_text("⚠ error", timeout=20_000)
    expect(everything.locator("#run-progress .problem")).to_contain_text("its replica stopped")
    assert everything.evaluate("window.stillThisPage") is True
    ended = len(fetches)
    everything.wait_for_timeout((ELSEWHERE_EVERY + 2) * 1000)  # a poll's interval and more: none comes (286)
    assert len(fetches) == ended, fetches


def test_without_javascript_a_keyboard_starts_a_run_whose_page_reloads_itself_until_it_has_finished(
        tests_served: api_server.Server, browser: Browser) -> None:
    context, page = sign_in(tests_served, browser, "everything", java_script_enabled=False)
    page.goto(tests_served.url + "/ui/tests/shop-smoke")
    chooser = page.get_by_label("Environment")
    chooser.focus()
    chooser.select_option("staging")
    page.keyboard.press("Tab")  # the keyboard reaches the button, and Enter posts the plain form
    expect(page.get_by_role("button", name="Run")).to_be_focused()
    page.keyboard.press("Enter")
    expect(page).to_have_url(RUN_URL)
    expect(page.locator(".run-summary")).to_contain_text("◌ running")
    expect(page.locator(".run-summary")).to_contain_text("2 passed, 3 failed, 1 skipped of 6", timeout=20_000)
    context.close()


def test_a_read_only_token_sees_the_pages_but_no_run_button(tests_served: api_server.Server,
                                                            browser: Browser) -> None:
    context, page = sign_in(tests_served, browser, "reader")
    page.goto(tests_served.url + "/ui/tests/shop-smoke")
    expect(page.get_by_role("heading", name="shop-smoke")).to_be_visible()
    expect(page.locator("table.cases tbody tr")).to_have_count(len(OUTCOMES))
    expect(page.get_by_role("button", name="Run")).to_have_count(0)
    expect(page.get_by_label("Environment")).to_have_count(0)
    # nor can it post one: the session's scopes decide, not the button's absence
    answer = page.request.post(tests_served.url + "/ui/tests/shop-smoke/run", form={"environment": "dev"})
    assert answer.status == 403
    assert "reader has no 'write' scope" in html.unescape(answer.text())
    context.close()


def test_a_run_post_without_the_pages_csrf_token_starts_nothing(everything: Page,
                                                                tests_served: api_server.Server) -> None:
    everything.goto(tests_served.url + "/ui/tests/shop-smoke")
    runs = everything.locator("table.history tbody tr").count()
    answer = everything.request.post(tests_served.url + "/ui/tests/shop-smoke/run", form={"environment": "dev"})
    assert answer.status == 403
    assert "CSRF token is missing or wrong" in answer.text()
    everything.reload()
    expect(everything.locator("table.history tbody tr")).to_have_count(runs)
    expect(everything.get_by_role("status")).to_have_count(0)  # no run running


@pytest.mark.parametrize(("path", "problem"), [("/ui/tests/no-such-suite", "there is no test suite 'no-such-suite'"),
                                               ("/ui/test-runs/9999", "there is no test run 9999")])
def test_an_unknown_suite_or_run_is_a_404_page(everything: Page, tests_served: api_server.Server, path: str,
                                               problem: str) -> None:
    answer = everything.goto(tests_served.url + path)
    assert answer is not None and answer.status == 404
    expect(everything.get_by_role("alert")).to_have_text(f"✖ {problem}")


@pytest.mark.parametrize("path", ["/ui/tests", "/ui/tests/shop-smoke", "/ui/test-runs/1"])
def test_every_tests_page_fits_a_phones_width(tests_served: api_server.Server, browser: Browser, path: str) -> None:
    context, page = sign_in(tests_served, browser, "everything", viewport=PHONE)
    page.goto(tests_served.url + path)
    expect(page.locator("main h1")).to_be_visible()
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    screenshot(page, "phone-" + path.strip("/").replace("/", "-"))
    context.close()
