"""Where things are, whatever folder a test module is in: the repository's root and tests/fixtures/."""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
FIXTURES = REPO / "tests" / "fixtures"
