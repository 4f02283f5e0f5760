"""The open-files budget of a health round (probes.open_files_for), in a child process whose limits a test
sets: the soft limit is raised towards the hard one when a round needs it, and the round never plans on
more sockets than the hard limit leaves."""

from __future__ import annotations

import subprocess
import sys

import pytest

from reconciler.edges.probes import FD_RESERVE
from tests.support.paths import REPO

CHILD = """
import resource, sys
from reconciler.edges import probes
soft, hard = int(sys.argv[1]), int(sys.argv[2])
resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
budget = probes.open_files_for(int(sys.argv[3]))
print(budget, resource.getrlimit(resource.RLIMIT_NOFILE)[0])
"""


def hard_limit() -> int:
    import resource

    return int(resource.getrlimit(resource.RLIMIT_NOFILE)[1])


@pytest.mark.parametrize(("soft", "hard", "wanted", "budget", "soft_after"), [
    (256, 4096, 1000, 1000, 1000 + FD_RESERVE),  # raised to what the round needs
    (4096, 4096, 1000, 1000, 4096),  # enough already: left alone
    (256, 600, 1000, 600 - FD_RESERVE, 600),  # raised to the hard limit, and the round fits under it
    (256, 4096, 10, 10, 256),  # a small round needs nothing
], ids=["raised", "enough", "capped-by-hard", "small-round"])
def test_the_round_gets_the_sockets_the_limits_allow(soft: int, hard: int, wanted: int, budget: int,
                                                     soft_after: int) -> None:
    if hard > hard_limit():
        pytest.skip(f"this machine's hard limit of open files is {hard_limit()}")
    done = subprocess.run([sys.executable, "-c", CHILD, str(soft), str(hard), str(wanted)], capture_output=True,
                          text=True, cwd=REPO, env={"PYTHONPATH": str(REPO)}, check=True)
    assert [int(x) for x in done.stdout.split()] == [budget, soft_after]
