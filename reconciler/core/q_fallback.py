"""What a .q file holds, assembled from the parts a reader found, and the line-based reader for a
file no parser could read: regular expressions find names, actions, queries, forms (pure).
"""

from __future__ import annotations

import re

from reconciler.core.components import (
    Action,
    Component,
    Form,
    Function,
    Query,
    Serving,
    import_target,
    query_writes,
)
from reconciler.core.q_repair import Lines, final_problems

# The line-based fallback.
_FB_TAG = re.compile(r"<(q:component|q:action|q:query|q:include|q:import|q:function|form)\b([^<>]*)")


# A name is only tried from its first character (the look-behind): tried from every character of a long run
# of name characters, the scan was quadratic (40 KB in 45 s).
_FB_ATTR = re.compile(r"""(?<![\w:.-])([\w:.-]+)\s*=\s*("[^"]*"|'[^']*')""")


_FB_COND = re.compile(r"<q:(?:if|elseif|else)\b")


_FB_LOOP = re.compile(r"<q:(?:loop|foreach)\b")


def _fb_attrs(raw: str) -> dict[str, str]:
    found: dict[str, str] = {}
    for k, v in _FB_ATTR.findall(raw):
        found.setdefault(k.lower().replace("_", "").replace("-", ""), v[1:-1])  # the first one wins
    return found


def fallback(text: str, rel: str, stem: str, serving: Serving, sha: str, lines: int,
             problems: list[str]) -> Component:
    """What regular expressions find in a file no parser could read: names, actions, queries, forms."""
    list.append(problems, "line 0: could not be parsed; read line by line (names only, no params, SQL or fields)")
    component: dict[str, str] | None = None
    actions: list[Action] = []
    queries: list[Query] = []
    forms: list[Form] = []
    includes: list[str] = []
    imports: list[str] = []
    functions: list[Function] = []
    line_of = Lines(text)
    for match in _FB_TAG.finditer(text):
        tag, a = match.group(1), _fb_attrs(match.group(2))
        line = line_of(match.start())
        if tag == "q:component":
            if component is None:
                component = a
        elif tag == "q:action":
            actions.append(Action(name=a.get("name", ""), method=a.get("method", "POST").upper(), line=line))
        elif tag == "q:query":
            queries.append(Query(name=a.get("name") or a.get("id") or "", datasource=a.get("datasource"),
                                 type=a.get("type"), writes=query_writes(a.get("type"), ""), line=line))
        elif tag == "form":
            forms.append(Form(id=a.get("id") or a.get("name"), method=a.get("method", "GET").upper(),
                              action=a.get("action"), line=line))
        elif tag == "q:include":
            target = a.get("component") or a.get("file") or a.get("src")
            if target:
                includes.append(target)
        elif tag == "q:import":
            target = import_target(a)
            if target:
                imports.append(target)
        elif tag == "q:function":
            functions.append(Function(name=a.get("name", ""), endpoint=a.get("endpoint"),
                                      method=a.get("method", "GET").upper(), line=line))
    return assemble(rel, stem, serving, sha, lines, "fallback", problems, component or {}, actions, queries,
                    forms, includes, imports, functions, len(_FB_COND.findall(text)), len(_FB_LOOP.findall(text)))


_TRUE = frozenset({"true", "1", "yes", "required", "on", ""})


def truthy(value: str | None) -> bool:
    return value is not None and value.strip().lower() in _TRUE


def assemble(rel: str, stem: str, serving: Serving, sha: str, lines: int, parse: str, problems: list[str],
             attrs: dict[str, str], actions: list[Action], queries: list[Query], forms: list[Form],
             includes: list[str], imports: list[str], functions: list[Function], conditionals: int,
             loops: int) -> Component:
    kind = attrs.get("type") or None
    role = attrs.get("requirerole") or None
    all_queries = len(queries) + sum(len(a.queries) for a in actions)
    return Component(
        path=rel,
        name=attrs.get("name") or stem,
        type=kind,
        route=serving.route(rel) if kind in (None, "page") else None,
        not_served=serving.not_served(rel),
        require_auth=truthy(attrs.get("requireauth")) if "requireauth" in attrs else role is not None,
        require_role=role,
        actions=tuple(actions),
        queries=tuple(queries),
        forms=tuple(forms),
        includes=tuple(includes),
        imports=tuple(imports),
        functions=tuple(functions),
        conditionals=conditionals,
        lines=lines,
        complexity=1 + conditionals + loops + len(actions) + all_queries,
        sha256=sha,
        parse=parse,
        problems=final_problems(problems),
    )
