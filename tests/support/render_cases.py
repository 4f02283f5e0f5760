"""The projects that tests/core/test_render.py and tests/core/test_render_validation.py render, as data.

Each Case is manifest documents (as manifests/*.yaml would hold them) and the plaintext of the
secrets in secrets.enc. `rendered()` builds the DesiredState with crosscheck.build_desired,
allocates ports with the real (pure) allocator and renders every environment, with the secret
values (apply) or without them (plan).
"""

from __future__ import annotations

import copy
import hashlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import yaml

from reconciler.core.allocate import allocate
from reconciler.core.crosscheck import build_desired
from reconciler.core.models import manifest_list
from reconciler.core.render import SecretValue, render_environment, secret_references
from reconciler.core.state import DesiredState, LiveState, SourceRef
from tests.support.paths import REPO

# Values that are awkward for .env readers, shells, YAML and nginx; each must read back exactly.
NASTY = {
    "plain": "s3cret-plain-value",
    "spaces": "  two leading, inner  spaces and two trailing  ",
    "hash": "value # not a comment #",
    "single-quotes": "it's 'quoted'",
    "double-quotes": 'say "hi" ""',
    "both-quotes": "it's \"both\"",
    "dollar": "$HOME $ $$ pa$$word",
    "dollar-brace": "${HOME} ${PATH:-/bin} ${} ${:-x} $${NOPE}",
    "dollar-quote": "$'x' \"$y\"",
    "dollar-backslash": "\\$HOME \\${HOME} \\\\${x}",
    "equals": "a=b==c=",
    "backslashes": "C:\\path\\n\\t\\\\ end\\",
    "newlines": "first line\nsecond line\n\nlast\n",
    "carriage-returns": "a\r\nb\rc",
    "tabs-and-controls": "\ttab\x0bvt\x0cff\x07bell",
    "unicode": "żółć ✓ 日本語 🙂 \u2028 \u00a0",
    "export-lookalike": "export X=1",
    "empty": "",
    "only-space": " ",
    "comment-start": "# whole value",
    "brace-close": "}{}{",
}


@dataclass(frozen=True)
class Case:
    name: str
    documents: list[dict[str, Any]]
    secrets: dict[str, str] = field(default_factory=dict)  # secrets.enc key -> plaintext


def project(name: str, environments: dict[str, Any], services: dict[str, Any],
            datasources: dict[str, Any] | None = None, base_path: str = "") -> dict[str, Any]:
    return {"kind": "Project", "name": name, "base_path": base_path, "environments": environments,
            "services": services, "datasources": datasources or {}}


def example_documents() -> list[dict[str, Any]]:
    """The bundled example workspace's manifests, as they are."""
    docs: list[dict[str, Any]] = []
    for path in sorted((REPO / "manifests").glob("*.yaml")):
        docs.extend(doc for doc in yaml.safe_load_all(path.read_text()) if doc)
    return docs


CASES = [
    Case("example", example_documents(), {"quantumblog/BLOG_DB_PASSWORD": NASTY["dollar-brace"]}),
    Case(
        "shop",
        [
            {"kind": "Host", "name": "forge", "address": "10.10.1.40"},
            project(
                "shop",
                {
                    "dev": {"host": "localhost"},
                    "staging": {"host": "localhost", "tls": True, "run": "compose"},
                    "prod": {"host": "forge", "domain": "shop.example.com", "tls": True, "protected": True,
                             "ports": {"web": 8443},
                             # the Let's Encrypt layout, as the README documents it
                             "tls_certificate": "/etc/letsencrypt/live/shop.example.com/fullchain.pem",
                             "tls_certificate_key": "/etc/letsencrypt/live/shop.example.com/privkey.pem"},
                },
                {
                    "web": {"type": "app", "health": {"path": "/shop/health", "interval": "10s", "timeout": "2s",
                                                      "failures_before_critical": 3}},
                    "api": {"type": "app", "protocol": "https", "health": {"path": "/api/health"}},
                    "db": {"type": "database", "health": {"interval": "5s", "timeout": "1500ms"}},
                    "reports-db": {"type": "database"},
                    "mq": {"type": "queue", "health": {}},
                    "cache": {"type": "cache", "health": {"interval": "1m30s"}},
                },
                {
                    "main": {"driver": "postgresql", "service": "db", "database": "shop", "username": "shop",
                             "password": "secret:SHOP_DB_PASSWORD"},
                    "reports": {"driver": "mysql", "service": "reports-db", "database": "reports",
                                "username": "reporter", "password": "secret:REPORTS_PASSWORD"},
                    "local": {"driver": "sqlite", "database": "/var/lib/shop/local.db"},
                },
                base_path="/shop",
            ),
        ],
        {
            "SHOP_DB_PASSWORD": NASTY["both-quotes"],  # global, for dev and staging
            "shop/prod/SHOP_DB_PASSWORD": NASTY["newlines"],  # prod's own
            "shop/REPORTS_PASSWORD": NASTY["backslashes"],
        },
    ),
    Case(
        "no-http",
        [project("workers", {"dev": {}, "prod": {"domain": "workers.example.com", "tls": True}},
                 {"cache": {"type": "cache"}, "jobs": {"type": "queue", "protocol": "tcp"}})],
    ),
    Case(
        "no-services",
        [project("static", {"dev": {}}, {})],
    ),
    Case(
        "odd-names",
        [
            {"kind": "Host", "name": "v6", "address": "::1"},
            project(
                "odd.names",
                {
                    "on": {"host": "v6", "domain": "*.odd.example", "tls": True},
                    "1st": {"host": "localhost", "run": "compose"},
                },
                {
                    "1web": {"type": "web", "health": {"path": "/h?probe=$x&q='1' \"2\";{3}#4"}},
                    "null": {"type": "database"},
                    "yes": {"type": "app", "protocol": "grpc"},
                },
                {
                    "true": {"driver": "postgresql", "service": "null", "database": "odd \"db\" $x",
                             "username": "on", "password": "secret:ODD_PASSWORD"},
                },
                base_path="/a;b{c}\"d'e$f#g\\h",
            ),
        ],
        {"ODD_PASSWORD": NASTY["dollar-quote"]},
    ),
]
CASE_IDS = [case.name for case in CASES]


def fingerprint(ciphertext: str) -> str:
    return hashlib.sha256(ciphertext.encode()).hexdigest()[:16]


def desired_of(case: Case, ciphertexts: dict[str, str] | None = None) -> DesiredState:
    """`ciphertexts`: key -> a stand-in ciphertext (default: derived from the plaintext), whose
    fingerprint is what DesiredState.secrets holds."""
    models = manifest_list().validate_python(case.documents)
    stand_ins = ciphertexts or {key: f"ENC[{value}]" for key, value in case.secrets.items()}
    desired, problems = build_desired(
        ((SourceRef(f"manifests/{case.name}.yaml", i), m) for i, m in enumerate(models)),
        {key: fingerprint(text) for key, text in stand_ins.items()},
    )
    assert problems == [], [str(p) for p in problems]
    return desired


def ports_of(desired: DesiredState) -> dict[str, int]:
    result = allocate(desired, {}, LiveState())
    assert not result.conflicts and not result.errors
    return result.ports


def secret_values(desired: DesiredState, case: Case, project: str, environment: str,
                  with_values: bool) -> dict[str, SecretValue]:
    return {
        var: SecretValue(key, desired.secrets[key], case.secrets[key] if with_values else None)
        for var, key in secret_references(desired, project, environment).items()
    }


@dataclass(frozen=True)
class Rendered:
    case: Case
    desired: DesiredState
    project: str
    environment: str
    ports: dict[str, int]  # every instance's allocated port
    secrets: dict[str, SecretValue]
    files: dict[str, str]

    @property
    def id(self) -> str:
        return f"{self.case.name}:{self.project}/{self.environment}"

    @property
    def compose(self) -> bool:
        """The app runs in the compose file (containers reach each other by service name)."""
        return self.desired.projects[self.project].environments[self.environment].run == "compose"

    def instance_ports(self) -> dict[str, int]:
        """project service name -> allocated port, for this environment."""
        prefix = f"{self.project}-{self.environment}-"
        spec = self.desired.projects[self.project]
        return {service: self.ports[prefix + service] for service in spec.services}


DEFAULT_TLS_DIR = "/etc/ssl/qrm"


def rooted(case: Case, root: str) -> Case:
    """The case with every certificate path an environment names moved under `root` (so that a test
    can put real files there): /etc/letsencrypt/... -> <root>/etc/letsencrypt/..."""
    documents = copy.deepcopy(case.documents)
    for document in documents:
        for environment in (document.get("environments") or {}).values():
            for key in ("tls_certificate", "tls_certificate_key"):
                if environment and key in environment:
                    environment[key] = root.rstrip("/") + environment[key]
    return Case(case.name, documents, case.secrets)


def run_everywhere(case: Case, run: str) -> Case:
    """The case with every environment run the same way (`run: host` or `run: compose`)."""
    documents = copy.deepcopy(case.documents)
    for document in documents:
        for name, environment in (document.get("environments") or {}).items():
            document["environments"][name] = {**(environment or {}), "run": run}
    return Case(case.name, documents, case.secrets)


def rendered(with_values: bool = True, tls_dir: str = DEFAULT_TLS_DIR, run: str | None = None) -> Iterator[Rendered]:
    """Every environment of every project of every case. With another `tls_dir`, the default
    certificate paths are in it and the paths an environment names are moved under it too. With
    `run`, every environment runs that way (else as the case says)."""
    for original in CASES:
        case = original if tls_dir == DEFAULT_TLS_DIR else rooted(original, tls_dir)
        case = case if run is None else run_everywhere(case, run)
        desired = desired_of(case)
        ports = ports_of(desired)
        for project_name in sorted(desired.projects):
            for environment in sorted(desired.projects[project_name].environments):
                secrets = secret_values(desired, case, project_name, environment, with_values)
                files = render_environment(desired, project_name, environment, ports, secrets, tls_dir=tls_dir)
                yield Rendered(original, desired, project_name, environment, ports, secrets, files)
