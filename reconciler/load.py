"""Reading manifests, qrm.yaml and the lock file from disk (the YAML edge).

Reading is fast: libyaml (PyYAML's CSafeLoader) parses, pydantic validates all documents in
one call, and parsed documents are cached by content hash in .qrm/cache so an unchanged
workspace is not parsed again. Line and column are only needed when something is wrong,
so only a file with a problem is parsed a second time, by ruamel.yaml, to point at the
exact key or value.
"""

from __future__ import annotations

import hashlib
import json
import os
import types
import typing
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from reconciler.errors import ManifestError, Problem, QrmError
from reconciler.models import MANIFEST_KINDS, MANIFEST_LIST, Settings, Spec
from reconciler.state import RecordedService, SourceRef, service_from_dict

CACHE_VERSION = 1


class _StrictLoader(yaml.CSafeLoader):
    """libyaml's safe loader that refuses duplicate keys instead of keeping the last one."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[str] = set()
        for key_node, _ in node.value:
            if isinstance(key_node, yaml.ScalarNode):
                if key_node.value in seen:
                    raise yaml.constructor.ConstructorError(
                        "while reading a mapping", node.start_mark,
                        f"found duplicate key {key_node.value!r}", key_node.start_mark)
                seen.add(key_node.value)
        return super().construct_mapping(node, deep)


@dataclass
class LoadedManifests:
    documents: list[tuple[SourceRef, Spec]] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    files: dict[str, str] = field(default_factory=dict)  # relative path -> sha256


def manifest_files(manifests_dir: Path) -> list[Path]:
    if not manifests_dir.is_dir():
        return []
    found = [p for pattern in ("*.yaml", "*.yml") for p in manifests_dir.rglob(pattern)]
    return sorted(p for p in found if p.is_file() and not any(part.startswith(".") for part in p.parts[-2:]))


def _parse(text: str, rel: str) -> tuple[list[Any], list[Problem]]:
    try:
        gc_was = _gc_pause()
        try:
            return list(yaml.load_all(text, Loader=_StrictLoader)), []
        finally:
            _gc_resume(gc_was)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        reason = " ".join(x for x in (exc.context, exc.problem) if x)
        line, col = (mark.line + 1, mark.column + 1) if mark else (None, None)
        return [], [Problem(rel, line, col, f"invalid YAML: {reason}")]
    except yaml.YAMLError as exc:
        return [], [Problem(rel, None, None, f"invalid YAML: {exc}")]
    except UnicodeDecodeError as exc:
        return [], [Problem(rel, None, None, f"not UTF-8 text: {exc.reason}")]


def _gc_pause() -> bool:
    # The parser makes many small objects; the cyclic GC runs dozens of times for nothing.
    import gc

    was = gc.isenabled()
    gc.disable()
    return was


def _gc_resume(was: bool) -> None:
    import gc

    if was:
        gc.enable()


def _read_cache(path: Path | None) -> dict[str, Any]:
    if path is None or not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}  # a broken cache is only a slower run
    if not isinstance(data, dict) or data.get("version") != CACHE_VERSION:
        return {}
    files = data.get("files")
    return files if isinstance(files, dict) else {}


def _write_cache(path: Path | None, entries: dict[str, Any]) -> None:
    if path is None:
        return
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps({"version": CACHE_VERSION, "files": entries}))
        os.replace(tmp, path)
    except OSError:
        pass  # read-only checkout: work without a cache


def load_manifests(root: Path, manifests_dir: Path, cache_path: Path | None = None) -> LoadedManifests:
    result = LoadedManifests()
    cache = _read_cache(cache_path)
    new_cache: dict[str, Any] = {}
    raw: list[Any] = []
    refs: list[SourceRef] = []
    texts: dict[str, str] = {}
    for path in manifest_files(manifests_dir):
        rel = _relative(path, root)
        data = path.read_bytes()
        sha = hashlib.sha256(data).hexdigest()
        result.files[rel] = sha
        cached = cache.get(rel)
        if isinstance(cached, dict) and cached.get("sha256") == sha:
            docs = cached["documents"]
        else:
            try:
                text = data.decode("utf-8")
            except UnicodeDecodeError as exc:
                result.problems.append(Problem(rel, None, None, f"not UTF-8 text: {exc.reason}"))
                continue
            texts[rel] = text
            docs, problems = _parse(text, rel)
            if problems:
                result.problems.extend(problems)
                continue
        try:
            json.dumps(docs)
            new_cache[rel] = {"sha256": sha, "documents": docs}
        except (TypeError, ValueError):
            pass  # dates and such: valid YAML that JSON cannot cache; parsed again next time
        for index, doc in enumerate(docs):
            if doc is None:
                continue
            ref = SourceRef(rel, index)
            if not isinstance(doc, dict):
                result.problems.append(Problem(rel, None, None, "a manifest document must be a mapping with a "
                                               f"'kind' (one of {', '.join(MANIFEST_KINDS)})", index, ()))
                continue
            raw.append(doc)
            refs.append(ref)
    _write_cache(cache_path, new_cache)

    try:
        models = MANIFEST_LIST.validate_python(raw)
        result.documents = list(zip(refs, models, strict=True))
    except ValidationError as exc:
        failed: set[int] = set()
        for error in exc.errors():
            index = int(error["loc"][0])
            failed.add(index)
            result.problems.append(_problem_from_pydantic(refs[index], raw[index], error))
        result.documents = [
            (refs[i], MANIFEST_LIST.validate_python([raw[i]])[0]) for i in range(len(raw)) if i not in failed
        ]
    return result


def _problem_from_pydantic(ref: SourceRef, doc: dict[str, Any], error: ErrorDetails) -> Problem:
    loc = list(error["loc"][1:])
    kind = doc.get("kind")
    if loc and loc[0] == kind:
        loc = loc[1:]  # the discriminator tag pydantic puts in the path
    # Union members and constrained types add their own names to the path; keep only real keys.
    path = tuple(p for p in loc if isinstance(p, int) or not _is_type_label(str(p)))
    kind_type = error["type"]
    if kind_type == "union_tag_not_found":
        return Problem(ref.file, None, None, f"missing 'kind'; expected one of: {', '.join(MANIFEST_KINDS)}",
                       ref.document, ())
    if kind_type == "union_tag_invalid":
        return Problem(ref.file, None, None,
                       f"unknown kind {kind!r}; expected one of: {', '.join(MANIFEST_KINDS)}", ref.document, ("kind",))
    message = error["msg"]
    model = MANIFEST_KINDS.get(str(kind))
    if kind_type == "extra_forbidden":
        allowed = _fields_at(model, path[:-1]) if model else []
        message = f"unknown field {path[-1]!r}" + (f"; expected one of: {', '.join(allowed)}" if allowed else "")
    elif kind_type == "missing":
        message = "required field is missing"
    elif "input" in error and not isinstance(error["input"], dict | list):
        message = f"{message} (got {error['input']!r})"
    return Problem(ref.file, None, None, message, ref.document, path)


def _is_type_label(label: str) -> bool:
    return label[:1].isupper() or "[" in label or label in ("int", "str", "float", "bool", "function-after")


def _fields_at(model: type[BaseModel] | None, path: tuple[str | int, ...]) -> list[str]:
    """The field names allowed at a path inside a model, to say what was expected."""
    annotation: Any = model
    for step in path:
        annotation = _unwrap(annotation)
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            info = annotation.model_fields.get(str(step))
            if info is None:
                return []
            annotation = info.annotation
        else:
            args = typing.get_args(annotation)
            annotation = args[-1] if args else None
    annotation = _unwrap(annotation)
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [info.alias or name for name, info in annotation.model_fields.items()]
    return []


def _unwrap(annotation: Any) -> Any:
    """Strip Optional and Annotated so a dict/list/model annotation is left."""
    while True:
        origin = typing.get_origin(annotation)
        if origin is typing.Annotated:
            annotation = typing.get_args(annotation)[0]
        elif origin in (typing.Union, types.UnionType):
            members = [a for a in typing.get_args(annotation) if a is not type(None)]
            models = [a for a in members if isinstance(a, type) and issubclass(a, BaseModel)]
            annotation = models[0] if models else members[0]
        else:
            return annotation


def locate(root: Path, problems: Iterable[Problem]) -> list[Problem]:
    """Fill in line and column of problems that name a document and field (ruamel, only for those files)."""
    from ruamel.yaml import YAML

    out: list[Problem] = []
    by_file: dict[str, list[Problem]] = {}
    for problem in problems:
        if problem.line is None and problem.file:
            by_file.setdefault(problem.file, []).append(problem)
        else:
            out.append(problem)
    for rel, items in by_file.items():
        try:
            docs = list(YAML(typ="rt").load_all((root / rel).read_text(encoding="utf-8")))
        except Exception:
            out.extend(items)
            continue
        for problem in items:
            line, col = _position(docs, problem.document, problem.path)
            out.append(Problem(problem.file, line, col, problem.message, problem.document, problem.path))
    return sorted(out)


def _position(docs: list[Any], document: int, path: tuple[str | int, ...]) -> tuple[int | None, int | None]:
    if document >= len(docs):
        return None, None
    node = docs[document]
    line, col = _node_start(node)
    for step in path:
        lc = getattr(node, "lc", None)
        try:
            if isinstance(step, int) and isinstance(node, list):
                line, col = lc.item(step) if lc else (line, col)
                node = node[step]
            elif isinstance(node, dict) and step in node:
                line, col = lc.key(step) if lc else (line, col)
                node = node[step]
            else:
                break  # a missing field: point at the mapping that lacks it
        except (KeyError, IndexError, TypeError):
            break
    if line is None:
        return None, None
    return int(line) + 1, int(col) + 1 if col is not None else None


def _node_start(node: Any) -> tuple[int | None, int | None]:
    lc = getattr(node, "lc", None)
    if lc is None:
        return None, None
    return lc.line, lc.col


def load_settings(root: Path) -> Settings:
    path = root / "qrm.yaml"
    if not path.is_file():
        return Settings()
    rel = "qrm.yaml"
    docs, problems = _parse(path.read_text(encoding="utf-8"), rel)
    if problems:
        raise ManifestError(problems)
    data = docs[0] if docs else None
    if data is None:
        return Settings()
    if not isinstance(data, dict):
        raise ManifestError([Problem(rel, 1, 1, "qrm.yaml must be a mapping of settings")])
    try:
        return Settings.model_validate(data)
    except ValidationError as exc:
        found = []
        for error in exc.errors():
            path_ = tuple(p for p in error["loc"] if isinstance(p, int | str))
            message = error["msg"]
            if error["type"] == "extra_forbidden":
                message = f"unknown setting; expected one of: {', '.join(Settings.model_fields)}"
            found.append(Problem(rel, None, None, message, 0, path_))
        raise ManifestError(locate(root, found)) from None


def load_lockfile(path: Path, rel: str) -> list[RecordedService] | None:
    """The services of reports/allocations.yaml, or None when there is none."""
    if not path.is_file():
        return None
    text = path.read_text(encoding="utf-8")
    entries: list[Any] = []
    fast = True
    for line in text.splitlines():
        if line.startswith("- {"):
            try:
                entries.append(json.loads(line[2:]))
            except ValueError:
                fast = False
                break
        elif line.startswith("-"):
            fast = False
            break
    if not fast:
        docs, problems = _parse(text, rel)
        if problems:
            raise ManifestError(problems)
        data = docs[0] if docs else {}
        entries = data.get("allocations") or [] if isinstance(data, dict) else []
    services = []
    for index, entry in enumerate(entries):
        try:
            services.append(service_from_dict(entry))
        except (KeyError, TypeError, ValueError) as exc:
            raise QrmError(f"{rel}: allocation {index + 1} is not valid ({exc}); restore the file from git "
                           "or delete it to allocate afresh") from None
    return services


def _relative(path: Path, root: Path) -> str:
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return path.as_posix()
