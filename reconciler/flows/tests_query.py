"""Query cases of `qrm tests run`: HTTP cases go to reconciler.flows.tests_http, query cases (type query, or a
request with sql) to reconciler.edges.query_tests, one environment and case at a time in a small thread pool.

A query case runs on the project's datasource named by `request.datasource`. When the datasource has
a `password: secret:NAME`, the secret resolves environment -> project -> global and is decrypted with
the age key (once per run); a secret that is not set, a missing key or an unsupported driver is an
error result of that case, and the run goes on. A postgresql datasource connects to its `service`:
the environment's host address and the service's allocated (or pinned) port. Cases that write are skipped on protected
environments, as HTTP cases are.

A datasource the Project does not declare may be declared by the app itself, in the quantum.config.yaml of
its source folder (core.app_config): the case runs when that file gives the connection details (driver and
database; host and port too unless sqlite, whose database path is relative to the app's folder). Its password
is never read from the file: it is the secret the file names (`password: ${VAR}` -> VAR) or
DATASOURCE_<NAME>_PASSWORD, resolved as above; without that secret the case connects without a password,
unless the file sets one, which makes the case an error that names the secret to set. A datasource declared
nowhere is an error saying so (`qrm tests generate` marks such cases `skip:` in the first place).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path
from typing import TYPE_CHECKING

from reconciler.core import secret_scope
from reconciler.core.app_config import AppConfig, AppDatasource
from reconciler.core.assertions import Outcome
from reconciler.core.errors import ManifestError, QrmError
from reconciler.core.models import Project, TestCase, TestSuite
from reconciler.core.state import DesiredState
from reconciler.core.test_results import (
    ERROR,
    FAILED,
    PASSED,
    SKIPPED,
    UNREACHABLE,
    Attempt,
    CaseResult,
    Target,
    skip_reason,
)
from reconciler.edges import manifest_files
from reconciler.flows import tests_http

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

QUERY_THREADS = 4


def is_query(case: TestCase) -> bool:
    return case.type == "query" or case.request.sql is not None


class _Passwords:
    """Decrypts secrets.enc on first need, once; a failure is remembered and reported per case."""

    def __init__(self, secrets_file: Path) -> None:
        self.secrets_file = secrets_file
        self._plain: dict[str, str] | None = None
        self._error: str | None = None
        self._lock = threading.Lock()

    def value(self, key: str) -> str:
        with self._lock:
            if self._plain is None and self._error is None:
                from reconciler.edges import sops

                try:
                    encrypted = sops.read_file(self.secrets_file, "secrets.enc")
                    if encrypted is None:
                        raise QrmError("secrets.enc does not exist")
                    self._plain = sops.decrypt(encrypted, sops.load_identities())
                except QrmError as exc:
                    self._error = str(exc)
        if self._plain is None:
            raise QrmError(f"cannot decrypt the datasource password: {self._error}")
        if key not in self._plain:
            raise QrmError(f"secret {key} is not in secrets.enc")
        return self._plain[key]


def _password(desired: DesiredState, project: Project, environment: str, datasource: str,
              passwords: _Passwords) -> str | None:
    ref = project.datasources[datasource].password
    name = secret_scope.reference_name(ref or "")
    if name is None:
        return None
    key = secret_scope.resolve(name, project.name, environment, desired.secrets)
    if key is None:
        raise QrmError(f"datasource {datasource!r} needs secret {name}, which is not set for "
                       f"{project.name}/{environment} (qrm secrets set {name})")
    return passwords.value(key)


Address = Callable[[str, str], tuple[str, int]]  # (environment, service) -> (host, port)


def _engine(root: Path, project: Project, environment: str, name: str, password: str | None,
            address: Address | None) -> Engine:
    from reconciler.edges import query_tests

    datasource = project.datasources[name]
    if datasource.driver != "postgresql":
        return query_tests.datasource_engine(datasource.driver, datasource.database, root)
    if datasource.service is None:
        raise QrmError(f"datasource {name!r} needs a service: (the project service it connects to)")
    if address is None:
        raise QrmError(f"the address of service {datasource.service!r} is not known")
    host, port = address(environment, datasource.service)
    return query_tests.datasource_engine(datasource.driver, datasource.database, root, host=host, port=port,
                                        username=datasource.username, password=password)


def app_config(root: Path, project: Project) -> AppConfig | str:
    """The quantum.config.yaml of the project's source folder (the defaults without one), or why it cannot be
    read (file, line and field of each problem)."""
    if not project.source:
        return AppConfig()
    folder = (root / project.source).resolve()
    if not folder.is_dir():
        return AppConfig()
    try:
        return manifest_files.load_app_config(root, folder, project.source, project.name)
    except ManifestError as exc:
        return "; ".join(str(problem) for problem in exc.problems)
    except QrmError as exc:
        return str(exc)


def _app_password(desired: DesiredState, project: Project, environment: str, source: AppDatasource,
                  passwords: _Passwords) -> str | None:
    if source.driver == "sqlite":
        return None
    key = secret_scope.resolve(source.password_secret, project.name, environment, desired.secrets)
    if key is None:
        if source.password_set:
            raise QrmError(f"datasource {source.name!r} needs secret {source.password_secret}, which is not set for "
                           f"{project.name}/{environment} (qrm secrets set {source.password_secret} --project "
                           f"{project.name}); a password in quantum.config.yaml is never read")
        return None
    return passwords.value(key)


def _app_engine(root: Path, project: Project, app: AppConfig, source: AppDatasource, password: str | None) -> Engine:
    from reconciler.edges import query_tests

    missing = source.missing()
    if missing:
        raise QrmError(f"datasource {source.name!r} of {app.file}: its connection details are incomplete "
                       f"({', '.join(missing)} missing, or only ${{VAR}} without a default); give them there, or "
                       "declare the datasource under the project's datasources")
    assert source.driver is not None and source.database is not None
    if source.driver == "sqlite":  # a path relative to the app's folder, where the server runs
        return query_tests.datasource_engine("sqlite", source.database, (root / (project.source or ".")).resolve())
    return query_tests.datasource_engine(source.driver, source.database, root, host=source.host, port=source.port,
                                        username=source.username, password=password)


def _connection(root: Path, desired: DesiredState, project: Project, environment: str, name: str,
                passwords: _Passwords, address: Address | None,
                app: AppConfig | str | None) -> tuple[str | None, Engine]:
    """The password and engine of datasource `name`: the Project's, else the one of the app's quantum.config.yaml."""
    if name in project.datasources:
        password = _password(desired, project, environment, name, passwords)
        return password, _engine(root, project, environment, name, password, address)
    if isinstance(app, str):
        raise QrmError(f"datasource {name!r} is not in the project's datasources, and {app}")
    source = app.datasources.get(name) if app is not None else None
    if app is None or source is None:
        declared = sorted(set(project.datasources) | set(app.datasources if app is not None else ()))
        raise QrmError(f"datasource {name!r} is not declared: add it under the project's datasources "
                       f"(declared: {', '.join(declared) or '(none)'})")
    password = _app_password(desired, project, environment, source, passwords)
    return password, _app_engine(root, project, app, source, password)


def run_query_case(root: Path, desired: DesiredState, project: Project, case: TestCase, target: Target,
                   passwords: _Passwords, address: Address | None = None,
                   app: AppConfig | str | None = None) -> CaseResult:
    """One query case on one environment. app: the project's quantum.config.yaml (app_config), needed only
    for a datasource the Project does not declare."""
    from reconciler.edges import query_tests  # here: SQLAlchemy only when a suite has query cases

    def result(outcome: str, reason: str = "", attempt: Attempt | None = None) -> CaseResult:
        attempts = (attempt,) if attempt is not None else ()
        return CaseResult(case.id, case.name, case.type, target.environment, outcome, attempts, reason,
                          attempt.elapsed_ms if attempt is not None else 0.0)

    skipped = skip_reason(case, target)
    if skipped is not None:
        return result(SKIPPED, skipped)
    name = case.request.datasource
    if not name or case.request.sql is None:
        known = ", ".join(sorted(project.datasources)) or "(none)"
        return result(ERROR, f"a query case needs request.datasource (one of: {known}) and request.sql")
    try:
        password, engine = _connection(root, desired, project, target.environment, name, passwords, address, app)
    except (QrmError, query_tests.UnsupportedDatasource) as exc:
        return result(ERROR, str(exc))
    done = query_tests.run_query(engine, case.request.sql, case.request.params, writes=case.writes,
                                secret=password)
    if not done.connected:  # as a refused HTTP server is: an error, not a failed assertion
        return result(ERROR, f"{UNREACHABLE} to datasource {name!r}: {done.error}")
    if done.refused:  # SQL or a role qrm does not run a query test with: the case cannot be judged
        return result(ERROR, done.error or "refused")
    kind = "explain" if done.explained else "query"
    attempt = Attempt(None, done.duration_ms, (Outcome(kind, done.passed, done.error or ""),))
    return result(PASSED, "", attempt) if done.passed else result(FAILED, done.error or "failed", attempt)


def run_suite_cases(
    root: Path, desired: DesiredState, suite: TestSuite, targets: Sequence[Target],
    concurrency: int = tests_http.DEFAULT_CONCURRENCY, on_result: Callable[[CaseResult], None] | None = None,
    address: Address | None = None,
) -> list[CaseResult]:
    """Every case of the suite against every target; results in (target, case) order."""
    http = [c for c in suite.cases if not is_query(c)]
    queries = [c for c in suite.cases if is_query(c)]
    results = tests_http.run_cases(http, targets, concurrency, on_result) if http else []
    if queries:
        project = desired.projects[suite.project]
        passwords = _Passwords(root / "secrets.enc")
        # The app's quantum.config.yaml, read once, and only when a case names a datasource the Project lacks.
        app = app_config(root, project) if any(c.request.datasource not in project.datasources for c in queries) \
            else None

        jobs = [(c, t) for t in targets for c in queries]
        with ThreadPoolExecutor(max_workers=min(QUERY_THREADS, len(jobs))) as pool:
            futures = [pool.submit(run_query_case, root, desired, project, c, t, passwords, address, app)
                       for c, t in jobs]
            for future in as_completed(futures):  # on_result (the progress display) in this thread only
                results.append(future.result())
                if on_result is not None:
                    on_result(results[-1])
    position = {(t.environment, c.id): i for i, (t, c) in enumerate((t, c) for t in targets for c in suite.cases)}
    return sorted(results, key=lambda r: position.get((r.environment, r.case_id), len(position)))
