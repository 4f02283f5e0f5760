"""Project shop on one environment with a `url:`, and its auto_run suite `gate`, one of whose two cases
fails against the Quantum stand-in (its /broken page): the gate apply runs after applying."""

from __future__ import annotations


def gated_manifests(url: str, *, blocking: bool) -> str:
    return f"""
kind: Project
name: shop
environments:
  dev: {{host: localhost, url: "{url}"}}
services:
  web: {{type: app}}
---
kind: TestSuite
name: gate
project: shop
auto_run: true
block_on_failure: {str(blocking).lower()}
cases:
  - {{id: home, name: home, type: smoke, request: {{path: /}}, expect: [{{status: 200}}]}}
  - {{id: broken, name: broken, type: smoke, request: {{path: /broken}}, expect: [{{no_errors: true}}]}}
"""
