"""core/expansion: the expanded size of a graph with shared nodes, and where it crosses a bound."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest
from hypothesis import given
from hypothesis import strategies as st

from reconciler.core.expansion import Excess, first_excess


@dataclass(eq=False)
class Node:
    """A stand-in for a parser's node: a scalar (text) or a collection (children), possibly shared."""

    text: str = ""
    children: list[Node] = field(default_factory=list)


def kids(node: Node) -> list[Node]:
    return node.children


def weight(node: Node) -> int:
    return len(node.text) + 1


def expanded(node: Node) -> int:
    """The size by building every copy, as a parser's constructor would (only for small graphs)."""
    return weight(node) + sum(expanded(child) for child in node.children)


@st.composite
def shared_graphs(draw: st.DrawFn) -> Node:
    """A DAG: each new node's children are drawn from the nodes made before it, so nodes are shared."""
    made = [Node(text) for text in draw(st.lists(st.text(max_size=5), min_size=1, max_size=4))]
    for _ in range(draw(st.integers(0, 12))):
        chosen = draw(st.lists(st.sampled_from(made), max_size=4))
        made.append(Node(draw(st.text(max_size=3)), chosen))
    return made[-1]


@given(shared_graphs())
def test_the_size_is_what_building_every_copy_makes(root: Node) -> None:
    assert first_excess(root, kids, weight, limit=10**9, max_depth=50) == expanded(root)


@given(shared_graphs(), st.integers(0, 200))
def test_a_graph_past_the_limit_is_refused_at_a_node_that_crosses_it(root: Node, limit: int) -> None:
    found = first_excess(root, kids, weight, limit=limit, max_depth=50)
    if expanded(root) <= limit:
        assert found == expanded(root)
    else:
        assert isinstance(found, Excess)
        assert "alias bomb" in found.reason


def test_a_billion_laughs_is_refused_without_building_it() -> None:
    node = Node("lol")
    for _ in range(30):  # 9**30 copies: only a walk that sizes each shared node once ends
        node = Node(children=[node] * 9)
    found = first_excess(node, kids, weight, limit=1_000_000)
    assert isinstance(found, Excess) and "1,000,000" in found.reason


def test_a_node_inside_itself_is_refused() -> None:
    loop = Node()
    loop.children.append(Node("a"))
    loop.children.append(loop)
    found = first_excess(Node(children=[loop]), kids, weight, limit=10**6)
    assert isinstance(found, Excess) and found.node is loop and "recursive alias" in found.reason


@pytest.mark.parametrize(("levels", "refused"), [(100, False), (101, True), (5000, True)])
def test_collections_may_nest_as_deep_as_the_bound(levels: int, refused: bool) -> None:
    node = Node("leaf")
    for _ in range(levels):
        node = Node(children=[node])
    found = first_excess(node, kids, weight, limit=10**6, max_depth=100)
    assert isinstance(found, Excess) is refused
    if refused:
        assert "nested more than 100 levels deep" in found.reason  # type: ignore[union-attr]
