"""Read one Quantum component (.q file) into a Component, whatever its quirks (the lxml edge).

The path of one file, fastest first:

1. skipped: over ``max_bytes``, NUL bytes or not UTF-8 -> ``parse="skipped"`` with the reason.
2. refused: a ``<!DOCTYPE`` or ``<!ENTITY`` is never handed to lxml (no XXE, no entity expansion);
   the file goes straight to the line-based reader (``parse="fallback"``).
3. strict: the text (its ``<?xml?>`` declaration blanked out, line numbers kept) wrapped in one root
   element that binds ``q``, ``ui``, ``qg``, ``qt``, ``qtest``; only when lxml names an unbound prefix is
   the text searched for every ``name:`` it uses, and parsed again -> ``parse="xml"``.
4. repaired: one pass (reconciler.core.q_repair) that fixes each quirk of QUANTUM.md and lists it in ``problems`` ->
   ``parse="repaired"``; if lxml still refuses, lxml's ``recover=True`` on the repaired text.
5. fallback: regular expressions over the raw text (reconciler.core.q_fallback) find what they can ->
   ``parse="fallback"``.

Every parser is created with ``resolve_entities=False, no_network=True, load_dtd=False,
huge_tree=False``. Files that declare ``xmlns:q`` and files that do not read the same: the usual file
(``q`` unbound or bound to https://quantum.lang/ns, no default namespace) is read by lxml's C-level
tag filter; a file binding ``q`` to another URI or declaring a default namespace by a generic walk
that matches prefix and local name (``q:action``). A test checks both walks agree.

Problems are "line N: reason" (line 0: the whole file); the first 200 repairs are kept, then a count.
More than 5,000 repairs means the file is not XML-like: the line-based reader takes over.

Complexity = 1 + conditionals (q:if, q:elseif, q:else) + loops (q:loop, q:foreach) + actions + queries
(inside actions or not).

Imports: every form of ``<q:import>`` is one entry of ``imports`` (core.components.import_target): the value of
component=, file=, src=, behavior=, prefab= or tilemap=, prefixed by its from= folder when it has one
(``<q:import behavior="PlayerBehavior" from="./behaviors"/>`` -> ``./behaviors/PlayerBehavior``); the line-based
fallback reads them alike. Routes and ``not_served`` follow the served folder (core.components.Serving).
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import cast

from lxml import etree

from reconciler.core.components import (
    DEFAULT_SERVED,
    Action,
    Component,
    Form,
    FormField,
    Function,
    Param,
    Query,
    Redirect,
    Serving,
    import_target,
    query_writes,
    size_in_bytes,
)
from reconciler.core.q_fallback import assemble, fallback, truthy
from reconciler.core.q_repair import Problems, TooBroken, repair

__all__ = ["scan_file"]

_Q_NS = "https://quantum.lang/ns"
_WRAPPER = "qrm-root"
_PREFIX_NS = "urn:qrm:prefix:"


def _parser(recover: bool) -> etree.XMLParser:
    return etree.XMLParser(
        resolve_entities=False,
        no_network=True,
        load_dtd=False,
        dtd_validation=False,
        huge_tree=False,
        recover=recover,
        remove_comments=True,
        remove_pis=True,
    )


_STRICT = _parser(False)
_RECOVER = _parser(True)

_XML_DECL = re.compile(r"\A\ufeff?\s*<\?xml\b.*?\?>", re.S)
_DTD = re.compile(r"<!(?:DOCTYPE|ENTITY)\b", re.I)
_PREFIX = re.compile(r"[<\s/]([A-Za-z_][\w.-]*):[A-Za-z_]")
_SKIP_PREFIXES = frozenset({"xml", "xmlns", "http", "https"})


def scan_file(path: Path, rel: str, base_path: str = "", max_bytes: int = 5_000_000,
              served: str = DEFAULT_SERVED) -> Component:
    """Never raises for any file content: every quirk repaired is listed in problems, a file that still
    cannot be parsed is returned with parse="fallback" and whatever a line-based reader found, a file over
    max_bytes or binary (NUL bytes / not UTF-8) is parse="skipped" with the reason. rel is the path relative to
    the project's source folder (e.g. "components/login.q"); sha256 is of the file bytes; lines = line count.
    served is the folder the server serves (paths.components, relative to the source folder): routes are
    relative to it, and a file outside it has no route and `not_served` set."""
    stem = Path(rel).stem
    serving = Serving(base_path, served)
    outside = serving.not_served(rel)
    try:
        size = path.stat().st_size
        if size > max_bytes:
            return Component(path=rel, name=stem, not_served=outside, sha256=_hash_file(path), parse="skipped",
                             problems=(f"line 0: file is {size} bytes, over the {max_bytes}-byte limit",))
        data = path.read_bytes()
    except OSError as error:
        # The reason alone (str(error) names the file by its absolute path, which goes into a committed report).
        return Component(path=rel, name=stem, not_served=outside, parse="skipped",
                         problems=(f"line 0: unreadable: {error.strerror or type(error).__name__}",))
    sha = hashlib.sha256(data).hexdigest()
    lines = data.count(b"\n") + (0 if data.endswith(b"\n") or not data else 1)
    if len(data) > max_bytes:  # grew between stat and read
        return Component(path=rel, name=stem, not_served=outside, sha256=sha, lines=lines, parse="skipped",
                         problems=(f"line 0: file is {len(data)} bytes, over the {max_bytes}-byte limit",))
    nul = data.find(b"\0")
    if nul >= 0:
        return Component(path=rel, name=stem, not_served=outside, sha256=sha, lines=lines, parse="skipped",
                         problems=(f"line {_line_of(data, nul)}: binary file (NUL byte)",))
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        return Component(path=rel, name=stem, not_served=outside, sha256=sha, lines=lines, parse="skipped",
                         problems=(f"line {_line_of(data, error.start)}: binary file (not UTF-8)",))
    try:
        return _scan_text(text, rel, stem, serving, sha, lines)
    except Exception as error:  # a bug must not lose the file: report it and read what the fallback can
        problems = [f"line 0: internal error while parsing: {type(error).__name__}: {error}"]
        return fallback(text, rel, stem, serving, sha, lines, problems)


def _line_of(data: bytes, offset: int) -> int:
    return data.count(b"\n", 0, offset) + 1


def _hash_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _scan_text(text: str, rel: str, stem: str, serving: Serving, sha: str, lines: int) -> Component:
    problems: list[str] = Problems()
    dtd = _DTD.search(text)
    if dtd:
        line = text.count("\n", 0, dtd.start()) + 1
        problems.append(f"line {line}: DOCTYPE/ENTITY declaration refused (no DTD or entity is resolved or expanded)")
        return fallback(text, rel, stem, serving, sha, lines, problems)
    declaration = _XML_DECL.match(text)
    if declaration:  # it cannot follow the wrapper: blank it out, keeping its newlines
        text = "\n" * declaration.group(0).count("\n") + text[declaration.end():]
    elif text.startswith("\ufeff"):
        text = text[1:]
    body = (text + f"</{_WRAPPER}>").encode("utf-8")
    try:  # most files use only the usual prefixes: no need to look for others
        root = etree.fromstring(_STANDARD_HEAD_BYTES + body, _STRICT)
        return _extract(root, rel, stem, serving, sha, lines, "xml", problems, text)
    except etree.XMLSyntaxError as error:
        unbound = "Namespace prefix" in str(error.msg)
    head = _head(text)
    if unbound:
        try:
            root = etree.fromstring(head.encode("utf-8") + body, _STRICT)
            return _extract(root, rel, stem, serving, sha, lines, "xml", problems, text)
        except etree.XMLSyntaxError:
            pass
    try:
        repaired = repair(text, problems)
    except TooBroken as error:
        list.append(problems, f"line {error.line}: {error.reason}")
        return fallback(text, rel, stem, serving, sha, lines, problems)
    payload = (head + repaired + f"</{_WRAPPER}>").encode("utf-8")
    try:
        root = etree.fromstring(payload, _STRICT)
        return _extract(root, rel, stem, serving, sha, lines, "repaired", problems, text)
    except etree.XMLSyntaxError as error:
        list.append(problems, f"line {error.lineno}: still not well-formed after repair: {error.msg}")
    try:
        root = etree.fromstring(payload, _RECOVER)
    except etree.XMLSyntaxError:
        root = None
    if root is not None and _has_component(root):
        list.append(problems, "line 0: read with lxml's recover mode; parts of the file may be missing")
        return _extract(root, rel, stem, serving, sha, lines, "repaired", problems, text)
    return fallback(text, rel, stem, serving, sha, lines, problems)


def _head(text: str, prefixes: frozenset[str] | None = None) -> str:
    """The wrapper's start tag, binding every prefix the text uses (found by a generous regex)."""
    if prefixes is None:
        prefixes = _STANDARD_PREFIXES | {p for p in _PREFIX.findall(text) if p.lower() not in _SKIP_PREFIXES}
    declarations = " ".join(
        f'xmlns:{p}="{_Q_NS}"' if p == "q" else f'xmlns:{p}="{_PREFIX_NS}{p}"' for p in sorted(prefixes)
    )
    return f"<{_WRAPPER} {declarations}>"


_STANDARD_PREFIXES = frozenset({"q", "ui", "qg", "qt", "qtest"})
_STANDARD_HEAD_BYTES = _head("", _STANDARD_PREFIXES).encode("utf-8")


def _has_component(root: etree._Element) -> bool:
    """Recovery is only trusted when it kept the q:component element itself."""
    return any(_key(el) == "q:component" for el in root.iter())


# ---------------------------------------------------------------------------------------------- extract


_KEYS: dict[str, str] = {}
_ATTR_NAMES: dict[str, str] = {}
_CACHE_LIMIT = 10_000


def _key(el: etree._Element) -> str:
    """"q:action", "form": prefix and local name, whatever namespace URI the prefix is bound to."""
    tag = el.tag
    if not isinstance(tag, str):
        return ""
    key = _KEYS.get(tag)
    if key is not None:
        return key
    uri, _, local = tag[1:].rpartition("}") if tag.startswith("{") else ("", "", tag)
    if not uri:
        key = local.lower()
    elif uri == _Q_NS:
        key = "q:" + local
    elif uri.startswith(_PREFIX_NS):
        key = uri[len(_PREFIX_NS):] + ":" + local
    else:  # a namespace the file declares itself: its prefix as written (not cached: it may vary)
        prefix = el.prefix
        return f"{prefix}:{local}" if prefix else local.lower()
    if len(_KEYS) < _CACHE_LIMIT:
        _KEYS[tag] = key
    return key


def _attr_name(name: str) -> str:
    normal = _ATTR_NAMES.get(name)
    if normal is None:
        normal = name.rpartition("}")[2].lower().replace("_", "").replace("-", "")
        if len(_ATTR_NAMES) < _CACHE_LIMIT:
            _ATTR_NAMES[name] = normal
    return normal


def _attrs(el: etree._Element) -> dict[str, str]:
    """Attributes by name in lower case without - and _: minLength, minlength and min_length are one."""
    names = _ATTR_NAMES
    items = cast("list[tuple[str, str]]", el.items())  # lxml gives str for str input
    return {names.get(k) or _attr_name(k): v for k, v in items}


def _sourceline(el: etree._Element) -> int | None:
    line: object = el.sourceline
    return line if isinstance(line, int) else None


def _int(value: str | None) -> int | None:
    if value is None:
        return None
    try:
        return int(value.strip())
    except ValueError:
        return None


def _float(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        return float(value.strip())
    except ValueError:
        return None


def _param(el: etree._Element, source: str) -> Param:
    a = _attrs(el)
    enum = a.get("enum") or a.get("options") or a.get("values")
    return Param(
        name=a.get("name") or a.get("field") or "",
        type=a.get("type") or "string",
        required=truthy(a.get("required")),
        min_length=_int(a.get("minlength")),
        max_length=_int(a.get("maxlength")),
        min=_float(a.get("min")),
        max=_float(a.get("max")),
        pattern=a.get("pattern"),
        enum=tuple(v.strip() for v in enum.split(",") if v.strip()) if enum else (),
        source=source,
        accept=a.get("accept"),
        max_size=size_in_bytes(a.get("maxsize")),
    )


def _query(el: etree._Element) -> Query:
    a = _attrs(el)
    parts = [el.text or ""]
    params: list[str] = []
    for child in el:
        if _key(child) == "q:param":
            name = child.get("name")
            if name:
                params.append(str(name))
        else:
            parts.append("".join(str(t) for t in child.itertext()))
        parts.append(child.tail or "")
    sql = "".join(parts).strip()
    kind = a.get("type")
    return Query(
        name=a.get("name") or a.get("id") or "",
        datasource=a.get("datasource"),
        type=kind,
        sql=sql,
        params=tuple(params),
        writes=query_writes(kind, sql),
        line=_sourceline(el),
    )


_NOT_FIELDS = frozenset({"submit", "button", "reset", "image"})
_FIELDS = frozenset({"input", "select", "textarea"})


def _field(el: etree._Element, key: str) -> FormField | None:
    f = _attrs(el)
    name = f.get("name")
    kind = (f.get("type") or "text").lower() if key == "input" else key
    if not name or kind in _NOT_FIELDS:
        return None
    return FormField(
        name=name,
        type=kind,
        required="required" in f and f["required"].strip().lower() != "false",
        min_length=_int(f.get("minlength")),
        max_length=_int(f.get("maxlength")),
        pattern=f.get("pattern"),
        hidden=kind == "hidden",
        value=f.get("value") if kind == "hidden" else None,
        accept=f.get("accept") if kind == "file" else None,
    )


class _Found:
    """What one walk over the tree collects."""

    def __init__(self) -> None:
        self.component: dict[str, str] | None = None
        self.actions: list[Action] = []
        self.queries: list[Query] = []
        self.forms: list[Form] = []
        self.includes: list[str] = []
        self.imports: list[str] = []
        self.functions: list[Function] = []
        self.conditionals = 0
        self.loops = 0


class _ActionParts:
    def __init__(self) -> None:
        self.params: list[Param] = []
        self.redirects: list[Redirect] = []
        self.queries: list[Query] = []


_CONDITIONALS = frozenset({"q:if", "q:elseif", "q:else"})
_LOOPS = frozenset({"q:loop", "q:foreach"})


def _walk(el: etree._Element, found: _Found, action: _ActionParts | None, fields: list[FormField] | None) -> None:
    """Visit every element once, knowing the action and the form it stands in."""
    for child in el:
        key = _key(child)
        if not key:
            continue
        if key == "q:query":
            (action.queries if action is not None else found.queries).append(_query(child))
            continue  # its q:param children are bind parameters, read by _query
        if key == "q:action":
            parts = _ActionParts()
            _walk(child, found, parts, fields)
            found.actions.append(_action(child, parts))
            continue
        if key == "form":
            form_fields: list[FormField] = []
            _walk(child, found, action, form_fields)
            found.forms.append(_form(child, form_fields))
            continue
        if key in _FIELDS:
            if fields is not None:
                form_field = _field(child, key)
                if form_field is not None:
                    fields.append(form_field)
        elif key == "q:param" or key == "q:validate":
            if action is not None:
                action.params.append(_param(child, "param" if key == "q:param" else "validate"))
        elif key == "q:redirect":
            if action is not None:
                action.redirects.append(_redirect(child))
        elif key in _CONDITIONALS:
            found.conditionals += 1
        elif key in _LOOPS:
            found.loops += 1
        elif key == "q:component":
            if found.component is None:
                found.component = _attrs(child)
        elif key == "q:include":
            a = _attrs(child)
            target = a.get("component") or a.get("file") or a.get("src")
            if target:
                found.includes.append(target)
        elif key == "q:import":
            target = import_target(_attrs(child))
            if target:
                found.imports.append(target)
        elif key == "q:function":
            a = _attrs(child)
            found.functions.append(Function(name=a.get("name") or "", endpoint=a.get("endpoint"),
                                            method=(a.get("method") or "GET").upper(), line=_sourceline(child)))
        if len(child):
            _walk(child, found, action, fields)


def _action(el: etree._Element, parts: _ActionParts) -> Action:
    a = _attrs(el)
    return Action(
        name=a.get("name") or "",
        method=(a.get("method") or "POST").upper(),
        params=tuple(parts.params),
        redirects=tuple(parts.redirects),
        queries=tuple(parts.queries),
        writes=any(q.writes for q in parts.queries),
        line=_sourceline(el),
    )


def _form(el: etree._Element, fields: list[FormField]) -> Form:
    a = _attrs(el)
    return Form(
        id=a.get("id") or a.get("name"),
        method=(a.get("method") or "GET").upper(),
        action=a.get("action"),
        fields=tuple(fields),
        enctype=a.get("enctype"),
        line=_sourceline(el),
    )


def _redirect(el: etree._Element) -> Redirect:
    a = _attrs(el)
    return Redirect(url=a.get("url") or a.get("to") or "", flash=a.get("flash"))


def _q(local: str) -> str:
    return "{" + _Q_NS + "}" + local


_Q_COMPONENT, _Q_ACTION, _Q_QUERY, _Q_PARAM, _Q_VALIDATE, _Q_REDIRECT = (
    _q("component"), _q("action"), _q("query"), _q("param"), _q("validate"), _q("redirect"))
_Q_INCLUDE, _Q_IMPORT, _Q_FUNCTION = _q("include"), _q("import"), _q("function")
_Q_COUNTED = frozenset({_q("if"), _q("elseif"), _q("else"), _q("loop"), _q("foreach")})
_FAST_TAGS = (_Q_COMPONENT, _Q_ACTION, _Q_QUERY, _Q_INCLUDE, _Q_IMPORT, _Q_FUNCTION, "form", *_Q_COUNTED)
_OWN_NAMESPACE = re.compile(r"""xmlns(?::q)?\s*=\s*["']([^"']*)""")


def _fast_walk(root: etree._Element, found: _Found) -> None:
    """_walk for the usual file (q bound by the wrapper or to the usual URI, no default namespace):
    lxml picks the interesting elements in C, so the many HTML elements cost nothing in Python."""
    for el in root.iter(*_FAST_TAGS):
        tag = el.tag
        if tag == _Q_ACTION:
            parts = _ActionParts()
            for child in el.iter(_Q_PARAM, _Q_VALIDATE, _Q_REDIRECT, _Q_QUERY):
                ctag = child.tag
                if ctag == _Q_QUERY:
                    parts.queries.append(_query(child))
                elif ctag == _Q_REDIRECT:
                    parts.redirects.append(_redirect(child))
                elif ctag == _Q_VALIDATE:
                    parts.params.append(_param(child, "validate"))
                elif next(child.iterancestors(_Q_QUERY), None) is None:
                    parts.params.append(_param(child, "param"))
            found.actions.append(_action(el, parts))
        elif tag == _Q_QUERY:
            if next(el.iterancestors(_Q_ACTION), None) is None and next(el.iterancestors(_Q_QUERY), None) is None:
                found.queries.append(_query(el))
        elif tag == "form":
            form_fields: list[FormField] = []
            for child in el.iter("input", "select", "textarea"):
                form_field = _field(child, str(child.tag))
                if form_field is not None:
                    form_fields.append(form_field)
            found.forms.append(_form(el, form_fields))
        elif tag in _Q_COUNTED:
            if tag.endswith(("}loop", "}foreach")):
                found.loops += 1
            else:
                found.conditionals += 1
        elif tag == _Q_COMPONENT:
            if found.component is None:
                found.component = _attrs(el)
        elif tag == _Q_FUNCTION:
            a = _attrs(el)
            found.functions.append(Function(name=a.get("name") or "", endpoint=a.get("endpoint"),
                                            method=(a.get("method") or "GET").upper(), line=_sourceline(el)))
        elif tag == _Q_INCLUDE:
            a = _attrs(el)
            target = a.get("component") or a.get("file") or a.get("src")
            if target:
                found.includes.append(target)
        else:
            target = import_target(_attrs(el))
            if target:
                found.imports.append(target)


def _extract(root: etree._Element, rel: str, stem: str, serving: Serving, sha: str, lines: int, parse: str,
             problems: list[str], text: str = "") -> Component:
    found = _Found()
    if any(uri != _Q_NS for uri in _OWN_NAMESPACE.findall(text)):
        _walk(root, found, None, None)
    else:
        _fast_walk(root, found)
    return assemble(rel, stem, serving, sha, lines, parse, problems, found.component or {}, found.actions,
                    found.queries, found.forms, found.includes, found.imports, found.functions,
                    found.conditionals, found.loops)
