"""Which files a Quantum server serves and at which URLs (core.components.Serving), and what one <q:import>
imports (core.components.import_target)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from reconciler.core.components import Serving, import_target, page_path

SEGMENT = st.from_regex(r"[a-z][a-z0-9_-]{0,8}", fullmatch=True)


@pytest.mark.parametrize(("folder", "base_path", "path", "route"), [
    ("components", "", "components/index.q", "/"),
    ("components", "", "components/blog/post.q", "/blog/post"),
    ("components", "", "components/blog/index.q", "/blog"),
    ("components", "/quantum-blog", "components/index.q", "/quantum-blog/"),
    ("components", "/quantum-blog/", "components/login.q", "/quantum-blog/login"),
    ("src/components", "", "src/components/blog/post.q", "/blog/post"),
    ("src/components", "", "src/components/index.q", "/"),
    ("", "", "index.q", "/"),  # paths.components: . serves the app's folder itself
    ("", "", "blog/post.q", "/blog/post"),
    ("components", "", "examples/demo.q", None),
    ("components", "", "projects/other-app/components/index.q", None),
    ("components", "", "components.q", None),
    ("components", "", "componentsx/a.q", None),
    ("src/components", "", "components/legacy.q", None),
])
def test_routes_are_relative_to_the_served_folder(folder: str, base_path: str, path: str, route: str | None) -> None:
    serving = Serving(base_path, folder)
    assert serving.route(path) == route
    assert (serving.not_served(path) is None) == (route is not None)


def test_the_reason_names_the_served_folder() -> None:
    assert Serving("", "src/components").not_served("examples/a.q") == \
        "outside the served folder src/components/ (paths.components)"


@given(st.lists(SEGMENT, min_size=1, max_size=4), st.sampled_from(["", "/blog", "/a/b"]),
       st.sampled_from(["components", "src/components", ""]))
def test_a_page_path_is_its_route_without_the_base_path(segments: list[str], base_path: str, folder: str) -> None:
    path = "/".join(filter(None, [folder, *segments])) + ".q"
    served = Serving(base_path, folder)
    route = served.route(path)
    assert route is not None
    assert page_path(route, base_path) == Serving("", folder).route(path)


@pytest.mark.parametrize(("attrs", "target"), [
    ({"component": "Card"}, "Card"),
    ({"component": "Button", "from": "./ui"}, "./ui/Button"),
    ({"file": "shared/nav.q"}, "shared/nav.q"),
    ({"src": "../lib/x.q"}, "../lib/x.q"),
    ({"behavior": "PlayerBehavior", "from": "./behaviors"}, "./behaviors/PlayerBehavior"),
    ({"behavior": "PlayerBehavior", "from": "./behaviors/"}, "./behaviors/PlayerBehavior"),
    ({"prefab": "Coin", "from": "./prefabs"}, "./prefabs/Coin"),
    ({"tilemap": "yi1", "from": "./levels"}, "./levels/yi1"),
    ({"behavior": "Patrol"}, "Patrol"),
    ({"component": "AdminLayout", "as": "Layout"}, "AdminLayout"),
    ({"from": "./behaviors"}, None),
    ({"component": "  "}, None),
    ({}, None),
])
def test_every_import_form(attrs: dict[str, str], target: str | None) -> None:
    assert import_target(attrs) == target
