"""The email notifier against a real aiosmtpd server on 127.0.0.1 that offers STARTTLS with a certificate from a
test CA (trustme) and requires AUTH: the message that arrives (read back with the email package), the upgrade
before the credentials, the refusal to send in clear, the certificate check, and each SMTP answer's outcome."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from reconciler.core.notifications import Event, Outcome, Target, text
from reconciler.edges import notify_email
from reconciler.flows import notify
from reconciler.flows.secrets import set_secret
from tests.support import notify_receiver as rx
from tests.support.notify_workspace import ALERT, notifying_workspace
from tests.support.workspace import Workspace

USER = "qrm-bot"
PASSWORD = "canary-smtp-password-4d2e"
EVENT = Event("apply.failed", "port 8001 is taken by another service", "shop", "prod",
              details=("web: 8001 held by pid 4242", "api: not started"),
              link="https://qrm.example.com/ui/history", occurred_at="2026-12-02T07:00:00Z")
T0 = 1_800_000_000.0


def target(server: rx.SmtpServer, **changes: object) -> Target:
    values: dict[str, object] = {
        "notifier": "oncall", "provider": "email", "smtp_host": server.host, "smtp_port": server.port,
        "username": USER, "password": PASSWORD, "sender": "qrm <qrm@example.com>",
        "to": ("ops@example.com", "lead@example.com"), "starttls": True, "tls_ca_file": str(server.ca_file)}
    values.update(changes)
    return Target(**values)  # type: ignore[arg-type]


def send(server: rx.SmtpServer, **changes: object) -> Outcome:
    return asyncio.run(notify_email.send(target(server, **changes), EVENT, "msg_qrm_7_abc", 10.0))


def test_the_email_arrives_over_starttls_after_auth_with_the_event_in_subject_and_body(tmp_path: Path) -> None:
    with rx.smtp_server(tmp_path, username=USER, password=PASSWORD) as server:
        outcome = send(server)
    assert outcome == Outcome("delivered", f"smtp://127.0.0.1:{server.port} accepted the message for 2 recipient(s)")
    [mail] = server.mailbox.messages
    assert server.mailbox.tls_on_data == [True]
    assert server.mailbox.logins == [(USER, PASSWORD)]
    assert server.mailbox.envelopes == [("qrm@example.com", ["ops@example.com", "lead@example.com"])]
    assert mail["From"] == "qrm <qrm@example.com>"
    assert mail["To"] == "ops@example.com, lead@example.com"
    assert mail["Subject"] == "[qrm] CRITICAL apply.failed shop/prod: port 8001 is taken by another service"
    assert "msg_qrm_7_abc" in mail["Message-ID"]  # the same on a retry: a client can drop the repeat
    assert mail.get_content_type() == "text/plain"
    body = mail.get_content().replace("\r\n", "\n")  # SMTP lines end in CRLF
    assert body.strip() == text(EVENT)
    assert "  web: 8001 held by pid 4242" in body and "https://qrm.example.com/ui/history" in body


@pytest.mark.parametrize(("event", "subject"), [
    (Event("health.recovered", "web answers again", "shop", "prod", recovery=True),
     "[qrm] RECOVERED health.recovered shop/prod: web answers again"),
    (Event("secret.rotated", "DB_PASSWORD rotated"), "[qrm] INFO secret.rotated: DB_PASSWORD rotated"),
    (Event("drift.detected", "x" * 300, "shop"), "[qrm] WARNING drift.detected shop: " + "x" * 164 + "…"),
])
def test_the_subject_is_one_line_saying_severity_kind_and_where(event: Event, subject: str) -> None:
    assert notify_email.subject(event) == subject


def test_a_server_without_starttls_gets_neither_credentials_nor_mail(tmp_path: Path) -> None:
    with rx.smtp_server(tmp_path, starttls=False, username=USER, password=PASSWORD) as server:
        outcome = send(server)
    assert outcome.status == "failed"
    assert outcome.reason.startswith(f"smtp://127.0.0.1:{server.port} does not offer STARTTLS; nothing sent")
    assert server.mailbox.logins == [] and server.mailbox.messages == []


def test_starttls_false_sends_in_clear_to_a_server_that_asks_no_credentials(tmp_path: Path) -> None:
    with rx.smtp_server(tmp_path, starttls=False) as server:
        outcome = send(server, starttls=False, username="", password="")
    assert outcome.status == "delivered"
    assert server.mailbox.tls_on_data == [False]


def test_a_certificate_the_system_store_does_not_trust_is_refused(tmp_path: Path) -> None:
    with rx.smtp_server(tmp_path, username=USER, password=PASSWORD) as server:
        outcome = send(server, tls_ca_file="")  # the test CA is not in the system's store
        missing = send(server, tls_ca_file=str(tmp_path / "nowhere.pem"))
    assert outcome.status == "failed"
    assert "the server's certificate does not verify" in outcome.reason
    assert missing.status == "failed" and missing.reason.startswith(f"tls_ca_file {tmp_path / 'nowhere.pem'} is not")
    assert server.mailbox.logins == [] and server.mailbox.messages == []


@pytest.mark.parametrize(("password", "data_reply", "status", "words"), [
    ("wrong-password", None, "failed", "refused the login of qrm-bot: 535"),
    (PASSWORD, "451 4.3.0 mailbox busy, try later", "retry", "answered 451 4.3.0 mailbox busy, try later"),
    (PASSWORD, "552 5.3.4 message too big", "failed", "answered 552 5.3.4 message too big"),
])
def test_each_smtp_answer_becomes_its_outcome(tmp_path: Path, password: str, data_reply: str | None, status: str,
                                              words: str) -> None:
    replies = (data_reply,) if data_reply else ()
    with rx.smtp_server(tmp_path, username=USER, password=PASSWORD, data_replies=replies) as server:
        outcome = send(server, password=password)
    assert outcome.status == status, outcome.reason
    assert words in outcome.reason
    assert server.mailbox.messages == []


def test_a_server_nobody_listens_on_is_retried(tmp_path: Path) -> None:
    outcome = asyncio.run(notify_email.send(Target("oncall", "email", smtp_host="127.0.0.1",
                                                   smtp_port=rx.free_port(), sender="qrm@example.com",
                                                   to=("ops@example.com",)), EVENT, "msg_1", 5.0))
    assert outcome.status == "retry" and outcome.reason.startswith("cannot connect to smtp://127.0.0.1:")


def test_an_email_notifier_manifest_delivers_through_the_outbox_with_its_ca_file(
        workspace: Workspace, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    with rx.smtp_server(tmp_path, username=USER, password=PASSWORD) as server:
        (workspace.root / "certs").mkdir()
        (workspace.root / "certs" / "smtp-ca.pem").write_bytes(server.ca_file.read_bytes())
        manifest = (f"kind: Notifier\nname: ops\nprovider: email\nsmtp_host: 127.0.0.1\nsmtp_port: {server.port}\n"
                    f"username: {USER}\npassword: secret:SMTP_PASSWORD\nsender: qrm@example.com\n"
                    "to: [ops@example.com]\ntls_ca_file: certs/smtp-ca.pem\n")
        ws = notifying_workspace(workspace, monkeypatch, "unused", notifiers=manifest, alert=ALERT)
        set_secret(ws, "SMTP_PASSWORD", None, None, PASSWORD)
        assert notify.emit(ws, EVENT, now=T0) == 1
        [result] = notify.deliver_due(ws, now=T0)
    assert result.status == "delivered", result.reason
    assert [m["Subject"] for m in server.mailbox.messages] == [notify_email.subject(EVENT)]
