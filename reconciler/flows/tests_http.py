"""Runs the HTTP cases of `qrm tests run`: every case of every environment at once on one asyncio loop, at most
`concurrency` in flight, through reconciler.edges.http_client (aiohttp: one keep-alive pool per environment, a
cookie jar per case). A write sends the Referer of its page; after a redirect one GET of the Location, with the
case's jar, reads the flash (when an assertion reads the flash or the followed page); an attempt has a timeout;
retries record every attempt. The flash is read by reconciler.core.flash (the session cookie, the page's
markup), selectors by reconciler.edges.html_select, and the assertions judged by reconciler.core.assertions.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Sequence
from urllib.parse import quote, urlencode, urljoin

from reconciler.core.assertions import Response, evaluate_all
from reconciler.core.durations import parse_duration
from reconciler.core.flash import flash_from_page, flash_from_session_cookie
from reconciler.core.models import TestCase, UploadFile
from reconciler.core.test_results import ERROR, FAILED, PASSED, SKIPPED, Attempt, CaseResult, Target, skip_reason
from reconciler.edges import html_select, http_client

DEFAULT_TIMEOUT = 10.0
DEFAULT_CONCURRENCY = 20
WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
REDIRECTS = frozenset({301, 302, 303, 307, 308})
UPLOAD_FILLER = b"qrm-upload-"


def upload_bytes(file: UploadFile) -> bytes:
    """What an upload sends: its `content` as UTF-8, else `size` bytes of a repeated filler (deterministic)."""
    if file.content is not None:
        return file.content.encode()
    return (UPLOAD_FILLER * (file.size // len(UPLOAD_FILLER) + 1))[:file.size]


def _form_value(value: str | int | float | bool) -> str:
    return "true" if value is True else "false" if value is False else str(value)


# What a path keeps as written: RFC 3986's unreserved and reserved characters, and % (escapes already made).
_PATH_SAFE = "/:@!$&'()*+,;=?#[]%~-._"


def _url(base_url: str, path: str, query: dict[str, str]) -> str:
    """The URL of a request: spaces and non-ASCII text of the path percent-encoded as UTF-8 (RFC 3986, as browsers
    do), so that the request line and a Referer carry the same ASCII URL."""
    url = base_url.rstrip("/") + quote(path if path.startswith("/") else "/" + path, safe=_PATH_SAFE)
    return url + ("?" + urlencode(query) if query else "")


async def _attempt(case: TestCase, target: Target, pool: http_client.Pool) -> Attempt:
    req = case.request
    browser = pool.browser(target.base_url)
    headers = dict(req.headers)
    body: bytes | None = None
    form: dict[str, str] | None = None
    files: list[http_client.Upload] = []
    if req.files:  # multipart/form-data: the form fields and the files in one body
        form = {k: _form_value(v) for k, v in (req.form or {}).items()}
        files = [http_client.Upload(name, f.filename, f.content_type, upload_bytes(f)) for name, f in req.files.items()]
    elif req.form is not None:
        body = urlencode({k: _form_value(v) for k, v in req.form.items()}).encode()
        headers.setdefault("Content-Type", "application/x-www-form-urlencoded")
    elif req.json_body is not None:
        body = json.dumps(req.json_body).encode()
        headers.setdefault("Content-Type", "application/json")
    elif req.method in WRITE_METHODS:
        body = b""
    url = _url(target.base_url, req.path, req.query)
    if req.method in WRITE_METHODS:
        headers.setdefault("Referer", _url(target.base_url, req.path, {}))
    started = time.perf_counter()
    try:
        raw = await browser.request(req.method, url, headers, body=body, form=form, files=files)
    except http_client.HttpError as exc:
        return Attempt(None, (time.perf_counter() - started) * 1000, error=str(exc))
    elapsed = (time.perf_counter() - started) * 1000
    location = raw.headers.get("location")
    flash: str | None = None
    followed: str | None = None
    wants_flash = any(a.flash is not None for a in case.expect)
    if raw.status in REDIRECTS and location and (wants_flash or any(a.no_errors for a in case.expect)):
        # only the flash and no_errors read the page a redirect leads to: without them it is not fetched
        flash = flash_from_session_cookie(browser.cookie("session"))
        try:
            nxt = await browser.request("GET", _follow(url, location), {})
        except http_client.HttpError as exc:
            if wants_flash:  # only the flash needs the followed page
                return Attempt(raw.status, elapsed, error=f"following the redirect to {location}: {exc}")
        else:
            followed = nxt.text
            page = flash_from_page(followed) if wants_flash else None
            # both: a page's own alert or status markup must not hide the flash the cookie carries
            flash = "\n".join(dict.fromkeys(t for t in (page, flash) if t)) or None
    text = raw.text
    if flash is None and raw.status < 300 and wants_flash:
        flash = flash_from_page(text)
    response = Response(raw.status, raw.headers, text, elapsed, location, flash, followed)
    return Attempt(raw.status, elapsed, tuple(evaluate_all(case.expect, response, html_select.select)))


def _follow(url: str, location: str) -> str:
    """The URL a Location leads to from `url`; HttpError when the Location is not a valid URL (urljoin refuses
    e.g. a malformed IPv6 host; the client refuses a port out of range)."""
    try:
        return urljoin(url, location)
    except ValueError as exc:
        raise http_client.HttpError(f"not a valid URL: {location!r} ({exc})") from None


def _skip_reason(case: TestCase, target: Target) -> str | None:
    reason = skip_reason(case, target)
    if reason is not None:
        return reason
    if case.type == "query" or case.request.sql is not None:
        return "a query case: qrm tests run passes it to reconciler.edges.query_tests, not the HTTP runner"
    return None


async def run_case(case: TestCase, target: Target, limit: asyncio.Semaphore, pool: http_client.Pool) -> CaseResult:
    reason = _skip_reason(case, target)
    if reason is not None:
        return CaseResult(case.id, case.name, case.type, target.environment, SKIPPED, reason=reason)
    timeout = parse_duration(case.timeout) if case.timeout else DEFAULT_TIMEOUT
    attempts: list[Attempt] = []
    async with limit:
        started = time.perf_counter()
        for _ in range(case.retries + 1):
            attempt_started = time.perf_counter()
            try:
                async with asyncio.timeout(timeout):  # in this task: wait_for would start one more per attempt
                    attempt = await _attempt(case, target, pool)
            except TimeoutError:
                attempt = Attempt(None, timeout * 1000, error=f"timed out after {timeout:g}s")
            except Exception as exc:  # whatever a server answers is a case error, never the end of the run
                attempt = Attempt(None, (time.perf_counter() - attempt_started) * 1000,
                                  error=f"the runner failed on this case: {type(exc).__name__}: "
                                        f"{' '.join(str(exc).split())[:200]}")
            attempts.append(attempt)
            if attempt.passed:
                break
        duration = (time.perf_counter() - started) * 1000
    last = attempts[-1]
    if last.passed:
        outcome, why = PASSED, ""
    elif last.error is not None:
        outcome, why = ERROR, last.error
    else:
        outcome, why = FAILED, "; ".join(last.failures())
    return CaseResult(case.id, case.name, case.type, target.environment, outcome, tuple(attempts), why, duration)


def run_cases(
    cases: Sequence[TestCase], targets: Sequence[Target], concurrency: int = DEFAULT_CONCURRENCY,
    on_result: Callable[[CaseResult], None] | None = None,
) -> list[CaseResult]:
    """Every case against every target, at most `concurrency` at once; results in (target, case) order."""

    async def main() -> list[CaseResult]:
        limit = asyncio.Semaphore(concurrency)
        async with http_client.Pool() as pool:

            async def one(case: TestCase, target: Target) -> CaseResult:
                result = await run_case(case, target, limit, pool)
                if on_result is not None:
                    on_result(result)
                return result

            return list(await asyncio.gather(*(one(c, t) for t in targets for c in cases)))

    return asyncio.run(main())
