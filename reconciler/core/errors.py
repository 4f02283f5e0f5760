"""The one exception tree of qrm; the CLI turns each into a message and exit code 1, the server into a
JSON error. `unexpected_error` is the one line both faces give for an exception outside the tree."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import PurePath

from reconciler.core.escaping import one_line


@dataclass(frozen=True)
class Problem:
    """One thing wrong with the input, located as precisely as the source allows.

    `path` is the field inside the YAML document (("services", "web", "type")); the
    loader turns (file, document, path) into line and column, which the core cannot know.
    """

    file: str
    line: int | None = None
    column: int | None = None
    message: str = ""
    document: int = field(default=0, compare=False)
    path: tuple[str | int, ...] = field(default=(), compare=False)
    # Another place the message refers to, as (file, document, field path): the loader puts its
    # file:line:column where the message says {see} ("first defined at {see}").
    see: tuple[str, int, tuple[str | int, ...]] | None = field(default=None, compare=False)

    def sort_key(self) -> tuple[str, int, int, str]:
        """File, then position (unlocated problems first), then message."""
        return (self.file, self.line or 0, self.column or 0, self.message)

    @property
    def field_name(self) -> str:
        return ".".join(str(p) for p in self.path)

    def __str__(self) -> str:
        where = self.file
        if self.line is not None:
            where += f":{self.line}"
            if self.column is not None:
                where += f":{self.column}"
        name = f" {self.field_name}:" if self.path else ""
        return f"{where}:{name} {self.message}"


class QrmError(Exception):
    """Anything qrm reports to a user as an error (exit code 1, no traceback)."""


class ManifestError(QrmError):
    """The manifests (or qrm.yaml) are invalid; carries every problem found, not just the first."""

    def __init__(self, problems: list[Problem]):
        self.problems = sorted(problems, key=Problem.sort_key)
        count = len(self.problems)
        super().__init__(f"{count} problem{'s' if count != 1 else ''} found")


class AllocationError(QrmError):
    """Ports cannot be handed out as asked (an exhausted range, a blocking conflict)."""


class RegistryError(QrmError):
    """The registry cannot be opened, upgraded or written."""


class NoRegistryError(RegistryError):
    """A registry database without qrm's tables, opened by a command that must not create them."""


class AllocationRaceError(RegistryError):
    """A port or service name was recorded by someone else between the plan and the write."""


class LockedError(QrmError):
    """Another qrm process holds the workspace lock."""


class StalePlanError(QrmError):
    """A saved plan no longer matches the workspace it was made for."""


class SecretsError(QrmError):
    """secrets.enc cannot be read, decrypted, verified or written; the message never holds a value.
    `entry`: the top-level key of secrets.enc at fault, when there is one (for its line)."""

    def __init__(self, message: str, *, entry: str | None = None):
        super().__init__(message)
        self.entry = entry


class RequestError(QrmError):
    """A write request (`qrm ports allocate`, the API's POST) is refused as asked; nothing was written.
    `field`: the request's field at fault (service_name, port_type, host, ...), when one is."""

    def __init__(self, message: str, *, field: str | None = None):
        super().__init__(message)
        self.field = field


class NotFoundError(RequestError):
    """The request names something that does not exist (a service to release)."""


class ConflictError(RequestError):
    """The request clashes with what exists (a service of that name on another host; an Idempotency-Key
    reused for another request)."""


def unexpected_error(exc: BaseException, traceback_hint: str = "QRM_DEBUG=1 shows the traceback") -> str:
    """One line for an exception no layer turned into a QrmError (the CLI's last line of defence, and
    the watcher's when a reconcile fails).

    An operating-system error names the file and says what the system said (a full disk, a
    permission). Anything else is a bug: its type and where it was raised, but not its message,
    which could quote data read from a secret; `traceback_hint` says where the whole traceback is."""
    if isinstance(exc, OSError):
        where = f"{exc.filename}: " if exc.filename is not None else ""
        return one_line(f"{where}{exc.strerror or type(exc).__name__}")
    frame = exc.__traceback__
    while frame is not None and frame.tb_next is not None:
        frame = frame.tb_next
    place = ""
    if frame is not None:
        code = frame.tb_frame.f_code
        place = f" in {PurePath(code.co_filename).name}:{frame.tb_lineno} ({code.co_name})"
    return f"unexpected {type(exc).__name__}{place}; this is a bug in qrm, please report it ({traceback_hint})"
