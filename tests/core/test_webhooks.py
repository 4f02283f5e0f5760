"""core/webhooks: the three signature schemes checked against independent signers (hmac here, the
standardwebhooks package), environment names mapped, and the bounded set of recent delivery ids."""

from __future__ import annotations

import base64
import hashlib
import hmac
from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st
from standardwebhooks.webhooks import Webhook

from reconciler.core import webhooks

SECRET = "whsec_" + base64.b64encode(b"k" * 32).decode()


@given(secret=st.text(min_size=1, max_size=40), body=st.binary(max_size=200))
def test_a_github_signature_is_the_hex_hmac_sha256_of_the_raw_body(secret: str, body: bytes) -> None:
    header = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    webhooks.check_github(secret, body, header)
    with pytest.raises(webhooks.SignatureError):
        webhooks.check_github(secret, body + b"x", header)


@given(msg_id=st.text(alphabet="abcdef0123456789_", min_size=1, max_size=20), body=st.text(max_size=200))
def test_a_standard_webhooks_signature_made_by_the_reference_library_is_accepted(msg_id: str, body: str) -> None:
    when = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    signature = Webhook(SECRET).sign(msg_id, when, body)
    key = webhooks.standard_key(SECRET)
    stamp = str(int(when.timestamp()))
    webhooks.check_standard(key, body.encode(), msg_id, stamp, f"v1,bm90LWl0 {signature}", when.timestamp())
    with pytest.raises(webhooks.SignatureError, match="more than 300 s"):
        webhooks.check_standard(key, body.encode(), msg_id, stamp, signature, when.timestamp() + 301)
    with pytest.raises(webhooks.SignatureError, match="does not match"):
        webhooks.check_standard(key, body.encode() + b" ", msg_id, stamp, signature, when.timestamp())


@pytest.mark.parametrize(("headers", "reason"), [
    ((None, "1", "v1,x"), "missing Standard Webhooks header(s): webhook-id"),
    (("m", None, None), "missing Standard Webhooks header(s): webhook-timestamp, webhook-signature"),
    (("m", "yesterday", "v1,x"), "webhook-timestamp is not a unix time in seconds"),
])
def test_standard_webhooks_headers_that_are_missing_or_malformed(headers: tuple[str | None, ...], reason: str) -> None:
    with pytest.raises(webhooks.SignatureError) as raised:
        webhooks.check_standard(b"k", b"{}", headers[0], headers[1], headers[2], 1.0)
    assert str(raised.value) == reason


def test_a_secret_that_is_not_base64_is_named() -> None:
    with pytest.raises(ValueError, match=r"WEBHOOK_SECRET is not a Standard Webhooks secret \(whsec_<base64>\)"):
        webhooks.standard_key("whsec_not base64!")


@pytest.mark.parametrize(("header", "ok"), [("tok", True), ("tok ", False), ("", False), (None, False)])
def test_the_gitlab_token_is_compared_whole(header: str | None, ok: bool) -> None:
    if ok:
        webhooks.check_gitlab("tok", header)
    else:
        with pytest.raises(webhooks.SignatureError):
            webhooks.check_gitlab("tok", header)


@pytest.mark.parametrize(("name", "known", "expected"), [
    ("prod", {"prod", "dev"}, "prod"),
    ("Production", {"prod", "dev"}, "prod"),
    ("production", {"production", "prod"}, "production"),
    ("development", {"dev"}, "dev"),
    ("Staging", {"staging"}, "staging"),
    ("moon", {"prod"}, None),
])
def test_deployment_environments_map_to_qrm_environments(name: str, known: set[str], expected: str | None) -> None:
    assert webhooks.qrm_environment(name, known) == expected


def test_recent_ids_remember_the_last_ones_only() -> None:
    recent = webhooks.RecentIds(size=3)
    assert [recent.first_time(i) for i in ("a", "b", "a", "c", "d")] == [True, True, False, True, True]
    assert recent.first_time("a") is True  # forgotten: a, b, c, d went past the size
    assert recent.first_time("d") is False
