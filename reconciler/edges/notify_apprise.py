"""The `apprise` notifier: the message handed to the apprise library, which speaks to the many services qrm
does not write clients for (Teams, Discord, Telegram, Matrix, ntfy, Gotify, Pushover, ... and json:// or
form:// to any HTTP endpoint), each by its apprise URL (https://github.com/caronc/apprise/wiki).

apprise is synchronous (requests), so a send runs in a thread of its own; apprise's connect/read timeouts
bound it, and the send stops waiting for it at its timeout. The title is the event's one-line headline, the body
core's text(event), the notify type follows the severity (failure, warning, info; success for a recovery).

apprise answers only yes or no: no becomes retry (the outbox's backoff then gives up after the last attempt),
with the reason "apprise could not deliver to <scheme>://..."; an URL apprise does not understand is failed.
A reason never shows the URL: in an apprise URL the host itself may be a token (tgram://<bot token>/<chat>,
discord://<webhook id>/<token>), so a reason names the scheme and apprise's service name only, and the host
and port for the plain HTTP schemes (json, form, xml), whose host is an address.

apprise and urllib3 log the URLs they use (apprise on its debug level, and an unparseable URL on its error
level; urllib3 the request line): while a send runs, a filter on those loggers masks every part of the URL
(user, password, host, path segments, query values) in their records, so no log handler ever sees them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from urllib.parse import parse_qsl, unquote, urlsplit

from reconciler.core.escaping import masked
from reconciler.core.notifications import Event, Outcome, Target, never_raising, text

# Schemes whose host is an address, not a credential: a reason may name it.
ADDRESS_SCHEMES = frozenset({"json", "jsons", "form", "forms", "xml", "xmls"})
MIN_MASKED = 4  # URL parts shorter than this ("api", a port) are not masked: they would garble every log line
# apprise's notify types (its NotifyType values) by severity; a recovery is "success"
_NOTIFY_TYPES = {"critical": "failure", "warning": "warning", "info": "info"}
# The loggers that print apprise URLs or the requests made from them.
LEAKY_LOGGERS = ("apprise", "urllib3.connectionpool")


class _MaskUrlParts(logging.Filter):
    """Masks the parts of the URLs being sent in the records of the apprise and urllib3 loggers."""

    def __init__(self) -> None:
        super().__init__()
        self.lock = threading.Lock()
        self.parts: dict[str, int] = {}  # part -> number of sends in flight that use it

    def add(self, parts: list[str]) -> None:
        with self.lock:
            for part in parts:
                self.parts[part] = self.parts.get(part, 0) + 1

    def remove(self, parts: list[str]) -> None:
        with self.lock:
            for part in parts:
                left = self.parts.get(part, 0) - 1
                if left > 0:
                    self.parts[part] = left
                else:
                    self.parts.pop(part, None)

    def filter(self, record: logging.LogRecord) -> bool:
        with self.lock:
            parts = sorted(self.parts, key=len, reverse=True)
        if not parts:
            return True
        try:
            message = record.getMessage()
        except (TypeError, ValueError):
            message = str(record.msg)
        hidden = masked(message, parts)
        if hidden != message:
            record.msg, record.args = hidden, None
        return True


_mask = _MaskUrlParts()
for _name in LEAKY_LOGGERS:
    logging.getLogger(_name).addFilter(_mask)


def secret_parts(url: str) -> list[str]:
    """Every part of an apprise URL that may be a credential, as written and percent-decoded."""
    try:
        split = urlsplit(url)
        pieces = [split.username or "", split.password or "", split.hostname or "", split.netloc]
        pieces += split.path.split("/")
        pieces += [value for _, value in parse_qsl(split.query, keep_blank_values=True)]
    except ValueError:
        pieces = url.split("/")
    found = {url}
    for piece in pieces:
        for form in (piece, unquote(piece)):
            if len(form) >= MIN_MASKED:
                found.add(form)
    return sorted(found, key=len, reverse=True)


def shown(url: str, service: str = "") -> str:
    """What a reason may say of an apprise URL: scheme:// and the service, or scheme://host:port for the plain
    HTTP schemes."""
    scheme, found, _ = url.partition("://")
    scheme = scheme.lower()
    if not found or not scheme.isalnum():
        return "the notifier's URL"
    if scheme in ADDRESS_SCHEMES:
        try:
            split = urlsplit(url)
            if split.hostname:
                return f"{scheme}://{split.hostname}" + (f":{split.port}" if split.port else "")
        except ValueError:
            pass
    return f"{scheme}://" + (f" ({service})" if service else "")


def title(event: Event) -> str:
    return text(event).splitlines()[0]


def _in_thread(url: str, event: Event, parts: list[str]) -> asyncio.Future[tuple[bool | None, str]]:
    """Run apprise in a daemon thread of its own, not the loop's default executor: asyncio.run() waits for that
    executor's threads at its end, so a service that hangs would hold the whole delivery pass. The URL's
    parts stay masked until the thread is done (it may outlive a send that timed out)."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[tuple[bool | None, str]] = loop.create_future()

    def settle(result: tuple[bool | None, str] | None, error: BaseException | None) -> None:
        if future.done():
            return
        if error is not None:
            future.set_exception(error)
        else:
            assert result is not None
            future.set_result(result)

    def work() -> None:
        result: tuple[bool | None, str] | None = None
        error: BaseException | None = None
        try:
            result = _notify_masked(url, event)
        except Exception as exc:
            error = exc
        finally:
            _mask.remove(parts)
        # RuntimeError: the pass is over and its loop closed, nobody waits for this answer any more
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(settle, result, error)

    threading.Thread(target=work, name="qrm-apprise", daemon=True).start()
    return future


def _notify_masked(url: str, event: Event) -> tuple[bool | None, str]:
    # imported at the first apprise send: its import (~0.1 s) and plugin scan (~0.2 s) would otherwise be paid
    # by every qrm command that can emit an event
    import apprise

    service = apprise.Apprise.instantiate(url)
    if service is None:
        return None, ""
    notifier = apprise.Apprise()
    notifier.add(service)
    notify_type = "success" if event.recovery else _NOTIFY_TYPES.get(event.severity, "info")
    result = notifier.notify(body=text(event), title=title(event), notify_type=notify_type)
    return bool(result), str(getattr(service, "service_name", "") or "")


async def send(target: Target, event: Event, delivery_id: str, timeout: float) -> Outcome:
    """Hand the event to apprise for the target's URL, in a thread; never raises."""
    if not target.url:
        return Outcome("failed", "the apprise notifier has no URL")
    parts = secret_parts(target.url)
    _mask.add(parts)
    return await never_raising(_handed(target, event, parts, timeout), f"apprise failed for {shown(target.url)}")


async def _handed(target: Target, event: Event, parts: list[str], timeout: float) -> Outcome:
    """What came of handing the event to apprise in a thread, within `timeout`."""
    try:
        delivered, service = await asyncio.wait_for(_in_thread(target.url, event, parts), timeout)
    except TimeoutError:
        return Outcome("retry", f"apprise did not finish delivering to {shown(target.url)} within {timeout:g} s")
    if delivered is None:
        return Outcome("failed", f"apprise does not understand the URL {shown(target.url)} (an unknown scheme or "
                                 "a malformed URL; see https://github.com/caronc/apprise/wiki)")
    if not delivered:
        return Outcome("retry", f"apprise could not deliver to {shown(target.url, service)}")
    return Outcome("delivered", f"apprise delivered to {shown(target.url, service)}")
