"""What `qrm serve` keeps in the registry rather than in its process, tried on real servers: a test run is
answered after a restart (finished, or interrupted when the server stopped or died mid-run) and run ids go on;
two replicas of one workspace (two clones, `qrm serve --push` each, one PostgreSQL registry) hand out run ids
that never collide and answer each other's runs, answer an Idempotency-Key's retry the same with one commit,
and take a webhook delivery once."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx

from reconciler.flows.test_runs import DIED, STOPPED
from tests.support import api_server
from tests.support.api_server import Server
from tests.support.git_repos import git
from tests.support.replicas import Replicas, alone
from tests.support.webhooks import GITHUB_SECRET


def post(server: Server, path: str, token: str, body: Any = None, **headers: str) -> httpx.Response:
    content = json.dumps(body).encode() if body is not None else b""
    return server.request("POST", path, content=content, headers={"Authorization": f"Bearer {token}", **headers},
                          timeout=120)


def start_run(server: Server, suite: str) -> int:
    answer = post(server, f"/test-suites/{suite}/run", server.tokens["writer"], {"environment": "dev"})
    assert answer.status_code == 202, answer.text
    run_id: int = answer.json()["run_id"]
    return run_id


def read_run(server: Server, run_id: int) -> dict[str, Any]:
    answer = server.get(f"/test-runs/{run_id}", server.tokens["reader"])
    assert answer.status_code == 200, answer.text
    document: dict[str, Any] = answer.json()
    return document


def until(server: Server, run_id: int, done: Callable[[dict[str, Any]], bool], wait: float = 90) -> dict[str, Any]:
    """GET /test-runs/{id} on `server` until `done` says so (or the wait is over: the last answer)."""
    deadline = time.monotonic() + wait
    document = read_run(server, run_id)
    while not done(document) and time.monotonic() < deadline:
        time.sleep(0.1)
        document = read_run(server, run_id)
    return document


def ping(server: Server, delivery: str) -> httpx.Response:
    """A GitHub `ping` delivery, signed as GitHub signs it."""
    body = json.dumps({"zen": "Keep it logically awesome.", "hook_id": 1}).encode()
    headers = {"Content-Type": "application/json", "X-GitHub-Event": "ping", "X-GitHub-Delivery": delivery,
               "X-Hub-Signature-256": "sha256=" + hmac.new(GITHUB_SECRET.encode(), body, hashlib.sha256).hexdigest()}
    return httpx.post(server.url + "/hooks/github", content=body, headers=headers, timeout=30)


def ended(document: dict[str, Any]) -> bool:
    return document["status"] != "running"


# --- one server, restarted ---------------------------------------------------------------------------------

def test_a_finished_run_is_answered_after_a_restart_and_run_ids_go_on(tmp_path: Path) -> None:
    with alone(tmp_path) as (root, env, tokens):
        server = api_server.start(root, env)
        server.tokens = tokens
        try:
            run_id = start_run(server, "home")
            before = until(server, run_id, ended)
        finally:
            assert server.stop() == 0, server.log()
        assert {k: before[k] for k in ("status", "passed", "failed")} == {"status": "passed", "passed": 1, "failed": 0}
        again = api_server.start(root, env)
        again.tokens = tokens
        try:
            assert read_run(again, run_id) == before
            assert start_run(again, "home") == run_id + 1  # not 1 again: the registry hands out the ids
        finally:
            again.stop()


def test_a_run_cut_off_by_sigterm_or_sigkill_reads_interrupted_after_a_restart(tmp_path: Path) -> None:
    with alone(tmp_path) as (root, env, tokens):
        stopped, killed = api_server.start(root, env), api_server.start(root, env)
        for server in (stopped, killed):
            server.tokens = tokens
        by_sigterm, by_sigkill = start_run(stopped, "slow"), start_run(killed, "slow")
        assert read_run(stopped, by_sigterm)["status"] == read_run(killed, by_sigkill)["status"] == "running"
        assert stopped.stop() == 0, stopped.log()  # SIGTERM: it marks its runs interrupted as it stops
        killed.process.kill()
        killed.process.wait()
        again = api_server.start(root, env)
        again.tokens = tokens
        try:
            assert {k: read_run(again, by_sigterm)[k] for k in ("status", "error", "results")} == {
                "status": "interrupted", "error": STOPPED, "results": []}
            # SIGKILL: nothing marked it; the first read after its lease (QRM_RUN_LEASE, 2 s) ran out does
            cut = until(again, by_sigkill, lambda d: d["status"] != "running")
            assert {k: cut[k] for k in ("status", "error", "results")} == {
                "status": "interrupted", "error": DIED, "results": []}
        finally:
            again.stop()
        assert not (root / "reports/tests/slow").exists()


# --- two replicas, one PostgreSQL registry ----------------------------------------------------------------------

def test_run_ids_of_two_replicas_never_collide_and_each_answers_the_others_runs(replicated: Replicas) -> None:
    servers = [replicated.first, replicated.second] * 4
    with ThreadPoolExecutor(len(servers)) as pool:
        ids = list(pool.map(lambda server: start_run(server, "home"), servers))
    assert len(set(ids)) == len(ids), ids
    for server, run_id in zip(servers, ids, strict=True):
        other = replicated.second if server is replicated.first else replicated.first
        document = until(other, run_id, ended)
        assert {k: document[k] for k in ("run_id", "suite", "status", "passed", "failed")} == {
            "run_id": run_id, "suite": "home", "status": "passed", "passed": 1, "failed": 0}
        assert document["results"] == [{"id": "home", "name": "Home loads", "type": "smoke", "outcome": "passed",
                                         "reason": ""}]


def test_a_run_is_running_on_the_other_replica_while_its_server_renews_its_lease_and_interrupted_once_it_died(
        replicated: Replicas) -> None:
    doomed = api_server.start(replicated.first.root, replicated.env, "--push")  # a third replica, to kill
    doomed.tokens = replicated.first.tokens
    try:
        run_id = start_run(doomed, "slow")
        deadline = time.monotonic() + 3 * float(replicated.env["QRM_RUN_LEASE"])
        while time.monotonic() < deadline:  # longer than its lease: renewed, it still runs
            assert read_run(replicated.second, run_id)["status"] == "running"
            time.sleep(0.2)
    finally:
        doomed.process.kill()
        doomed.process.wait()
    cut = until(replicated.second, run_id, ended)
    assert (cut["status"], cut["error"]) == ("interrupted", DIED)


def test_an_idempotent_retry_to_the_other_replica_answers_the_same_with_one_commit(replicated: Replicas) -> None:
    first, second = replicated.first, replicated.second
    body = {"service_name": "keyed", "port_type": "app", "host": "forge"}
    pushed = int(git(replicated.origin, "rev-list", "--count", "main"))
    answer = post(first, "/resources/ports/allocate", first.tokens["writer"], body, **{"Idempotency-Key": "deploy-7"})
    assert answer.status_code == 200, answer.text
    assert answer.json()["created"] is True
    second_head = git(second.root, "rev-parse", "HEAD")
    retry = post(second, "/resources/ports/allocate", second.tokens["writer"], body, **{"Idempotency-Key": "deploy-7"})
    assert (retry.status_code, retry.json()) == (200, answer.json())
    assert int(git(replicated.origin, "rev-list", "--count", "main")) == pushed + 1
    assert git(replicated.origin, "rev-parse", "main").strip() == answer.json()["commit"]
    assert git(second.root, "rev-parse", "HEAD") == second_head  # the retry wrote nothing
    reused = post(second, "/resources/ports/allocate", second.tokens["writer"], {**body, "service_name": "other"},
                  **{"Idempotency-Key": "deploy-7"})
    assert reused.status_code == 409, reused.text
    assert reused.json()["field"] == "Idempotency-Key" and "used for another request" in reused.json()["error"]


def test_a_delivery_replayed_to_the_other_replica_is_a_duplicate(replicated: Replicas) -> None:
    answers = [ping(server, "delivery-ping-1") for server in (replicated.first, replicated.second, replicated.first)]
    assert [(a.status_code, a.json()) for a in answers] == [
        (200, {"pong": True, "delivery": "delivery-ping-1"}),
        (200, {"duplicate": True, "delivery": "delivery-ping-1"}),
        (200, {"duplicate": True, "delivery": "delivery-ping-1"})]


def test_while_the_registry_is_unreachable_a_server_takes_each_delivery_once_itself(tmp_path: Path) -> None:
    from tests.support.webhooks import hooked_workspace

    env = api_server.environment(tmp_path / "home")
    served = hooked_workspace(tmp_path, env)[2]
    gone = f"postgresql+psycopg://qrm@127.0.0.1:{api_server.free_port()}/qrm"  # nothing listens there
    server = api_server.start(served, {**env, "QRM_REGISTRY": gone})
    try:
        answers = [ping(server, "offline-1").json() for _ in range(2)]
    finally:
        server.stop()
    assert answers == [{"pong": True, "delivery": "offline-1"}, {"duplicate": True, "delivery": "offline-1"}]
    assert "delivery ids are kept by this server alone until the registry answers" in server.log()
