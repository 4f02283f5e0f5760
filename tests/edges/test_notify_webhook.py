"""edges/notify_http's webhook sends against a real aiohttp receiver on 127.0.0.1: each status becomes the Outcome the
delivery rules need, the signature is what the `standardwebhooks` package verifies, and no reason ever shows
more of the URL than scheme://host:port."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Iterator
from email.utils import formatdate

import pytest
from hypothesis import given
from hypothesis import strategies as st
from standardwebhooks.webhooks import Webhook

from reconciler.core.notifications import Event, Outcome, Target
from reconciler.edges import notify_http
from tests.support.notify_receiver import Receiver, receiver

SECRET = "whsec_" + base64.b64encode(b"edge-test-key-0123456789").decode()
EVENT = Event("tests.failed", "shop-auto failed on prod", "shop", "prod", details=("login: 500", "cart: timeout"))


@pytest.fixture
def hook() -> Iterator[Receiver]:
    with receiver(SECRET) as found:
        yield found


def send(url: str, secret: str = SECRET, timeout: float = 5.0) -> Outcome:
    target = Target("ops", "webhook", url=url, signing_secret=secret)
    return asyncio.run(notify_http.send_webhook(target, EVENT, "msg_1", timeout))


@pytest.mark.parametrize(("status", "headers", "outcome", "retry_after"), [
    (200, {}, "delivered", None),
    (204, {}, "delivered", None),
    (301, {"Location": "/elsewhere"}, "failed", None),  # redirects are not followed
    (400, {}, "failed", None),
    (401, {}, "failed", None),
    (404, {}, "failed", None),
    (408, {}, "retry", None),
    (410, {}, "gone", None),
    (429, {"Retry-After": "30"}, "retry", 30.0),
    (429, {}, "retry", None),
    (500, {}, "retry", None),
    (503, {"Retry-After": "7"}, "retry", 7.0),
])
def test_each_answer_becomes_its_outcome(hook: Receiver, status: int, headers: dict[str, str], outcome: str,
                                         retry_after: float | None) -> None:
    hook.answers = [(status, headers)]
    result = send(hook.url("/hook?token=sekrit"))
    assert (result.status, result.retry_after) == (outcome, retry_after)
    assert result.reason == f"http://127.0.0.1:{hook.port} answered {status}" + (" Gone" if status == 410 else "") + \
        (" Too Many Requests" if status == 429 else "")
    [delivery] = hook.received
    assert delivery.verified and delivery.headers["webhook-id"] == "msg_1"
    assert delivery.payload == EVENT.as_payload()


def test_a_secret_that_is_not_whsec_base64_fails_without_quoting_it(hook: Receiver) -> None:
    result = send(hook.url(), secret="whsec_not base64!!")
    assert result.status == "failed" and "not base64!!" not in result.reason
    assert hook.received == []


def test_a_receiver_that_is_down_is_a_retry(hook: Receiver) -> None:
    url = hook.url("/hook/sekrit-path")
    hook.down()
    result = send(url)
    assert result.status == "retry" and result.reason.startswith(f"cannot connect to http://127.0.0.1:{hook.port}")
    assert "sekrit" not in result.reason


@given(text=st.text(max_size=2000), delivery=st.text("abcdefghijklmnopqrstuvwxyz_0123456789", min_size=1,
                                                        max_size=40), key=st.binary(min_size=1, max_size=64))
def test_the_signature_is_what_standard_webhooks_verifies(text: str, delivery: str, key: bytes) -> None:
    body = text.encode()  # a JSON body is UTF-8 (the package reads it as text)
    secret = "whsec_" + base64.b64encode(key).decode()
    headers = notify_http.headers(notify_http.signing_key(secret), delivery, body)
    Webhook(secret).verify(body, headers, json_parse=False)  # raises when it does not verify


@given(path=st.text(min_size=1, max_size=40).filter(lambda p: p.strip() == p))
def test_a_shown_url_is_its_scheme_host_and_port_only(path: str) -> None:
    assert notify_http.shown(f"https://hooks.example.com:8443/{path}?t=1") == "https://hooks.example.com:8443"


@pytest.mark.parametrize(("header", "seconds"), [
    (None, None), ("", None), ("120", 120.0), ("soon", None), (formatdate(0, usegmt=True), 0.0)])
def test_retry_after_in_seconds_or_as_a_date(header: str | None, seconds: float | None) -> None:
    assert notify_http.retry_after(header) == seconds
