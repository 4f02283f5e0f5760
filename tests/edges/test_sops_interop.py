"""secrets.enc against independent implementations of SOPS and age (no mocks, nothing skipped).

- SOPS's own files (tests/fixtures/sops, MPL-2.0, from getsops/sops): their PGP-wrapped data key
  opened with GnuPG, their values and MAC checked by qrm, and rejected after one byte changes.
- age: SOPS's published age vector; Debian's `age`/`age-keygen` both ways.
- A whole secrets.enc that qrm writes, decrypted by the npm package sops-age.
- Loud, safe failures: one-line SecretsError naming the file, no plaintext in it, nothing written.
- Small diffs: changing one secret changes only its line, its timestamp, the MAC and lastmodified.

The tools come from scripts/setup-interop (scripts/test runs it, so CI does); a missing tool fails here.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml

from reconciler.core.errors import SecretsError
from reconciler.edges import sops
from tests.support.paths import FIXTURES, REPO

SOPS_FIXTURES = FIXTURES / "sops"
NODE_DIR = REPO / "tests" / "interop" / "node"
SETUP = "run scripts/setup-interop (scripts/test runs it, and so CI)"
TIMEOUT = 60

# Values that are awkward in YAML, in shells and in .env files; none may ever appear in an error.
AWKWARD = {
    "PLAIN": "s3cret-plain-value",
    "SPACES": "  two leading, inner  spaces and two trailing  ",
    "QUOTES": "it's a \"quoted\" 'value'",
    "HASH": "value # not a comment",
    "DOLLAR": "$HOME ${PATH} $(id) `id`",
    "EQUALS": "a=b==c=",
    "NEWLINES": "first line\nsecond line\n\nlast\n",
    "UNICODE": "żółć ✓ 日本語 🙂",
    "BACKSLASH": "C:\\path\\n\\t",
    "COLON": "key: value, - item, [list], {map}",
    "quantumblog/DB_HOST": "db.internal:5432",
    "quantumblog/prod/DB_PASSWORD": "pr0d-p@ss:w0rd!#%&*",
    "quantumblog/prod/on": "yes, really",
}
NOW = "2026-01-01T00:00:00Z"
LATER = "2026-01-02T00:00:00Z"


# --- tools ---------------------------------------------------------------------------------------------

def require(tool: str) -> str:
    path = shutil.which(tool)
    if path is None:
        pytest.fail(f"`{tool}` is not installed: {SETUP}", pytrace=False)
    return path


def run(args: list[str], *, env: Mapping[str, str] | None = None, input: bytes | None = None,
        cwd: Path | None = None) -> subprocess.CompletedProcess[bytes]:
    result = subprocess.run(args, input=input, capture_output=True, env=None if env is None else dict(env),
                            cwd=cwd, timeout=TIMEOUT, check=False)
    if result.returncode != 0:
        pytest.fail(f"{' '.join(args[:3])} … failed ({result.returncode}): "
                    f"{result.stderr.decode(errors='replace').strip()}", pytrace=False)
    return result


def fixture_file(name: str) -> Path:
    path = SOPS_FIXTURES / name
    if not path.is_file():
        pytest.fail(f"{path} is missing: the SOPS interop fixtures live in tests/fixtures/sops",
                    pytrace=False)
    return path


def sops_age_decrypt(path: Path, identity: str, home: Path) -> Any:
    """The whole file decrypted by the npm package sops-age (tests/interop/node/decrypt.mjs)."""
    node = require("node")
    if not (NODE_DIR / "node_modules" / "sops-age").is_dir():
        pytest.fail(f"the npm package sops-age is not installed in {NODE_DIR}: {SETUP}", pytrace=False)
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(home), "SOPS_AGE_KEY": identity}
    out = run([node, str(NODE_DIR / "decrypt.mjs"), str(path)], env=env, cwd=NODE_DIR)
    return json.loads(out.stdout.decode("utf-8"))


# --- helpers -------------------------------------------------------------------------------------------

class Keys:
    """One age key pair and a data key wrapped for it."""

    def __init__(self) -> None:
        self.identity, self.recipient = sops.generate_identity()
        self.data_key = sops.new_data_key()
        self.wrapped = sops.wrap_data_key(self.data_key, [self.recipient])

    @property
    def env(self) -> dict[str, str]:
        return {"SOPS_AGE_KEY": self.identity, "HOME": "/nonexistent", "XDG_CONFIG_HOME": "/nonexistent"}

    def render(self, values: Mapping[str, str], **kwargs: Any) -> str:
        kwargs.setdefault("now", NOW)
        return sops.render(values, data_key=self.data_key, wrapped=self.wrapped, **kwargs)


@pytest.fixture
def keys() -> Keys:
    return Keys()


def sops_file(tree: str, hashed: list[str], keys: Keys) -> str:
    """A SOPS YAML file as SOPS lays it out: `tree` (YAML lines of ENC[...] and plain values), a MAC over
    `hashed` (every value as SOPS hashes it, in file order), the data key wrapped for `keys`."""
    mac = hashlib.sha512("".join(hashed).encode()).hexdigest().upper()
    (stanza,) = keys.wrapped
    armor = "".join(f"            {line}\n" for line in stanza["enc"].strip().splitlines())
    return (f"{tree}sops:\n    age:\n        - recipient: {stanza['recipient']}\n          enc: |\n{armor}"
            f"    lastmodified: \"{NOW}\"\n    mac: {sops.encrypt_value(mac, keys.data_key, NOW)}\n"
            "    unencrypted_suffix: _unencrypted\n    version: 3.9.4\n")


def flip(text: str, marker: str) -> str:
    """`text` with the first base64 character after `marker` changed (one byte)."""
    index = text.index(marker) + len(marker)
    char = text[index]
    return text[:index] + ("B" if char == "A" else "A") + text[index + 1:]


def open_file(path: Path, env: Mapping[str, str]) -> dict[str, str]:
    """What every qrm read does: the file, the keys, the data key, the values (MAC checked)."""
    encrypted = sops.read_file(path)  # labelled with its path
    assert encrypted is not None
    return sops.decrypt(encrypted, sops.load_identities(env))


def snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def assert_loud(exc: BaseException, *names: str, secrets_shown: Mapping[str, str] = AWKWARD) -> str:
    """A SecretsError (not some other exception), on one line, naming `names`, with no plaintext in it."""
    assert type(exc) is SecretsError, f"{type(exc).__name__}: {exc}"
    message = str(exc)
    assert message and "\n" not in message, repr(message)
    for name in names:
        assert name in message, f"{name!r} not in {message!r}"
    for value in secrets_shown.values():
        if len(value.strip()) >= 3:
            assert value not in message and value.strip() not in message, f"a plaintext value in {message!r}"
    assert exc.__cause__ is None or exc.__suppress_context__
    return message


# --- SOPS's own files (PGP-wrapped data key, opened with GnuPG) ---------------------------------------

@pytest.fixture(scope="module")
def gnupg_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    gpg = require("gpg")
    home = tmp_path_factory.mktemp("gnupg")
    home.chmod(0o700)
    env = {**os.environ, "GNUPGHOME": str(home)}
    run([gpg, "--batch", "--quiet", "--import", str(fixture_file("sops_functional_tests_key.asc"))], env=env)
    yield home
    gpgconf = shutil.which("gpgconf")
    if gpgconf:  # the agent that gpg started for this home
        subprocess.run([gpgconf, "--kill", "all"], env=env, capture_output=True, timeout=TIMEOUT, check=False)


def pgp_data_key(path: Path, gnupg_home: Path) -> bytes:
    metadata = yaml.safe_load(path.read_text(encoding="utf-8"))["sops"]
    env = {**os.environ, "GNUPGHOME": str(gnupg_home)}
    out = run([require("gpg"), "--batch", "--quiet", "--decrypt"], env=env,
              input=metadata["pgp"][0]["enc"].encode())
    assert len(out.stdout) == 32, f"{path.name}: the PGP-wrapped data key is {len(out.stdout)} bytes"
    return out.stdout


SOPS_FILES = {
    "format.enc.yaml": ("foo", lambda: {"foo": "bar"}),
    "comments.enc.yaml": ("lorem", lambda: yaml.safe_load(fixture_file("comments.yaml").read_text())),
}


@pytest.mark.parametrize("name", sorted(SOPS_FILES))
def test_sops_written_file_decrypts_and_its_mac_verifies(name: str, gnupg_home: Path) -> None:
    path = fixture_file(name)
    data_key = pgp_data_key(path, gnupg_home)
    encrypted = sops.read_file(path)
    assert encrypted is not None
    _, expected = SOPS_FILES[name]
    assert sops.decrypt_tree(encrypted, data_key) == expected()


@pytest.mark.parametrize("name", sorted(SOPS_FILES))
def test_sops_written_file_rejects_one_changed_byte_of_a_value(name: str, gnupg_home: Path,
                                                                tmp_path: Path) -> None:
    path = fixture_file(name)
    data_key = pgp_data_key(path, gnupg_home)
    key, _ = SOPS_FILES[name]
    tampered = tmp_path / name
    tampered.write_text(flip(path.read_text(encoding="utf-8"), f"{key}: ENC[AES256_GCM,data:"), encoding="utf-8")
    encrypted = sops.read_file(tampered)
    assert encrypted is not None
    with pytest.raises(SecretsError) as caught:
        sops.decrypt_tree(encrypted, data_key)
    assert_loud(caught.value, str(tampered), key)


@pytest.mark.parametrize("name", sorted(SOPS_FILES))
def test_sops_written_file_rejects_one_changed_byte_of_the_mac(name: str, gnupg_home: Path, tmp_path: Path) -> None:
    path = fixture_file(name)
    data_key = pgp_data_key(path, gnupg_home)
    tampered = tmp_path / name
    tampered.write_text(flip(path.read_text(encoding="utf-8"), "mac: ENC[AES256_GCM,data:"), encoding="utf-8")
    encrypted = sops.read_file(tampered)
    assert encrypted is not None
    with pytest.raises(SecretsError) as caught:
        sops.decrypt_tree(encrypted, data_key)
    assert_loud(caught.value, str(tampered), "mac")


def test_sops_written_file_without_an_age_key_is_a_clear_refusal(tmp_path: Path) -> None:
    encrypted = sops.read_file(fixture_file("format.enc.yaml"))
    assert encrypted is not None
    with pytest.raises(SecretsError) as caught:
        sops.unwrap_data_key(encrypted, sops.load_identities({"SOPS_AGE_KEY": Keys().identity}))
    assert_loud(caught.value, "format.enc.yaml", "age")


# --- age ---------------------------------------------------------------------------------------------

def age_vector() -> dict[str, str]:
    vector: dict[str, str] = yaml.safe_load(fixture_file("age-vectors.yaml").read_text(encoding="utf-8"))
    return vector


def vector_file(vector: Mapping[str, str]) -> sops.EncryptedSecrets:
    return sops.EncryptedSecrets("age-vectors.yaml", {}, {"age": [{"recipient": vector["recipient"],
                                                                      "enc": vector["encrypted_key"]}]})


def test_sops_age_vector_opens_with_its_identity() -> None:
    vector = age_vector()
    identities = sops.load_identities({"SOPS_AGE_KEY": vector["identity"], "HOME": "/nonexistent"})
    assert str(identities[0].to_public()) == vector["recipient"]
    # The vector's payload is b"data" (4 bytes). qrm opens the stanza, then refuses anything but a 32-byte
    # data key: the message says how many bytes it found, which only a successful unwrap can know.
    with pytest.raises(SecretsError) as caught:
        sops.unwrap_data_key(vector_file(vector), identities)
    message = assert_loud(caught.value, "age-vectors.yaml")
    assert f"is {len(vector['plaintext'].encode())} bytes, not 32" in message


def test_sops_age_vector_payload_is_data_for_debian_age(tmp_path: Path) -> None:
    vector = age_vector()
    identity_file = tmp_path / "identity.txt"
    identity_file.write_text(vector["identity"] + "\n")
    out = run([require("age"), "--decrypt", "-i", str(identity_file)], input=vector["encrypted_key"].encode())
    assert out.stdout == vector["plaintext"].encode() == b"data"


def test_sops_age_vector_does_not_open_with_another_identity() -> None:
    vector = age_vector()
    identities = sops.load_identities({"SOPS_AGE_KEY": vector["other_identity"], "HOME": "/nonexistent"})
    with pytest.raises(SecretsError) as caught:
        sops.unwrap_data_key(vector_file(vector), identities)
    assert "none of your age keys opens it" in assert_loud(caught.value, "age-vectors.yaml")


def age_keygen(path: Path) -> str:
    """A key made by Debian's age-keygen; returns its recipient."""
    run([require("age-keygen"), "-o", str(path)])
    match = re.search(r"^# public key: (age1\w+)$", path.read_text(), re.MULTILINE)
    assert match, path.read_text()
    return match[1]


def test_data_key_wrapped_by_qrm_opens_with_debian_age(tmp_path: Path) -> None:
    key_file = tmp_path / "keys.txt"
    recipient = age_keygen(key_file)
    data_key = sops.new_data_key()
    (stanza,) = sops.wrap_data_key(data_key, [recipient])
    assert stanza["recipient"] == recipient
    assert stanza["enc"].startswith("-----BEGIN AGE ENCRYPTED FILE-----")
    wrapped = tmp_path / "data-key.age"
    wrapped.write_text(stanza["enc"])
    out = run([require("age"), "--decrypt", "-i", str(key_file), str(wrapped)])
    assert out.stdout == data_key and len(data_key) == 32


def test_data_key_wrapped_by_debian_age_opens_with_qrm(tmp_path: Path) -> None:
    key_file = tmp_path / "keys.txt"
    recipient = age_keygen(key_file)
    data_key = sops.new_data_key()
    out = run([require("age"), "--encrypt", "--armor", "-r", recipient], input=data_key)
    encrypted = sops.EncryptedSecrets("secrets.enc", {}, {"age": [{"recipient": recipient,
                                                                      "enc": out.stdout.decode()}]})
    identities = sops.load_identities({"SOPS_AGE_KEY_FILE": str(key_file), "HOME": str(tmp_path / "home")})
    assert sops.unwrap_data_key(encrypted, identities) == data_key


def test_load_identities_reads_an_age_keygen_file_with_its_comments(tmp_path: Path) -> None:
    key_file = tmp_path / "keys.txt"
    recipient = age_keygen(key_file)
    assert key_file.read_text().startswith("# created: ")
    empty = tmp_path / "empty"
    empty.mkdir()
    identities = sops.load_identities({"SOPS_AGE_KEY_FILE": str(key_file), "HOME": str(empty),
                                          "XDG_CONFIG_HOME": str(empty)})
    assert [str(i.to_public()) for i in identities] == [recipient]


# --- a whole file written by qrm, read by sops-age ----------------------------------------------------

def test_secrets_enc_written_by_qrm_decrypts_with_sops_age(keys: Keys, tmp_path: Path) -> None:
    path = tmp_path / "secrets.enc"
    path.write_text(keys.render(AWKWARD), encoding="utf-8")
    plain = sops_age_decrypt(path, keys.identity, tmp_path)
    meta = plain.pop(sops.QRM_META_KEY)
    assert plain == AWKWARD
    assert meta == {"changed": {name: NOW for name in AWKWARD}}
    assert open_file(path, keys.env) == AWKWARD


def test_secrets_enc_after_updates_and_rotation_decrypts_with_sops_age(keys: Keys, tmp_path: Path) -> None:
    path = tmp_path / "secrets.enc"
    first = keys.render(AWKWARD)
    previous = sops.read_encrypted(first, "secrets.enc")
    updated = {**AWKWARD, "PLAIN": "an updated value", "NEW": "a new one"}
    second = keys.render(updated, previous=previous, previous_plain=AWKWARD, changed_at=previous.changed_at(),
                         now=LATER)
    path.write_text(second, encoding="utf-8")
    plain = sops_age_decrypt(path, keys.identity, tmp_path)
    plain.pop(sops.QRM_META_KEY)
    assert plain == updated
    rotated = Keys()
    path.write_text(rotated.render(updated, previous_plain=updated, rotated_at=LATER), encoding="utf-8")
    plain = sops_age_decrypt(path, rotated.identity, tmp_path)
    assert plain.pop(sops.QRM_META_KEY)["rotated"] == LATER
    assert plain == updated
    assert open_file(path, rotated.env) == updated


def test_a_rotation_keeping_ivs_keeps_value_ids_and_still_decrypts_with_sops_age(keys: Keys, tmp_path: Path) -> None:
    values = dict(AWKWARD)
    before = sops.read_encrypted(keys.render(values), "secrets.enc")
    rotated = Keys()
    path = tmp_path / "secrets.enc"
    path.write_text(rotated.render(values, previous_plain=values, keep_ivs=before.ivs(), rotated_at=LATER))
    after = sops.read_file(path)
    assert after is not None
    assert after.value_ids() == before.value_ids() and len(set(before.value_ids().values())) == len(values)
    assert all(after.fingerprints()[name] != before.fingerprints()[name] for name in values)  # new ciphertexts
    plain = sops_age_decrypt(path, rotated.identity, tmp_path)
    plain.pop(sops.QRM_META_KEY)
    assert plain == values
    assert open_file(path, rotated.env) == values
    # A changed value gets a new IV (so a new id) even though keep_ivs names it: only unchanged values keep theirs.
    changed = {**values, "PLAIN": "another value"}
    again = sops.read_encrypted(rotated.render(changed, previous_plain=values, keep_ivs=before.ivs()), "x")
    assert {n for n in values if again.value_ids()[n] != before.value_ids()[n]} == {"PLAIN"}


def test_names_that_yaml_reads_as_booleans_or_null_round_trip(keys: Keys, tmp_path: Path) -> None:
    values = {name: f"value of {name}" for name in ("on", "off", "yes", "No", "TRUE", "null", "y", "app/ON")}
    path = tmp_path / "secrets.enc"
    path.write_text(keys.render(values), encoding="utf-8")
    assert open_file(path, keys.env) == values
    encrypted = sops.read_file(path)
    assert encrypted is not None and set(encrypted.changed_at()) == set(values)
    plain = sops_age_decrypt(path, keys.identity, tmp_path)
    plain.pop(sops.QRM_META_KEY)
    assert plain == values


def test_values_hashed_as_sops_hashes_them(keys: Keys, tmp_path: Path) -> None:
    """SOPS's MAC hashes a bool as "True"/"False" and a float without an exponent (Go's sops.ToBytes),
    unencrypted values included: a SOPS file with such values must verify."""
    tree = {"enabled": True, "disabled": False, "ratio": 1234.5679, "big": 1e20, "one": 1.0, "count": 3}
    lines = "".join(f"{k}: {sops.encrypt_value(v, keys.data_key, f'{k}:')}\n" for k, v in tree.items())
    hashed = ["True", "False", "1234.5679", "100000000000000000000", "1", "3", "True"]
    text = sops_file(lines + "flag_unencrypted: true\n", hashed, keys)
    assert sops.decrypt_tree(sops.read_encrypted(text, "x.yaml"), keys.data_key) == {
        **tree, "flag_unencrypted": True}
    path = tmp_path / "x.yaml"
    path.write_text(text)
    assert sops_age_decrypt(path, keys.identity, tmp_path) == {**tree, "flag_unencrypted": True}
    # As text (what `qrm secrets get` prints), each value reads as SOPS wrote it, not as Python prints it.
    assert {k: sops.plain_text(v) for k, v in tree.items()} == {
        "enabled": "true", "disabled": "false", "ratio": "1234.5679", "big": "1e+20", "one": "1.0", "count": "3"}


# --- loud, safe failures ------------------------------------------------------------------------------

def written(keys: Keys, tmp_path: Path, text: str | None = None) -> Path:
    path = tmp_path / "ws" / "secrets.enc"
    path.parent.mkdir(exist_ok=True)
    path.write_text(keys.render(AWKWARD) if text is None else text, encoding="utf-8")
    return path


def assert_refused(path: Path, env: Mapping[str, str], *names: str) -> str:
    before = snapshot(path.parent)
    with pytest.raises(SecretsError) as caught:
        open_file(path, env)
    assert snapshot(path.parent) == before, "a failed read changed or wrote a file"
    return assert_loud(caught.value, *names)


def test_wrong_key(keys: Keys, tmp_path: Path) -> None:
    message = assert_refused(written(keys, tmp_path), Keys().env, "secrets.enc")
    assert "none of your age keys opens it" in message
    assert keys.recipient[:12] in message


def test_no_key_at_all(keys: Keys, tmp_path: Path) -> None:
    empty = tmp_path / "empty-home"
    empty.mkdir()
    env = {"HOME": str(empty), "XDG_CONFIG_HOME": str(empty / ".config")}
    path = written(keys, tmp_path)
    # load_identities does not know which file it opens: its message names where it looked instead.
    message = assert_refused(path, env, "no age key", "SOPS_AGE_KEY", str(empty / ".config" / "sops" / "age"))
    assert keys.identity not in message


def test_missing_key_file_named_by_sops_age_key_file(keys: Keys, tmp_path: Path) -> None:
    missing = tmp_path / "nowhere" / "keys.txt"
    assert_refused(written(keys, tmp_path), {"SOPS_AGE_KEY_FILE": str(missing), "HOME": str(tmp_path)}, str(missing))


def test_tampered_value(keys: Keys, tmp_path: Path) -> None:
    text = keys.render(AWKWARD)
    path = written(keys, tmp_path, flip(text, "quantumblog/prod/DB_PASSWORD: ENC[AES256_GCM,data:"))
    assert_refused(path, keys.env, "secrets.enc", "quantumblog/prod/DB_PASSWORD", "does not decrypt")


def test_tampered_mac(keys: Keys, tmp_path: Path) -> None:
    path = written(keys, tmp_path, flip(keys.render(AWKWARD), "    mac: ENC[AES256_GCM,data:"))
    assert_refused(path, keys.env, "secrets.enc", "sops.mac")


def test_swapped_values_are_refused(keys: Keys, tmp_path: Path) -> None:
    """Each value is bound to its name (the key path is its associated data)."""
    text = keys.render({"A": "first secret", "B": "second secret"})
    lines = text.splitlines(keepends=True)
    assert lines[0].startswith("A: ENC[") and lines[1].startswith("B: ENC[")
    lines[0], lines[1] = "A: " + lines[1][3:], "B: " + lines[0][3:]
    path = written(keys, tmp_path, "".join(lines))
    assert_refused(path, keys.env, "secrets.enc", "A")


def test_a_changed_timestamp_breaks_the_mac(keys: Keys, tmp_path: Path) -> None:
    text = keys.render(AWKWARD)
    path = written(keys, tmp_path, text.replace(f'PLAIN: "{NOW}"', f'PLAIN: "{LATER}"'))
    assert "MAC mismatch" in assert_refused(path, keys.env, "secrets.enc")


def test_a_plaintext_entry_is_refused(keys: Keys, tmp_path: Path) -> None:
    """The MAC covers values, not names: a value moved out of qrm_unencrypted keeps it valid, so qrm
    refuses every flat entry that is not ENC[…]."""
    text = keys.render(AWKWARD, rotated_at=NOW)
    assert f'\n    rotated: "{NOW}"\n' in text
    path = written(keys, tmp_path, text.replace(f'\n    rotated: "{NOW}"\n', f'\nINJECTED:   "{NOW}"\n'))
    assert_refused(path, keys.env, "secrets.enc", "INJECTED", "not an ENC")


def test_an_empty_value_as_sops_stores_it_passes_the_mac_and_is_refused(keys: Keys, tmp_path: Path) -> None:
    """SOPS stores an empty value as a plain `""` (aes.Cipher.Encrypt returns "" for one) and hashes it as
    no bytes: the MAC is the same with or without the entry, so anyone can add one. qrm refuses it, by name."""
    real = f"DB_PASSWORD: {sops.encrypt_value('real-secret', keys.data_key, 'DB_PASSWORD:')}\n"
    without = written(keys, tmp_path, sops_file(real, ["real-secret"], keys))
    assert open_file(without, keys.env) == {"DB_PASSWORD": "real-secret"}  # the MAC is right
    for line in ('quantumblog/prod/DB_PASSWORD: ""\n', "quantumblog/prod/DB_PASSWORD: ''\n"):
        path = written(keys, tmp_path, sops_file(real + line, ["real-secret"], keys))
        message = assert_refused(path, keys.env, "secrets.enc", "quantumblog/prod/DB_PASSWORD", "empty value")
        assert "real-secret" not in message
        encrypted = sops.read_file(path)
        assert encrypted is not None
        with pytest.raises(SecretsError, match="quantumblog/prod/DB_PASSWORD: an empty value"):
            encrypted.fingerprints()  # plan (no key) refuses it too


def test_qrm_never_writes_an_empty_value(keys: Keys) -> None:
    """An ENC[] form of "" has an empty `data:`, which SOPS's parser (`data:(.+)`) refuses; a plain "" is
    unauthenticated: qrm writes neither."""
    with pytest.raises(SecretsError) as caught:
        keys.render({"A": "alpha-secret", "quantumblog/EMPTY": ""})
    assert_loud(caught.value, "quantumblog/EMPTY", "empty secret")


@pytest.mark.parametrize("where", ["age armor", "after lastmodified", "mac line", "before version"])
def test_truncated_in_the_sops_block(keys: Keys, tmp_path: Path, where: str) -> None:
    text = keys.render(AWKWARD)
    cut = {
        "age armor": text.index("-----END AGE ENCRYPTED FILE-----") - 20,
        "after lastmodified": text.index("    mac:"),
        "mac line": text.index("    mac:") + 60,
        "before version": text.index("    version:"),
    }[where]
    assert cut > text.index("\nsops:\n")
    assert_refused(written(keys, tmp_path, text[:cut]), keys.env, "secrets.enc")


def test_every_truncation_and_every_changed_byte_fails_safely(keys: Keys) -> None:
    """Cut anywhere, or any one character changed: the same values or a one-line SecretsError, never
    another exception and never other values."""
    values = {"A": "alpha-secret", "quantumblog/prod/DB_PASSWORD": "pr0d-p@ss:w0rd!#%&*"}
    text = keys.render(values, rotated_at=NOW)
    identities = sops.load_identities(keys.env)
    variants = [text[:cut] for cut in range(len(text))]
    variants += [text[:i] + ("x" if text[i] != "x" else "y") + text[i + 1:] for i in range(len(text))]
    refused = 0
    for variant in variants:
        try:
            result = sops.decrypt(sops.read_encrypted(variant, "secrets.enc"), identities)
        except SecretsError as exc:
            assert_loud(exc, "secrets.enc", secrets_shown=values)
            refused += 1
        else:
            assert result == values, "a damaged file decrypted to other values"
    assert refused > len(text)  # every truncation, and most changes


def test_unknown_sops_version(keys: Keys, tmp_path: Path) -> None:
    text = keys.render(AWKWARD).replace(f"version: {sops.SOPS_VERSION}", "version: 4.0.0")
    assert "4.0.0" in assert_refused(written(keys, tmp_path, text), keys.env, "secrets.enc", "version")


@pytest.mark.parametrize("text", ["foo: [1, 2\nbar: }\n", "\tkey: value\n", "key: 'unterminated\n"],
                         ids=["brackets", "tab", "quote"])
def test_not_yaml(keys: Keys, tmp_path: Path, text: str) -> None:
    assert "not valid YAML" in assert_refused(written(keys, tmp_path, text), keys.env, "secrets.enc")


def test_not_text(keys: Keys, tmp_path: Path) -> None:
    path = written(keys, tmp_path)
    path.write_bytes(b"\xff\xfe\x00binary" + os.urandom(64))
    assert_refused(path, keys.env, "secrets.enc")


@pytest.mark.parametrize("text", ["", "just a string\n", "- a\n- list\n", "foo: bar\n"],
                         ids=["empty", "scalar", "list", "no-sops"])
def test_not_a_sops_file(keys: Keys, tmp_path: Path, text: str) -> None:
    assert "not a SOPS file" in assert_refused(written(keys, tmp_path, text), keys.env, "secrets.enc")


def test_damaged_age_metadata(keys: Keys, tmp_path: Path) -> None:
    text = keys.render(AWKWARD).replace("        - recipient:", "          recipient:")
    assert_refused(written(keys, tmp_path, text), keys.env, "secrets.enc", "age")


def test_non_flat_file_is_refused_by_decrypt(keys: Keys, tmp_path: Path) -> None:
    nested = "nested-s3cret-value"
    text = sops_file(f"db:\n    password: {sops.encrypt_value(nested, keys.data_key, 'db:password:')}\n",
                     [nested], keys)
    path = written(keys, tmp_path, text)
    encrypted = sops.read_file(path)
    assert encrypted is not None
    assert sops.decrypt_tree(encrypted, keys.data_key) == {"db": {"password": nested}}  # a valid SOPS file
    assert sops_age_decrypt(path, keys.identity, tmp_path / "home") == {"db": {"password": nested}}
    message = assert_refused(path, keys.env, "secrets.enc", "db", "flat")
    assert nested not in message


@pytest.mark.parametrize("name", ["TOKEN_unencrypted", "A\n", "bad name", "1X", "a/b/c/D"])
def test_names_qrm_cannot_store_are_refused(keys: Keys, name: str) -> None:
    with pytest.raises(SecretsError) as caught:
        keys.render({name: "a value"})
    assert_loud(caught.value, "is not a secret name", secrets_shown={"v": "a value"})


# --- small diffs --------------------------------------------------------------------------------------

def test_changing_one_secret_changes_only_its_line_its_timestamp_and_the_mac(keys: Keys) -> None:
    first = keys.render(AWKWARD)
    previous = sops.read_encrypted(first, "secrets.enc")
    changed = {**AWKWARD, "quantumblog/prod/DB_PASSWORD": "a new password"}
    second = keys.render(changed, previous=previous, previous_plain=AWKWARD, changed_at=previous.changed_at(),
                         now=LATER)
    old_lines, new_lines = first.splitlines(keepends=True), second.splitlines(keepends=True)
    assert len(old_lines) == len(new_lines)
    differ = {i for i, (a, b) in enumerate(zip(old_lines, new_lines, strict=True)) if a != b}
    kinds = {i: new_lines[i].split(":")[0].strip() for i in differ}
    assert sorted(kinds.values()) == sorted(["quantumblog/prod/DB_PASSWORD", "lastmodified", "mac",
                                             "quantumblog/prod/DB_PASSWORD"])
    value_line = next(i for i in differ if new_lines[i].startswith("quantumblog/prod/DB_PASSWORD: ENC["))
    stamp_line = next(i for i in differ if new_lines[i].startswith("        quantumblog/prod/DB_PASSWORD: "))
    assert new_lines[stamp_line].strip().endswith(f'"{LATER}"')
    assert value_line < stamp_line
    assert sops.decrypt(sops.read_encrypted(second, "secrets.enc"),
                           sops.load_identities(keys.env)) == changed


def test_rewriting_unchanged_values_changes_nothing_but_lastmodified_and_mac(keys: Keys) -> None:
    first = keys.render(AWKWARD)
    previous = sops.read_encrypted(first, "secrets.enc")
    second = keys.render(AWKWARD, previous=previous, previous_plain=AWKWARD, changed_at=previous.changed_at(),
                         now=LATER)
    differ = [b.split(":")[0].strip() for a, b in zip(first.splitlines(), second.splitlines(), strict=True)
              if a != b]
    assert differ == ["lastmodified", "mac"]
