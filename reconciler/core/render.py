"""The generated configs of one project environment, as text (pure).

`render_environment` turns the desired state, the allocated ports and the secrets a project
needs into the four files of generated/<project>/<environment>/: `.env`, `docker-compose.yml`,
`nginx.conf` and `quantum.config.yaml`. Equal input gives byte-identical output: everything is
sorted, nothing depends on time, the machine or dict order. Without a key (plan) a secret is a
placeholder naming its key and ciphertext fingerprint, so a changed secret still changes the text
and a plan diff shows it without showing any value.

All four files say the same thing about where things are, as seen from where the app runs
(the environment's `run`): on the host (`run: host`, the default) every service instance is at
the environment host's address (HOST) on its allocated port; in compose (`run: compose`) the
containers reach each other on the project network by service name and container port, and the
web container gets quantum.config.yaml mounted. Compose publishes the allocated ports either way,
so nginx on the host proxies to HOST and the allocated port in both. No YAML library is used (the core may
not import one); the few YAML shapes written here are emitted with every string quoted.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Mapping
from dataclasses import dataclass, field

from reconciler.core import secret_scope
from reconciler.core.models import Datasource, Environment, Project, ProjectService
from reconciler.core.state import DesiredState, instance_name

GENERATED_FILES = (".env", "docker-compose.yml", "nginx.conf", "quantum.config.yaml")
FILE_ALIASES = {"env": ".env", "compose": "docker-compose.yml", "nginx": "nginx.conf", "quantum": "quantum.config.yaml"}
DEFAULT_TLS_DIR = "/etc/ssl/qrm"
# Where, in `run: compose`, the web container finds quantum.config.yaml (the app's folder in its image).
CONTAINER_CONFIG = "/app/quantum.config.yaml"


@dataclass(frozen=True)
class SecretValue:
    """What .env needs for one `secret:NAME` reference."""

    key: str  # the secrets.enc key it resolved to, e.g. "quantumblog/prod/BLOG_DB_PASSWORD"
    fingerprint: str  # of the ciphertext (DesiredState.secrets[key])
    value: str | None  # the plaintext at apply; None when rendering without a key (plan)

    def __repr__(self) -> str:  # a plaintext never reaches a log or a traceback through repr()
        shown = "None" if self.value is None else "'***'"
        return f"SecretValue(key={self.key!r}, fingerprint={self.fingerprint!r}, value={shown})"


def placeholder(secret: SecretValue) -> str:
    """What .env holds for a secret rendered without its value."""
    return f"<secret {secret.key} {secret.fingerprint}>"


# --- names -------------------------------------------------------------------------------------

def variable_name(name: str) -> str:
    """The environment variable stem of a service or datasource name: blog-db -> BLOG_DB."""
    stem = re.sub(r"[^A-Za-z0-9]", "_", name).upper()
    return "_" + stem if stem[:1].isdigit() else stem


def port_variable(service: str) -> str:
    return f"{variable_name(service)}_PORT"


def datasource_variable(datasource: str, part: str) -> str:
    return f"DATASOURCE_{variable_name(datasource)}_{part}"


_FIXED_VARIABLES = ("BASE_PATH", "COMPOSE_PROJECT_NAME", "DOMAIN", "HOST", "QRM_ENVIRONMENT", "QRM_PROJECT")
_DATASOURCE_PARTS = ("DATABASE", "DRIVER", "HOST", "PORT", "USER")


def variable_clashes(project: Project) -> list[tuple[tuple[str | int, ...], str]]:
    """(field path, message) for every .env variable two parts of a project would both write:
    services or datasources whose names differ only in '.', '-' or '_', or a secret named like a
    generated variable. render_environment refuses such a project; crosscheck reports them."""
    owners: dict[str, tuple[str, tuple[str | int, ...]]] = {
        name: ("a variable qrm always writes", ()) for name in _FIXED_VARIABLES}
    clashes: list[tuple[tuple[str | int, ...], str]] = []

    def claim(variable: str, owner: str, path: tuple[str | int, ...]) -> None:
        first = owners.setdefault(variable, (owner, path))
        if first[0] != owner:
            clashes.append((path, f"{owner} writes the .env variable {variable}, which {first[0]} writes too; "
                                  "rename one of them"))

    for service in sorted(project.services):
        claim(port_variable(service), f"service {service!r}", ("services", service))
    for ds_name in sorted(project.datasources):
        for part in _DATASOURCE_PARTS:
            claim(datasource_variable(ds_name, part), f"datasource {ds_name!r}", ("datasources", ds_name))
    for ds_name in sorted(project.datasources):
        secret = secret_scope.reference_name(project.datasources[ds_name].password or "")
        if secret is not None:
            claim(secret, f"secret {secret}", ("datasources", ds_name, "password"))
    return clashes


# --- the facts of one environment ----------------------------------------------------------------

@dataclass(frozen=True)
class _Env:
    project: Project
    name: str
    environment: Environment
    host: str  # the environment host's address
    ports: dict[str, int]  # project service name -> allocated port
    inner: dict[str, int]  # project service name -> the port it listens on inside its container
    web: str | None  # the project service that serves the app (nginx location, Quantum server port)
    server_name: str
    variables: dict[str, str] = field(repr=False)  # .env, sorted; may hold secret values


def _http(service: ProjectService) -> bool:
    return service.effective_protocol in ("http", "https")


def web_service(project: Project) -> str | None:
    """The service that serves the app: `web` when it speaks HTTP, else the first HTTP service by name."""
    web = project.services.get("web")
    if web is not None and _http(web):
        return "web"
    return next((name for name in sorted(project.services) if _http(project.services[name])), None)


def _environment(desired: DesiredState, project_name: str, env_name: str, ports: Mapping[str, int],
                 secrets: Mapping[str, SecretValue]) -> _Env:
    project = desired.projects.get(project_name)
    if project is None:
        raise ValueError(f"unknown project {project_name!r}; known projects: {', '.join(sorted(desired.projects))}")
    environment = project.environments.get(env_name)
    if environment is None:
        raise ValueError(f"project {project_name!r} has no environment {env_name!r}; expected one of: "
                         f"{', '.join(sorted(project.environments))}")
    clashes = variable_clashes(project)
    if clashes:
        raise ValueError(f"project {project_name!r}: {clashes[0][1]}")
    host = desired.hosts[environment.host].address if environment.host in desired.hosts else environment.host
    allocated: dict[str, int] = {}
    for service in sorted(project.services):
        instance = instance_name(project_name, env_name, service)
        if instance not in ports:
            raise ValueError(f"no port allocated for {instance}")
        allocated[service] = int(ports[instance])

    inner = {service: _image_of(project, service, port)[1] for service, port in allocated.items()}
    compose = environment.run == "compose"
    variables: dict[str, str] = {
        "BASE_PATH": project.base_path,
        "COMPOSE_PROJECT_NAME": _compose_project(project_name, env_name),
        "DOMAIN": environment.domain or "",
        "QRM_ENVIRONMENT": env_name,
        "QRM_PROJECT": project_name,
    }
    if not compose:  # in a container the host's loopback is the container's own: no HOST there
        variables["HOST"] = host
    for service, port in allocated.items():
        variables[port_variable(service)] = str(inner[service] if compose else port)
    for ds_name in sorted(project.datasources):
        datasource = project.datasources[ds_name]
        variables[datasource_variable(ds_name, "DRIVER")] = datasource.driver
        variables[datasource_variable(ds_name, "DATABASE")] = datasource.database
        if datasource.service is not None and datasource.service in allocated:
            where = _address(datasource.service, host, allocated, inner, compose)
            variables[datasource_variable(ds_name, "HOST")] = where[0]
            variables[datasource_variable(ds_name, "PORT")] = str(where[1])
        if datasource.username is not None:
            variables[datasource_variable(ds_name, "USER")] = datasource.username
        secret = secret_scope.reference_name(datasource.password or "")
        if secret is not None:
            given = secrets.get(secret)
            if given is None:
                variables[secret] = f"<secret {secret} not set>"
            else:
                variables[secret] = placeholder(given) if given.value is None else given.value
    return _Env(
        project=project, name=env_name, environment=environment, host=host, ports=allocated, inner=inner,
        web=web_service(project), server_name=environment.domain or f"{env_name}.{project_name}.localhost",
        variables=dict(sorted(variables.items())),
    )


def _address(service: str, host: str, allocated: Mapping[str, int], inner: Mapping[str, int],
             compose: bool) -> tuple[str, int]:
    """Where a service is reached from the app: in compose by its service name and container port
    (on the project network), on the host at the host's address and the allocated port."""
    return (service, inner[service]) if compose else (host, allocated[service])


def _compose_project(project: str, environment: str) -> str:
    # Compose project names: lower-case letters, digits, '-' and '_' (no '.').
    return f"{project}-{environment}".replace(".", "-")


# --- the public functions ------------------------------------------------------------------------

def secret_references(desired: DesiredState, project: str, environment: str) -> dict[str, str]:
    """env var name -> secrets.enc key for every secret this project/env's files need
    (resolved env -> project -> global). A reference that resolves nowhere is left out
    (crosscheck reports it); .env then says `<secret NAME not set>`."""
    spec = desired.projects[project]
    found: dict[str, str] = {}
    for ds_name in sorted(spec.datasources):
        name = secret_scope.reference_name(spec.datasources[ds_name].password or "")
        if name is None:
            continue
        key = secret_scope.resolve(name, project, environment, desired.secrets)
        if key is not None:
            found[name] = key
    return dict(sorted(found.items()))


def render_environment(desired: DesiredState, project: str, environment: str, ports: Mapping[str, int],
                       secrets: Mapping[str, SecretValue], *, tls_dir: str = DEFAULT_TLS_DIR) -> dict[str, str]:
    """File name (GENERATED_FILES) -> content for generated/<project>/<environment>/.

    `ports`: service instance name -> allocated port (e.g. "quantumblog-prod-web" -> 8002).
    `secrets`: env var name -> SecretValue (see secret_references). A SecretValue whose value is
    None is written as `<secret KEY FINGERPRINT>`. `tls_dir`: where nginx.conf says the
    certificates are (<tls_dir>/<server name>.crt and .key) when the environment does not name
    them (tls_certificate, tls_certificate_key)."""
    env = _environment(desired, project, environment, ports, secrets)
    return {
        ".env": _render_dotenv(env),
        "docker-compose.yml": _render_compose(env),
        "nginx.conf": _render_nginx(env, tls_dir),
        "quantum.config.yaml": _render_quantum(env),
    }


def _header(env: _Env, comment: str, what: str) -> str:
    return (f"{comment} Generated by qrm for {env.project.name}/{env.name}: {what}.\n"
            f"{comment} Do not edit: `qrm apply` rewrites this file (a hand edit shows as drift in `qrm plan`).\n")


# --- .env ------------------------------------------------------------------------------------------

_DOUBLE_ESCAPES = {"\\": "\\\\", '"': '\\"', "\n": "\\n", "\r": "\\r"}
_NEEDS_DOUBLE_ESCAPE = re.compile(r'[\\"\n\r]')


def _escape_double(value: str) -> str:
    return _NEEDS_DOUBLE_ESCAPE.sub(lambda m: _DOUBLE_ESCAPES[m.group(0)], value)


def dotenv_value(value: str) -> str:
    """A value as .env writes it, so that python-dotenv (load_dotenv / dotenv_values, which expand
    `${...}`) reads back exactly `value`; docker compose reads back the same except where noted.

    - no `$`: double quotes with \\\\, \\", \\n and \\r escaped (python-dotenv and compose agree);
    - `$` but no quote `'`, backslash, carriage return or `${`: single quotes, which neither
      python-dotenv nor compose expands (they agree);
    - otherwise double quotes, with each `${` written as `${:-$}{` (an expansion of the empty
      name whose default is `$`): python-dotenv has no escape for `${`, and this is the one
      spelling that it reads back as `${`. Compose reads `$` differently (it wants `$$`), so such
      a value is exact for python-dotenv only."""
    if "$" not in value:
        return f'"{_escape_double(value)}"'
    if not any(c in value for c in "'\\\r") and "${" not in value:
        return f"'{value}'"
    return '"' + _escape_double(value).replace("${", "${:-$}{") + '"'


def _render_dotenv(env: _Env) -> str:
    lines = [_header(env, "#", "the environment of its services (mode 0600, git-ignored)")]
    lines.extend(f"{name}={dotenv_value(value)}\n" for name, value in env.variables.items())
    return "".join(lines)


# --- YAML (emitted directly) -----------------------------------------------------------------------

# Characters a YAML double-quoted scalar must escape: quote, backslash, C0/C1 controls, DEL, the
# Unicode line/paragraph separators, BOM, surrogates and the non-characters U+FFFE/U+FFFF.
_YAML_ESCAPE = re.compile('["\\\\\x00-\x1f\x7f-\x9f\u2028\u2029\ufeff\ud800-\udfff\ufffe\uffff]')
_YAML_NAMED = {'"': '\\"', "\\": "\\\\", "\n": "\\n", "\t": "\\t", "\r": "\\r"}
_YAML_PLAIN_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]*")
_YAML_RESERVED = {"y", "n", "yes", "no", "true", "false", "on", "off", "null"}  # YAML 1.1 booleans, null


def _yaml_escape(match: re.Match[str]) -> str:
    char = match.group(0)
    named = _YAML_NAMED.get(char)
    if named is not None:
        return named
    code = ord(char)
    return f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}"


def yaml_str(value: str) -> str:
    """A double-quoted YAML scalar that every YAML 1.1 and 1.2 parser reads back as `value`."""
    return '"' + _YAML_ESCAPE.sub(_yaml_escape, value) + '"'


def _yaml_key(key: str) -> str:
    if _YAML_PLAIN_KEY.fullmatch(key) and key.lower() not in _YAML_RESERVED:
        return key
    return yaml_str(key)


# --- docker-compose.yml ----------------------------------------------------------------------------

# Well-known images and the port they listen on inside the container; an app/web service runs the
# project's own image and listens on its allocated port (what quantum.config.yaml tells the server).
_DRIVER_IMAGES = {"postgresql": ("postgres:16-alpine", 5432), "mysql": ("mysql:8.4", 3306)}
_TYPE_IMAGES = {
    "database": ("postgres:16-alpine", 5432),
    "cache": ("redis:7-alpine", 6379),
    "queue": ("rabbitmq:3-alpine", 5672),
}
_TCP_CHECKS = {
    "postgres": "pg_isready -q -h 127.0.0.1 -p {port}",
    "mysql": "mysqladmin ping --silent -h 127.0.0.1 -P {port}",
    "redis": "redis-cli -h 127.0.0.1 -p {port} ping",
    "rabbitmq": "rabbitmq-diagnostics -q check_port_connectivity",
}


def _datasource_of(project: Project, service: str) -> Datasource | None:
    for ds_name in sorted(project.datasources):
        if project.datasources[ds_name].service == service:
            return project.datasources[ds_name]
    return None


def _image_of(project: Project, service: str, allocated: int) -> tuple[str, int]:
    """(image, port inside the container) of a project service."""
    spec = project.services[service]
    datasource = _datasource_of(project, service)
    if datasource is not None and datasource.driver in _DRIVER_IMAGES and not _http(spec):
        return _DRIVER_IMAGES[datasource.driver]
    if spec.type in _TYPE_IMAGES and not _http(spec):
        return _TYPE_IMAGES[spec.type]
    return f"{project.name}-{service}:latest", allocated


def _image(env: _Env, service: str) -> tuple[str, int]:
    return _image_of(env.project, service, env.ports[service])


def _compose_str(value: str) -> str:
    """A literal string in the compose file: `$` is doubled, as compose interpolates `$`."""
    return yaml_str(value.replace("$", "$$"))


def _database_settings(datasource: Datasource | None, image: str) -> dict[str, str]:
    """The environment with which a postgres or mysql image creates the datasource's database and
    user at its first start; the password is `${VAR}`, interpolated by compose from .env."""
    family = image.split(":", 1)[0]
    if datasource is None or family not in ("postgres", "mysql"):
        return {}
    prefix = family.upper()
    settings = {"POSTGRES_DB" if family == "postgres" else "MYSQL_DATABASE": _compose_str(datasource.database)}
    if datasource.username is not None:
        settings[f"{prefix}_USER"] = _compose_str(datasource.username)
    secret = secret_scope.reference_name(datasource.password or "")
    if secret is not None:
        settings[f"{prefix}_PASSWORD"] = yaml_str(f"${{{secret}}}")
    if family == "mysql":
        settings["MYSQL_RANDOM_ROOT_PASSWORD"] = yaml_str("yes")
    return settings


def _healthcheck_test(env: _Env, service: str, image: str, port: int) -> str | None:
    health = env.project.services[service].health
    if health is None:
        return None
    if health.path is not None:
        scheme = "https" if env.project.services[service].effective_protocol == "https" else "http"
        url = shlex.quote(f"{scheme}://127.0.0.1:{port}{health.path}")
        insecure = ("-k ", "--no-check-certificate ") if scheme == "https" else ("", "")
        return (f"curl -fsS {insecure[0]}-o /dev/null {url} || "
                f"wget -q {insecure[1]}-O /dev/null {url} || exit 1")
    family = image.split(":", 1)[0]
    return _TCP_CHECKS.get(family, "nc -z 127.0.0.1 {port}").format(port=port)


def _render_compose(env: _Env) -> str:
    network = env.project.name
    lines = [_header(env, "#", "its services with the allocated ports; change images in "
                               "docker-compose.override.yml beside it")]
    if env.environment.run == "host":
        # .env tells a container the host's address, which only a process on the host reaches
        lines.append("# run: host: the app runs on the host and reaches these services on the published ports; "
                     "set run: compose to run it in here too.\n")
    lines.append("services:\n")
    if not env.ports:
        lines[-1] = "services: {}\n"
    images = {service: _image(env, service) for service in env.ports}
    checked = {service for service in env.ports if env.project.services[service].health is not None}
    for service in env.ports:
        spec = env.project.services[service]
        image, inner = images[service]
        lines.append(f"  {_yaml_key(service)}:\n")
        lines.append(f"    image: {_compose_str(image)}\n")
        lines.append("    restart: \"unless-stopped\"\n")
        lines.append("    env_file: \".env\"\n")
        settings = _database_settings(_datasource_of(env.project, service), image)
        if settings:
            lines.append("    environment:\n")
            lines.extend(f"      {key}: {value}\n" for key, value in sorted(settings.items()))
        lines.append("    ports:\n")
        lines.append(f"      - {yaml_str(f'{env.ports[service]}:{inner}')}\n")
        test = _healthcheck_test(env, service, image, inner)
        if test is not None and spec.health is not None:
            lines.append("    healthcheck:\n")
            lines.append(f"      test: [\"CMD-SHELL\", {_compose_str(test)}]\n")
            lines.append(f"      interval: {yaml_str(spec.health.interval)}\n")
            lines.append(f"      timeout: {yaml_str(spec.health.timeout)}\n")
            lines.append(f"      retries: {spec.health.failures_before_critical}\n")
        if service == env.web and env.environment.run == "compose":
            # The Quantum server in the container reads the config written beside this file.
            lines.append("    volumes:\n")
            lines.append(f"      - {_compose_str(f'./quantum.config.yaml:{CONTAINER_CONFIG}:ro')}\n")
        if service == env.web:
            needs = sorted({ds.service for ds in env.project.datasources.values()
                            if ds.service is not None and ds.service != service and ds.service in env.ports})
            if needs:
                lines.append("    depends_on:\n")
                for other in needs:
                    condition = "service_healthy" if other in checked else "service_started"
                    lines.append(f"      {_yaml_key(other)}:\n        condition: \"{condition}\"\n")
        lines.append(f"    networks:\n      - {yaml_str(network)}\n")
    lines.append(f"networks:\n  {_yaml_key(network)}: {{}}\n")
    return "".join(lines)


# --- nginx.conf ------------------------------------------------------------------------------------

_NGINX_PLAIN = re.compile(r"[A-Za-z0-9._*/:\[\]-]+")


def nginx_arg(value: str) -> str:
    """One nginx directive argument: bare when safe, else double-quoted with `\\` and `"` escaped."""
    if _NGINX_PLAIN.fullmatch(value):
        return value
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


_PROXY_SETTINGS = (
    "proxy_http_version 1.1;",
    "proxy_set_header Host $host;",
    "proxy_set_header X-Real-IP $remote_addr;",
    "proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;",
    "proxy_set_header X-Forwarded-Proto $scheme;",
    'proxy_set_header Connection "";',
)


def _render_nginx(env: _Env, tls_dir: str) -> str:
    out = [_header(env, "#", "an http-level include (conf.d/ or inside http {}) proxying to its web service")]
    http_services = [s for s in env.ports if _http(env.project.services[s])]
    for service in http_services:
        out.append(f"\nupstream {nginx_arg(instance_name(env.project.name, env.name, service))} {{\n"
                   f"    server {nginx_arg(_host_port(env.host, env.ports[service]))};\n"
                   "    keepalive 8;\n}\n")
    if env.web is None:
        out.append("\n# No project service speaks HTTP: nothing to proxy.\n")
        return "".join(out)
    name = nginx_arg(env.server_name)
    if env.environment.tls:
        out.append(f"\nserver {{\n    listen 80;\n    server_name {name};\n"
                   "    return 301 https://$host$request_uri;\n}\n")
    out.append("\nserver {\n")
    if env.environment.tls:
        certificate, key = tls_paths(env.environment, env.server_name, tls_dir)
        out.append("    listen 443 ssl;\n"
                   f"    server_name {name};\n"
                   f"    ssl_certificate {nginx_arg(certificate)};\n"
                   f"    ssl_certificate_key {nginx_arg(key)};\n"
                   "    ssl_protocols TLSv1.2 TLSv1.3;\n")
    else:
        out.append(f"    listen 80;\n    server_name {name};\n")
    out.extend(f"    {setting}\n" for setting in _PROXY_SETTINGS)
    scheme = "https" if env.project.services[env.web].effective_protocol == "https" else "http"
    upstream = f"{scheme}://{instance_name(env.project.name, env.name, env.web)}"
    base = env.project.base_path
    # The app lives under base_path: the path itself and everything below it, not /blogger for /blog.
    locations = [f"= {nginx_arg(base)}", nginx_arg(base + "/")] if base else [nginx_arg("/")]
    for location in locations:
        out.append(f"\n    location {location} {{\n        proxy_pass {upstream};\n    }}\n")
    out.append("}\n")
    return "".join(out)


def tls_paths(environment: Environment, server_name: str, tls_dir: str = DEFAULT_TLS_DIR) -> tuple[str, str]:
    """(certificate, key) that nginx.conf names: the environment's own, else <tls_dir>/<server name>.crt and .key."""
    tls = tls_dir.rstrip("/")
    return (environment.tls_certificate or f"{tls}/{server_name}.crt",
            environment.tls_certificate_key or f"{tls}/{server_name}.key")


def _host_port(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


# --- quantum.config.yaml ---------------------------------------------------------------------------

def _render_quantum(env: _Env) -> str:
    lines = [_header(env, "#", "the Quantum server's config; passwords are ${VAR} from .env beside it")]
    lines.append(f"application:\n  name: {yaml_str(env.project.name)}\n  environment: {yaml_str(env.name)}\n")
    lines.append("server:\n")
    if env.web is not None:
        lines.append("  host: \"0.0.0.0\"\n")
        lines.append(f"  port: {env.ports[env.web]}\n")
    lines.append(f"  base_path: {yaml_str(env.project.base_path)}\n")
    if not env.project.datasources:
        lines.append("datasources: {}\n")
        return "".join(lines)
    lines.append("datasources:\n")
    for ds_name in sorted(env.project.datasources):
        datasource = env.project.datasources[ds_name]
        lines.append(f"  {_yaml_key(ds_name)}:\n    driver: {yaml_str(datasource.driver)}\n")
        if datasource.service is not None and datasource.service in env.ports:
            host, port = _address(datasource.service, env.host, env.ports, env.inner,
                                  env.environment.run == "compose")
            lines.append(f"    host: {yaml_str(host)}\n    port: {port}\n")
        lines.append(f"    database: {yaml_str(datasource.database)}\n")
        if datasource.username is not None:
            lines.append(f"    user: {yaml_str(datasource.username)}\n")
        secret = secret_scope.reference_name(datasource.password or "")
        if secret is not None:
            lines.append(f"    password: {yaml_str(f'${{{secret}}}')}\n")
    return "".join(lines)
