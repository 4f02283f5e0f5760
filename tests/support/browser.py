"""A real browser for the dashboard's tests: Debian's chromium (/usr/bin/chromium, installed by
scripts/setup-interop) driven by the playwright Python package. Never `playwright install`: no machine here
can download a browser build. Screenshots go to test-artifacts/screenshots (not committed)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from playwright.sync_api import Browser, Page, expect, sync_playwright

from tests.support.paths import REPO

CHROMIUM = "/usr/bin/chromium"
SCREENSHOTS = REPO / "test-artifacts" / "screenshots"
# As root chromium needs --no-sandbox; the rest keeps it off the network this machine closes
# (background requests to Google's hosts would be refused, many at a time).
# How long an expect() waits for what the user would wait for (playwright's default is 5 s): a health round or
# a run answered by a server on a loaded CI machine, with another test file running on the other core, can
# take longer. A page that is right is seen at once; only a wrong one waits this long.
EXPECT_TIMEOUT_MS = 30_000
ARGUMENTS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
             "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage"]


@contextmanager
def chromium() -> Iterator[Browser]:
    if not Path(CHROMIUM).exists():
        raise RuntimeError(f"{CHROMIUM} is missing: run scripts/setup-interop (it installs Debian's chromium)")
    expect.set_options(timeout=EXPECT_TIMEOUT_MS)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGUMENTS)
        try:
            yield browser
        finally:
            browser.close()


def screenshot(page: Page, name: str) -> Path:
    """The whole page as test-artifacts/screenshots/NAME.png."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def login_link(log: str) -> str:
    """The one-time login path `qrm serve` printed (/ui/login/TICKET)."""
    found = re.search(r"Dashboard: http://[^/\s]+(/ui/login/[\w-]+) ", log)
    assert found, f"qrm serve printed no login link:\n{log}"
    return found.group(1)
