"""The yardstick of bench/tests.py: a bare aiohttp client doing what `qrm tests run` does for the benchmark's
cases, with nothing else (no manifests, no models, no reports, no registry).

Run:  python bench/bare_client.py CASES.json BASE_URL CONCURRENCY
CASES.json is a list of {"method", "path", "form", "expect"} as in the benchmark's TestSuite. Each case
gets one request (a form as application/x-www-form-urlencoded, with the Referer of its page), and after
a redirect, when a check reads the flash or the followed page, one GET of the Location with the cookies the
first response set (as qrm does); then the same checks
(status, redirect, flash in the `session` cookie or in the followed page, json_path equals on `$.key`,
no_errors). At most CONCURRENCY cases at once on one ClientSession. Prints "passed N failed N".
"""

from __future__ import annotations

import asyncio
import base64
import json
import sys
from typing import Any
from urllib.parse import urljoin

import aiohttp

ERROR_MARKS = ("<title>Parse Error</title>", "<title>Runtime Error</title>", "404 - Component Not Found")


def cookie_flash(value: str | None) -> str:
    if not value:
        return ""
    payload = value.rsplit(".", 1)[0]
    try:
        data = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except ValueError:
        return ""
    return " ".join(str(f.get("message", "")) for f in data.get("flashes", []) if isinstance(f, dict))


def passes(check: dict[str, Any], status: int, location: str | None, body: str, followed: str, flash: str) -> bool:
    if "status" in check:
        return status == check["status"]
    if "redirect" in check:
        return location is not None and location.endswith(check["redirect"])
    if "flash" in check:
        return check["flash"] in flash or check["flash"] in followed
    if "json_path" in check:
        key = check["json_path"]["path"].removeprefix("$.")
        try:
            return bool(json.loads(body).get(key) == check["json_path"]["equals"])
        except ValueError:
            return False
    if "no_errors" in check:
        return not any(mark in body or mark in followed for mark in ERROR_MARKS)
    raise SystemExit(f"the yardstick has no check {check}")


async def run_case(session: aiohttp.ClientSession, base: str, case: dict[str, Any], limit: asyncio.Semaphore) -> bool:
    async with limit:
        url = base + case["path"]
        headers = {"Referer": url} if case["method"] == "POST" else {}
        async with session.request(case["method"], url, data=case.get("form"), headers=headers,
                                   allow_redirects=False) as resp:
            status, location, body = resp.status, resp.headers.get("Location"), await resp.text()
            cookies = {k: m.value for k, m in resp.cookies.items()}
        followed = flash = ""
        if status in (301, 302, 303, 307, 308) and location and any("flash" in c or "no_errors" in c
                                                                   for c in case["expect"]):
            flash = cookie_flash(cookies.get("session"))
            jar = {"Cookie": "; ".join(f"{k}={v}" for k, v in cookies.items())} if cookies else {}
            async with session.get(urljoin(url, location), headers=jar, allow_redirects=False) as nxt:
                followed = await nxt.text()
        return all(passes(c, status, location, body, followed, flash) for c in case["expect"])


async def main(cases: list[dict[str, Any]], base: str, concurrency: int) -> list[bool]:
    limit = asyncio.Semaphore(concurrency)
    async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as session:
        return list(await asyncio.gather(*(run_case(session, base, c, limit) for c in cases)))


if __name__ == "__main__":
    with open(sys.argv[1]) as f:
        loaded = json.load(f)
    results = asyncio.run(main(loaded, sys.argv[2].rstrip("/"), int(sys.argv[3])))
    print(f"passed {sum(results)} failed {len(results) - sum(results)}")
