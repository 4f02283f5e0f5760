"""The list endpoints that grow with the services, as their users page through them on the real server
(tests/conftest.py's `served`: the bundled example, 10 allocations on localhost): pages at the edges, filters
combined with pages, and bad page parameters; and (`writes_served`: a git workspace with host forge) that a
write shows in the very next read of every such endpoint, though the server keeps their answers between
writes (flows.cached_reads).
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.support import api_server
from tests.support.api_server import Server
from tests.support.git_repos import git

# The filters of GET /resources/ports, as the CLI's rows answer them.
FILTERS: dict[str, Any] = {
    "": lambda r: True,
    "type=database": lambda r: r["type"] == "database",
    "host=localhost&type=app": lambda r: r["host"] == "localhost" and r["type"] == "app",
    "project=quantumblog": lambda r: r.get("project") == "quantumblog",
    "project=quantumblog&type=cache": lambda r: r.get("project") == "quantumblog" and r["type"] == "cache",
    "type=no-such-type": lambda r: False,
}


def everything(server: Server) -> list[dict[str, Any]]:
    env = api_server.environment(server.root.parent / "home")
    rows: list[dict[str, Any]] = json.loads(api_server.qrm(server.root, env, "ports", "list", "--json"))["allocations"]
    return rows


def page(server: Server, query: str) -> dict[str, Any]:
    answer = server.get(f"/resources/ports?{query}", server.tokens["reader"])
    assert answer.status_code == 200, answer.text
    document: dict[str, Any] = answer.json()
    return document


# --- GET /resources/ports: pages at the edges ------------------------------------------------------------

@pytest.mark.parametrize(("filters", "limit", "offset"), [
    ("", 1, 0),  # the smallest page
    ("", 1000, 0),  # the largest: everything
    ("", 3, 9),  # the last page, one row of three
    ("", 3, 10),  # just past the end: empty, the total still counted
    ("", 100, 5000),  # far past the end
    ("type=database", 1, 1),  # a filter, then its second row
    ("host=localhost&type=app", 2, 2),
    ("project=quantumblog", 2, 1),  # the project filter is paged too
    ("project=quantumblog&type=cache", 5, 0),
    ("type=no-such-type", 10, 0),  # nothing matches: an empty page, total 0
], ids=["limit-1", "limit-1000", "last-partial-page", "offset-at-the-end", "offset-far-past-the-end",
        "type-second-row", "host-and-type-page-2", "project-paged", "project-and-type", "nothing-matches"])
def test_a_page_is_the_slice_of_the_cli_list_that_matches(served: Server, filters: str, limit: int,
                                                          offset: int) -> None:
    matching = [r for r in everything(served) if FILTERS[filters](r)]
    document = page(served, f"{filters}&limit={limit}&offset={offset}")
    assert document == {"source": "registry", "workspace": "served-example", "total": len(matching),
                        "limit": limit, "offset": offset, "allocations": matching[offset:offset + limit]}


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(filters=st.sampled_from(sorted(FILTERS)), limit=st.integers(1, 12), offset=st.integers(0, 12))
def test_any_page_is_the_same_slice_of_the_filtered_list(served: Server, filters: str, limit: int,
                                                         offset: int) -> None:
    matching = [r for r in everything(served) if FILTERS[filters](r)]
    document = page(served, f"{filters}&limit={limit}&offset={offset}")
    assert (document["total"], document["allocations"]) == (len(matching), matching[offset:offset + limit])


@pytest.mark.parametrize(("query", "reason"), [
    ("limit=0", "query.limit: Input should be greater than or equal to 1"),
    ("limit=1001", "query.limit: Input should be less than or equal to 1000"),
    ("limit=-5", "query.limit: Input should be greater than or equal to 1"),
    ("offset=-1", "query.offset: Input should be greater than or equal to 0"),
    ("limit=ten", "query.limit: Input should be a valid integer, unable to parse string as an integer"),
    ("type=app&limit=2000&offset=1", "query.limit: Input should be less than or equal to 1000"),
], ids=["limit-0", "limit-over-1000", "limit-negative", "offset-negative", "limit-not-a-number",
        "bad-limit-with-a-filter"])
def test_a_page_parameter_out_of_bounds_is_422_naming_it(served: Server, query: str, reason: str) -> None:
    answer = served.get(f"/resources/ports?{query}", served.tokens["reader"])
    assert (answer.status_code, answer.json()) == (422, {"error": reason})


# --- GET /resources/services: all at once, or a page at a time -------------------------------------------

def test_services_without_a_limit_keep_their_shape_and_with_one_are_paged(served: Server) -> None:
    token = served.tokens["reader"]
    whole = served.get("/resources/services", token).json()
    assert set(whole) == {"source", "total", "services"} and whole["total"] == len(whole["services"]) == 10
    pages = [served.get(f"/resources/services?limit=4&offset={offset}", token).json() for offset in (0, 4, 8, 12)]
    assert [p["services"] for p in pages[:3]] == [whole["services"][i:i + 4] for i in (0, 4, 8)]
    assert pages[3]["services"] == [] and {p["total"] for p in pages} == {10}
    assert [(p["limit"], p["offset"]) for p in pages] == [(4, 0), (4, 4), (4, 8), (4, 12)]


@pytest.mark.parametrize(("query", "names"), [
    ("service_type=app&project=quantumblog&limit=2", ["quantumblog-dev-web", "quantumblog-prod-web"]),
    ("service_type=app&project=quantumblog&limit=2&offset=2", ["quantumblog-staging-web"]),
    ("service_type=database&limit=1&offset=1", ["quantumblog-prod-blog-db"]),
    ("service_type=app&offset=99&limit=5", []),
], ids=["filtered-first-page", "filtered-last-page", "database-second", "past-the-end"])
def test_services_filters_combine_with_pages(served: Server, query: str, names: list[str]) -> None:
    document = served.get(f"/resources/services?{query}", served.tokens["reader"]).json()
    assert [s["name"] for s in document["services"]] == names


@pytest.mark.parametrize(("query", "reason"), [
    ("limit=0", "query.limit: Input should be greater than or equal to 1"),
    ("limit=1001", "query.limit: Input should be less than or equal to 1000"),
    ("offset=-1", "query.offset: Input should be greater than or equal to 0"),
])
def test_a_services_page_out_of_bounds_is_422(served: Server, query: str, reason: str) -> None:
    answer = served.get(f"/resources/services?{query}", served.tokens["reader"])
    assert (answer.status_code, answer.json()) == (422, {"error": reason})


# --- a write shows in the very next read ---------------------------------------------------------------

def reads(server: Server) -> dict[str, Any]:
    """What every cached read endpoint answers about host forge now (each asked twice: the second answer
    comes from the server's cache, and must be the first)."""
    token = server.tokens["reader"]
    paths = {"ports": "/resources/ports?host=forge&limit=1000", "ranges": "/resources/ports/ranges",
             "services": "/resources/services", "page": "/resources/ports?host=forge&type=app&limit=1"}
    found = {}
    for name, path in paths.items():
        first, second = server.get(path, token), server.get(path, token)
        assert first.status_code == 200 and first.json() == second.json(), first.text
        found[name] = first.json()
    return found


def forge_ports(found: dict[str, Any]) -> dict[str, int]:
    return {a["name"]: a["port"] for a in found["ports"]["allocations"]}


def forge_used(found: dict[str, Any]) -> int:
    used: int = next(r["used"] for r in found["ranges"]["ranges"] if r["host"] == "forge")
    return used


def check(server: Server, port: int) -> dict[str, Any]:
    document: dict[str, Any] = server.get(f"/resources/ports/check/{port}?host=forge",
                                          server.tokens["reader"]).json()
    return document


def post(server: Server, path: str, token: str, body: dict[str, Any]) -> dict[str, Any]:
    answer = server.request("POST", path, content=json.dumps(body).encode(), timeout=120,
                            headers={"Authorization": f"Bearer {server.tokens[token]}"})
    assert answer.status_code == 200, answer.text
    document: dict[str, Any] = answer.json()
    return document


def test_an_allocation_and_a_release_show_in_the_next_read_of_every_list(writes_served: Server) -> None:
    before = reads(writes_served)
    assert "fresh-reads" not in forge_ports(before)

    port = post(writes_served, "/resources/ports/allocate", "writer",
                {"service_name": "fresh-reads", "port_type": "app", "host": "forge"})["port"]
    after = reads(writes_served)
    assert forge_ports(after) == {**forge_ports(before), "fresh-reads": port}
    assert after["ports"]["total"] == before["ports"]["total"] + 1
    assert forge_used(after) == forge_used(before) + 1
    assert "fresh-reads" in {s["name"] for s in after["services"]["services"]}
    assert after["page"]["total"] == before["page"]["total"] + 1
    assert check(writes_served, port)["reasons"] == ["allocated to fresh-reads"]

    post(writes_served, "/resources/ports/release", "writer", {"service_name": "fresh-reads", "host": "forge"})
    released = reads(writes_served)
    assert forge_ports(released) == forge_ports(before) and forge_used(released) == forge_used(before)
    assert "fresh-reads" not in {s["name"] for s in released["services"]["services"]}
    assert "allocated to fresh-reads" not in check(writes_served, port)["reasons"]


def test_an_apply_by_the_command_line_shows_in_the_next_read(writes_served: Server) -> None:
    root = writes_served.root
    before = reads(writes_served)
    (root / "manifests" / "outside.yaml").write_text("kind: Service\nname: from-the-cli\nhost: forge\ntype: app\n")
    git(root, "add", "manifests/outside.yaml")
    git(root, "commit", "-qm", "a service applied by the command line, not the server")
    env = api_server.environment(root.parent / "home")
    api_server.qrm(root, env, "apply", "--yes", "--no-refresh", "--no-tests")
    after = reads(writes_served)
    assert set(forge_ports(after)) == set(forge_ports(before)) | {"from-the-cli"}
    assert forge_used(after) == forge_used(before) + 1


def test_a_health_round_shows_in_the_next_service_list(writes_served: Server) -> None:
    token = writes_served.tokens["reader"]
    post(writes_served, "/resources/ports/allocate", "writer",
         {"service_name": "health-reads", "port_type": "app", "host": "forge"})
    listed = writes_served.get("/resources/services", token).json()["services"]
    assert next(s for s in listed if s["name"] == "health-reads")["status"] == "unknown"
    checked = post(writes_served, "/resources/services/health-check", "writer", {})
    status = next(s["status"] for s in checked["services"] if s["name"] == "health-reads")
    assert status != "unknown"  # nothing listens on forge (127.0.0.9): a failed check, recorded
    listed = writes_served.get("/resources/services", token).json()["services"]
    assert next(s for s in listed if s["name"] == "health-reads")["status"] == status
