"""Webhooks in, against the real server (`qrm serve` in a process) over a real clone of a bare origin: a
delivery signed as GitHub, GitLab or a Standard Webhooks sender signs it (the HMACs computed here with hmac,
and by the `standardwebhooks` package) makes the server fetch and apply the pushed commit, or run the
auto_run suites against a Flask Quantum stand-in; bad, missing, replayed and stale signatures do nothing.
`qrm serve --watch` applies a pushed commit with no hook at all."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import signal
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from standardwebhooks.webhooks import Webhook

from reconciler.edges.locks import workspace_lock
from tests.support import api_server
from tests.support.gated_suite import gated_manifests
from tests.support.git_repos import git, services
from tests.support.quantum_server import quantum_server
from tests.support.webhooks import (
    GENERIC_SECRET,
    GITHUB_SECRET,
    GITLAB_TOKEN,
    Hooked,
    hooked,
    hooked_workspace,
    shown,
    wait_for,
)

PUSH = {"ref": "refs/heads/main", "before": "0" * 40, "after": "1" * 40, "repository": {"full_name": "team/ws"}}


def allocated(hooked: Hooked) -> str:
    return shown(hooked.origin, "reports/allocations.yaml")


def reconcile_lines(hooked: Hooked, trigger: str) -> list[str]:
    return [line for line in hooked.server.log().splitlines() if f"reconcile ({trigger})" in line]


# --- GitHub -----------------------------------------------------------------------------------------------

def test_a_signed_github_push_fetches_and_applies_the_new_commit(tmp_path: Path) -> None:
    with hooked(tmp_path) as h:
        h.push(services("a", "b"), "add b")
        answer = h.github("push", PUSH)
        assert answer.status_code == 202, answer.text
        assert answer.json()["accepted"] == "reconcile"
        wait_for("b's allocation in the reports on origin", lambda: '"name": "b"' in allocated(h), h.server)
        assert h.settled(reconciles=1)["reconciles"] == 1
        [line] = reconcile_lines(h, "github push to main")
        assert ": applied;" in line and "pushed" in line
        assert GITHUB_SECRET not in h.server.log()


@pytest.mark.parametrize(("signature", "reason"), [
    ("", "no X-Hub-Signature-256 header: a GitHub delivery is signed with the webhook secret"),
    ("sha256=" + "0" * 64, "X-Hub-Signature-256 does not match the body (wrong secret, or an altered body)"),
    ("sha1=0123", "X-Hub-Signature-256 does not match the body (wrong secret, or an altered body)"),
    ("wrong-secret", "X-Hub-Signature-256 does not match the body (wrong secret, or an altered body)"),
], ids=["missing", "zeros", "not-sha256", "wrong-secret"])
def test_a_github_delivery_without_the_right_signature_is_401_and_does_nothing(tmp_path: Path, signature: str,
                                                                                reason: str) -> None:
    with hooked(tmp_path) as h:
        h.push(services("a", "b"), "add b")
        delivery = str(uuid.uuid4())
        if signature == "wrong-secret":
            answer = h.github("push", PUSH, delivery=delivery, secret="not-" + GITHUB_SECRET)
        else:
            answer = h.github("push", PUSH, delivery=delivery, signature=signature)
        assert (answer.status_code, answer.json()) == (401, {"error": reason})
        # A refused delivery's id is not remembered: the real one, signed, is still taken.
        assert h.github("push", PUSH, delivery=delivery).status_code == 202
        assert h.settled(reconciles=1)["reconciles"] == 1


def test_an_altered_body_does_not_match_its_signature(tmp_path: Path) -> None:
    with hooked(tmp_path) as h:
        body = json.dumps(PUSH).encode()
        signed = "sha256=" + hmac.new(GITHUB_SECRET.encode(), body, hashlib.sha256).hexdigest()
        answer = h.post("/hooks/github", body.replace(b"main", b"mainx"),
                        {"X-GitHub-Event": "push", "X-Hub-Signature-256": signed, "X-GitHub-Delivery": "d-1"})
        assert answer.status_code == 401
        assert h.status()["reconciles"] == 0


def test_ping_a_replayed_delivery_and_other_branches_and_events(tmp_path: Path) -> None:
    with hooked(tmp_path) as h:
        ping = h.github("ping", {"zen": "Keep it logically awesome.", "hook_id": 1})
        assert ping.status_code == 200 and ping.json()["pong"] is True

        delivery = str(uuid.uuid4())
        assert h.github("push", PUSH, delivery=delivery).status_code == 202
        h.settled(reconciles=1)
        replayed = h.github("push", PUSH, delivery=delivery)
        assert (replayed.status_code, replayed.json()) == (200, {"duplicate": True, "delivery": delivery})

        other = h.github("push", {**PUSH, "ref": "refs/heads/feature"})
        assert other.status_code == 200
        assert other.json() == {"ignored": "a push to refs/heads/feature, not to the watched branch main"}
        not_json = h.post("/hooks/github", b"payload=%7B%7D", {
            "X-GitHub-Event": "push", "X-GitHub-Delivery": str(uuid.uuid4()),
            "X-Hub-Signature-256": "sha256=" + hmac.new(GITHUB_SECRET.encode(), b"payload=%7B%7D",
                                                        hashlib.sha256).hexdigest()})
        assert (not_json.status_code, not_json.json()) == (400, {
            "error": "the body is not a JSON object (set the webhook's content type to application/json)"})
        issue = h.github("issues", {"action": "opened"})
        assert issue.status_code == 200 and "not one qrm acts on" in issue.json()["ignored"]
        assert h.settled()["reconciles"] == 1  # the replay, the other branch and the issue did nothing


def test_a_burst_of_ten_pushes_gives_at_most_two_reconciles(tmp_path: Path) -> None:
    with hooked(tmp_path) as h:
        h.push(services("a", "b", "c"), "add b and c")
        # sent at once, as a burst arrives: ten deliveries one after another could outlast a reconcile on a busy
        # machine, and then a third reconcile would be right (a push came after the second started)
        with ThreadPoolExecutor(10) as pool:
            answers = list(pool.map(lambda _: h.github("push", PUSH), range(10)))
        assert [a.status_code for a in answers] == [202] * 10
        wait_for("c's allocation on origin", lambda: '"name": "c"' in allocated(h), h.server)
        found = h.settled(reconciles=1)
        assert 1 <= found["reconciles"] <= 2
        assert len(reconcile_lines(h, "github push to main")) == found["reconciles"]


def deployment(h: Hooked, source: str, environment: str, state: str = "success") -> httpx.Response:
    """A deployment of `environment` as each sender reports it."""
    if source == "github":
        return h.github("deployment_status", {"deployment_status": {"state": state, "environment": environment},
                                              "deployment": {"environment": environment, "sha": "1" * 40}})
    if source == "gitlab":
        body = json.dumps({"object_kind": "deployment", "status": state, "environment": environment}).encode()
        return h.post("/hooks/gitlab", body, {"X-Gitlab-Event": "Deployment Hook", "X-Gitlab-Token": GITLAB_TOKEN,
                                              "X-Gitlab-Event-UUID": str(uuid.uuid4())})
    text = json.dumps({"type": "deployment", "environment": environment})
    return h.post("/hooks/generic", text.encode(), generic_headers(f"msg_{uuid.uuid4().hex}", datetime.now(UTC), text))


@pytest.mark.parametrize(("source", "environment"), [("github", "development"), ("gitlab", "dev"),
                                                     ("generic", "Development")])
def test_a_successful_deployment_runs_the_auto_run_suites_against_that_environment(tmp_path: Path, source: str,
                                                                                    environment: str) -> None:
    with quantum_server() as quantum, hooked(tmp_path, extra_manifests=gated_manifests(quantum.url,
                                                                                      blocking=False)) as h:
        h.settled()
        history = tmp_path / "served" / "reports" / "tests" / "gate" / "history.jsonl"
        before = history.read_text().count("\n") if history.exists() else 0
        if source != "generic":  # a Standard Webhooks body names only what happened
            pending = deployment(h, source, environment, state="running")
            assert pending.status_code == 200 and "only success runs the tests" in pending.json()["ignored"]
        unknown = deployment(h, source, "moon")
        assert unknown.status_code == 200
        assert unknown.json() == {"ignored": "no qrm environment matches 'moon'; known: dev"}

        answer = deployment(h, source, environment)
        assert answer.status_code == 202, answer.text
        assert answer.json()["environment"] == "dev"
        assert h.settled(test_runs=1)["test_runs"] == 1
        assert history.read_text().count("\n") == before + 1
        report = (tmp_path / "served" / "reports" / "tests" / "gate" / "dev.yaml").read_text()
        assert f'base_url: "{quantum.url}"' in report and '"outcome": "failed"' in report
        assert (f"tests ({source} deployment to {environment}): suite gate on dev: 1 passed, 1 failed"
                in h.server.log())
        wait_for("the report commit on origin", lambda: shown(h.origin, "reports/tests/gate/history.jsonl")
                 .count("\n") == before + 1, h.server)


# --- GitLab -----------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("token", "status"), [(GITLAB_TOKEN, 202), ("not-" + GITLAB_TOKEN, 401), (None, 401)],
                         ids=["good", "bad", "missing"])
def test_a_gitlab_push_hook_needs_the_secret_token(tmp_path: Path, token: str | None, status: int) -> None:
    with hooked(tmp_path) as h:
        h.push(services("a", "b"), "add b")
        headers = {"X-Gitlab-Event": "Push Hook", "Content-Type": "application/json"}
        if token is not None:
            headers["X-Gitlab-Token"] = token
        answer = h.post("/hooks/gitlab", json.dumps({"object_kind": "push", "ref": "refs/heads/main"}).encode(),
                        headers)
        assert answer.status_code == status, answer.text
        if status == 202:
            wait_for("b's allocation on origin", lambda: '"name": "b"' in allocated(h), h.server)
            assert reconcile_lines(h, "gitlab push to main")
        else:
            assert "X-Gitlab-Token" in answer.json()["error"]
            assert h.settled()["reconciles"] == 0
        assert GITLAB_TOKEN not in h.server.log()


# --- Standard Webhooks -----------------------------------------------------------------------------------

def generic_headers(msg_id: str, when: datetime, body: str, secret: str = GENERIC_SECRET) -> dict[str, str]:
    """Signed by the standardwebhooks package: an implementation independent of the server's."""
    return {"webhook-id": msg_id, "webhook-timestamp": str(int(when.timestamp())),
            "webhook-signature": Webhook(secret).sign(msg_id, when, body), "Content-Type": "application/json"}


def test_a_standard_webhook_fetches_and_applies_and_a_replay_does_nothing(tmp_path: Path) -> None:
    with hooked(tmp_path) as h:
        h.push(services("a", "b"), "add b")
        body = json.dumps({"type": "git.push", "repository": "team/ws"})
        headers = generic_headers("msg_1", datetime.now(UTC), body)
        answer = h.post("/hooks/generic", body.encode(), headers)
        assert answer.status_code == 202, answer.text
        wait_for("b's allocation on origin", lambda: '"name": "b"' in allocated(h), h.server)
        h.settled(reconciles=1)
        replay = h.post("/hooks/generic", body.encode(), headers)
        assert (replay.status_code, replay.json()) == (200, {"duplicate": True, "delivery": "msg_1"})
        assert h.settled()["reconciles"] == 1


@pytest.mark.parametrize(("age", "secret", "reason"), [
    (timedelta(minutes=10), GENERIC_SECRET, "webhook-timestamp is more than 300 s away from now"),
    (-timedelta(minutes=10), GENERIC_SECRET, "webhook-timestamp is more than 300 s away from now"),
    (timedelta(0), "whsec_" + base64.b64encode(b"another key of 32 bytes, not it!").decode(),
     "webhook-signature does not match"),
], ids=["stale", "from-the-future", "wrong-secret"])
def test_a_stale_or_wrongly_signed_standard_webhook_is_401(tmp_path: Path, age: timedelta, secret: str,
                                                           reason: str) -> None:
    with hooked(tmp_path) as h:
        body = json.dumps({"type": "git.push"})
        answer = h.post("/hooks/generic", body.encode(), generic_headers("msg_x", datetime.now(UTC) - age, body,
                                                                          secret))
        assert answer.status_code == 401 and answer.json()["error"].startswith(reason), answer.text
        missing = h.post("/hooks/generic", body.encode(), {"webhook-id": "msg_y"})
        assert missing.json() == {"error": "missing Standard Webhooks header(s): webhook-timestamp, webhook-signature"}
        assert h.settled()["reconciles"] == 0


# --- set-up and limits ------------------------------------------------------------------------------------

def test_without_a_key_to_read_the_secrets_the_hooks_answer_503_with_the_reason(tmp_path: Path) -> None:
    with hooked(tmp_path, key=False) as h:
        answer = h.github("push", PUSH)
        assert answer.status_code == 503
        reason = answer.json()["error"]
        assert reason.startswith("the GitHub hook is not set up: ") and "GITHUB_WEBHOOK_SECRET" in reason
        assert GITHUB_SECRET not in answer.text


def test_a_hook_body_over_one_megabyte_is_413(tmp_path: Path) -> None:
    with hooked(tmp_path) as h:
        answer = h.post("/hooks/github", b"{" + b" " * (1024 * 1024) + b"}", {"X-GitHub-Event": "push"})
        assert answer.status_code == 413


def test_the_openapi_document_names_the_hooks_and_they_need_no_token(tmp_path: Path) -> None:
    with hooked(tmp_path) as h:
        paths = h.server.get("/openapi.json").json()["paths"]
        assert {"/hooks/github", "/hooks/gitlab", "/hooks/generic", "/hooks/status"} <= set(paths)
        assert all("security" not in paths[f"/hooks/{name}"]["post"] for name in ("github", "gitlab", "generic"))
        assert paths["/hooks/status"]["get"]["security"]  # what the worker did is read with a read token
        assert h.server.get("/hooks/status").status_code == 401


def test_sigterm_right_after_a_push_hook_finishes_the_reconcile_in_hand_and_exits_0(tmp_path: Path) -> None:
    with hooked(tmp_path) as h:
        h.push(services("a", "b"), "add b")
        assert h.github("push", PUSH).status_code == 202
        h.server.process.send_signal(signal.SIGTERM)
        assert h.server.process.wait(timeout=60) == 0
        served = tmp_path / "served"
        # Whether the worker had begun or not, nothing is half-written: no report left uncommitted, and a
        # reconcile that began has its line and its pushed report commit.
        assert git(served, "status", "--porcelain", "--untracked-files=all", "reports") == ""
        if reconcile_lines(h, "github push to main"):
            assert '"name": "b"' in allocated(h)
            assert git(served, "rev-parse", "HEAD") == git(h.origin, "rev-parse", "main")


# --- qrm serve --watch ------------------------------------------------------------------------------------

def test_serve_watch_applies_a_pushed_commit_without_any_hook_and_stops_on_sigterm(tmp_path: Path) -> None:
    with hooked(tmp_path, "--watch", "--interval", "0.3") as h:
        wait_for("the start reconcile", lambda: "reconcile (start): applied" in h.server.log(), h.server)
        assert '"name": "b"' not in allocated(h)
        h.push(services("a", "b"), "add b")
        wait_for("b's allocation on origin", lambda: '"name": "b"' in allocated(h), h.server)
        # The line is logged just after the push that put b on origin: wait for it too.
        wait_for("the pulled reconcile's line", lambda: any("reconcile (pulled: manifests/svc.yaml): applied" in line
                                                            for line in h.server.log().splitlines()), h.server)
        assert h.status()["reconciles"] == 0  # the watch loop did it, no hook
        h.server.process.send_signal(signal.SIGTERM)
        assert h.server.process.wait(timeout=60) == 0
        assert "watch stopped" in h.server.log() and "Traceback" not in h.server.log()


def test_serve_watch_while_a_qrm_watch_holds_the_workspace_serves_without_watching(tmp_path: Path) -> None:
    env = api_server.environment(tmp_path / "home")
    _origin, _dev, served, token = hooked_workspace(tmp_path, env)
    with workspace_lock(served / ".qrm" / "watch.lock", what="watch"):  # as a running `qrm watch` holds it
        server = api_server.start(served, env, "--watch", "--interval", "0.3")
        try:
            wait_for("the watch's refusal", lambda: "watch stopped: " in server.log(), server)
            assert server.get("/hooks/status", token).status_code == 200  # still serving
        finally:
            assert server.stop() == 0
    [line] = [line for line in server.log().splitlines() if "watch stopped: " in line]
    assert "workspace is locked by pid" in line and "Traceback" not in server.log()

