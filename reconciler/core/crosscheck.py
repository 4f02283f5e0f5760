"""Turn validated manifest documents into a DesiredState, checking what spans documents.

Single documents are checked by the pydantic models; here are the rules between them:
unknown hosts, duplicate names, overlapping ranges, ports pinned twice or reserved, and
references from environments, datasources and test suites. Every rule adds a Problem that
points at the field at fault, and all of them are collected, never just the first.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

from reconciler.core import secret_scope
from reconciler.core.errors import Problem
from reconciler.core.models import (
    DEFAULT_RANGES,
    LOCALHOST,
    Alert,
    HealthCheck,
    Host,
    Notifier,
    PortRange,
    Project,
    Reservation,
    Service,
    Spec,
    TestSuite,
)
from reconciler.core.render import variable_clashes
from reconciler.core.state import DesiredState, ServiceInstance, SourceRef, instance_name

IMPLICIT_LOCALHOST = Host(kind="Host", name=LOCALHOST, address="127.0.0.1")


_HEALTH_DATA: dict[HealthCheck, dict[str, Any]] = {}


def health_data(health: HealthCheck | None) -> dict[str, Any] | None:
    """A health check as plain data; memoized, since thousands of services share a few checks."""
    if health is None:
        return None
    data = _HEALTH_DATA.get(health)
    if data is None:
        data = dict(sorted(health.model_dump(exclude_none=True).items()))
        if len(_HEALTH_DATA) < 10_000:
            _HEALTH_DATA[health] = data
    return data


class _Checker:
    def __init__(self) -> None:
        self.problems: list[Problem] = []
        self._seen: set[tuple[str, int, tuple[str | int, ...], str]] = set()

    def add(self, source: SourceRef, path: tuple[str | int, ...], message: str,
            see: tuple[SourceRef, tuple[str | int, ...]] | None = None) -> None:
        """`see`: another place the message names as {see} (the loader puts its line there)."""
        # A project's rule is checked once per environment; say each fault at one place once.
        key = (source.file, source.document, path, message)
        if key not in self._seen:
            self._seen.add(key)
            related = (see[0].file, see[0].document, see[1]) if see is not None else None
            self.problems.append(Problem(file=source.file, document=source.document, path=path, message=message,
                                         see=related))


FieldPath = tuple[str | int, ...]


def build_desired(
    documents: Iterable[tuple[SourceRef, Spec]], secrets: Mapping[str, str] | None = None,
    secrets_readable: bool = True,
) -> tuple[DesiredState, list[Problem]]:
    """`secrets`: the names in secrets.enc with a fingerprint of each ciphertext (None: there is no
    secrets.enc), to check every `secret:NAME` reference without a key. `secrets_readable=False`:
    secrets.enc exists but could not be read (its own problem says why), so no reference is checked
    rather than each one reported as missing."""
    builder = _Builder(documents, secrets)
    builder.check_secrets = secrets_readable
    builder.read_hosts()
    ranges = _ranges(builder.check, builder.of(PortRange), builder.known_host, builder.sources)
    builder.types = {r.port_type for r in ranges}
    reservations, reserved = builder.read_reservations()
    builder.read_services()
    projects = builder.read_projects()
    _pins(builder.check, builder.instances, reserved)
    suites = builder.read_suites(projects)
    notifiers = builder.read_notifiers()
    alerts = builder.read_alerts(projects, notifiers)
    desired = DesiredState(
        hosts=builder.hosts, ranges=tuple(ranges), reservations=tuple(reservations), instances=builder.instances,
        projects=projects, suites=suites, notifiers=notifiers, alerts=alerts, sources=builder.sources,
        secrets=dict(secrets or {}),
    )
    return desired, builder.check.problems


class _Builder:
    """The documents by kind and what is known so far, read kind by kind in the order the rules need
    (hosts before what names a host, ranges before the services whose type picks one)."""

    def __init__(self, documents: Iterable[tuple[SourceRef, Spec]], secrets: Mapping[str, str] | None) -> None:
        self.check = _Checker()
        self.secrets = secrets
        self.check_secrets = True
        self.by_kind: dict[type[Spec], list[tuple[SourceRef, Spec]]] = {}
        for source, doc in documents:
            self.by_kind.setdefault(type(doc), []).append((source, doc))
        self.hosts: dict[str, Host] = {LOCALHOST: IMPLICIT_LOCALHOST}
        self.sources: dict[str, SourceRef] = {}
        self.types: set[str] = set()
        self.instances: dict[str, ServiceInstance] = {}
        self.instance_sources: dict[str, tuple[SourceRef, FieldPath]] = {}

    def of(self, kind: type[Spec]) -> list[tuple[SourceRef, Spec]]:
        return self.by_kind.get(kind, [])

    def known_host(self, source: SourceRef, path: FieldPath, host: str) -> bool:
        if host in self.hosts:
            return True
        self.check.add(source, path, f"unknown host {host!r}; known hosts: {', '.join(sorted(self.hosts))} "
                       "(add a Host)")
        return False

    def add_instance(self, instance: ServiceInstance, name_path: FieldPath, type_path: FieldPath) -> None:
        if instance.name in self.instances:
            first, first_path = self.instance_sources[instance.name]
            self.check.add(instance.source, name_path,
                           f"duplicate service name {instance.name!r} (first defined at {{see}})",
                           see=(first, first_path))
            return
        self.instances[instance.name] = instance
        self.instance_sources[instance.name] = (instance.source, name_path)
        if instance.type not in self.types:
            self.check.add(instance.source, type_path,
                           f"unknown port type {instance.type!r}; expected one of: {', '.join(sorted(self.types))}")

    def read_hosts(self) -> None:
        _unique(self.check, self.of(Host), "Host", self.sources)
        for _, doc in self.of(Host):
            assert isinstance(doc, Host)
            self.hosts[doc.name] = doc

    def read_reservations(self) -> tuple[list[Reservation], dict[tuple[str, int], str]]:
        named = [(s, d) for s, d in self.of(Reservation) if getattr(d, "name", None)]
        _unique(self.check, named, "Reservation", self.sources)
        reservations: list[Reservation] = []
        reserved: dict[tuple[str, int], str] = {}
        for source, doc in self.of(Reservation):
            assert isinstance(doc, Reservation)
            self.known_host(source, ("host",), doc.host)
            reservations.append(doc)
            for port in doc.port_numbers():
                reserved.setdefault((doc.host, port), doc.reason)
        return reservations, reserved

    def read_services(self) -> None:
        for source, doc in self.of(Service):
            assert isinstance(doc, Service)
            self.known_host(source, ("host",), doc.host)
            self.add_instance(
                ServiceInstance(
                    name=doc.name, host=doc.host, type=doc.type, protocol=doc.effective_protocol, pinned=doc.port,
                    preferred=doc.preferred_port, health=health_data(doc.health), tags=tuple(sorted(doc.tags)),
                    source=source,
                ),
                ("name",), ("type",),
            )

    def read_projects(self) -> dict[str, Project]:
        projects: dict[str, Project] = {}
        _unique(self.check, self.of(Project), "Project", self.sources)
        for source, doc in self.of(Project):
            assert isinstance(doc, Project)
            projects.setdefault(doc.name, doc)
            for ds_name, datasource in doc.datasources.items():
                if datasource.service is not None and datasource.service not in doc.services:
                    self.check.add(source, ("datasources", ds_name, "service"),
                                   f"unknown project service {datasource.service!r}; expected one of: "
                                   f"{', '.join(sorted(doc.services)) or '(none declared)'}")
            if self.check_secrets:
                _secret_references(self.check, source, doc, self.secrets)
            _generated_names(self.check, source, doc)
            for env_name, environment in doc.environments.items():
                if self.known_host(source, ("environments", env_name, "host"), environment.host):
                    self._project_instances(source, doc, env_name)
        return projects

    def _project_instances(self, source: SourceRef, project: Project, env_name: str) -> None:
        environment = project.environments[env_name]
        for pinned_service in environment.ports:
            if pinned_service not in project.services:
                self.check.add(source, ("environments", env_name, "ports", pinned_service),
                               f"unknown project service {pinned_service!r}; expected one of: "
                               f"{', '.join(sorted(project.services)) or '(none declared)'}")
        for svc_name, svc in project.services.items():
            self.add_instance(
                ServiceInstance(
                    name=instance_name(project.name, env_name, svc_name), host=environment.host, type=svc.type,
                    protocol=svc.effective_protocol, pinned=environment.ports.get(svc_name),
                    preferred=svc.preferred_port, health=health_data(svc.health), tags=tuple(sorted(svc.tags)),
                    project=project.name, environment=env_name, source=source,
                    pin_path=("environments", env_name, "ports", svc_name),
                ),
                ("environments", env_name), ("services", svc_name, "type"),
            )

    def read_suites(self, projects: dict[str, Project]) -> dict[str, TestSuite]:
        suites: dict[str, TestSuite] = {}
        _unique(self.check, self.of(TestSuite), "TestSuite", self.sources)
        for source, doc in self.of(TestSuite):
            assert isinstance(doc, TestSuite)
            suites.setdefault(doc.name, doc)
            project = projects.get(doc.project)
            if project is None:
                self.check.add(source, ("project",), f"unknown project {doc.project!r}; known projects: "
                               f"{', '.join(sorted(projects)) or '(none)'}")
            else:
                for index, env_name in enumerate(doc.environments):
                    if env_name not in project.environments:
                        self.check.add(source, ("environments", index), f"project {doc.project!r} has no "
                                       f"environment {env_name!r}; expected one of: "
                                       f"{', '.join(sorted(project.environments))}")
            seen_ids: set[str] = set()
            for index, case in enumerate(doc.cases):
                if case.id in seen_ids:
                    self.check.add(source, ("cases", index, "id"), f"duplicate test case id {case.id!r}")
                seen_ids.add(case.id)
        return suites

    def read_notifiers(self) -> dict[str, Notifier]:
        """Notifiers by name; each secret reference must resolve at the global scope (a notifier belongs to
        no project)."""
        notifiers: dict[str, Notifier] = {}
        _unique(self.check, self.of(Notifier), "Notifier", self.sources)
        for source, doc in self.of(Notifier):
            assert isinstance(doc, Notifier)
            notifiers.setdefault(doc.name, doc)
            if not self.check_secrets:
                continue
            for field_name, reference in doc.secret_references():
                name = secret_scope.reference_name(reference)
                if name is None or secret_scope.resolve(name, None, None, self.secrets or {}) is not None:
                    continue
                where = "secrets.enc does not exist" if self.secrets is None else f"secrets.enc has no global {name}"
                self.check.add(source, (field_name,), f"secret {name} is not set ({where}); a notifier's secrets "
                               f"are global: set it with: qrm secrets set {name}")
        return notifiers

    def read_alerts(self, projects: dict[str, Project], notifiers: dict[str, Notifier]) -> dict[str, Alert]:
        """Alerts by name; the notifiers and projects they name must exist."""
        alerts: dict[str, Alert] = {}
        _unique(self.check, self.of(Alert), "Alert", self.sources)
        for source, doc in self.of(Alert):
            assert isinstance(doc, Alert)
            alerts.setdefault(doc.name, doc)
            for index, notifier in enumerate(doc.notifiers):
                if notifier not in notifiers:
                    self.check.add(source, ("notifiers", index), f"unknown notifier {notifier!r}; known notifiers: "
                                   f"{', '.join(sorted(notifiers)) or '(none: add a Notifier)'}")
            for index, project in enumerate(doc.projects):
                if project not in projects:
                    self.check.add(source, ("projects", index), f"unknown project {project!r}; known projects: "
                                   f"{', '.join(sorted(projects)) or '(none)'}")
            # an environment no project (of those the alert names) has would filter out every event
            named = [projects[p] for p in doc.projects if p in projects] or list(projects.values())
            known = sorted({env for project in named for env in project.environments})
            for index, environment in enumerate(doc.environments):
                if environment not in known:
                    which = "no project named here" if doc.projects else "no project"
                    self.check.add(source, ("environments", index), f"{which} has an environment {environment!r}; "
                                   f"known environments: {', '.join(known) or '(none)'}")
        return alerts


def _secret_references(check: _Checker, source: SourceRef, project: Project, secrets: Mapping[str, str] | None) -> None:
    """Every `secret:NAME` of a project must resolve in each of its environments."""
    available = secrets or {}
    for ds_name, datasource in project.datasources.items():
        name = secret_scope.reference_name(datasource.password or "")
        if name is None:
            continue
        missing = [env for env in project.environments
                   if secret_scope.resolve(name, project.name, env, available) is None]
        if not missing:
            continue
        # every key looked for: each missing environment's own, then the project's, then the global one
        looked_for = sorted(dict.fromkeys(key for env in missing
                                          for key in secret_scope.lookup_order(name, project.name, env)),
                            key=lambda key: -key.count("/"))
        where = "secrets.enc does not exist" if secrets is None else "secrets.enc has none of " + ", ".join(looked_for)
        check.add(source, ("datasources", ds_name, "password"),
                  f"secret {name} is not set for {project.name} environment(s) {', '.join(missing)} ({where}); "
                  f"set it with: qrm secrets set {name} --project {project.name}")


_LABEL = r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_DOMAIN = re.compile(rf"(\*\.)?{_LABEL}(\.{_LABEL})*")


def _generated_names(check: _Checker, source: SourceRef, project: Project) -> None:
    """What the generated configs need of names: a domain nginx can serve (and name a certificate
    after), and .env variables that no two parts of the project both write."""
    for env_name, environment in project.environments.items():
        if environment.domain is not None and not _DOMAIN.fullmatch(environment.domain):
            check.add(source, ("environments", env_name, "domain"),
                      "expected a domain name such as blog.example.com (letters, digits, '-' and '.', "
                      "optionally starting with '*.')")
    for path, message in variable_clashes(project):
        check.add(source, path, message)


def _unique(check: _Checker, docs: list[tuple[SourceRef, Spec]], kind: str, sources: dict[str, SourceRef]) -> None:
    first: dict[str, SourceRef] = {}
    for source, doc in docs:
        name = str(getattr(doc, "name", ""))  # every kind passed here has a name
        if name in first:
            check.add(source, ("name",), f"duplicate {kind} name {name!r} (first defined at {{see}})",
                      see=(first[name], ("name",)))
        else:
            first[name] = source
            sources[f"{kind}/{name}"] = source


def _ranges(check: _Checker, docs: list[tuple[SourceRef, Spec]], known_host: object,
            sources: dict[str, SourceRef]) -> list[PortRange]:
    _unique(check, docs, "PortRange", sources)
    declared: list[tuple[SourceRef, PortRange]] = []
    for source, doc in docs:
        assert isinstance(doc, PortRange)
        if doc.host != "*":
            assert callable(known_host)
            known_host(source, ("host",), doc.host)
        declared.append((source, doc))
    for i, (source, this) in enumerate(declared):
        for other_source, other in declared[:i]:
            if this.port_type == other.port_type and this.host == other.host and \
                    this.start <= other.end and other.start <= this.end:
                check.add(source, ("start",), f"range {this.name} {this.start}-{this.end} overlaps range "
                          f"{other.name} {other.start}-{other.end} ({other_source.file}) for type "
                          f"{this.port_type!r} on host {this.host!r}")
    # A declared range for every host replaces the built-in default of the same type.
    overridden = {doc.port_type for _, doc in declared if doc.host == "*"}
    return [r for r in DEFAULT_RANGES if r.port_type not in overridden] + [doc for _, doc in declared]


def _pins(check: _Checker, instances: dict[str, ServiceInstance], reserved: dict[tuple[str, int], str]) -> None:
    pinned_by: dict[tuple[str, int], str] = {}
    for name in sorted(instances):
        instance = instances[name]
        if instance.pinned is None:
            continue
        key = (instance.host, instance.pinned)
        if key in pinned_by:
            check.add(instance.source, instance.pin_path, f"port {instance.pinned} on host {instance.host!r} is "
                      f"pinned by both {pinned_by[key]!r} and {name!r}")
        else:
            pinned_by[key] = name
        if key in reserved:
            check.add(instance.source, instance.pin_path, f"port {instance.pinned} on host {instance.host!r} is "
                      f"reserved ({reserved[key]})")
