"""Several replicas: three `qrm serve --watch` processes, each in its own clone of one origin, against one
registry (a real PostgreSQL server, or one SQLite file the clones share). Exactly one holds the leader lease
and reconciles; all three answer reads; when the leader is SIGKILLed another takes the lease and applies a
change pushed afterwards; the survivors still answer reads."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.git_repos import services
from tests.support.replicas import Replicas, kill, replicas, shared_registry, wait_until
from tests.support.webhooks import Hooked

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
