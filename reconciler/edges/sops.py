"""secrets.enc as SOPS writes it (the cryptography/age edge).

Format (SOPS 3.x, YAML): every value is `ENC[AES256_GCM,data:…,iv:…,tag:…,type:…]`,
AES-256-GCM with a 32-byte IV and the value's key path ("a:b:") as associated data. A MAC,
the upper-case hex SHA-512 of every plaintext value in file order, is stored encrypted with
`lastmodified` as associated data. The 32-byte data key is wrapped for each age X25519
recipient (pyrage, armored). So `sops -d` and Flux read qrm's file, and qrm reads theirs.

qrm's own file is flat: keys are scoped names ("NAME", "project/NAME",
"project/env/NAME") and values are strings. Unchanged values keep their ciphertext on
every write (same data key, same IV), so a one-secret change is a one-line diff plus the MAC.
Nothing here ever puts a plaintext value into an exception message.

Empty values: SOPS stores one as a plain `""` (it never encrypts one, and its ENC[] parser wants a
non-empty `data:`), which adds no bytes to the MAC; the MAC covers values, not names. So such an entry
is unauthenticated: qrm refuses to read one (it could shadow a real secret) and never writes one.
"""

from __future__ import annotations

import base64
import hashlib
import math
import os
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pyrage
import yaml
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from reconciler.core.errors import SecretsError
from reconciler.core.expansion import Excess, expansion_limit, first_excess

SOPS_VERSION = "3.9.4"  # the SOPS release whose format qrm writes
META_KEY = "sops"
QRM_META_KEY = "qrm_unencrypted"  # per-secret timestamps; SOPS leaves keys with this suffix unencrypted
UNENCRYPTED_SUFFIX = "_unencrypted"
_ENC = re.compile(r"^ENC\[AES256_GCM,data:(?P<data>[A-Za-z0-9+/=]*),iv:(?P<iv>[A-Za-z0-9+/=]+),"
                  r"tag:(?P<tag>[A-Za-z0-9+/=]+),type:(?P<type>str|int|int64|float|bool|bytes|comment)\]$")
NAME_PATTERN = r"^([a-z0-9]([a-z0-9._-]*[a-z0-9])?/){0,2}[A-Za-z_][A-Za-z0-9_]*$"


@dataclass(frozen=True)
class EncryptedSecrets:
    """A SOPS file as read, without any key: names, ciphertexts and metadata."""

    label: str  # the file, for messages
    tree: dict[str, Any]  # the document without `sops`, in file order (values are ENC[...] strings)
    metadata: dict[str, Any] = field(default_factory=dict)

    def flat_values(self) -> dict[str, str]:
        """qrm's scoped names and their ciphertexts (the file must be flat)."""
        values = {}
        for key, value in self.tree.items():
            if key == QRM_META_KEY:
                continue
            if not isinstance(value, str):
                raise SecretsError(f"{self.label}: {key}: qrm keeps flat string secrets; this entry is a "
                                   f"{type(value).__name__}", entry=str(key))
            if value == "":
                # SOPS stores an empty value as a plain "" (it never encrypts one) and an empty value adds
                # no bytes to the MAC: anyone can add `NAME: ""` and it would shadow a real secret. Nothing
                # shows a key holder wrote it, so qrm refuses it (and never writes one: see render).
                raise SecretsError(f"{self.label}: {key}: an empty value (\"\"), which SOPS keeps unencrypted and "
                                   "outside its MAC, so nothing shows a key holder wrote it; qrm refuses it: delete "
                                   "that line (qrm never writes an empty secret)", entry=str(key))
            if not _ENC.match(value):
                # A plaintext value is not bound to its name (the MAC covers values, not names): refuse it.
                raise SecretsError(f"{self.label}: {key}: not an ENC[AES256_GCM,…] value (a plaintext entry: "
                                   "damaged, or edited by hand?)", entry=str(key))
            values[key] = value
        return values

    def changed_at(self) -> dict[str, str]:
        meta = self.tree.get(QRM_META_KEY)
        changed = meta.get("changed") if isinstance(meta, dict) else None
        return {str(k): str(v) for k, v in changed.items()} if isinstance(changed, dict) else {}

    def rotated_at(self) -> str | None:
        meta = self.tree.get(QRM_META_KEY)
        return str(meta["rotated"]) if isinstance(meta, dict) and meta.get("rotated") else None

    def fingerprints(self) -> dict[str, str]:
        """Scoped name -> a digest of its ciphertext: tells a changed value without a key."""
        return {name: hashlib.sha256(enc.encode()).hexdigest()[:16] for name, enc in self.flat_values().items()}

    def value_ids(self) -> dict[str, str]:
        """Scoped name -> a digest of its value's IV, which a write of a new value renews and qrm's key
        rotation keeps (so a rotation is told apart from a value change without a key)."""
        ids = {}
        for name, enc in self.flat_values().items():
            match = _ENC.match(enc)
            if match is not None:
                ids[name] = hashlib.sha256(b"qrm-value-id:" + match["iv"].encode()).hexdigest()[:16]
        return ids

    def ivs(self) -> dict[str, bytes]:
        """Scoped name -> the IV of its ciphertext (for a rotation to keep: see render's `keep_ivs`)."""
        return {name: base64.b64decode(match["iv"]) for name, enc in self.flat_values().items()
                if (match := _ENC.match(enc)) is not None}


# --- reading ---------------------------------------------------------------------------------------

_CONFLICT_MARKER = re.compile(r"^(<{7} |={7}$|>{7} )", re.MULTILINE)
CONFLICT_FIX = ("a git merge ran without qrm's merge driver (it merges secrets.enc by secret); run `qrm secrets "
                "setup-git` once in this clone, then `git checkout --merge -- secrets.enc` to merge it again with "
                "the driver (or `git merge --abort` and merge again), then `git add secrets.enc` and commit")


def conflict_marker_line(text: str) -> int | None:
    """The line (1-based) of the first git conflict marker, None when there is none."""
    found = _CONFLICT_MARKER.search(text)
    return text.count("\n", 0, found.start()) + 1 if found else None


def _children(node: yaml.Node) -> Sequence[yaml.Node]:
    if isinstance(node, yaml.MappingNode):
        return [part for pair in node.value for part in pair]
    return node.value if isinstance(node, yaml.SequenceNode) else ()


def _weight(node: yaml.Node) -> int:
    return len(node.value) + 3 if isinstance(node, yaml.ScalarNode) else 2


def _load_bounded(text: str, label: str) -> Any:
    """The one YAML document of `text`, refused with its line when its aliases expand too far, refer to
    themselves, or it nests too deep (core/expansion: the bound manifests have too; a 300-byte alias bomb
    in secrets.enc would otherwise build gigabytes before any SOPS check ran). The composed graph is
    checked before PyYAML builds anything from it."""
    loader = yaml.CSafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        found = first_excess(node, _children, _weight, limit=expansion_limit(len(text)))
        if isinstance(found, Excess):
            mark = found.node.start_mark
            raise SecretsError(f"{label}:{mark.line + 1}: not valid YAML: {found.reason}")
        return loader.construct_document(node)
    finally:
        loader.dispose()


def read_encrypted(text: str, label: str) -> EncryptedSecrets:
    """Parse a SOPS YAML file (structure only; no key needed)."""
    line = conflict_marker_line(text)
    if line is not None:  # before YAML: "not valid YAML" would hide what happened and how to fix it
        raise SecretsError(f"{label}: git conflict markers (line {line}): {CONFLICT_FIX}")
    try:
        document = _load_bounded(text, label)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f":{mark.line + 1}" if mark is not None else ""
        raise SecretsError(f"{label}{where}: not valid YAML (truncated or damaged?)") from None
    if document is None:
        document = {}
    if not isinstance(document, dict):
        raise SecretsError(f"{label}: not a SOPS file (the document is not a mapping)")
    metadata = document.get(META_KEY)
    if not isinstance(metadata, dict):
        raise SecretsError(f"{label}: not a SOPS file (no `sops:` metadata; truncated?)")
    if metadata.get("version") in (None, ""):
        raise SecretsError(f"{label}: SOPS metadata has no `version` (truncated or damaged?)")
    version = str(metadata["version"])
    if not re.match(r"^3\.\d+", version) and version.startswith("3"):
        raise SecretsError(f"{label}: SOPS version {version!r} is incomplete (truncated or damaged?)")
    if not re.match(r"^3\.\d+", version):
        raise SecretsError(f"{label}: SOPS version {version or '(none)'} is not supported; qrm reads SOPS 3.x files")
    for required in ("mac", "lastmodified"):
        if not metadata.get(required):
            raise SecretsError(f"{label}: SOPS metadata has no `{required}` (truncated or damaged?)")
    tree = {k: v for k, v in document.items() if k != META_KEY}
    return EncryptedSecrets(label, tree, metadata)


def read_file(path: Path, label: str | None = None) -> EncryptedSecrets | None:
    """The file at `path`, or None when it does not exist."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except UnicodeDecodeError:
        raise SecretsError(f"{label or path}: not a SOPS file (not UTF-8 text)") from None
    return read_encrypted(text, label or str(path))


# --- keys --------------------------------------------------------------------------------------------

def default_key_file(env: Mapping[str, str]) -> Path:
    """Where SOPS looks for age keys when neither SOPS_AGE_KEY nor SOPS_AGE_KEY_FILE is set (Linux)."""
    base = env.get("XDG_CONFIG_HOME") or str(Path(env.get("HOME", "~")).expanduser() / ".config")
    return Path(base) / "sops" / "age" / "keys.txt"


def parse_identities(text: str, where: str) -> list[pyrage.x25519.Identity]:
    identities = []
    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        try:
            identities.append(pyrage.x25519.Identity.from_str(line))
        except Exception:  # pyrage raises its own error types; the line is never echoed (it is a key)
            raise SecretsError(f"{where}:{number}: not an age identity (AGE-SECRET-KEY-1…)") from None
    return identities


def load_identities(env: Mapping[str, str] | None = None) -> list[pyrage.x25519.Identity]:
    """Age identities from SOPS_AGE_KEY, SOPS_AGE_KEY_FILE and SOPS's default key file, as SOPS does."""
    env = os.environ if env is None else env
    identities: list[pyrage.x25519.Identity] = []
    if env.get("SOPS_AGE_KEY"):
        identities += parse_identities(env["SOPS_AGE_KEY"], "SOPS_AGE_KEY")
    sources = [Path(env["SOPS_AGE_KEY_FILE"])] if env.get("SOPS_AGE_KEY_FILE") else []
    sources.append(default_key_file(env))
    for path in sources:
        try:
            identities += parse_identities(path.read_text(encoding="utf-8"), str(path))
        except FileNotFoundError:
            if env.get("SOPS_AGE_KEY_FILE") and path == Path(env["SOPS_AGE_KEY_FILE"]):
                raise SecretsError(f"SOPS_AGE_KEY_FILE {path} does not exist") from None
        except (OSError, UnicodeDecodeError):
            raise SecretsError(f"cannot read age key file {path}") from None
    if not identities:
        raise SecretsError("no age key: set SOPS_AGE_KEY or SOPS_AGE_KEY_FILE, or put a key in "
                           f"{default_key_file(env)} (age-keygen makes one)")
    return identities


def generate_identity() -> tuple[str, str]:
    """A new age key pair: (the AGE-SECRET-KEY-1… line, the age1… recipient)."""
    identity = pyrage.x25519.Identity.generate()
    return str(identity), str(identity.to_public())


def recipients_from_config(root: Path, target: str = "secrets.enc") -> list[str]:
    """Age recipients of the first `.sops.yaml` creation rule whose path_regex matches `target`."""
    path = root / ".sops.yaml"
    try:
        config = _load_bounded(path.read_text(encoding="utf-8"), str(path)) or {}
    except FileNotFoundError:
        raise SecretsError(f"{path} does not exist: it names the age recipients of secrets.enc "
                           "(qrm init writes one)") from None
    except yaml.YAMLError:
        raise SecretsError(f"{path}: not valid YAML") from None
    rules = config.get("creation_rules") if isinstance(config, dict) else None
    for rule in rules or []:
        if not isinstance(rule, dict):
            continue
        regex = rule.get("path_regex")
        if regex and not re.search(str(regex), target):
            continue
        age = rule.get("age")
        recipients = [r.strip() for r in (age.split(",") if isinstance(age, str) else age or []) if r.strip()]
        if recipients:
            for recipient in recipients:
                _recipient(recipient, str(path))
            return recipients
    raise SecretsError(f"{path}: no creation rule with age recipients matches {target}")


def _recipient(text: str, where: str) -> pyrage.x25519.Recipient:
    try:
        return pyrage.x25519.Recipient.from_str(text)
    except Exception:
        raise SecretsError(f"{where}: {text!r} is not an age recipient (age1…)") from None


def wrap_data_key(data_key: bytes, recipients: list[str]) -> list[dict[str, str]]:
    """One armored age file per recipient, as SOPS's `sops.age` list holds them."""
    return [
        {"recipient": r, "enc": pyrage.encrypt(data_key, [_recipient(r, ".sops.yaml")], armored=True).decode()}
        for r in recipients
    ]


def unwrap_data_key(secrets: EncryptedSecrets, identities: list[pyrage.x25519.Identity]) -> bytes:
    stanzas = secrets.metadata.get("age") or []
    if not isinstance(stanzas, list) or not all(isinstance(s, dict) for s in stanzas):
        raise SecretsError(f"{secrets.label}: SOPS metadata `age` is not a list of recipients (damaged?)")
    if not stanzas:
        raise SecretsError(f"{secrets.label}: its data key is not wrapped for any age recipient "
                           "(PGP, KMS and Vault keys are not supported by qrm)")
    for stanza in stanzas:
        try:
            key = pyrage.decrypt(str(stanza.get("enc", "")).encode(), identities)
        except Exception:  # this identity does not open this stanza: try the next one
            continue
        if len(key) != 32:
            raise SecretsError(f"{secrets.label}: the wrapped data key is {len(key)} bytes, not 32")
        return bytes(key)
    listed = ", ".join(str(s.get("recipient", "?"))[:16] + "…" for s in stanzas)
    raise SecretsError(f"{secrets.label}: none of your age keys opens it (wrong key?); it is encrypted for {listed}")


# --- values and MAC ----------------------------------------------------------------------------------

def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _plain_bytes(value: Any) -> tuple[bytes, str]:
    if isinstance(value, bool):
        return (b"true" if value else b"false"), "bool"
    if isinstance(value, int):
        return str(value).encode(), "int"
    if isinstance(value, float):
        return repr(value).encode(), "float"
    if isinstance(value, bytes):
        return value, "bytes"
    return str(value).encode("utf-8"), "str"


def _mac_bytes(value: Any) -> bytes:
    """A value's bytes as SOPS hashes them for the MAC (Go's sops.ToBytes): booleans are "True"/"False"
    and floats are written without an exponent ("1234.5", "100000000000000000000")."""
    if isinstance(value, bool):
        return b"True" if value else b"False"
    if isinstance(value, float):
        if math.isnan(value) or math.isinf(value):
            return {"nan": b"NaN", "inf": b"+Inf", "-inf": b"-Inf"}[repr(value)]
        return format(Decimal(repr(value)).normalize(), "f").encode()
    return _plain_bytes(value)[0]


def _typed(plain: bytes, kind: str) -> Any:
    text = plain.decode("utf-8")
    if kind in ("int", "int64"):
        return int(text)
    if kind == "float":
        return float(text)
    if kind == "bool":
        return text.lower() == "true"
    return text


def encrypt_value(value: Any, data_key: bytes, aad: str, iv: bytes | None = None) -> str:
    plain, kind = _plain_bytes(value)
    iv = os.urandom(32) if iv is None else iv
    sealed = AESGCM(data_key).encrypt(iv, plain, aad.encode())
    return f"ENC[AES256_GCM,data:{_b64(sealed[:-16])},iv:{_b64(iv)},tag:{_b64(sealed[-16:])},type:{kind}]"


def decrypt_value(enc: str, data_key: bytes, aad: str, label: str, where: str) -> tuple[Any, str]:
    match = _ENC.match(enc)
    if match is None:
        raise SecretsError(f"{label}: {where}: not an ENC[AES256_GCM,…] value (damaged?)")
    try:
        data, iv, tag = (base64.b64decode(match[g], validate=True) for g in ("data", "iv", "tag"))
        plain = AESGCM(data_key).decrypt(iv, data + tag, aad.encode())
    except (InvalidTag, ValueError):
        raise SecretsError(f"{label}: {where}: the value does not decrypt (tampered, or not encrypted with this "
                           "file's data key)") from None
    return _typed(plain, match["type"]), match["type"]


def _leaves(node: Any, path: list[str]) -> Iterator[tuple[list[str], Any]]:
    """Every leaf with its SOPS key path, in file order (list items share their parent's path)."""
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _leaves(value, [*path, str(key)])
    elif isinstance(node, list):
        for item in node:
            yield from _leaves(item, path)
    else:
        yield path, node


def _is_unencrypted(path: list[str], metadata: dict[str, Any]) -> bool:
    suffix = str(metadata.get("unencrypted_suffix") or "")
    return bool(suffix) and any(part.endswith(suffix) for part in path)


def decrypt_tree(secrets: EncryptedSecrets, data_key: bytes) -> dict[str, Any]:
    """The plaintext document, after checking the MAC over every value."""
    digest = hashlib.sha512()
    mac_only_encrypted = bool(secrets.metadata.get("mac_only_encrypted"))

    def walk(node: Any, path: list[str]) -> Any:
        if isinstance(node, dict):
            return {k: walk(v, [*path, str(k)]) for k, v in node.items()}
        if isinstance(node, list):
            return [walk(item, path) for item in node]
        if isinstance(node, str) and node.startswith("ENC[") and not _is_unencrypted(path, secrets.metadata):
            value, kind = decrypt_value(node, data_key, ":".join(path) + ":", secrets.label, ":".join(path))
            if kind != "comment":
                digest.update(_mac_bytes(value))
            return value
        if not mac_only_encrypted:
            digest.update(_mac_bytes(node))
        return node

    plain: dict[str, Any] = walk(secrets.tree, [])
    lastmodified = str(secrets.metadata["lastmodified"])
    stored, _ = decrypt_value(str(secrets.metadata["mac"]), data_key, lastmodified, secrets.label, "sops.mac")
    if str(stored).upper() != digest.hexdigest().upper():
        raise SecretsError(f"{secrets.label}: MAC mismatch: the file was changed outside SOPS/qrm (tampered?)")
    return plain


def decrypt(secrets: EncryptedSecrets, identities: list[pyrage.x25519.Identity]) -> dict[str, str]:
    """qrm's flat secrets in plaintext (MAC verified)."""
    secrets.flat_values()  # refuse non-flat files before any work
    plain = decrypt_tree(secrets, unwrap_data_key(secrets, identities))
    return {k: plain_text(v) for k, v in plain.items() if k != QRM_META_KEY}


def plain_text(value: Any) -> str:
    """A decrypted value as text, as SOPS wrote it: `true`, not Python's `True`; bytes as UTF-8."""
    return _plain_bytes(value)[0].decode("utf-8", "replace")


# --- writing -----------------------------------------------------------------------------------------

def utc_now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


# Names that YAML 1.1 (PyYAML, and SOPS's older readers) reads as a bool or null, not a string.
_YAML11_WORDS = re.compile(r"y|Y|yes|Yes|YES|n|N|no|No|NO|true|True|TRUE|false|False|FALSE|"
                           r"on|On|ON|off|Off|OFF|null|Null|NULL")


def _yaml_key(name: str) -> str:
    """A name as a YAML key that reads back as that string: `on`, `yes`, `null`, … are quoted (else the
    key path, which is the value's associated data, would change and the value would not decrypt)."""
    return _quote(name) if _YAML11_WORDS.fullmatch(name) else name


def render(
    values: Mapping[str, str],
    *,
    data_key: bytes,
    wrapped: list[dict[str, str]],
    previous: EncryptedSecrets | None = None,
    previous_plain: Mapping[str, str] | None = None,
    changed_at: Mapping[str, str] | None = None,
    rotated_at: str | None = None,
    now: str | None = None,
    keep_ivs: Mapping[str, bytes] | None = None,
) -> str:
    """The whole secrets.enc text. A value equal to its previous plaintext keeps its ciphertext
    (pass `previous` only when `data_key` is that file's key), so unchanged lines never change;
    `changed_at` records when each value was last set. `keep_ivs` (a rotation: a new `data_key`)
    re-encrypts each unchanged value with its old IV, which marks it as the same value (value_ids);
    a GCM nonce must be unique per key, and this key is new."""
    now = now or utc_now()
    old = previous.flat_values() if previous is not None else {}
    changed = {k: v for k, v in (changed_at or {}).items() if k in values}
    lines: list[str] = []
    digest = hashlib.sha512()
    for name in sorted(values):
        if not re.fullmatch(NAME_PATTERN, name):
            raise SecretsError(f"{name!r} is not a secret name: NAME, project/NAME or project/env/NAME "
                               "(NAME: letters, digits and _)")
        if name.endswith(UNENCRYPTED_SUFFIX):
            raise SecretsError(f"{name!r} is not a secret name: SOPS leaves keys ending in {UNENCRYPTED_SUFFIX} "
                               "unencrypted")
        value = values[name]
        unchanged = previous_plain is not None and previous_plain.get(name) == value
        # The same value under the same data key keeps its ciphertext: a one-line diff per change.
        if value == "":
            # SOPS would store it as a plain "" (its ENC[] form needs a non-empty `data:`, so an encrypted
            # empty value would not read in SOPS or Flux), outside the MAC: readers refuse that, see flat_values.
            raise SecretsError(f"{name}: an empty secret cannot be written: SOPS stores an empty value "
                               "unencrypted and outside its MAC; secrets.enc was not changed")
        if unchanged and name in old:
            enc = old[name]
        elif unchanged and keep_ivs is not None and name in keep_ivs:
            enc = encrypt_value(value, data_key, f"{name}:", iv=keep_ivs[name])
        else:
            enc = encrypt_value(value, data_key, f"{name}:")
        if not unchanged:
            changed[name] = now
        digest.update(value.encode("utf-8"))
        lines.append(f"{_yaml_key(name)}: {enc}\n")
    meta_lines = [f"{QRM_META_KEY}:\n", "    changed:\n"] if changed else []
    if changed:
        for name in sorted(changed):
            meta_lines.append(f"        {_yaml_key(name)}: {_quote(changed[name])}\n")
            digest.update(changed[name].encode("utf-8"))
    if rotated_at:
        if not meta_lines:
            meta_lines.append(f"{QRM_META_KEY}:\n")
        meta_lines.append(f"    rotated: {_quote(rotated_at)}\n")
        digest.update(rotated_at.encode("utf-8"))
    mac = encrypt_value(digest.hexdigest().upper(), data_key, now)
    sops = [f"{META_KEY}:\n", "    age:\n"]
    for stanza in wrapped:
        sops.append(f"        - recipient: {stanza['recipient']}\n")
        sops.append("          enc: |\n")
        sops.extend(f"            {line}\n" for line in stanza["enc"].strip().splitlines())
    sops += [f"    lastmodified: {_quote(now)}\n", f"    mac: {mac}\n",
             f"    unencrypted_suffix: {UNENCRYPTED_SUFFIX}\n", f"    version: {SOPS_VERSION}\n"]
    return "".join(lines + meta_lines + sops)


def new_data_key() -> bytes:
    return os.urandom(32)
