"""The layout as a specification: every module lives in a layer's folder, the import-linter layers
contract names every layer package, and no two modules import each other, directly or around a
loop (function-level and TYPE_CHECKING imports count: a cycle hidden in a function is still one).
The contracts themselves run as `lint-imports` in scripts/test."""

from __future__ import annotations

import ast
import tomllib
from collections.abc import Iterable, Mapping

import grimp
import pytest

from tests.support.paths import REPO

LAYER_PACKAGES = ("reconciler.cli", "reconciler.server", "reconciler.flows", "reconciler.edges", "reconciler.core")
OUTSIDE_LAYERS = {"reconciler", "reconciler.__main__"}  # the package marker and `python -m reconciler`


def cycles(imports: Mapping[str, Iterable[str]]) -> list[list[str]]:
    """Every strongly connected group of more than one module (Tarjan), each sorted, as a sorted list."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(start: str) -> None:  # iterative: a deep chain must not hit the recursion limit
        work = [(start, iter(sorted(imports.get(start, ()))))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            module, targets = work[-1]
            target = next(targets, None)
            if target is not None:
                if target not in index:
                    index[target] = low[target] = len(index)
                    stack.append(target)
                    on_stack.add(target)
                    work.append((target, iter(sorted(imports.get(target, ())))))
                elif target in on_stack:
                    low[module] = min(low[module], index[target])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[module])
            if low[module] == index[module]:
                group = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    group.append(member)
                    if member == module:
                        break
                if len(group) > 1:
                    found.append(sorted(group))

    for module in sorted(imports):
        if module not in index:
            visit(module)
    return sorted(found)


def package_imports() -> dict[str, set[str]]:
    graph = grimp.build_graph("reconciler", include_external_packages=False)
    return {m: set(graph.find_modules_directly_imported_by(m)) for m in graph.modules}


@pytest.mark.parametrize(("imports", "expected"), [
    ({"a": ["b"], "b": ["c"], "c": []}, []),
    ({"a": ["b"], "b": ["a"]}, [["a", "b"]]),
    ({"a": ["b"], "b": ["c"], "c": ["a"], "d": ["a"]}, [["a", "b", "c"]]),
    ({"a": ["b"], "b": ["a"], "c": ["d"], "d": ["c"], "e": ["a", "c"]}, [["a", "b"], ["c", "d"]]),
    ({"a": ["a"]}, []),  # a module importing itself is not a cycle between modules
    ({f"m{i}": [f"m{i + 1}"] for i in range(5000)} | {"m5000": ["m0"]}, [sorted(f"m{i}" for i in range(5001))]),
], ids=["chain", "pair", "triangle", "two-loops", "self", "long-loop"])
def test_the_cycle_finder_finds_every_loop(imports: dict[str, list[str]], expected: list[list[str]]) -> None:
    assert cycles(imports) == expected


def test_no_import_cycle_between_modules() -> None:
    found = cycles(package_imports())
    assert not found, "import cycles: " + "; ".join(" <-> ".join(group) for group in found)


def test_every_module_lives_in_a_layer_folder() -> None:
    """A new module is covered by the contracts by being in its folder: none may sit beside them."""
    strays = sorted(m for m in package_imports()
                    if m not in OUTSIDE_LAYERS and not m.startswith(tuple(p + "." for p in LAYER_PACKAGES))
                    and m not in LAYER_PACKAGES)
    assert strays == []


def faces_only(source: str) -> list[str]:
    """What in a module only a face may do: print, write to stdout/stderr, exit (each as `line: call`)."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Call):
            name = ast.unparse(node.func)
            if name in ("print", "exit", "quit", "sys.exit", "os._exit", "input") or \
                    name.startswith(("sys.stdout.", "sys.stderr.")):
                found.append(f"{node.lineno}: {name}")
    return found


@pytest.mark.parametrize(("source", "expected"), [
    ("def f():\n    return 1\n", []),
    ("print('x')\n", ["1: print"]),
    ("import sys\ndef f():\n    sys.stderr.write('x')\n    sys.exit(3)\n", ["3: sys.stderr.write", "4: sys.exit"]),
    ("log.info('a %s', b)\n", []),
], ids=["pure", "print", "stderr-and-exit", "logging"])
def test_the_face_detector_finds_printing_and_exiting(source: str, expected: list[str]) -> None:
    assert faces_only(source) == expected


def test_below_the_faces_nothing_prints_or_exits() -> None:
    """The flows are a library: they return values, and only cli/ talks to a terminal or picks an exit
    code. Logging is allowed: it is configured by the face. The server is a face without a terminal:
    it answers HTTP and logs, and never prints or exits either (uvicorn owns the process)."""
    found = {str(path.relative_to(REPO)): calls
             for layer in ("core", "edges", "flows", "server")
             for path in sorted((REPO / "reconciler" / layer).glob("*.py"))
             if (calls := faces_only(path.read_text()))}
    assert found == {}


def test_the_layers_contract_names_every_layer_package() -> None:
    config = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["importlinter"]["contracts"]
    layers = next(c for c in config if c["type"] == "layers")["layers"]
    named = {name.strip() for layer in layers for name in layer.split("|")}
    packages = {p.parent.relative_to(REPO).as_posix().replace("/", ".")
                for p in (REPO / "reconciler").glob("*/__init__.py")}
    assert named == packages == set(LAYER_PACKAGES)


def test_the_faces_are_independent_siblings_above_the_flows() -> None:
    """cli and server share one layer, `|`-separated: import-linter forbids imports between them either way."""
    config = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["importlinter"]["contracts"]
    layers = next(c for c in config if c["type"] == "layers")["layers"]
    assert {name.strip() for name in layers[0].split("|")} == {"reconciler.cli", "reconciler.server"}
    assert "|" in layers[0] and ":" not in layers[0]
    imports = package_imports()
    assert not [(a, b) for a, targets in imports.items() for b in targets
                if a.startswith("reconciler.server") and b.startswith("reconciler.cli")]


def _test_modules_imported(source: str) -> list[str]:
    """The test modules (tests.<folder>.test_*) a test file imports."""
    found = []
    for node in ast.walk(ast.parse(source)):
        names = ([node.module or ""] if isinstance(node, ast.ImportFrom)
                 else [a.name for a in node.names] if isinstance(node, ast.Import) else [])
        found += [n for n in names if n.startswith("tests.") and n.rsplit(".", 1)[-1].startswith("test_")]
    return found


@pytest.mark.parametrize(("source", "expected"), [
    ("from tests.cli.test_watch import Watcher", ["tests.cli.test_watch"]),
    ("import tests.flows.test_testgen", ["tests.flows.test_testgen"]),
    ("from tests.support.watcher import Watcher\nfrom tests.support import paths", []),
])
def test_the_test_import_finder(source: str, expected: list[str]) -> None:
    assert _test_modules_imported(source) == expected


def test_no_test_module_imports_another() -> None:
    """Shared helpers live in tests/support: a test module that imports another runs its tests' imports
    and fixtures twice, and breaks when that module is renamed."""
    offenders = {str(path.relative_to(REPO)): imported for path in sorted((REPO / "tests").rglob("*.py"))
                 if "node_modules" not in path.parts
                 and (imported := _test_modules_imported(path.read_text(encoding="utf-8")))}
    assert offenders == {}
