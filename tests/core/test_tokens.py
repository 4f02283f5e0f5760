"""core/tokens: a presented token is found by its sha256 among the stored ones, whichever entry it is;
which addresses are this machine only."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from reconciler.core.models import ApiToken
from reconciler.core.tokens import digest, find, is_loopback


def stored(name: str, token: str) -> ApiToken:
    return ApiToken(name=name, scopes=["read"], created="2026-12-02T00:00:00Z", sha256=digest(token))


def test_the_digest_is_the_hex_sha256_of_the_token() -> None:
    assert digest("qrm_abc") == hashlib.sha256(b"qrm_abc").hexdigest()


@given(st.lists(st.text(min_size=1, max_size=40), min_size=1, max_size=6, unique=True), st.data())
def test_each_stored_token_is_found_and_nothing_else_is(tokens: list[str], data: st.DataObject) -> None:
    entries = [stored(f"t{i}", token) for i, token in enumerate(tokens)]
    pick = data.draw(st.sampled_from(range(len(tokens))))
    assert find(entries, tokens[pick]) == entries[pick]
    other = data.draw(st.text(max_size=40).filter(lambda t: t not in tokens))
    assert find(entries, other) is None


@pytest.mark.parametrize(("token", "found"), [("qrm_secret", True), ("qrm_secre", False), ("qrm_secretX", False),
                                              ("", False), (digest("qrm_secret"), False)],
                         ids=["exact", "prefix", "longer", "empty", "the-digest-itself"])
def test_only_the_token_itself_matches(token: str, found: bool) -> None:
    entry = stored("ci", "qrm_secret")
    assert (find([entry], token) == entry) is found


@pytest.mark.parametrize(("host", "loopback"), [
    ("127.0.0.1", True), ("127.8.9.1", True), ("::1", True), ("[::1]", True), ("localhost", True),
    ("LOCALHOST", True), ("0.0.0.0", False), ("::", False), ("192.168.1.10", False), ("forge", False),
    ("localhost.example.com", False), ("", False),
])
def test_loopback_addresses_are_this_machine_only(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback
