"""Use case `qrm scan`: the components of each project's .q files, read incrementally.

Every .q file under a project's `source:` folder is hashed (sha256 of its bytes); only files whose
hash differs from the registry's `component_files` row are parsed (q_components.scan_file, in a
process pool when there are many). Rows of deleted files go. The registry is written in one
transaction per scan, then reports/components/<project>.yaml is rebuilt from the rows: each
component's JSON is stored once and reused as its line of the report, so a rescan that changed
nothing re-encodes nothing and writes nothing.

The source folder is a Quantum app: its quantum.config.yaml (when there is one) says which folder is
served (`paths.components`, default ./components); routes are relative to it, and files elsewhere are
scanned and reported as not served. A change of the served folder (or of base_path) rescans the project.

`component_changes` gives `qrm plan` the files added, changed or removed since the last scan by
hashing alone (no parsing).
"""

from __future__ import annotations

import hashlib
import json
import logging
import multiprocessing
import os
import stat
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field, fields, is_dataclass
from pathlib import Path, PurePath
from typing import Any

from reconciler.core.app_config import AppConfig
from reconciler.core.components import READER_VERSION, Component, Serving
from reconciler.core.errors import QrmError
from reconciler.core.report import component_summary, component_totals, components_report
from reconciler.core.state import DesiredState
from reconciler.edges import files, manifest_files
from reconciler.edges.locks import workspace_lock
from reconciler.edges.registry import Registry
from reconciler.flows.desired import load_desired
from reconciler.flows.recorded import open_registry
from reconciler.flows.workspace import Workspace

log = logging.getLogger(__name__)
PARALLEL_THRESHOLD = 200  # changed files above which parsing runs in a process pool
REPORTS_DIR = "reports/components"
_ENCODER = json.JSONEncoder(separators=(", ", ": "))  # the report's line format (report.components_report)

Progress = Callable[[str, int, int], None]  # project, files parsed so far, files to parse


@dataclass
class ProjectScan:
    project: str
    source: str  # as the manifest writes it
    summaries: list[dict[str, Any]]  # report.component_summary of every file, sorted by path
    lines: list[str] = field(default_factory=list, repr=False)  # the Component JSON of each, same order
    added: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    report: Path = Path()
    report_written: bool = False
    app: AppConfig = field(default_factory=AppConfig)  # its quantum.config.yaml (the defaults without one)

    @property
    def parsed(self) -> list[str]:
        return sorted(self.added + self.changed)

    @property
    def totals(self) -> dict[str, int]:
        return component_totals(self.summaries)

    @property
    def with_problems(self) -> list[dict[str, Any]]:
        return [s for s in self.summaries if s["problems"]]

    @property
    def not_served(self) -> list[str]:
        """The files outside the served folder (paths.components): scanned, but no URL serves them."""
        return [s["path"] for s in self.summaries if not s.get("served", True)]

    def components(self) -> list[dict[str, Any]]:
        """Every component in full (Component.to_dict()), decoded from its report line."""
        return [json.loads(line) for line in self.lines]

    def to_dict(self) -> dict[str, Any]:
        return {"project": self.project, "source": self.source, "report": str(self.report),
                "report_written": self.report_written, "app_config": self.app.summary(), "parsed": self.parsed,
                "added": self.added, "changed": self.changed, "removed": self.removed, "totals": self.totals,
                "not_served": self.not_served, "components": self.components()}


def source_folder(ws: Workspace, desired: DesiredState, name: str) -> tuple[str, Path]:
    """The `source:` of a project as written and as a path; an error when it is unset or missing."""
    project = desired.projects[name]
    if not project.source:
        raise QrmError(f"project {name!r} has no source: folder to scan")
    folder = (ws.root / project.source).resolve()
    if not folder.is_dir():
        raise QrmError(f"project {name!r}: source folder {project.source} ({folder}) does not exist")
    return project.source, folder


_Way = tuple[str, "_Way | None"]  # the real path of a folder and of the folder it was reached from


def _on_the_way(real: str, way: _Way | None) -> bool:
    """Whether the folder `real` is one of the folders on the way down, or contains one (a link to it loops)."""
    inside = real if real.endswith(os.sep) else real + os.sep
    while way is not None:
        if way[0] == real or way[0].startswith(inside):
            return True
        way = way[1]
    return False


def q_files(folder: Path) -> list[str]:
    """Every *.q file under `folder` (recursively, hidden folders skipped), relative POSIX paths, sorted
    (source_files without the paths it could not read)."""
    return source_files(folder)[0]


def source_files(folder: Path) -> tuple[list[str], dict[str, str]]:
    """Every *.q file under `folder` (recursively, hidden folders skipped), relative POSIX paths, sorted; and
    the paths that cannot be scanned, each with its reason ("folder cannot be read: Permission denied").

    Folders reached through symbolic links are scanned like the others, wherever the link points (inside the
    source folder or outside it: a Quantum server serves what the filesystem shows), under the link's path.
    The loop guard: every folder on the way down is known by its real path, and a link to one of them, or to
    a folder that contains one, is not followed (a link to an ancestor would never end). Two links to one
    folder list its files under both paths, as the server serves both.

    A *.q name that is a symbolic link the system cannot follow (a loop, a link to nothing) is listed: reading it
    fails and the scan reports why. A *.q that is not a regular file (a FIFO, a device) is never opened (a FIFO
    would block): it is one of the unscannable paths, as is a folder that cannot be listed.
    """
    found: list[str] = []
    unscannable: dict[str, str] = {}
    stack: list[tuple[str, _Way]] = [("", (os.path.realpath(folder), None))]
    while stack:
        relative, way = stack.pop()
        try:
            entries = list(os.scandir(folder / relative) if relative else os.scandir(folder))
        except OSError as error:
            unscannable[relative or "."] = f"folder cannot be read: {_reason(error)}; its .q files are not scanned"
            continue
        for entry in entries:
            name = entry.name
            if name.startswith("."):
                continue
            path = f"{relative}/{name}" if relative else name
            if entry.is_dir(follow_symlinks=False):
                stack.append((path, (f"{way[0]}{os.sep}{name}", way)))
                continue
            if name.endswith(".q") and entry.is_file(follow_symlinks=False):  # the usual case: no stat() call
                found.append(path)
                continue
            if not (name.endswith(".q") or entry.is_symlink()):
                continue
            kind = _kind(entry)
            if kind in ("file", "unfollowable"):
                if name.endswith(".q"):
                    found.append(path)
            elif kind != "folder":
                if name.endswith(".q"):
                    unscannable[path] = f"not a regular file ({kind}); not read"
            else:  # a symbolic link to a folder
                real = os.path.realpath(entry.path)
                if _on_the_way(real, way):
                    log.debug("scan: not following %s -> %s: a folder on the way to it (a loop)", path, real)
                else:
                    stack.append((path, (real, way)))
    found.sort()
    return found, unscannable


def _reason(error: OSError) -> str:
    """The system's reason without the file's absolute path (str(error) names it)."""
    return error.strerror or type(error).__name__


def _kind(entry: os.DirEntry[str]) -> str:
    """What a directory entry leads to: file, folder, unfollowable (a link that loops or leads nowhere), or
    the kind of special file."""
    try:
        mode = entry.stat().st_mode
    except OSError:
        return "unfollowable"
    if stat.S_ISREG(mode):
        return "file"
    if stat.S_ISDIR(mode):
        return "folder"
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "a device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) else "not a file"


def file_hashes(folder: Path, paths: Sequence[str]) -> dict[str, str]:
    """path -> sha256 of the bytes; a file that cannot be read hashes as "" (so it is parsed, and reported)."""
    hashes: dict[str, str] = {}
    sha256 = hashlib.sha256
    base = f"{folder}{os.sep}"
    for path in paths:
        try:
            with open(base + path, "rb", buffering=0) as handle:
                hashes[path] = sha256(handle.readall()).hexdigest()
        except OSError:
            hashes[path] = ""
    return hashes


_FIELDS: dict[type, tuple[str, ...]] = {}


def plain(value: Any) -> Any:
    """Component.to_dict() without dataclasses.asdict's deep copies (about 3x faster; a test keeps them equal):
    dataclasses as dicts in field order without None and empty values, tuples as lists."""
    if is_dataclass(value) and not isinstance(value, type):
        names = _FIELDS.get(type(value))
        if names is None:
            names = _FIELDS[type(value)] = tuple(f.name for f in fields(value))
        out = {}
        for name in names:
            item = getattr(value, name)
            if item is None or item == () or item == [] or item == {}:
                continue
            out[name] = plain(item)
        return out
    if isinstance(value, (tuple, list)):
        return [plain(item) for item in value]
    return value


Job = tuple[str, str, str, str, str]  # file, path relative to the source folder, base_path, sha256, served folder


def _scan_one(job: Job) -> tuple[str, str]:
    """Parse one file (in this process or a pool worker): its report line (Component JSON) and summary JSON."""
    from reconciler.edges import q_components  # lxml only when something is parsed: a no-change rescan never loads it

    path, relative, base_path, sha, served = job
    try:
        component = q_components.scan_file(Path(path), relative, base_path, served=served)
    except Exception as exc:  # scan_file never raises by contract; if it does, the file is still reported
        component = Component(path=relative, name=PurePath(relative).stem, parse="skipped",
                              problems=(f"internal error while reading the file: {type(exc).__name__}: {exc}",))
    data = plain(component)
    data["sha256"] = sha  # the hash compared on the next scan (the bytes this scan read)
    if not sha:
        del data["sha256"]
    summary = component_summary(data)
    summary["base_path"] = base_path  # routes depend on it: a new base_path rescans the project
    summary["served_folder"] = served  # and on the served folder (paths.components)
    summary["reader"] = READER_VERSION  # and on what the reader reads of a file
    return _ENCODER.encode(data), _ENCODER.encode(summary)


def _unscannable(path: str, reason: str, base_path: str, served: str) -> tuple[str, dict[str, Any]]:
    """The report line and summary of a path the scan could not read (a folder, a FIFO): a skipped component."""
    component = Component(path=path, name=PurePath(path).stem, parse="skipped",
                          not_served=Serving(base_path, served).not_served(path), problems=(f"line 0: {reason}",))
    data = plain(component)
    del data["sha256"]  # nothing was read
    return _ENCODER.encode(data), component_summary(data)


def _workers() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def parse_files(jobs: list[Job],
                progress: Callable[[int], None] | None = None) -> list[tuple[str, str]]:
    """The report line and summary of each job, in order: in a process pool when there are many and several cores."""
    workers = min(_workers(), 8)
    results: list[tuple[str, str]] = []
    if len(jobs) > PARALLEL_THRESHOLD and workers > 1:
        methods = multiprocessing.get_all_start_methods()
        context = multiprocessing.get_context("fork" if "fork" in methods else None)
        chunksize = max(1, len(jobs) // (workers * 8))
        with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
            for result in pool.map(_scan_one, jobs, chunksize=chunksize):
                results.append(result)
                if progress is not None:
                    progress(len(results))
        return results
    for job in jobs:
        results.append(_scan_one(job))
        if progress is not None:
            progress(len(results))
    return results


def scan_workspace(ws: Workspace, project: str | None = None, progress: Progress | None = None) -> list[ProjectScan]:
    """Scan every project with a source: folder (or the one named); one registry transaction for all."""
    desired = load_desired(ws)
    if project is not None:
        if project not in desired.projects:
            known = ", ".join(sorted(desired.projects)) or "(none)"
            raise QrmError(f"unknown project {project!r}; known projects: {known}")
        names = [project]
    else:
        names = sorted(name for name, p in desired.projects.items() if p.source)
    folders = {name: source_folder(ws, desired, name) for name in names}  # every missing folder before any work
    apps = {name: manifest_files.load_app_config(ws.root, folders[name][1], folders[name][0], name)
            for name in names}  # and every malformed quantum.config.yaml
    with workspace_lock(ws.lock_file, ws.settings.lock_timeout, what="scan"):
        # Every report this scan may write or delete, checked before the registry is (no symlink out).
        reports = ws.reports / "components"
        files.check_all_inside(ws.root, [reports / f"{name}.yaml" for name in names] + (
            sorted(reports.glob("*.yaml")) if reports.is_dir() and not reports.is_symlink() else []))
        registry = open_registry(ws, create=True)
        assert registry is not None
        try:
            scans: list[ProjectScan] = []
            removed: list[tuple[str, str]] = []
            written: list[tuple[str, str, str, str, str]] = []
            for name in names:
                scan, rows = _scan_project(registry, name, *folders[name], desired.projects[name].base_path,
                                           apps[name], progress)
                scans.append(scan)
                removed.extend((name, path) for path in scan.removed)
                written.extend((name, *row) for row in rows)
            if removed or written:
                registry.write_components(removed, written)
            # Projects gone from the manifests (or without a source: any more): their rows and report go.
            gone = registry.prune_component_projects(names) if project is None else []
        finally:
            registry.close()
        for name in gone:
            files.remove(ws.reports / "components" / f"{name}.yaml", root=ws.root)
            log.info("scan: project %s is gone from the manifests; its component rows and report were removed", name)
        for scan in scans:
            scan.report = ws.reports / "components" / f"{scan.project}.yaml"
            scan.report_written = files.write_atomic(
                scan.report, components_report(scan.project, scan.source, scan.summaries, scan.lines,
                                               served=scan.app.components), root=ws.root)
    return scans


def _scan_project(registry: Registry, name: str, source: str, folder: Path, base_path: str, app: AppConfig,
                  progress: Progress | None) -> tuple[ProjectScan, list[tuple[str, str, str, str]]]:
    """The scan of one project and the (path, sha256, component, summary) rows to write."""
    served = app.components
    paths, unscannable = source_files(folder)
    hashes = file_hashes(folder, paths)
    rows = registry.component_rows(name)
    loads = json.loads
    known = {path: loads(row[2]) for path, row in rows.items() if path in hashes}
    added = [p for p in paths if p not in rows]
    changed = [p for p in paths if p in rows and (rows[p][0] != hashes[p] or known[p].get("base_path") != base_path
                                                  or known[p].get("served_folder") != served
                                                  or known[p].get("reader") != READER_VERSION)]
    removed = sorted(set(rows) - set(hashes))
    todo = set(added) | set(changed)
    jobs = [(str(folder / p), p, base_path, hashes[p], served) for p in paths if p in todo]
    log.debug("scan %s: %d files, %d to parse, %d removed", name, len(paths), len(jobs), len(removed))
    tick = None if progress is None else (lambda done: progress(name, done, len(jobs)))
    parsed = dict(zip((job[1] for job in jobs), parse_files(jobs, tick), strict=True))
    summaries: list[dict[str, Any]] = []
    lines: list[str] = []
    for path in paths:
        new = parsed.get(path)
        if new is None:
            lines.append(rows[path][1])
            summaries.append(known[path])
        else:
            lines.append(new[0])
            summaries.append(loads(new[1]))
    if unscannable:  # reported with the files (not recorded: there is nothing to hash), in path order
        unread = [(path, *_unscannable(path, reason, base_path, served)) for path, reason in unscannable.items()]
        entries = sorted([*zip(paths, lines, summaries, strict=True), *unread], key=lambda entry: entry[0])
        lines = [entry[1] for entry in entries]
        summaries = [entry[2] for entry in entries]
    written = [(path, hashes[path], line, summary) for path, (line, summary) in parsed.items()]
    scan = ProjectScan(name, source, summaries, lines, added=added, changed=changed, removed=removed, app=app)
    return scan, written


def component_changes(ws: Workspace, desired: DesiredState, registry: Registry | None) -> list[dict[str, str]]:
    """Files added (+), changed (~) or removed (-) since the last scan, by hash; for `qrm plan` (information).

    Projects whose source folder does not exist are left out (plan does not fail for them; scan does).
    Without a registry (a fresh clone, a PR check), or when it has no rows of a project, the last scan
    is the committed reports/components/<project>.yaml (its sha256 of each file).
    """
    changes: list[dict[str, str]] = []
    for name in sorted(desired.projects):
        source = desired.projects[name].source
        if not source:
            continue
        folder = (ws.root / source).resolve()
        if not folder.is_dir():
            continue
        hashes = file_hashes(folder, q_files(folder))
        recorded = registry.component_shas(name) if registry is not None else {}
        if not recorded:
            recorded = manifest_files.load_component_shas(ws.reports / "components" / f"{name}.yaml") or {}
        for path in sorted(set(hashes) | set(recorded)):
            if path not in recorded:
                change = ("added", "+")
            elif path not in hashes:
                change = ("removed", "-")
            elif recorded[path] != hashes[path]:
                change = ("changed", "~")
            else:
                continue
            changes.append({"project": name, "path": path, "change": change[0], "symbol": change[1]})
    return changes


def last_scan(ws: Workspace, project: str) -> dict[str, Any]:
    """The components of `project` as its last scan recorded them in the registry (nothing is read or parsed):
    {"project", "scanned_at", "components" (Component.to_dict() of each, by path), "stats" (the totals)}.
    A project never scanned has no components and scanned_at None."""
    registry = open_registry(ws, create=False)
    rows = {} if registry is None else registry.component_rows(project)
    if registry is not None:
        registry.close()
    ordered = [rows[path] for path in sorted(rows)]
    summaries = [json.loads(row[2]) for row in ordered]
    return {"project": project, "scanned_at": max((row[3] for row in ordered), default=None),
            "components": [json.loads(row[1]) for row in ordered], "stats": component_totals(summaries)}
