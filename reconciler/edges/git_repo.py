"""What git knows about the workspace, and the report commits qrm makes (the git edge).

Commits go through GitPython's wrapper of the git command line (PERF-NOTES: `repo.git.add` +
`repo.git.commit` 45 ms, against 378 ms for GitPython's pure-Python index on a large repository).
GitPython is imported only by the functions that commit, fetch or push, so plan and apply do not
pay its import. qrm never forces a push and never rewrites a commit that is not its own.
"""

from __future__ import annotations

import logging
import os
import re
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from reconciler.core.errors import QrmError
from reconciler.core.summary import REPORT_TRAILER, WRITE_TRAILER

if TYPE_CHECKING:
    import git

DEFAULT_AUTHOR = ("qrm", "qrm@localhost")
log = logging.getLogger(__name__)
INDEX_LOCK_RETRIES = 10
RECONCILED_PATHS = ("manifests", "secrets.enc", "qrm.yaml")  # what a reconcile reads: it must match HEAD to commit


def head_revision(root: Path) -> str | None:
    """The commit the workspace is at, with "+dirty" when manifests/, secrets.enc or qrm.yaml differ from it;
    None outside git."""
    try:
        head = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True,
                              timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if head.returncode != 0:
        return None
    revision = head.stdout.strip()
    status = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--", *RECONCILED_PATHS],
                            capture_output=True, text=True, timeout=30, check=False)
    return revision + ("+dirty" if status.stdout.strip() else "")


def remote_identity(root: Path) -> str | None:
    """A workspace name from its git remote: git@github.com:acme/fleet.git -> github.com/acme/fleet."""
    try:
        found = subprocess.run(["git", "-C", str(root), "config", "--get", "remote.origin.url"],
                               capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return identity_from_url(found.stdout.strip()) if found.returncode == 0 else None


def identity_from_url(url: str) -> str | None:
    if not url:
        return None
    text = re.sub(r"^[a-z+]+://", "", url.strip())  # scheme
    text = re.sub(r"^[^@/]+@", "", text)  # user (and password) before the host
    text = re.sub(r"^([^/:]+):(?!\d+/)", r"\1/", text)  # scp-like host:path (not host:port/)
    text = re.sub(r":\d+/", "/", text, count=1)  # a port
    text = text.removesuffix("/").removesuffix(".git").strip("/")
    return text or None


class GitError(QrmError):
    """A git command failed; the message says which and why."""


def _repo(root: Path) -> git.Repo:
    import git

    try:
        repo = git.Repo(root, search_parent_directories=True)  # a workspace may be a folder of a larger repository
        repo.qrm_root = root  # type: ignore[attr-defined]  # where _run runs git: paths are relative to the workspace
        return repo
    except (git.InvalidGitRepositoryError, git.NoSuchPathError):
        raise GitError(f"{root} is not a git repository (--commit and watch --pull need one)") from None


def is_repository(root: Path) -> bool:
    """Whether `root` is in a git repository (its top folder, or a folder of one)."""
    return (root / ".git").exists() or toplevel(root) is not None


def toplevel(root: Path) -> Path | None:
    """The top folder of the git repository `root` is in (root itself, or a parent); None outside git."""
    try:
        found = subprocess.run(["git", "-C", str(root), "rev-parse", "--show-toplevel"], capture_output=True,
                               text=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return Path(found.stdout.strip()) if found.returncode == 0 and found.stdout.strip() else None


def ensure_repository(root: Path) -> tuple[Path, bool]:
    """The repository `root` is in (its top folder), made with `git init` when there is none; and
    whether it was made now."""
    import git

    top = toplevel(root)
    if top is not None:
        return top, False
    try:
        git.Repo.init(root)
    except git.GitCommandError as exc:
        raise GitError(f"git init {root} failed: {(exc.stderr or str(exc)).strip()}") from None
    return root, True


def set_config(root: Path, settings: dict[str, str]) -> list[str]:
    """Set each key of this clone's git config (.git/config) that is not already the value; the keys set."""
    changed = []
    for key, value in settings.items():
        current = subprocess.run(["git", "-C", str(root), "config", "--local", "--get", key], capture_output=True,
                                 text=True, timeout=10, check=False)
        if current.returncode == 0 and current.stdout.rstrip("\n") == value:
            continue
        done = subprocess.run(["git", "-C", str(root), "config", "--local", key, value], capture_output=True,
                              text=True, timeout=10, check=False)
        if done.returncode != 0:
            raise GitError(f"git config {key} failed: {done.stderr.strip()}")
        changed.append(key)
    return changed


def _run(repo: git.Repo, *args: str, env: dict[str, str] | None = None) -> str:
    """One git command; retried while another git process (a person's commit) holds the index lock."""
    import git

    for attempt in range(INDEX_LOCK_RETRIES + 1):
        try:
            where = ["-C", str(getattr(repo, "qrm_root", repo.working_dir))]
            return str(repo.git.execute(["git", *where, *args], env=env, with_extended_output=False,
                                        strip_newline_in_stdout=True))
        except git.GitCommandError as exc:
            detail = (exc.stderr or exc.stdout or "").strip().replace("\n", " ")
            if "index.lock" in detail and attempt < INDEX_LOCK_RETRIES:
                time.sleep(0.1 * (attempt + 1))
                continue
            raise GitError(f"git {' '.join(args[:2])} failed: {detail or exc}") from None
    raise AssertionError("unreachable")


def wait_for_index_lock(root: Path, timeout: float = 10.0) -> bool:
    """Wait while a git command (one a killed qrm left running, a person's commit) holds the index lock;
    False when it is still held after `timeout` seconds."""
    try:
        found = subprocess.run(["git", "-C", str(root), "rev-parse", "--absolute-git-dir"], capture_output=True,
                               text=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return True
    if found.returncode != 0:
        return True
    lock = Path(found.stdout.strip()) / "index.lock"
    deadline = time.monotonic() + timeout
    while lock.exists():
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)
    return True


def unstage(root: Path, paths: list[str]) -> None:
    """The index of `paths` back to HEAD's (what a `git add` without its commit staged), the files untouched."""
    repo = _repo(root)
    _run(repo, "reset", "--quiet", "--", *paths)


def restore(root: Path, paths: list[str]) -> None:
    """`paths` (tracked files) back to HEAD's content, index and working tree."""
    if paths:
        _run(_repo(root), "checkout", "--quiet", "HEAD", "--", *paths)


def changed_paths(root: Path, pathspecs: list[str]) -> list[str]:
    """Paths under `pathspecs` that differ from HEAD (modified, new or deleted), ignored files excluded."""
    repo = _repo(root)
    out = _run(repo, "status", "--porcelain=v1", "-z", "--untracked-files=all", "--no-renames", "--", *pathspecs)
    prefix = _run(repo, "rev-parse", "--show-prefix")  # porcelain paths are relative to the repository's top
    paths = []
    for entry in out.split("\0"):
        if len(entry) > 3:
            paths.append(entry[3:].removeprefix(prefix))
    return sorted(set(paths))


def text_at_head(root: Path, path: str) -> str | None:
    """The committed text of a file at HEAD, None when HEAD has no such file (or there is no HEAD)."""
    try:
        shown = subprocess.run(["git", "-C", str(root), "show", f"HEAD:./{path}"], capture_output=True, timeout=30,
                               check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return shown.stdout.decode("utf-8", "replace") if shown.returncode == 0 else None


def _identity(repo: git.Repo, author: tuple[str, str] | None) -> dict[str, str]:
    """Author and committer: qrm.yaml's commit_author, else git's configured user, else qrm <qrm@localhost>."""
    env = dict(os.environ)
    if author is None:
        reader = repo.config_reader()
        name = reader.get_value("user", "name", "") or env.get("GIT_AUTHOR_NAME") or ""
        email = reader.get_value("user", "email", "") or env.get("GIT_AUTHOR_EMAIL") or ""
        if name and email:
            return env
        author = DEFAULT_AUTHOR
    env.update({"GIT_AUTHOR_NAME": author[0], "GIT_AUTHOR_EMAIL": author[1],
                "GIT_COMMITTER_NAME": author[0], "GIT_COMMITTER_EMAIL": author[1]})
    return env


def commit_paths(root: Path, paths: list[str], message: str, author: tuple[str, str] | None = None) -> str | None:
    """Commit exactly `paths` (added, changed or deleted) with `message`; other staged work is left alone.

    Returns the new commit's sha, or None when the paths hold no change.
    """
    if not paths:
        return None
    repo = _repo(root)
    env = _identity(repo, author)
    _run(repo, "add", "--all", "--", *paths)
    staged = _run(repo, "diff", "--cached", "--name-only", "-z", "--", *paths)
    if not staged.strip("\0"):
        return None
    # `--only` with paths: commit these paths as they are now, whatever else is staged.
    try:
        _run(repo, "commit", "--quiet", "--no-verify", "--only", "-m", message, "--", *paths, env=env)
    except GitError as exc:
        if "nothing to commit" in str(exc) or "no changes added" in str(exc):
            return None  # someone's own commit took these files in between (e.g. `git commit -a`)
        raise
    return _run(repo, "rev-parse", "HEAD")


# --- the upstream: fetch, fast-forward, push -----------------------------------------------------

@dataclass
class PullResult:
    before: str
    after: str
    commits: list[tuple[str, bool]] = field(default_factory=list)  # (sha, is a qrm report commit), oldest first
    rebased: int = 0  # own report commits put back on top of the upstream

    @property
    def changed(self) -> bool:
        return self.before != self.after

    @property
    def foreign(self) -> list[str]:
        """The new commits that are not qrm report commits: those a watcher reacts to."""
        return [sha for sha, own in self.commits if not own]


def _upstream(repo: git.Repo) -> tuple[str, str]:
    """The remote and branch HEAD tracks (origin/<current branch> when none is configured)."""
    branch = _run(repo, "rev-parse", "--abbrev-ref", "HEAD")
    if branch == "HEAD":
        raise GitError("HEAD is detached; watch --pull needs a branch that tracks a remote")
    remote = repo.git.config("--get", f"branch.{branch}.remote", with_exceptions=False) or "origin"
    merge = repo.git.config("--get", f"branch.{branch}.merge", with_exceptions=False) or f"refs/heads/{branch}"
    return str(remote), str(merge).removeprefix("refs/heads/")


def watched_branch(root: Path) -> str | None:
    """The upstream branch HEAD tracks (what `watch --pull` fetches); None outside a repository or when detached."""
    try:
        return _upstream(_repo(root))[1]
    except QrmError:
        return None


def _report_commits(repo: git.Repo, revisions: str) -> list[tuple[str, bool]]:
    out = _run(repo, "log", "--reverse", "--format=%H%x00%B%x1e", revisions)
    commits = []
    for record in out.split("\x1e"):
        sha, _, body = record.strip("\n").partition("\0")
        if sha:
            commits.append((sha, REPORT_TRAILER in body.splitlines()))
    return commits


def _write_commits(repo: git.Repo, revisions: str) -> set[str]:
    """The commits of `revisions` that qrm made for a caller (flows/writes: trailer Qrm-Write)."""
    out = _run(repo, "log", "--format=%H%x00%B%x1e", revisions)
    found = set()
    for record in out.split("\x1e"):
        sha, _, body = record.strip("\n").partition("\0")
        if sha and any(line.startswith(WRITE_TRAILER) for line in body.splitlines()):
            found.add(sha)
    return found


def fetch_fast_forward(root: Path, author: tuple[str, str] | None = None) -> PullResult:
    """Fetch the upstream and bring HEAD up to it.

    A fast-forward when HEAD is behind; when HEAD also has commits of its own that are all qrm
    report commits, those are rebased on top of the upstream (they will be pushed later). Any
    other divergence is an error: qrm never rewrites a commit it did not make.
    """
    repo = _repo(root)
    remote, branch = _upstream(repo)
    _run(repo, "fetch", "--quiet", remote, branch)
    before = _run(repo, "rev-parse", "HEAD")
    upstream = _run(repo, "rev-parse", "FETCH_HEAD")
    incoming = _report_commits(repo, f"HEAD..{upstream}")
    if not incoming:
        return PullResult(before, before)
    ours = _report_commits(repo, f"{upstream}..HEAD")
    if not ours:
        _run(repo, "merge", "--ff-only", "--quiet", upstream)
        return PullResult(before, _run(repo, "rev-parse", "HEAD"), incoming)
    writes = _write_commits(repo, f"{upstream}..HEAD")
    rebased = _rebase_own_commits(repo, upstream, ours, _identity(repo, author), writes)
    return PullResult(before, _run(repo, "rev-parse", "HEAD"), incoming, rebased=rebased)


def _rebase_own_commits(repo: git.Repo, upstream: str, ours: list[tuple[str, bool]], env: dict[str, str],
                        writes: set[str] | None = None) -> int:
    """Put qrm's unpushed commits (report commits, and the manifest commits of `writes`) on top of
    `upstream`. On a conflict report commits are dropped (the next reconcile writes the reports again)
    rather than guess a merge of generated files; a write's commit is never dropped: the rebase is
    undone and the conflict is an error for the write to answer."""
    writes = writes or set()
    if not all(own or sha in writes for sha, own in ours):
        raise GitError("HEAD has commits that are not qrm report commits (nor qrm's writes) and are not on the "
                       "upstream; qrm only fast-forwards: push or reset them by hand")
    try:
        _run(repo, "rebase", "--quiet", upstream, env={**env, "GIT_EDITOR": "true"})
        return len(ours)
    except GitError as exc:
        if writes:
            conflicted = repo.git.diff("--name-only", "--diff-filter=U", with_exceptions=False).split()
            repo.git.rebase("--abort", with_exceptions=False)
            # the files, not git's hint lines: the reason is one line a client reads
            raise GitError("the upstream changed the same file(s) since: "
                           f"{', '.join(conflicted) or 'see git status'}; qrm's write cannot be put on top of it") \
                from None
        log.warning("could not rebase %d report commit(s) onto the upstream (%s); they are dropped and the "
                    "next reconcile writes the reports again", len(ours), exc)
        repo.git.rebase("--abort", with_exceptions=False)
        _run(repo, "reset", "--quiet", "--keep", upstream)
        return 0


@dataclass
class PushResult:
    pushed: bool
    attempts: int
    rebased: int = 0


def push(root: Path, attempts: int = 3, author: tuple[str, str] | None = None) -> PushResult:
    """Push HEAD to its upstream; when rejected (the upstream moved on), rebase qrm's own report
    commits on top of it and try again. Never forced."""
    repo = _repo(root)
    remote, branch = _upstream(repo)
    tracking = f"{remote}/{branch}"
    if _has_ref(repo, tracking) and not _run(repo, "rev-list", "-1", f"{tracking}..HEAD"):
        return PushResult(pushed=False, attempts=0)  # nothing of ours to push
    rebased = 0
    for attempt in range(1, attempts + 1):
        try:
            _run(repo, "push", "--quiet", remote, f"HEAD:refs/heads/{branch}")
            return PushResult(pushed=True, attempts=attempt, rebased=rebased)
        except GitError as exc:
            if attempt == attempts or ("rejected" not in str(exc) and "fetch first" not in str(exc)):
                raise
            pulled = fetch_fast_forward(root, author)
            rebased += pulled.rebased
    raise AssertionError("unreachable")


def drop_last_commit(root: Path, sha: str) -> bool:
    """Take commit `sha` back out of the branch when it is HEAD, or HEAD is `sha` rebased (`git reset --keep
    HEAD~1`: its files go back, other work in the checkout is kept). For a commit that never left this clone
    (a write whose push failed); False when HEAD is another commit."""
    repo = _repo(root)
    # a push that rebased it onto the upstream before failing left it as HEAD under another sha, same message
    if _run(repo, "rev-parse", "HEAD") != sha and _run(repo, "log", "-1", "--format=%B", "HEAD") != _run(
            repo, "log", "-1", "--format=%B", sha):
        return False
    _run(repo, "reset", "--quiet", "--keep", "HEAD~1")
    return True


def _has_ref(repo: git.Repo, ref: str) -> bool:
    return bool(repo.git.rev_parse("--verify", "--quiet", ref, with_exceptions=False))


def paths_changed_between(root: Path, before: str, after: str) -> list[str]:
    repo = _repo(root)
    out = _run(repo, "diff", "--name-only", "--relative", "--no-renames", "-z", before, after)
    return sorted(p for p in out.split("\0") if p)


def last_change_revision(root: Path) -> str | None:
    """The newest commit that is not a qrm report commit: the revision a reconcile answers to
    (a report commit must not change what the next report says, or watch would loop)."""
    try:
        found = subprocess.run(["git", "-C", str(root), "log", "-1", "--format=%H", "--invert-grep",
                                f"--grep=^{REPORT_TRAILER}$", "HEAD"], capture_output=True, text=True, timeout=30,
                               check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return found.stdout.strip() or None if found.returncode == 0 else None


# --- what the dashboard's history shows ----------------------------------------------------------

@dataclass(frozen=True)
class LoggedCommit:
    sha: str
    author: str
    when: str  # ISO 8601, the author date
    subject: str


def _log(root: Path, *args: str) -> list[LoggedCommit] | None:
    try:
        found = subprocess.run(["git", "-C", str(root), "log", "--format=%H%x00%an%x00%aI%x00%s%x1e", *args],
                               capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if found.returncode != 0:
        return None
    commits = []
    for record in found.stdout.split("\x1e"):
        parts = record.strip("\n").split("\0")
        if len(parts) == 4:
            commits.append(LoggedCommit(*parts))
    return commits


def report_log(root: Path, limit: int = 50) -> list[LoggedCommit] | None:
    """The newest `limit` report commits qrm made (trailer Qrm-Report) reachable from HEAD; None outside git
    or before the first commit."""
    return _log(root, "-n", str(limit), f"--grep=^{REPORT_TRAILER}$", "HEAD")


def commit_authors(root: Path, shas: list[str]) -> dict[str, str]:
    """The author's name of each commit of `shas` this repository has (unknown ones are left out)."""
    out = {}
    for sha in dict.fromkeys(shas):
        found = _log(root, "-n", "1", "--no-walk", sha, "--")
        if found:
            out[sha] = found[0].author
    return out


def commit_author(root: Path, revision: str) -> str | None:
    """Who made `revision` (a sha, "+dirty" allowed): its author's name, and the Qrm-Caller of a write
    commit ("qrm serve, requested by alice"); None outside git or for a revision git does not know."""
    sha = revision.removesuffix("+dirty")
    if not re.fullmatch(r"[0-9a-f]{4,64}", sha):
        return None
    try:
        found = subprocess.run(["git", "-C", str(root), "log", "-1", "--format=%an%x00%(trailers:key=Qrm-Caller,"
                                "valueonly,separator=%x2c)", sha, "--"], capture_output=True, text=True, timeout=30,
                               check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if found.returncode != 0 or not found.stdout.strip():
        return None
    author, _, caller = found.stdout.strip().partition("\0")
    return f"{author}, requested by {caller.strip()}" if caller.strip() else author
