"""Benchmark: `qrm watch --apply`, from a manifest commit to the report commit (median over 20 changes).

Run:  .venv/bin/python bench/watch.py [--services N] [--changes N] [--pull-interval S] [--skip-pull]
Builds a git workspace in a temp folder with N standalone Services, starts the watcher as a
subprocess (as a user would), then changes one service's manifest at a time and commits it.
Latency runs from the `git commit` returning to the report commit (trailer `Qrm-Report: true`,
a child of that manifest commit) appearing on the branch, seen by polling the ref every 5 ms;
the watcher's own line for that reconcile gives its step timings. Overhead = latency - the
"apply" step (plan + apply). Target: overhead under 1 s. Before measuring, one warm-up change is
made right after the watcher's "reconcile (start)" line, and repeated until it wakes the watcher
(the watcher starts watching files only after that first reconcile: a change in between is lost).
Second scenario (--pull): a bare origin, the watcher in one clone (`--pull --interval S`), a
developer clone that pushes; latency runs from `git push` returning until the report commit is
on the origin. The watcher only looks at the origin once per interval, so the interval bounds it.
Each watcher gets SIGTERM at the end and must exit 0 within 10 s.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

FILES = 10
TRAILER = "Qrm-Report: true"
POLL = 0.005
TIMEOUT = 60.0
ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
GIT_ENV = {**ENV, "GIT_AUTHOR_NAME": "bench", "GIT_AUTHOR_EMAIL": "bench@localhost",
           "GIT_COMMITTER_NAME": "bench", "GIT_COMMITTER_EMAIL": "bench@localhost",
           "GIT_CONFIG_NOSYSTEM": "1"}
LINE = re.compile(r"reconcile \((?P<trigger>[^)]*)\): (?P<rest>.*) in (?P<total>[\d.]+) s(?: \((?P<steps>.*)\))?$")


def git(cwd: Path, *args: str) -> str:
    done = subprocess.run(["git", "-C", str(cwd), *args], capture_output=True, text=True, env=GIT_ENV, check=False)
    if done.returncode != 0:
        raise SystemExit(f"git {' '.join(args)} in {cwd} failed: {done.stderr.strip()}")
    return done.stdout.strip()


def write_manifests(root: Path, services: int, tags: dict[int, str] | None = None) -> None:
    manifests = root / "manifests"
    manifests.mkdir(parents=True, exist_ok=True)
    for f in range(FILES):
        write_file(root, services, f, tags or {})


def write_file(root: Path, services: int, f: int, tags: dict[int, str]) -> Path:
    docs = []
    for i in range(f, services, FILES):
        docs.append(f"kind: Service\nname: svc-{i:04d}\nhost: localhost\ntype: app\nprotocol: http\n"
                    f"tags: [bench, {tags.get(i, 'v0')}]\n")
    path = root / "manifests" / f"services-{f:02d}.yaml"
    path.write_text("---\n".join(docs))
    return path


def init_workspace(root: Path, services: int) -> None:
    root.mkdir(parents=True)
    git(root, "init", "-q", "-b", "main")
    (root / "qrm.yaml").write_text("name: bench\n")
    (root / ".gitignore").write_text(".qrm/\ngenerated/**/.env\n")
    write_manifests(root, services)
    git(root, "add", "-A")
    git(root, "commit", "-qm", "bench: workspace")


def read_ref(git_dir: Path, ref: str = "refs/heads/main") -> str:
    """The sha a branch points at, read from the loose ref (no process): cheap enough to poll."""
    try:
        return (git_dir / ref).read_text().strip()
    except FileNotFoundError:
        return git(git_dir, "rev-parse", ref)


@dataclass
class Watcher:
    """`qrm watch` as a subprocess; its stdout lines, each with the time it was read."""

    proc: subprocess.Popen[str]
    lines: list[tuple[float, str]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    cond: threading.Condition = field(default_factory=threading.Condition)

    @classmethod
    def start(cls, root: Path, *args: str) -> Watcher:
        proc = subprocess.Popen([sys.executable, "-m", "reconciler", "-C", str(root), "watch", *args],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV, bufsize=1)
        watcher = cls(proc)
        threading.Thread(target=watcher._read, daemon=True).start()
        threading.Thread(target=watcher._read_errors, daemon=True).start()
        return watcher

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            with self.cond:
                self.lines.append((time.perf_counter(), line.rstrip("\n")))
                self.cond.notify_all()

    def _read_errors(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.errors.append(line.rstrip("\n"))

    def wait_line(self, pattern: str, since: int = 0, timeout: float = TIMEOUT) -> tuple[float, str]:
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                for stamp, line in self.lines[since:]:
                    if re.search(pattern, line):
                        return stamp, line
                left = deadline - time.monotonic()
                if left <= 0 or self.proc.poll() is not None:
                    tail = "\n".join(line for _, line in self.lines[-5:]) + "\n" + "\n".join(self.errors[-10:])
                    raise SystemExit(f"no watcher line matching {pattern!r} within {timeout:g} s:\n{tail}")
                self.cond.wait(min(left, 0.5))

    def stop(self) -> tuple[int | None, float]:
        """SIGTERM; the exit code (None when still running after 10 s) and how long it took."""
        start = time.perf_counter()
        self.proc.send_signal(signal.SIGTERM)
        try:
            code: int | None = self.proc.wait(10)
        except subprocess.TimeoutExpired:
            code = None
            self.proc.kill()
            self.proc.wait()
        return code, time.perf_counter() - start


def wait_report_commit(git_dir: Path, repo: Path, after: str, timeout: float = TIMEOUT) -> tuple[float, str]:
    """Poll the branch until it holds a report commit that descends from `after`; (time seen, sha)."""
    deadline = time.monotonic() + timeout
    checked = {after}
    while time.monotonic() < deadline:
        sha = read_ref(git_dir)
        if sha not in checked:
            seen = time.perf_counter()
            checked.add(sha)
            is_report = TRAILER in git(repo, "log", "-1", "--format=%B", sha).splitlines()
            descends = subprocess.run(["git", "-C", str(repo), "merge-base", "--is-ancestor", after, sha],
                                      env=GIT_ENV, check=False).returncode == 0
            if is_report and descends:
                return seen, sha
        time.sleep(POLL)
    raise SystemExit(f"no report commit after {after[:12]} in {repo} within {timeout:g} s")


def parse_line(line: str) -> dict[str, float]:
    match = LINE.search(line)
    if match is None:
        return {}
    steps = {"total": float(match["total"])}
    for part in (match["steps"] or "").split(", "):
        name, _, value = part.partition(" ")
        if value.endswith("s"):
            steps[name] = float(value[:-1])
    return steps


@dataclass
class Sample:
    latency: float
    steps: dict[str, float]
    line: str
    noticed: float | None = None  # --pull: from the push to the watcher's "pulled" line


@dataclass
class Checks:
    """Odd things seen on the way (counts over the changes)."""

    extra_commits: int = 0  # commits on the branch besides the change and its one report commit
    stale_revision: int = 0  # report commit whose reports/summary.md names another revision
    swept: int = 0  # manifest commits that also took files under reports/ or generated/
    no_line: int = 0  # report commit with no watcher line naming it
    intervals: int | None = None  # interval reconciles seen (--pull run)
    interval_commits: int = 0
    triggers: dict[str, int] | None = None  # reconciles of the --pull run by trigger
    missed_at_start: int = 0  # warm-up changes made right after "reconcile (start)" that woke nothing

    def notes(self) -> list[str]:
        return [f"{n} change(s): {what}" for n, what in [
            (self.extra_commits, "more than one report commit between changes"),
            (self.stale_revision, "reports/summary.md of the report commit does not name the manifest commit"),
            (self.swept, "the manifest commit also took files under reports/ or generated/"),
            (self.no_line, "no watcher line named the report commit"),
            (self.missed_at_start, "warm-up change committed right after the 'reconcile (start)' line woke "
                                   "no reconcile within 3 s (not counted; the watcher was not watching yet)"),
        ] if n]


def pick(index: int, services: int) -> int:
    return (index * 37) % services


def change_and_commit(root: Path, services: int, tags: dict[int, str], k: int) -> str:
    svc = pick(k, services)
    tags[svc] = f"v{k + 1}"
    write_file(root, services, svc % FILES, tags)
    git(root, "commit", "-qam", f"bench: retag svc-{svc:04d} (change {k + 1})")
    return git(root, "rev-parse", "HEAD")


def warm_up(root: Path, services: int, tags: dict[int, str], watcher: Watcher) -> int:
    """Change a manifest until a change wakes the watcher; how many changes it missed. The watcher
    starts watching only after its first reconcile, so a change right after that line can be lost."""
    for missed in range(5):
        mark = len(watcher.lines)
        change_and_commit(root, services, tags, 1000 + missed)
        try:
            watcher.wait_line(r"reconcile \(changed: .*committed", mark, timeout=3)
            return missed
        except SystemExit:
            continue
    raise SystemExit("the watcher never answered a manifest change")


def check_commits(repo: Path, manifest: str, report: str, checks: Checks) -> None:
    between = git(repo, "rev-list", "--count", f"{manifest}..{report}")
    if between != "1":
        checks.extra_commits += 1
    files = git(repo, "show", "--name-only", "--format=", manifest).splitlines()
    if any(f.startswith(("reports/", "generated/")) for f in files):
        checks.swept += 1
    summary = git(repo, "show", f"{report}:reports/summary.md")
    if manifest[:12] not in summary:
        checks.stale_revision += 1


def line_for(watcher: Watcher, sha: str, since: int) -> str | None:
    try:
        return watcher.wait_line(rf"committed {sha[:12]}\b", since, timeout=5)[1]
    except SystemExit:
        return None


def run_local(base: Path, services: int, changes: int) -> tuple[list[Sample], Checks, tuple[int | None, float], str]:
    root = base / "ws"
    init_workspace(root, services)
    watcher = Watcher.start(root, "--apply", "--interval", "3600")
    _, first = watcher.wait_line(r"reconcile \(start\)", timeout=120)
    samples: list[Sample] = []
    checks = Checks()
    tags: dict[int, str] = {}
    try:
        checks.missed_at_start = warm_up(root, services, tags, watcher)
        for k in range(changes):
            mark = len(watcher.lines)
            manifest = change_and_commit(root, services, tags, k)
            t0 = time.perf_counter()
            t1, report = wait_report_commit(root / ".git", root, manifest)
            line = line_for(watcher, report, mark)
            checks.no_line += line is None
            check_commits(root, manifest, report, checks)
            samples.append(Sample(t1 - t0, parse_line(line or ""), line or ""))
    finally:
        stopped = watcher.stop()
    report_stderr(watcher, "watch --apply")
    return samples, checks, stopped, first


def run_pull(base: Path, services: int, changes: int, interval: float
             ) -> tuple[list[Sample], Checks, tuple[int | None, float], str]:
    origin, dev, clone = base / "origin.git", base / "dev", base / "watcher"
    subprocess.run(["git", "init", "-q", "--bare", "-b", "main", str(origin)], env=GIT_ENV, check=True)
    init_workspace(dev, services)
    git(dev, "remote", "add", "origin", str(origin))
    git(dev, "push", "-q", "-u", "origin", "main")
    subprocess.run(["git", "clone", "-q", str(origin), str(clone)], env=GIT_ENV, check=True)
    watcher = Watcher.start(clone, "--apply", "--pull", "--interval", f"{interval:g}")
    _, first = watcher.wait_line(r"reconcile \(start\)", timeout=120)
    samples: list[Sample] = []
    checks = Checks()
    tags: dict[int, str] = {}
    try:
        for k in range(changes):
            git(dev, "pull", "-q", "--ff-only")
            mark = len(watcher.lines)
            manifest = change_and_commit(dev, services, tags, k)
            for _ in range(5):  # the watcher may push between our pull and our push
                if subprocess.run(["git", "-C", str(dev), "push", "-q", "origin", "main"], env=GIT_ENV,
                                  capture_output=True, check=False).returncode == 0:
                    break
                git(dev, "pull", "-q", "--rebase")
                manifest = git(dev, "rev-parse", "HEAD")
            t0 = time.perf_counter()
            t1, report = wait_report_commit(origin, origin, manifest)
            line = line_for(watcher, report, mark)
            checks.no_line += line is None
            check_commits(origin, manifest, report, checks)
            pulled, _ = watcher.wait_line(rf"^\S+ pulled \w+\.\.{manifest[:12]}", mark, timeout=5)
            samples.append(Sample(t1 - t0, parse_line(line or ""), line or "", pulled - t0))
    finally:
        stopped = watcher.stop()
    report_stderr(watcher, f"watch --apply --pull --interval {interval:g}")
    checks.triggers = {}
    for _, line in watcher.lines:
        found = re.search(r"reconcile \((\w+)", line)
        if found:
            checks.triggers[found[1]] = checks.triggers.get(found[1], 0) + 1
    checks.intervals = sum(1 for _, line in watcher.lines if "reconcile (interval)" in line)
    checks.interval_commits = sum(1 for _, line in watcher.lines
                                  if "reconcile (interval)" in line and "committed" in line)
    return samples, checks, stopped, first


def report_stderr(watcher: Watcher, what: str) -> None:
    odd = [e for e in watcher.errors if not e.startswith("received SIGTERM")]
    if odd:
        print(f"  stderr of {what} ({len(odd)} line(s)), last ones:")
        for e in odd[-5:]:
            print(f"    {e}")


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def table(title: str, label: str, samples: list[Sample], checks: Checks, stopped: tuple[int | None, float],
          first: str) -> None:
    lat = [s.latency for s in samples]
    apply = [s.steps.get("apply", 0.0) for s in samples]
    over = [s.latency - a for s, a in zip(samples, apply, strict=True)]
    med = statistics.median
    print(f"\n{title}: {len(samples)} changes")
    print(f"  first reconcile: {first[20:]}")
    print(f"  {'':<36}{'median':>9}{'p90':>9}{'max':>9}")
    print(f"  {label:<36}{med(lat):>7.3f} s{pct(lat, 0.9):>7.3f} s{max(lat):>7.3f} s")
    noticed = [s.noticed for s in samples if s.noticed is not None]
    if noticed:
        print(f"  {'  of which push -> pulled line':<36}{med(noticed):>7.3f} s{pct(noticed, 0.9):>7.3f} s"
              f"{max(noticed):>7.3f} s")
    print(f"  {'overhead (latency - apply step)':<36}{med(over):>7.3f} s{pct(over, 0.9):>7.3f} s{max(over):>7.3f} s")
    for step in ("total", "load", "apply", "scan", "tests", "commit"):
        values = [s.steps[step] for s in samples if step in s.steps]
        if values:
            label = "reconcile total (watcher's 'in X s')" if step == "total" else f"step {step}"
            if step == "apply":
                label += " (plan + apply)"
            print(f"  {label:<36}{med(values):>7.3f} s{pct(values, 0.9):>7.3f} s{max(values):>7.3f} s")
    print("  (step times are the watcher's own figures, printed to 10 ms)")
    verdict = "met" if med(over) < 1.0 else "MISSED"
    print(f"  target: overhead < 1 s on top of plan+apply: {verdict} ({med(over):.3f} s)")
    code, took = stopped
    print(f"  SIGTERM: exit code {code if code is not None else 'none (killed after 10 s)'} after {took:.2f} s")
    if checks.intervals is not None:
        print(f"  interval reconciles during the run: {checks.intervals} ({checks.interval_commits} committed)")
    if checks.triggers is not None:
        print("  reconciles by trigger: " + ", ".join(f"{k} {v}" for k, v in sorted(checks.triggers.items())))
    for note in checks.notes():
        print(f"  odd: {note}")
    slowest = max(samples, key=lambda s: s.latency)
    print(f"  slowest change's line: {slowest.line[20:]}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--services", type=int, default=200)
    parser.add_argument("--changes", type=int, default=20)
    parser.add_argument("--pull-interval", type=float, default=0.2)
    parser.add_argument("--skip-pull", action="store_true", help="Only the local scenario.")
    args = parser.parse_args()
    base = Path(tempfile.mkdtemp(prefix="qrm-bench-watch-"))
    try:
        subprocess.run([sys.executable, "-m", "reconciler", "--help"], env=ENV, capture_output=True, check=True)
        print(f"qrm watch benchmark: {args.services} services in {FILES} manifest files, {args.changes} changes "
              f"(one service retagged and committed each time)")
        start = time.perf_counter()
        table("watch --apply --interval 3600 (local commits)", "manifest commit -> report commit",
              *run_local(base, args.services, args.changes))
        print(f"  (scenario took {time.perf_counter() - start:.1f} s)")
        if not args.skip_pull:
            start = time.perf_counter()
            result = run_pull(base, args.services, args.changes, args.pull_interval)
            table(f"watch --apply --pull --interval {args.pull_interval:g} (dev push -> report commit on origin;"
                  f" bounded by the interval)", "dev push -> report commit on origin", *result)
            print(f"  (scenario took {time.perf_counter() - start:.1f} s)")
    finally:
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
