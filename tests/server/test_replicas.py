"""Several replicas: three `qrm serve --watch` processes, each in its own clone of one origin, against one
registry (a real PostgreSQL server, or one SQLite file the clones share). Exactly one holds the leader lease
and reconciles; all three answer reads; when the leader is SIGKILLed another takes the lease and applies a
change pushed afterwards; the survivors still answer reads. Writes sent to followers (`--push`) take turns on
the registry's allocation locks, reach the origin, and every replica then serves them."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from reconciler.edges.locks import workspace_lock
from reconciler.edges.registry import Registry
from tests.support import api_server
from tests.support.git_repos import git, services
from tests.support.watch_replicas import Replicas, kill, replicas, shared_registry, wait_until
from tests.support.webhooks import Hooked, hooked, hooked_workspace

PUSH = {"ref": "refs/heads/main", "before": "0" * 40, "after": "1" * 40, "repository": {"full_name": "team/ws"}}


def reads_answer(group: Replicas) -> list[int]:
    """GET /resources/ports (a read token) on each live replica: its status codes."""
    return [server.get("/resources/ports", group.token).status_code for server in group.alive()]


@pytest.mark.parametrize("kind", ["postgresql", "sqlite"])
def test_one_replica_leads_and_another_takes_over_when_it_is_killed(kind: str, request: pytest.FixtureRequest,
                                                                     tmp_path: Path) -> None:
    url, env = shared_registry(kind, request, tmp_path)
    with replicas(tmp_path, url, env) as group:
        leader = group.one_leader()
        followers = [server for server in group.servers if server is not leader]
        wait_until("the leader's first reconcile", lambda: bool(group.reconciles(leader)), group)
        # Every replica says whether it leads, and names the same holder: the leader's host and pid.
        roles = [group.role(server) or {} for server in group.servers]
        assert [role.get("leader") for role in roles] == [server is leader for server in group.servers]
        [holder] = {role.get("holder") for role in roles}
        assert f" pid {leader.process.pid}" in str(holder)
        [lease] = {role.get("lease") for role in roles}
        assert str(lease).startswith("advisory lock 'leader:hooked' on postgresql" if kind == "postgresql" else
                                     f"flock of {tmp_path / 'shared' / 'registry.db'}.leader-"), lease

        group.push(services("a", "b"), "add b")
        # A push hook that reaches a follower is accepted; the follower pulls, and the leader applies.
        hook = Hooked(followers[0], group.origin, group.dev, group.token).github("push", PUSH)
        assert hook.status_code == 202, hook.text
        wait_until("b's allocation on origin", lambda: '"name": "b"' in group.allocated(), group)
        wait_until("the follower's answer to the hook", lambda: "reconcile (github push to main): not here: this "
                   "replica follows; the leader applies it on its next interval" in followers[0].log(), group)
        assert reads_answer(group) == [200, 200, 200]
        for follower in followers:
            assert group.reconciles(follower) == [], follower.log()
            assert "follower: replica" in follower.log()

        kill(leader)
        successor = group.one_leader()
        assert successor in followers
        group.push(services("a", "b", "c"), "add c")
        wait_until("c's allocation on origin, applied by the new leader", lambda: '"name": "c"' in group.allocated(),
                   group)
        [bystander] = [server for server in followers if server is not successor]
        assert group.reconciles(bystander) == [], bystander.log()
        assert any("reconcile (took the leader lease)" in line or "pulled" in line
                   for line in group.reconciles(successor)), successor.log()
        assert reads_answer(group) == [200, 200]
        for server in group.alive():
            listed = server.get("/resources/ports", group.token).json()
            assert {"a", "b", "c"} <= {port["name"] for port in listed["allocations"]}, listed
        # A replica stopped cleanly (SIGTERM) lets go of the lease at once: the last one takes it.
        assert successor.stop() == 0
        assert group.one_leader() is bystander
    assert "Traceback" not in group.logs()


def test_followers_take_writes_that_every_replica_then_serves(request: pytest.FixtureRequest, tmp_path: Path) -> None:
    url, env = shared_registry("postgresql", request, tmp_path)
    with replicas(tmp_path, url, env, extra=("--push",)) as group:
        leader = group.one_leader()
        followers = [server for server in group.servers if server is not leader]
        wait_until("the leader's first reconcile", lambda: bool(group.reconciles(leader)), group)

        def allocate(server_and_name: tuple[object, str]) -> httpx.Response:
            server, name = server_and_name
            assert isinstance(server, type(leader))
            return httpx.post(server.url + "/resources/ports/allocate", timeout=60,
                              headers={"Authorization": f"Bearer {group.writer}"},
                              json={"service_name": name, "port_type": "app", "host": "localhost"})

        with ThreadPoolExecutor(2) as pool:  # both followers at once: the allocation locks take turns
            answers = list(pool.map(allocate, [(followers[0], "w1"), (followers[1], "w2")]))
        assert [a.status_code for a in answers] == [200, 200], [a.text for a in answers]
        ports = {a.json()["service"]: a.json()["port"] for a in answers}
        assert len(set(ports.values())) == 2
        # Each write's commit is on the origin (--push); the leader pulls it and records it in its reports.
        subjects = git(group.origin, "log", "--format=%s", "main").splitlines()
        for name in ports:
            assert f"qrm: allocate a port (app) for {name} on localhost (requested by deployer)" in subjects, subjects
        wait_until("both writes in the leader's report on origin",
                   lambda: all(f'"name": "{name}"' in group.allocated() for name in ports), group)
        for server in group.servers:
            listed = server.get("/resources/ports", group.token).json()["allocations"]
            assert {row["name"]: row["port"] for row in listed if row["name"] in ports} == ports, server.log()
        for follower in followers:
            assert group.reconciles(follower) == [], follower.log()
    assert "Traceback" not in group.logs()


def test_a_server_without_watch_takes_no_lease_and_says_so(tmp_path: Path) -> None:
    with hooked(tmp_path) as h:
        assert h.status()["leader"] is None
        assert "leader" not in h.server.log()


def test_a_server_whose_watch_cannot_run_never_takes_the_lease(tmp_path: Path) -> None:
    """Two servers in one folder are not replicas: the second one's watch loop stops on the folder's watch lock,
    and that server must not then lead (on a push) without the loop that applies on each interval."""
    env = api_server.environment(tmp_path / "home")
    origin, dev, served, token = hooked_workspace(tmp_path, env)
    with workspace_lock(served / ".qrm" / "watch.lock", what="watch"):  # as another watcher of the folder holds it
        server = api_server.start(served, env, "--watch", "--interval", "0.3")
        try:
            wait_until("the watch's refusal", lambda: "watch stopped: " in server.log(),
                       Replicas(origin, dev, [server], token, token, env, []))
            hook = Hooked(server, origin, dev, token)
            assert hook.github("push", PUSH).status_code == 202
            hook.settled(reconciles=1)
            assert "reconcile (github push to main): not here" in server.log()
            assert hook.status()["leader"]["leader"] is False
            registry = Registry(f"sqlite:///{served / '.qrm' / 'registry.db'}")
            try:  # the lease is free for a replica that can watch
                lease = registry.leader_lease("hooked", "a replica that watches")
                assert lease.try_acquire()
                lease.release()
            finally:
                registry.close()
        finally:
            assert server.stop() == 0
