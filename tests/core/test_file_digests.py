"""What the registry records of a written generated file (core/generated.py): a keyed HMAC for a .env,
which holds secret values, a plain sha256 for the others (written as their masked text)."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from reconciler.core import generated
from reconciler.core.state import RecordedFile

keys = st.binary(min_size=32, max_size=32)


@given(text=st.text(), key=keys)
def test_a_keyed_digest_fits_the_column_names_its_key_and_is_not_a_plain_hash(text: str, key: bytes) -> None:
    digest = generated.keyed_digest(text, key)
    assert len(digest) <= 64  # generated_files.written_sha is VARCHAR(64)
    assert generated.is_keyed(digest) and generated.keyed_with(digest, key)
    assert hashlib.sha256(text.encode()).hexdigest() not in digest
    assert generated.keyed_digest(text, key) == digest  # deterministic: drift is a comparison


@given(text=st.text(), key=keys, other=keys)
def test_another_key_gives_another_digest_and_is_told_apart(text: str, key: bytes, other: bytes) -> None:
    if key == other:
        return
    assert generated.keyed_digest(text, key) != generated.keyed_digest(text, other)
    assert not generated.keyed_with(generated.keyed_digest(text, key), other)
    assert not generated.keyed_with(generated.keyed_digest(text, key), None)


@given(text=st.text(), changed=st.text(), key=keys)
def test_a_changed_text_changes_the_digest(text: str, changed: str, key: bytes) -> None:
    if text != changed:
        assert generated.keyed_digest(text, key) != generated.keyed_digest(changed, key)


@pytest.mark.parametrize(("path", "keyed"), [
    ("generated/shop/prod/.env", True),
    ("generated/shop/prod/docker-compose.yml", False),
    ("generated/shop/prod/nginx.conf", False),
    ("generated/shop/prod/quantum.config.yaml", False),
    ("generated/shop/.env/nginx.conf", False),
])
def test_only_files_that_hold_secrets_get_a_keyed_digest(path: str, keyed: bool) -> None:
    digest = generated.written_digest(path, "A=1\n", b"k" * 32)
    assert generated.is_keyed(digest) is keyed
    assert digest == (generated.keyed_digest("A=1\n", b"k" * 32) if keyed else generated.sha256("A=1\n"))


def test_unkeyed_secret_files_are_the_plain_records_of_env_files() -> None:
    plain = generated.sha256("DB_PASSWORD=x\n")
    recorded = {
        "generated/a/prod/.env": RecordedFile("generated/a/prod/.env", "", plain),  # an older qrm
        "generated/b/prod/.env": RecordedFile("generated/b/prod/.env", "", generated.keyed_digest("x", b"k" * 32)),
        "generated/c/prod/.env": RecordedFile("generated/c/prod/.env", "", ""),  # unknown: apply rewrites it
        "generated/a/prod/nginx.conf": RecordedFile("generated/a/prod/nginx.conf", "", plain),
    }
    assert generated.unkeyed_secret_files(recorded) == ["generated/a/prod/.env"]
