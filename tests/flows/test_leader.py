"""flows/leader: a replica's role, said once per change: two replicas of one workspace on one shared SQLite
registry (one leads, the other follows and names it; a close hands over), a registry that cannot be
reached (a follower with the reason, no password, no exception; retried on the next ask), and a leader whose
PostgreSQL session was ended (the lease lost, said, and taken again)."""

from __future__ import annotations

from pathlib import Path

from reconciler.flows.leader import Leadership
from reconciler.flows.workspace import open_workspace
from tests.support.pgserver import PgDatabase, free_port
from tests.support.workspace import Workspace


def replica(root: Path, registry: str, name: str) -> tuple[Leadership, list[str]]:
    said: list[str] = []
    return Leadership(lambda: open_workspace(root, registry), said.append, name), said


def test_one_replica_leads_the_other_follows_and_a_close_hands_over(workspace: Workspace, tmp_path: Path) -> None:
    workspace.write("qrm.yaml", "name: fleet\n")
    url = f"sqlite:///{tmp_path / 'shared' / 'registry.db'}"
    first, first_said = replica(workspace.root, url, "alpha pid 1")
    second, second_said = replica(workspace.root, url, "beta pid 2")
    try:
        assert [first.check(), second.check(), first.check(), second.check()] == [True, False, True, False]
        lease = first.state().lease
        assert lease.startswith("flock of ") and "registry.db.leader-" in lease
        assert first_said == [f"leader: this replica (alpha pid 1) holds the leader lease ({lease}) and reconciles"]
        assert second_said == [f"follower: replica alpha pid 1 holds the leader lease ({lease}); this one serves "
                               "and pulls, and does not apply"]
        assert (first.state().leader, first.state().holder, second.state().leader, second.state().holder) == (
            True, "alpha pid 1", False, "alpha pid 1")
        first.close()
        assert second.check()
        assert second_said[-1].startswith("leader: this replica (beta pid 2)")
        assert not first.check() and first_said[-1].startswith("follower: replica beta pid 2 holds")
    finally:
        first.close()
        second.close()


def test_a_registry_that_cannot_be_reached_makes_a_follower_that_says_why_once(workspace: Workspace) -> None:
    workspace.write("qrm.yaml", "name: fleet\n")
    url = f"postgresql+psycopg://qrm:hunter2-secret@127.0.0.1:{free_port()}/qrm"
    leadership, said = replica(workspace.root, url, "alpha pid 1")
    assert [leadership.check(), leadership.check()] == [False, False]
    [line] = said
    assert line.startswith("follower: the leader lease cannot be taken: registry postgresql+psycopg://qrm:***@127.0.0.1:")
    assert line.endswith("; retrying on the next interval") and "hunter2" not in line
    state = leadership.state()
    assert (state.leader, state.holder) == (False, None) and "hunter2" not in state.lease


def test_a_leader_whose_postgresql_session_was_ended_says_so_and_takes_the_lease_again(
        workspace: Workspace, pg_database: PgDatabase) -> None:
    workspace.write("qrm.yaml", "name: fleet\n")
    leadership, said = replica(workspace.root, pg_database.url, "alpha pid 1")
    try:
        assert leadership.check()
        # An administrator (or a failover) ends the lease's session: the lock went with it.
        pg_database.server.psql("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                                "WHERE application_name = 'qrm leader alpha pid 1'")
        assert leadership.check()  # nobody else wants it: lost, then taken again on the same ask
        lease = leadership.state().lease
        assert lease == f"advisory lock 'leader:fleet' on {pg_database.url}"
        assert said == [f"leader: this replica (alpha pid 1) holds the leader lease ({lease}) and reconciles",
                        f"leader lease lost ({lease}): this replica stops reconciling and tries again on each "
                        "interval",
                        f"leader: this replica (alpha pid 1) holds the leader lease ({lease}) and reconciles"]
    finally:
        leadership.close()
