"""Which cases are not run where: a case's own `skip:` reason, and writes on a protected environment."""

from __future__ import annotations

import pytest

from reconciler.core.models import TestCase
from reconciler.core.test_results import Target, skip_reason

DEV = Target("dev", "http://127.0.0.1:8000")
PROD = Target("prod", "https://blog.example.com", protected=True)


def case(**fields: object) -> TestCase:
    return TestCase.model_validate({"id": "c", "name": "c", "type": "action", **fields})


@pytest.mark.parametrize(("fields", "target", "reason"), [
    ({}, DEV, None),
    ({}, PROD, None),
    ({"writes": True}, DEV, None),
    ({"writes": True}, PROD, "writes data; environment prod is protected"),
    ({"skip": "datasource 'default' is not declared"}, DEV, "datasource 'default' is not declared"),
    ({"skip": "not yet", "writes": True}, PROD, "not yet"),  # its own reason says more than the rule
], ids=["plain-dev", "plain-prod", "writes-dev", "writes-prod", "own-reason", "own-reason-first"])
def test_skip_reason(fields: dict[str, object], target: Target, reason: str | None) -> None:
    assert skip_reason(case(**fields), target) == reason
