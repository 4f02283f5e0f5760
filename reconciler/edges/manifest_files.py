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
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, cast

import yaml
from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from reconciler.core.app_config import FILE_NAME as APP_CONFIG_FILE
from reconciler.core.app_config import AppConfig, app_config
from reconciler.core.errors import ManifestError, Problem, QrmError
from reconciler.core.expansion import MAX_DEPTH, Excess, expansion_limit, first_excess
from reconciler.core.models import (
    MANIFEST_KINDS,
    PATTERN_HINTS,
    SECRET_PATTERNS,
    FieldError,
    Settings,
    Spec,
    manifest_list,
)
from reconciler.core.signing import sign, verified
from reconciler.core.state import RecordedService, ReportedFile, ReportedState, SourceRef, service_from_dict

CACHE_VERSION = 2  # 2: signed (the first line)


class _FastLoader(yaml.CSafeLoader):
    """libyaml's parser with scalar resolution memoized: manifests repeat the same plain scalars
    (keys, types, hosts) thousands of times, and resolving each with regexes is most of the cost."""

    _resolved: ClassVar[dict[str, str]] = {}

    def resolve(self, kind: Any, value: Any, implicit: Any) -> Any:
        if kind is yaml.ScalarNode and implicit == (True, False):
            tag = self._resolved.get(value)
            if tag is None:
                tag = super().resolve(kind, value, implicit)  # type: ignore[no-untyped-call]
                if len(self._resolved) < 50_000:
                    self._resolved[value] = tag
            return tag
        return super().resolve(kind, value, implicit)  # type: ignore[no-untyped-call]


_SAFE = yaml.constructor.SafeConstructor()
_STR, _INT, _BOOL, _NULL, _FLOAT = (f"tag:yaml.org,2002:{t}" for t in ("str", "int", "bool", "null", "float"))
_MERGE = "tag:yaml.org,2002:merge"


def _construct(node: yaml.Node, depth: int = 1) -> Any:
    """Plain data from a composed node: a tight recursive walk instead of PyYAML's generic
    constructor (about 3x faster here), refusing duplicate keys, which PyYAML silently keeps. `depth`
    is checked here for documents without aliases, which skip the expansion walk (_load_all)."""
    if isinstance(node, yaml.MappingNode):
        if depth > MAX_DEPTH:
            raise yaml.composer.ComposerError(None, None, f"nested more than {MAX_DEPTH} levels deep", node.start_mark)
        depth += 1
        out: dict[Any, Any] = {}
        defaults: dict[Any, Any] | None = None  # what `<<` merges in: the mapping's own keys win, wherever written
        for key_node, value_node in node.value:
            if key_node.tag == _MERGE:
                merged = _construct(value_node, depth)
                items = merged if isinstance(merged, list) else [merged]
                if not all(isinstance(item, dict) for item in items):
                    raise yaml.constructor.ConstructorError(
                        "while merging into a mapping", node.start_mark,
                        "expected a mapping or a list of mappings after <<", value_node.start_mark)
                defaults = defaults if defaults is not None else {}
                for item in items:
                    for key, value in item.items():
                        defaults.setdefault(key, value)
                continue
            key = _construct(key_node, depth)
            try:
                duplicate = key in out
            except TypeError:  # a list or mapping as a key
                raise yaml.constructor.ConstructorError(
                    "while reading a mapping", node.start_mark,
                    "found a list or mapping used as a key; keys must be plain names", key_node.start_mark) from None
            if duplicate:
                raise yaml.constructor.ConstructorError(
                    "while reading a mapping", node.start_mark, f"found duplicate key {key!r}", key_node.start_mark)
            out[key] = _construct(value_node, depth)
        return out if defaults is None else {**defaults, **out}
    if isinstance(node, yaml.SequenceNode):
        if depth > MAX_DEPTH:
            raise yaml.composer.ComposerError(None, None, f"nested more than {MAX_DEPTH} levels deep", node.start_mark)
        return [_construct(item, depth + 1) for item in node.value]
    node = cast(yaml.ScalarNode, node)
    tag = node.tag
    if tag == _STR:
        return node.value
    if tag == _INT:
        return _SAFE.construct_yaml_int(node)
    if tag == _BOOL:
        return _SAFE.construct_yaml_bool(node)
    if tag == _NULL:
        return None
    if tag == _FLOAT:
        return _SAFE.construct_yaml_float(node)
    return _SAFE.construct_object(node, deep=True)


def _children(node: yaml.Node) -> Sequence[yaml.Node]:
    if isinstance(node, yaml.MappingNode):
        return [part for pair in node.value for part in pair]
    return node.value if isinstance(node, yaml.SequenceNode) else ()


def _weight(node: yaml.Node) -> int:
    """About what the node takes written out as JSON (the cache writes it so)."""
    return len(node.value) + 3 if isinstance(node, yaml.ScalarNode) else 2


def _checked_size(node: yaml.Node, limit: int) -> int:
    """The expanded size of a document. One whose aliases expand past `limit`, refer to themselves,
    or that nests too deep is refused at that node's line before it is built (core/expansion says why)."""
    found = first_excess(node, _children, _weight, limit=limit)
    if isinstance(found, Excess):
        raise yaml.composer.ComposerError(None, None, found.reason, found.node.start_mark)
    return found


def _load_all(text: str) -> list[Any]:
    loader = _FastLoader(text)
    limit = expansion_limit(len(text))  # for the file: many small documents cannot add up past it either
    # Without an alias (`*name`) nothing is shared: a document is as big as its text, and _construct
    # checks the depth; the walk (~30% of a cold parse) runs only for a file that has a '*'.
    aliases = "*" in text
    try:
        documents = []
        while loader.check_node():
            node = cast(yaml.Node, loader.get_node())
            if aliases:
                limit -= _checked_size(node, limit)
            documents.append(_construct(node))
        return documents
    finally:
        loader.dispose()


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


def manifest_digests(root: Path, manifests_dir: Path) -> dict[str, str]:
    """Relative path -> sha256 of every manifest file (about 15 ms for 5,000 files)."""
    return {_relative(path, root): hashlib.sha256(path.read_bytes()).hexdigest()
            for path in manifest_files(manifests_dir)}


def _parse(text: str, rel: str) -> tuple[list[Any], list[Problem]]:
    try:
        gc_was = _gc_pause()
        try:
            return _load_all(text), []
        finally:
            _gc_resume(gc_was)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark else (None, None)
        return [], [Problem(rel, line, col, f"invalid YAML: {_yaml_reason(exc)}")]
    except yaml.YAMLError as exc:
        return [], [Problem(rel, None, None, f"invalid YAML: {exc}")]
    except UnicodeDecodeError as exc:
        return [], [Problem(rel, None, None, f"not UTF-8 text: {exc.reason}")]


def _yaml_reason(exc: yaml.MarkedYAMLError) -> str:
    """libyaml's problem, with where the construct it was reading started when that is elsewhere."""
    reason = exc.problem or exc.context or "cannot parse"
    context, start, mark = exc.context, exc.context_mark, exc.problem_mark
    if context and exc.problem:
        if start is not None and (mark is None or start.line != mark.line):
            reason += f" ({context} that starts on line {start.line + 1}, column {start.column + 1})"
        else:
            reason += f" ({context})"
    if exc.problem and "mapping values are not allowed" in exc.problem:
        reason += "; check the indentation of this line, or quote a value that contains ': '"
    return reason


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


def _read_cache(path: Path | None, secret: bytes | None) -> dict[str, Any]:
    """The cached documents by file, when this user's key signed them (the first line): a planted or
    edited manifests.json would otherwise put documents that are in no manifest into the plan."""
    if path is None or secret is None:
        return {}
    try:
        signature, _, body = path.read_bytes().partition(b"\n")
    except OSError:
        return {}  # none yet, or unreadable: only a slower run
    if not verified(secret, signature, body):
        return {}
    try:
        data = json.loads(body)
    except ValueError:
        return {}
    if not isinstance(data, dict) or data.get("version") != CACHE_VERSION:
        return {}
    files = data.get("files")
    return files if isinstance(files, dict) else {}


def _write_cache(path: Path | None, secret: bytes | None, entries: dict[str, Any]) -> None:
    if path is None or secret is None:
        return
    body = json.dumps({"version": CACHE_VERSION, "files": entries}).encode()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_bytes(sign(secret, body) + b"\n" + body)
        os.replace(tmp, path)
    except OSError:
        pass  # read-only checkout: work without a cache


def load_manifests(root: Path, manifests_dir: Path, cache_path: Path | None = None,
                   cache_secret: bytes | None = None) -> LoadedManifests:
    """Every manifest, parsed and validated. With `cache_path` and `cache_secret` (the key that signs
    the cache, edges/state_cache.machine_key), an unchanged file's documents come from the cache."""
    result = LoadedManifests()
    cache = _read_cache(cache_path, cache_secret)
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
    _write_cache(cache_path, cache_secret, new_cache)

    try:
        models = manifest_list().validate_python(raw)
        result.documents = list(zip(refs, models, strict=True))
    except ValidationError as exc:
        failed: set[int] = set()
        found: list[Problem] = []
        for error in exc.errors():
            index = int(error["loc"][0])
            failed.add(index)
            found.append(_problem_from_pydantic(refs[index], raw[index], error))
        result.problems.extend(_merge_alternatives(found))
        result.documents = [
            (refs[i], manifest_list().validate_python([raw[i]])[0]) for i in range(len(raw)) if i not in failed
        ]
    return result


def _problem_from_pydantic(ref: SourceRef, doc: dict[str, Any], error: ErrorDetails) -> Problem:
    kind = doc.get("kind")
    kind_type = error["type"]
    if kind_type == "union_tag_not_found":
        return Problem(ref.file, None, None, f"missing 'kind'; expected one of: {', '.join(MANIFEST_KINDS)}",
                       ref.document, ("kind",))
    if kind_type == "union_tag_invalid":
        return Problem(ref.file, None, None,
                       f"unknown kind {kind!r}; expected one of: {', '.join(MANIFEST_KINDS)}", ref.document, ("kind",))
    loc = error["loc"][1:]
    if loc and loc[0] == kind:
        loc = loc[1:]  # the discriminator tag pydantic puts in the path
    path = _document_path(doc, loc, keep_last=kind_type == "missing") + _rule_path(error)
    message = _message(error)
    if kind_type == "extra_forbidden":
        model = MANIFEST_KINDS.get(str(kind))
        allowed = _fields_at(model, path[:-1]) if model else []
        message = f"unknown field {path[-1]!r}" + (f"; expected one of: {', '.join(allowed)}" if allowed else "")
    return Problem(ref.file, None, None, message, ref.document, path)


def _number(value: Any) -> Any:
    """0.0 said as 0: a bound of a float setting reads as the user would write it."""
    return int(value) if isinstance(value, float) and value.is_integer() else value


def _merge_alternatives(problems: list[Problem]) -> list[Problem]:
    """One problem per field: a value that fits no member of a union (str | int | ...) gets one
    error per member from pydantic; say them as one list of what was expected."""
    by_field: dict[tuple[str, int, tuple[str | int, ...]], list[Problem]] = {}
    for problem in problems:
        by_field.setdefault((problem.file, problem.document, problem.path), []).append(problem)
    merged: list[Problem] = []
    for group in by_field.values():
        messages = list(dict.fromkeys(p.message for p in group))
        if len(messages) == 1 or not all(m.startswith("expected ") for m in messages):
            merged.extend(group if len(messages) > 1 else group[:1])
            continue
        got = ""
        if all(" (got " in m for m in messages) and len({m[m.index(" (got "):] for m in messages}) == 1:
            got = messages[0][messages[0].index(" (got "):]
            messages = [m[: m.index(" (got ")] for m in messages]
        options = [m.removeprefix("expected ") for m in messages]
        text = "expected " + ", ".join(options[:-1]) + " or " + options[-1] + got
        first = group[0]
        merged.append(Problem(first.file, first.line, first.column, text, first.document, first.path))
    return merged


def _document_path(doc: Any, loc: tuple[str | int, ...], keep_last: bool = False) -> tuple[str | int, ...]:
    """The keys and indexes of a pydantic error location that exist in the document.

    pydantic adds labels of its own (union members such as 'constrained-int', '[key]' for a
    bad mapping key, function names); they are not in the document, so walking the document
    drops them, while any key the user wrote (even 'Stage' or 'X-Token') is kept. A missing
    field (keep_last) is not in the document either, but is what the error is about.
    """
    node = doc
    path: list[str | int] = []
    for position, step in enumerate(loc):
        in_mapping = isinstance(node, dict) and step in node
        if in_mapping or (isinstance(node, list) and isinstance(step, int) and 0 <= step < len(node)):
            path.append(step)
            node = node[step]
        elif keep_last and position == len(loc) - 1:
            path.append(step)
    return tuple(path)


def _rule_path(error: ErrorDetails) -> tuple[str | int, ...]:
    """The field a whole-document rule (a FieldError raised by a model validator) is about."""
    cause = (error.get("ctx") or {}).get("error")
    return cause.path if error["type"] == "value_error" and isinstance(cause, FieldError) else ()


def _message(error: ErrorDetails) -> str:
    """pydantic's message, said as what was expected and what was found."""
    kind, ctx, message = error["type"], error.get("ctx") or {}, error["msg"]
    secret = False
    if kind == "value_error":
        cause = ctx.get("error")
        message = str(cause) if cause is not None else message.removeprefix("Value error, ")
    elif kind == "string_pattern_mismatch":
        pattern = str(ctx.get("pattern", ""))
        hint = PATTERN_HINTS.get(pattern)
        message = f"expected {hint}" if hint else message
        secret = pattern in SECRET_PATTERNS
    elif kind in ("int_parsing", "int_type", "int_from_float"):
        message = "expected a whole number"
    elif kind == "less_than_equal":
        message = f"expected a number no greater than {_number(ctx['le'])}"
    elif kind == "greater_than_equal":
        message = f"expected a number no less than {_number(ctx['ge'])}"
    elif kind == "too_short":
        count = ctx.get("min_length", 1)
        message = f"expected at least {count} item{'s' if count != 1 else ''}"
    elif kind == "missing":
        return "required field is missing"
    elif message.startswith("Input should be "):
        message = "expected " + message.removeprefix("Input should be ")
    if not secret and "input" in error and not isinstance(error["input"], dict | list):
        message = f"{message} (got {error['input']!r})"
    return message


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

    parsed: dict[str, tuple[str, list[Any]] | None] = {}

    def position(rel: str, document: int, path: tuple[str | int, ...]) -> tuple[int | None, int | None]:
        if rel not in parsed:
            try:
                text = (root / rel).read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError):
                parsed[rel] = None
            else:
                try:
                    docs = list(YAML(typ="rt").load_all(text))
                except Exception:
                    docs = []
                parsed[rel] = (text, docs)
        found = parsed[rel]
        if found is None:
            return None, None
        text, docs = found
        line, col = _position(docs, document, path)
        if line is None:
            # A scalar document (ruamel keeps no position for it), or ruamel could not read
            # what libyaml did: point at the start of the document.
            starts = _document_starts(text)
            if document < len(starts):
                line, col = starts[document]
        return line, col

    out: list[Problem] = []
    for problem in problems:
        line, col = problem.line, problem.column
        if line is None and problem.file:
            line, col = position(problem.file, problem.document, problem.path)
        message = problem.message
        if problem.see is not None:
            rel, document, path = problem.see
            see_line, see_col = position(rel, document, path)
            where = f"{rel}:{see_line}:{see_col}" if see_line is not None else f"{rel}, document {document + 1}"
            message = message.replace("{see}", where)
        out.append(Problem(problem.file, line, col, message, problem.document, problem.path))
    # Problems without a position sort first in their file.
    return sorted(out, key=Problem.sort_key)


def _document_starts(text: str) -> list[tuple[int, int]]:
    """(line, column), 1-based, where each document of a file starts, as libyaml counts documents."""
    try:
        return [(node.start_mark.line + 1, node.start_mark.column + 1)
                for node in yaml.compose_all(text, Loader=yaml.CSafeLoader)]
    except yaml.YAMLError:
        return []


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
            path_ = _document_path(data, error["loc"], keep_last=error["type"] == "missing")
            message = _message(error)
            if error["type"] == "extra_forbidden":
                message = f"unknown setting {path_[-1]!r}; expected one of: {', '.join(Settings.model_fields)}"
            found.append(Problem(rel, None, None, message, 0, path_))
        raise ManifestError(locate(root, found)) from None


def load_app_config(root: Path, folder: Path, source: str, project: str) -> AppConfig:
    """The quantum.config.yaml of an app folder (`source` is the folder as the workspace names it; messages
    say source/quantum.config.yaml); the defaults when there is none. A file that is not YAML, or whose
    paths: or datasources: are malformed, is a ManifestError naming file, line and field."""
    path = folder / APP_CONFIG_FILE
    rel = f"{source.rstrip('/')}/{APP_CONFIG_FILE}" if source else APP_CONFIG_FILE
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return AppConfig()
    except OSError as exc:
        raise QrmError(f"{rel}: cannot be read ({exc.strerror or exc})") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ManifestError([Problem(rel, data.count(b"\n", 0, exc.start) + 1, None,
                                     f"not UTF-8 text: {exc.reason}")]) from None
    docs, problems = _parse(text, rel)
    if problems:
        raise ManifestError(problems)
    if len(docs) > 1:
        raise ManifestError(locate(root, [Problem(rel, None, None, f"{APP_CONFIG_FILE} must be one YAML document, "
                                                                  f"not {len(docs)}", 1, ())]))
    config, problems = app_config(docs[0] if docs else None, rel, project)
    if problems:
        raise ManifestError(locate(root, problems))
    return config


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


def load_state_report(path: Path, rel: str) -> ReportedState | None:
    """reports/state.yaml (report.render_state), or None when there is none.

    The lines apply writes are read as JSON; a file edited into other valid YAML is read by libyaml.
    A .env's masked text must hash to its recorded sha256 (it is what a PR plan diffs against).
    """
    if not path.is_file():
        return None
    text = path.read_text(encoding="utf-8")
    data = _state_lines(text)
    if data is None:
        docs, problems = _parse(text, rel)
        if problems:
            raise ManifestError(problems)
        data = docs[0] if docs and isinstance(docs[0], dict) else {}
    fix = "restore the file from git, or delete it (then every secret and generated file plans as new)"
    try:
        secrets = {str(e["name"]): str(e["fingerprint"]) for e in data.get("secrets") or []}
        shas = {str(e["path"]): str(e["sha256"]) for e in data.get("files") or []}
        env_lines = {str(k): [str(line) for line in v] for k, v in (data.get("env_files") or {}).items()}
    except (AttributeError, KeyError, TypeError, ValueError) as exc:
        raise QrmError(f"{rel} is not valid ({type(exc).__name__}: {exc}); {fix}") from None
    files: dict[str, ReportedFile] = {}
    for file_path, sha in shas.items():
        masked = None
        if file_path in env_lines:
            joined = "\n".join(env_lines[file_path])
            masked = next((t for t in (joined + "\n", joined)
                           if hashlib.sha256(t.encode("utf-8")).hexdigest() == sha), None)
            if masked is None:
                raise QrmError(f"{rel}: the masked text of {file_path} does not match its sha256; {fix}")
        files[file_path] = ReportedFile(file_path, sha, masked)
    missing = sorted(set(env_lines) - set(shas))
    if missing:
        raise QrmError(f"{rel}: {missing[0]} has a masked text but no entry under files:; {fix}")
    return ReportedState(secrets, files)


def _state_lines(text: str) -> dict[str, Any] | None:
    """The sections of a state report as render_state writes it; None when it is written otherwise."""
    data: dict[str, Any] = {"secrets": [], "files": [], "env_files": {}}
    section = ""
    current: list[str] = []
    try:
        for line in text.split("\n"):
            if not line or line.startswith("#") or line.startswith("version:"):
                continue
            key = line.split(":", 1)[0]
            if key in data and line in (f"{key}:", f"{key}: []", f"{key}: {{}}"):
                section = key
            elif section in ("secrets", "files") and line.startswith("- {"):
                data[section].append(json.loads(line[2:]))
            elif section == "env_files" and line.startswith('  "') and line.endswith(":"):
                current = data["env_files"].setdefault(json.loads(line[2:-1]), [])
            elif section == "env_files" and line.startswith('  - "'):
                current.append(json.loads(line[4:]))
            else:
                return None
    except ValueError:
        return None
    return data


def load_component_shas(path: Path) -> dict[str, str] | None:
    """path -> sha256 of each component of a reports/components/<project>.yaml; None when there is none."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    shas: dict[str, str] = {}
    in_components = False
    for line in text.split("\n"):
        if line.startswith("components:"):
            in_components = True
        elif in_components and line.startswith("- {"):
            try:
                entry = json.loads(line[2:])
            except ValueError:
                break
            shas[str(entry.get("path"))] = str(entry.get("sha256", ""))
        elif line and not line.startswith((" ", "#")):
            in_components = False
    else:
        return shas
    docs, problems = _parse(text, str(path))  # not as qrm scan writes it: read it as YAML
    data = docs[0] if docs and not problems and isinstance(docs[0], dict) else {}
    entries = data.get("components") or []
    return {str(e.get("path")): str(e.get("sha256", "")) for e in entries if isinstance(e, dict)}


def _relative(path: Path, root: Path) -> str:
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return path.as_posix()
