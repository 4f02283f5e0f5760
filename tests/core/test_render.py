"""reconciler.core.render: the generated configs of a project environment (pure; see tests/support/render_cases.py).

What is checked here, for every environment of every case: .env holds exactly the expected
variables and reads back exactly with python-dotenv, whatever the values; output is byte-identical
for equal input whatever the order it came in; without a key no secret appears anywhere and its
placeholder follows the ciphertext fingerprint; with a key the value is in .env and nowhere else.
tests/core/test_render_validation.py checks the files with real tools (nginx -t, the Compose schema).
"""

from __future__ import annotations

import io
import os
import re
from typing import Any

import pytest
import yaml
from dotenv import dotenv_values
from hypothesis import given
from hypothesis import strategies as st

from reconciler.core.crosscheck import build_desired
from reconciler.core.models import manifest_list
from reconciler.core.render import (
    FILE_ALIASES,
    GENERATED_FILES,
    SecretValue,
    dotenv_value,
    render_environment,
    secret_references,
    yaml_str,
)
from reconciler.core.state import SourceRef
from tests.support.render_cases import (
    CASE_IDS,
    CASES,
    NASTY,
    Case,
    desired_of,
    ports_of,
    project,
    rendered,
    secret_values,
)

ALL = list(rendered())
ALL_IDS = [r.id for r in ALL]


def read_dotenv(text: str, **options: Any) -> dict[str, str | None]:
    """How an app reads the file: python-dotenv, variables expanded (its default)."""
    return dict(dotenv_values(stream=io.StringIO(text), **options))


def test_file_names() -> None:
    assert GENERATED_FILES == (".env", "docker-compose.yml", "nginx.conf", "quantum.config.yaml")
    assert sorted(FILE_ALIASES.values()) == sorted(GENERATED_FILES)
    assert FILE_ALIASES == {"env": ".env", "compose": "docker-compose.yml", "nginx": "nginx.conf",
                            "quantum": "quantum.config.yaml"}
    for r in ALL:
        assert tuple(r.files) == GENERATED_FILES
        assert all(text.endswith("\n") and "\r" not in text for text in r.files.values()), r.id


# --- .env ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", sorted(NASTY))
def test_dotenv_value_reads_back_exactly(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    value = NASTY[name]
    # variables the value mentions exist in the environment: expansion would show
    monkeypatch.setenv("HOME", "/home/expanded")
    monkeypatch.setenv("x", "expanded")
    text = f"A={dotenv_value(value)}\nB={dotenv_value(value)}\n"
    assert read_dotenv(text) == {"A": value, "B": value}


@given(st.text(st.characters(exclude_categories=("Cs",))))
def test_any_text_reads_back_exactly(value: str) -> None:
    assert read_dotenv(f"KEY={dotenv_value(value)}\nNEXT=\"x\"\n") == {"KEY": value, "NEXT": "x"}


@given(st.text(st.characters(exclude_categories=("Cs",))))
def test_any_text_is_a_yaml_string_that_reads_back_exactly(value: str) -> None:
    """The YAML files are written without a YAML library: each string must survive a real parser."""
    assert yaml.safe_load(f"key: {yaml_str(value)}\nlist: [{yaml_str(value)}]\n") == {"key": value, "list": [value]}


@pytest.mark.parametrize("name", sorted(NASTY))
def test_a_nasty_secret_reaches_dotenv_exactly(name: str) -> None:
    case = Case("nasty", [project("app", {"prod": {}}, {"web": {"type": "app"}, "db": {"type": "database"}},
                                  {"db": {"driver": "postgresql", "service": "db", "database": "app",
                                          "password": "secret:DB_PASSWORD"}})],
                {"app/prod/DB_PASSWORD": NASTY[name]})
    desired = desired_of(case)
    files = render_environment(desired, "app", "prod", ports_of(desired),
                               secret_values(desired, case, "app", "prod", with_values=True))
    assert read_dotenv(files[".env"])["DB_PASSWORD"] == NASTY[name]


def stem(name: str) -> str:
    """blog-db -> BLOG_DB, odd.names -> ODD_NAMES, 1web -> _1WEB."""
    upper = re.sub(r"[^A-Za-z0-9]", "_", name).upper()
    return "_" + upper if upper[0].isdigit() else upper


def expected_variables(r: Any) -> dict[str, str | None]:
    spec = r.desired.projects[r.project]
    environment = spec.environments[r.environment]
    host = r.desired.hosts[environment.host].address
    expected: dict[str, str | None] = {
        "QRM_PROJECT": r.project, "QRM_ENVIRONMENT": r.environment,
        "BASE_PATH": spec.base_path, "DOMAIN": environment.domain or "",
        "COMPOSE_PROJECT_NAME": f"{r.project}-{r.environment}".replace(".", "-"),
    }
    # On the host: the host's address and the allocated ports; in compose: the service's name and
    # the port it listens on inside its container (the target of its compose port mapping).
    ports = r.instance_ports()
    if r.compose:
        compose = yaml.safe_load(r.files["docker-compose.yml"])["services"] or {}
        ports = {service: int(body["ports"][0].split(":")[1]) for service, body in compose.items()}
    else:
        expected["HOST"] = host
    for service, port in ports.items():
        expected[f"{stem(service)}_PORT"] = str(port)
    for name, ds in spec.datasources.items():
        prefix = f"DATASOURCE_{stem(name)}"
        expected[f"{prefix}_DRIVER"] = ds.driver
        expected[f"{prefix}_DATABASE"] = ds.database
        if ds.service:
            expected[f"{prefix}_HOST"] = ds.service if r.compose else host
            expected[f"{prefix}_PORT"] = str(ports[ds.service])
        if ds.username is not None:
            expected[f"{prefix}_USER"] = ds.username
    for var, secret in r.secrets.items():
        expected[var] = secret.value
    return expected


@pytest.mark.parametrize("r", ALL, ids=ALL_IDS)
def test_dotenv_holds_exactly_the_expected_variables_sorted(r: Any) -> None:
    text = r.files[".env"]
    assert read_dotenv(text) == expected_variables(r)
    names = [line.split("=", 1)[0] for line in text.splitlines() if line and not line.startswith(("#", " "))
             and "=" in line and line.split("=", 1)[0].isupper()]
    assert names == sorted(names) and len(names) == len(set(names))


def test_example_dotenv() -> None:
    r = next(r for r in ALL if r.id == "example:quantumblog/prod")
    values = read_dotenv(r.files[".env"])
    ports = r.instance_ports()
    assert values["WEB_PORT"] == str(ports["web"]) and values["BLOG_DB_PORT"] == str(ports["blog-db"])
    assert values["BLOG_DB_PASSWORD"] == NASTY["dollar-brace"]
    assert values["DOMAIN"] == "blog.example.com" and values["HOST"] == "127.0.0.1"


# --- determinism -----------------------------------------------------------------------------------

@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_equal_input_gives_byte_identical_output_whatever_the_order(case: Case) -> None:
    forward = desired_of(case)
    backward = desired_of(Case(case.name, list(reversed(case.documents)), dict(reversed(case.secrets.items()))))
    ports = ports_of(forward)
    for name in sorted(forward.projects):
        for env in sorted(forward.projects[name].environments):
            secrets = secret_values(forward, case, name, env, with_values=True)
            first = render_environment(forward, name, env, ports, secrets)
            again = render_environment(backward, name, env, dict(reversed(ports.items())),
                                       dict(reversed(secrets.items())))
            assert first == again
            assert [text.encode() for text in first.values()] == [text.encode() for text in again.values()]


# --- secrets ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("r", list(rendered(with_values=False)), ids=ALL_IDS)
def test_without_a_key_no_secret_appears_and_placeholders_name_key_and_fingerprint(r: Any) -> None:
    everything = "".join(r.files.values())
    for key, plaintext in r.case.secrets.items():
        if len(plaintext) >= 3:
            assert plaintext not in everything, key
            assert plaintext.encode("unicode_escape").decode() not in everything, key
    values = read_dotenv(r.files[".env"])
    for var, secret in r.secrets.items():
        assert values[var] == f"<secret {secret.key} {secret.fingerprint}>"
        assert secret.fingerprint not in r.files["quantum.config.yaml"] + r.files["docker-compose.yml"]


def test_placeholder_changes_with_the_fingerprint_and_only_there() -> None:
    case = CASES[0]
    key = "quantumblog/BLOG_DB_PASSWORD"
    before_state = desired_of(case, {key: "ENC[one]"})
    after_state = desired_of(case, {key: "ENC[two]"})
    ports = ports_of(before_state)
    for env in ("dev", "prod"):
        before = render_environment(before_state, "quantumblog", env, ports,
                                    secret_values(before_state, case, "quantumblog", env, with_values=False))
        after = render_environment(after_state, "quantumblog", env, ports,
                                   secret_values(after_state, case, "quantumblog", env, with_values=False))
        assert before[".env"] != after[".env"]
        assert [n for n in GENERATED_FILES if before[n] != after[n]] == [".env"]
        changed = [line for line in after[".env"].splitlines() if line not in before[".env"].splitlines()]
        assert changed == [f'BLOG_DB_PASSWORD="<secret {key} {after_state.secrets[key]}>"']


@pytest.mark.parametrize("r", ALL, ids=ALL_IDS)
def test_with_a_key_the_value_is_in_dotenv_only(r: Any) -> None:
    for var, secret in r.secrets.items():
        assert read_dotenv(r.files[".env"])[var] == secret.value
        assert secret.value is not None
        for name in ("docker-compose.yml", "nginx.conf", "quantum.config.yaml"):
            assert secret.value not in r.files[name] or len(secret.value) < 3, (name, var)
        # other files refer to it by name
        assert f'"${{{var}}}"' in r.files["quantum.config.yaml"]


def test_secret_repr_never_shows_the_value() -> None:
    secret = SecretValue("p/e/NAME", "0123456789abcdef", "hunter2-plaintext")
    assert "hunter2" not in repr(secret) and "hunter2" not in str(secret)
    assert "p/e/NAME" in repr(secret)


def test_secret_references_resolve_environment_then_project_then_global() -> None:
    case = CASES[1]  # shop
    desired = desired_of(case)
    assert secret_references(desired, "shop", "prod") == {
        "REPORTS_PASSWORD": "shop/REPORTS_PASSWORD", "SHOP_DB_PASSWORD": "shop/prod/SHOP_DB_PASSWORD"}
    assert secret_references(desired, "shop", "dev") == {
        "REPORTS_PASSWORD": "shop/REPORTS_PASSWORD", "SHOP_DB_PASSWORD": "SHOP_DB_PASSWORD"}
    assert secret_references(desired_of(CASES[2]), "workers", "dev") == {}


def test_a_secret_not_given_is_a_placeholder_not_a_crash() -> None:
    case = CASES[0]
    desired = desired_of(case)
    files = render_environment(desired, "quantumblog", "dev", ports_of(desired), {})
    assert read_dotenv(files[".env"])["BLOG_DB_PASSWORD"] == "<secret BLOG_DB_PASSWORD not set>"


# --- errors and cross-checks -----------------------------------------------------------------------

def test_unknown_project_environment_or_missing_port_is_a_clear_error() -> None:
    desired = desired_of(CASES[0])
    ports = ports_of(desired)
    with pytest.raises(ValueError, match="unknown project 'nope'"):
        render_environment(desired, "nope", "dev", ports, {})
    with pytest.raises(ValueError, match="no environment 'qa'"):
        render_environment(desired, "quantumblog", "qa", ports, {})
    without_web = {k: v for k, v in ports.items() if k != "quantumblog-dev-web"}
    with pytest.raises(ValueError, match="no port allocated for quantumblog-dev-web"):
        render_environment(desired, "quantumblog", "dev", without_web, {})


def problems_of(docs: list[dict[str, Any]], secrets: dict[str, str] | None = None) -> list[str]:
    models = manifest_list().validate_python(docs)
    _, problems = build_desired(((SourceRef("manifests/x.yaml", i), m) for i, m in enumerate(models)),
                                secrets if secrets is not None else {})
    return [f"{p.field_name}: {p.message}" for p in problems]


CLASHES = [
    ({"a-b": {"type": "app"}, "a_b": {"type": "app"}}, {}, "services.a_b: service 'a_b' writes the .env variable "
     "A_B_PORT, which service 'a-b' writes too"),
    ({"db": {"type": "database"}}, {"d": {"driver": "sqlite", "database": "x", "password": "secret:HOST"}},
     "datasources.d.password: secret HOST writes the .env variable HOST, which a variable qrm always writes"),
    ({"web": {"type": "app"}}, {"d": {"driver": "sqlite", "database": "x", "password": "secret:WEB_PORT"}},
     "secret WEB_PORT writes the .env variable WEB_PORT, which service 'web'"),
]


@pytest.mark.parametrize(("services", "datasources", "message"), CLASHES)
def test_validate_reports_dotenv_variables_written_twice(services: dict[str, Any], datasources: dict[str, Any],
                                                         message: str) -> None:
    secrets = {"HOST": "f", "WEB_PORT": "f"}
    problems = problems_of([project("p", {"dev": {}}, services, datasources)], secrets)
    assert any(message in p for p in problems), problems
    desired, _ = build_desired([(SourceRef("m.yaml"), manifest_list().validate_python(
        [project("p", {"dev": {}}, services, datasources)])[0])], secrets)
    with pytest.raises(ValueError, match=r"writes the \.env variable"):
        render_environment(desired, "p", "dev", {f"p-dev-{s}": 8000 + i for i, s in enumerate(services)}, {})


@pytest.mark.parametrize(("domain", "ok"), [
    ("blog.example.com", True), ("*.example.com", True), ("localhost", True), ("xn--bcher-kva.example", True),
    ("blog example.com", False), ("blog.example.com;", False), ("a..b", False), ("-a.b", False),
    ("$host", False), ("blog.example.com/x", False),
])
def test_validate_accepts_only_domain_names(domain: str, ok: bool) -> None:
    problems = problems_of([project("p", {"prod": {"domain": domain, "tls": True}}, {"web": {"type": "app"}})])
    assert (problems == []) == ok, problems
    if not ok:
        assert problems == ["environments.prod.domain: expected a domain name such as blog.example.com "
                            "(letters, digits, '-' and '.', optionally starting with '*.')"]


def test_rendering_reads_no_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    before = [r.files for r in rendered()]
    monkeypatch.setenv("HOME", "/elsewhere")
    monkeypatch.setattr(os, "environ", {**os.environ, "QRM_PROJECT": "other"})
    assert [r.files for r in rendered()] == before
