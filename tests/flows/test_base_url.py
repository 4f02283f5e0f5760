"""Where `qrm tests run` talks to each environment: where the app answers, never https on a port
where the app speaks plain HTTP (tls: true is nginx's TLS in front of it)."""

from __future__ import annotations

import pytest

from reconciler.flows.desired import load_desired
from reconciler.flows.recorded import recorded_state
from reconciler.flows.tests_run import base_url
from reconciler.flows.workspace import open_workspace
from tests.support.workspace import Workspace

MANIFEST = """
kind: Project
name: shop
base_path: /shop
environments:
  dev:     {host: localhost}
  staging: {host: localhost, tls: true}
  prod:    {host: localhost, domain: shop.example.com, tls: true, protected: true}
  plain:   {host: localhost, domain: plain.example.com}
  wild:    {host: localhost, domain: "*.wild.example.com", tls: true}
  preview: {host: localhost, url: "http://127.0.0.1:9999/"}
services:
  web: {type: app, health: {path: /health}}
"""


@pytest.fixture
def applied(workspace: Workspace) -> Workspace:
    workspace.manifest("shop.yaml", MANIFEST)
    assert workspace.qrm("apply", "--yes", "--no-refresh", "--no-tests").exit_code == 0
    return workspace


def port_of(ws: Workspace, environment: str) -> int:
    return recorded_state(open_workspace(ws.root)).services[f"shop-{environment}-web"].port


@pytest.mark.parametrize(("environment", "expected"), [
    ("dev", "http://127.0.0.1:{port}/shop"),
    ("staging", "http://127.0.0.1:{port}/shop"),  # tls: true without a domain: the app port speaks HTTP
    ("prod", "https://shop.example.com/shop"),  # through the domain nginx serves, with its TLS
    ("plain", "http://plain.example.com/shop"),
    ("wild", "http://127.0.0.1:{port}/shop"),  # a wildcard domain names no host to ask
    ("preview", "http://127.0.0.1:9999"),  # url: wins
], ids=["dev", "tls-without-domain", "tls-domain", "domain", "wildcard-domain", "explicit-url"])
def test_base_url(applied: Workspace, environment: str, expected: str) -> None:
    ws = open_workspace(applied.root)
    desired = load_desired(ws)
    url = base_url(desired, recorded_state(ws), desired.projects["shop"], environment)
    assert url == expected.format(port=port_of(applied, environment))


def test_an_https_web_service_is_tested_over_https_on_its_port(workspace: Workspace) -> None:
    workspace.manifest("shop.yaml", MANIFEST.replace("web: {type: app,", "web: {type: app, protocol: https,"))
    assert workspace.qrm("apply", "--yes", "--no-refresh", "--no-tests").exit_code == 0
    ws = open_workspace(workspace.root)
    desired = load_desired(ws)
    url = base_url(desired, recorded_state(ws), desired.projects["shop"], "staging")
    assert url == f"https://127.0.0.1:{port_of(workspace, 'staging')}/shop"
