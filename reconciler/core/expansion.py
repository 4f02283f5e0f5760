"""How far a document with shared parts expands, and where it expands too far.

YAML anchors and aliases let one node stand in many places: a parser hands back a graph in which an
alias is the very node it names, and only building plain data copies it out. Nine nested lists of
nine aliases (a few hundred bytes, the "billion laughs") build 9**9 values; an alias inside the
collection it names builds forever; and a document nested hundreds of levels deep exhausts Python's
recursion. `first_excess` walks the graph once (each shared node is sized once, so the walk is linear
in the file) and says which node crosses a bound, before anything is built.

It is here, pure and generic over the node type, because two edges read YAML that a pull request
can carry (edges/manifest_files: manifests, qrm.yaml and the reports; edges/sops: secrets.enc and
.sops.yaml) and edges do not import each other: each passes how to get a node's children and
its own size.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

N = TypeVar("N")

# Deeper than any manifest or SOPS file is written; well inside Python's recursion limit for the
# readers after this check (pydantic, ruamel's line finder), which recurse several frames a level.
MAX_DEPTH = 100


def expansion_limit(text_length: int) -> int:
    """The most a document of `text_length` characters may expand to (in characters, as JSON would
    write it): 1 MB, plus 16 times the file, room for a `<<: *defaults` in every one of thousands of
    services, and far below what an alias bomb of any size reaches."""
    return 1_000_000 + 16 * text_length


@dataclass(frozen=True)
class Excess(Generic[N]):
    """The node where a bound was crossed (its position is where the message points) and why."""

    node: N
    reason: str


def first_excess(root: N, children: Callable[[N], Sequence[N]], weight: Callable[[N], int], *,
                 limit: int, max_depth: int = MAX_DEPTH) -> Excess[N] | int:
    """The expanded size of the document rooted at `root` (the sum of `weight` over every node, each
    shared node counted once per place it appears) when it is at most `limit` and the document nests at
    most `max_depth` levels of collections; else the first node found nested too deep, inside itself, or expanding
    past the limit. (Several documents of one file share one limit: pass what the others left.)"""
    sizes: dict[int, int] = {}  # id(node) -> expanded size, for every node whose size is known
    on_path: set[int] = set()
    # (node, its children, index of the next child, size so far): an explicit stack, not recursion,
    # so the walk itself cannot exhaust the recursion limit.
    stack: list[tuple[N, Sequence[N], int, int]] = [(root, children(root), 0, weight(root))]
    on_path.add(id(root))
    while stack:
        node, kids, index, size = stack[-1]
        if index < len(kids):
            child = kids[index]
            known = sizes.get(id(child))
            if known is not None:
                size += known
                stack[-1] = (node, kids, index + 1, size)
                if size > limit:
                    return Excess(node, _too_big(limit))
                continue
            if id(child) in on_path:
                return Excess(child, "an alias refers to a collection that contains it (a recursive alias)")
            grandchildren = children(child)
            if grandchildren and len(stack) >= max_depth:
                return Excess(child, f"nested more than {max_depth} levels deep")
            stack[-1] = (node, kids, index, size)
            on_path.add(id(child))
            stack.append((child, grandchildren, 0, weight(child)))
            continue
        stack.pop()
        on_path.discard(id(node))
        sizes[id(node)] = size
        if size > limit:
            return Excess(node, _too_big(limit))
        if stack:
            parent, parent_kids, parent_index, parent_size = stack[-1]
            stack[-1] = (parent, parent_kids, parent_index + 1, parent_size + size)
    return sizes[id(root)]


def _too_big(limit: int) -> str:
    return (f"aliases expand this past {limit:,} characters (an alias bomb?); write the repeated parts out, "
            "or nest fewer aliases")
