"""A project `shop` with a suite `shop-smoke` of three cases on two environments (dev, staging): the
history and compare tests run it against two Quantum stand-ins whose pages differ."""

from __future__ import annotations

from typing import Any

import yaml

CASES: list[dict[str, Any]] = [
    {"id": "home", "name": "home loads", "type": "smoke", "request": {"path": "/"},
     "expect": [{"status": 200}, {"no_errors": True}]},
    {"id": "variant", "name": "variant", "type": "custom", "request": {"path": "/"}, "expect": [{"contains": "v1"}]},
    {"id": "missing", "name": "missing", "type": "custom", "request": {"path": "/nope"}, "expect": [{"status": 404}]},
]


def manifests(dev: str, staging: str, cases: list[dict[str, Any]] = CASES) -> str:
    suite = {"kind": "TestSuite", "name": "shop-smoke", "project": "shop", "environments": ["dev", "staging"],
             "cases": cases}
    project = {"kind": "Project", "name": "shop", "services": {"web": {"type": "app"}},
               "environments": {"dev": {"url": dev}, "staging": {"url": staging}}}
    return yaml.safe_dump(project) + "---\n" + yaml.safe_dump(suite)
