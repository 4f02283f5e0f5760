"""The `email` notifier (aiosmtplib): one text/plain message per delivery over SMTP, upgraded with STARTTLS.

The message is built with the stdlib email package: From the notifier's sender, To its recipients, Subject
"[qrm] CRITICAL apply.failed shop/prod: <summary>" (one line), the body core's text(event) (headline, details,
dashboard link), and a Message-ID made from the delivery id, the same on every retry, so a mail client can
drop a repeat.

Transport security: with `starttls` (the default) the connection is upgraded before AUTH and MAIL, and a
server that does not offer STARTTLS gets nothing (failed: the credentials and the message are never sent in
clear). The server's certificate is verified against the system's CA store and its name checked against
smtp_host, unless the notifier names a CA file (`tls_ca_file`, a private CA), which is then the only one
trusted. Port 465 (TLS from the first byte, "SMTPS") is used as such.

SMTP's answers become Outcomes: 4xx (greylisting, mailbox busy, a full queue) retry; 5xx failed, 535 (bad
credentials) too; a refused or dropped connection and a timeout retry; a certificate that does not verify
failed. No reason quotes the password; a server's reply text is kept short and scrubbed of it anyway.
"""

from __future__ import annotations

import ssl
from email import policy
from email.message import EmailMessage
from email.utils import formatdate, make_msgid, parseaddr

from reconciler.core.escaping import masked
from reconciler.core.notifications import Event, Outcome, Target, never_raising, text

IMPLICIT_TLS_PORT = 465
MAX_SUBJECT = 200
MAX_REPLY = 160  # characters of a server's reply a reason keeps
# Lines up to RFC 5322's 998 characters: the default 78 folds a long Subject right after "Subject:", which
# some readers (Python's own parser among them) show with a leading space.
POLICY = policy.SMTP.clone(max_line_length=998)


def subject(event: Event) -> str:
    where = f" {event.where}" if event.where else ""
    severity = "RECOVERED" if event.recovery else event.severity.upper()
    line = " ".join(f"[qrm] {severity} {event.kind}{where}: {event.summary}".split())
    return line if len(line) <= MAX_SUBJECT else line[: MAX_SUBJECT - 1] + "…"


def message(target: Target, event: Event, delivery_id: str) -> EmailMessage:
    """The email of one event to the target's recipients."""
    mail = EmailMessage(policy=POLICY)
    mail["From"] = target.sender
    mail["To"] = ", ".join(target.to)
    mail["Subject"] = subject(event)
    mail["Date"] = formatdate(usegmt=True)
    mail["Message-ID"] = make_msgid(idstring=delivery_id, domain="qrm.invalid")
    mail["Auto-Submitted"] = "auto-generated"  # RFC 3834: vacation responders do not answer it
    mail["X-Qrm-Event"] = event.kind
    mail.set_content(text(event) + "\n", cte="quoted-printable")  # 7-bit safe: no need of the server's 8BITMIME
    return mail


def tls_context(target: Target) -> ssl.SSLContext:
    """The system's CA store, or only the notifier's CA file; the server's name is always checked."""
    return ssl.create_default_context(cafile=target.tls_ca_file or None)


def _reply(code: int, message: str, target: Target) -> str:
    said = masked(" ".join(message.split()), target.secret_values())
    if len(said) > MAX_REPLY:
        said = said[: MAX_REPLY - 1] + "…"
    return f"{code} {said}".strip()


def _by_code(code: int, what: str) -> Outcome:
    return Outcome("retry" if 400 <= code < 500 else "failed", what)


async def _deliver(target: Target, mail: EmailMessage, where: str, timeout: float) -> Outcome:
    import aiosmtplib
    implicit = target.smtp_port == IMPLICIT_TLS_PORT
    try:
        context = tls_context(target)
    except (OSError, ssl.SSLError) as exc:
        return Outcome("failed", f"tls_ca_file {target.tls_ca_file} is not a readable PEM file "
                                 f"({getattr(exc, 'strerror', None) or type(exc).__name__})")
    client = aiosmtplib.SMTP(hostname=target.smtp_host, port=target.smtp_port, timeout=timeout,
                             use_tls=implicit, start_tls=False, tls_context=context if implicit else None)
    await client.connect()
    try:
        await client.ehlo()
        if target.starttls and not implicit:
            if not client.supports_extension("starttls"):
                return Outcome("failed", f"{where} does not offer STARTTLS; nothing sent (starttls: true refuses "
                                         "to send credentials or mail in clear)")
            await client.starttls(tls_context=context)
        if target.username:
            await client.login(target.username, target.password)
        errors, _ = await client.sendmail(_address(target.sender), list(target.to), mail.as_bytes())
        if errors:  # some recipients refused, the others got it: the delivery is done, say who did not
            refused = ", ".join(f"{rcpt} ({_reply(code, said, target)})" for rcpt, (code, said) in errors.items())
            return Outcome("delivered", f"{where} accepted the message; refused: {refused}")
        return Outcome("delivered", f"{where} accepted the message for {len(target.to)} recipient(s)")
    finally:
        try:
            await client.quit()
        except (aiosmtplib.SMTPException, OSError):
            client.close()


def _address(sender: str) -> str:
    """The envelope sender of a From like 'qrm <ops@example.com>'."""
    return parseaddr(sender)[1] or sender


async def send(target: Target, event: Event, delivery_id: str, timeout: float) -> Outcome:
    """Send the event's email through the target's SMTP server; never raises."""
    where = f"smtp://{target.smtp_host}:{target.smtp_port}"
    if not target.smtp_host or not target.sender or not target.to:
        return Outcome("failed", "the email notifier needs smtp_host, sender and to")
    try:
        mail = message(target, event, delivery_id)
    except (ValueError, TypeError) as exc:
        return Outcome("failed", f"the email cannot be built: {type(exc).__name__}")
    return await never_raising(_mapped(target, mail, where, timeout), where)


async def _mapped(target: Target, mail: EmailMessage, where: str, timeout: float) -> Outcome:
    """_deliver, its SMTP, TLS and socket failures each the Outcome they mean."""
    # imported at the first email: 50 ms every other qrm command (which may emit events) need not pay
    import aiosmtplib

    try:
        return await _deliver(target, mail, where, timeout)
    except aiosmtplib.SMTPAuthenticationError as exc:
        said = _reply(exc.code, exc.message, target)
        return Outcome("failed", f"{where} refused the login of {target.username}: {said}")
    except aiosmtplib.SMTPRecipientsRefused as exc:
        codes = [refused.code for refused in exc.recipients]
        said = "; ".join(f"{r.recipient}: {_reply(r.code, r.message, target)}" for r in exc.recipients)
        return Outcome("retry" if all(400 <= code < 500 for code in codes) else "failed",
                       f"{where} refused every recipient: {said}")
    except (aiosmtplib.SMTPConnectTimeoutError, aiosmtplib.SMTPReadTimeoutError, TimeoutError):
        return Outcome("retry", f"{where} did not answer within {timeout:g} s")
    except aiosmtplib.SMTPConnectError as exc:
        cause = exc.__cause__
        detail = getattr(cause, "strerror", None) or (type(cause).__name__ if cause else "connection failed")
        if isinstance(cause, ssl.SSLCertVerificationError):
            return Outcome("failed", f"{where}: the server's certificate does not verify "
                                     f"({cause.verify_message or 'untrusted'})")
        return Outcome("retry", f"cannot connect to {where} ({detail})")
    except aiosmtplib.SMTPServerDisconnected:
        return Outcome("retry", f"{where} closed the connection")
    except aiosmtplib.SMTPResponseException as exc:  # HELO, MAIL, DATA... answered 4xx or 5xx
        return _by_code(exc.code, f"{where} answered {_reply(exc.code, exc.message, target)}")
    except ssl.SSLCertVerificationError as exc:
        return Outcome("failed", f"{where}: the server's certificate does not verify "
                                 f"({exc.verify_message or 'untrusted'})")
    except ssl.SSLError as exc:
        return Outcome("failed", f"{where}: TLS failed ({exc.reason or type(exc).__name__})")
    except (aiosmtplib.SMTPException, OSError) as exc:
        return Outcome("retry", f"{where}: {type(exc).__name__}")
