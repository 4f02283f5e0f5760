"""edges/settings_file: adding and removing a token in qrm.yaml keeps everything else as written, comments
included; each token is one line."""

from __future__ import annotations

import pytest

from reconciler.core.errors import QrmError
from reconciler.edges.settings_file import with_token, without_token

ENTRY = {"name": "ci", "scopes": ["read", "write"], "created": "2026-12-02T01:00:00Z", "sha256": "ab" * 32}
LINE = f"- {{name: ci, scopes: [read, write], created: '2026-12-02T01:00:00Z', sha256: {'ab' * 32}}}"
SETTINGS = """\
# Settings of the fleet (reviewed like code)
name: fleet          # the workspace's identity
registry: "sqlite:////srv/qrm/registry.db"
lock_timeout: 5
"""


def test_a_token_is_added_as_one_line_and_the_rest_is_kept_as_written() -> None:
    assert with_token(SETTINGS, ENTRY) == SETTINGS + "tokens:\n" + LINE + "\n"


def test_removing_it_gives_back_the_file_with_an_empty_list() -> None:
    assert without_token(with_token(SETTINGS, ENTRY), "ci") == SETTINGS + "tokens: []\n"


def test_a_second_token_goes_after_the_first_and_removing_one_keeps_the_other() -> None:
    second = {**ENTRY, "name": "deploy", "scopes": ["write"]}
    both = with_token(with_token(SETTINGS, ENTRY), second)
    assert both.endswith(LINE + "\n" + LINE.replace("name: ci, scopes: [read, write]",
                                                    "name: deploy, scopes: [write]") + "\n")
    assert without_token(both, "deploy") == with_token(SETTINGS, ENTRY)


@pytest.mark.parametrize("text", ["", "# only a comment\n"])
def test_an_empty_qrm_yaml_gets_its_first_setting(text: str) -> None:
    assert with_token(text, ENTRY).endswith("tokens:\n" + LINE + "\n")


@pytest.mark.parametrize(("text", "reason"), [("- a list\n", "qrm.yaml must be a mapping of settings"),
                                              ("tokens: {ci: x}\n", "qrm.yaml: tokens must be a list")])
def test_a_qrm_yaml_that_is_not_settings_is_refused(text: str, reason: str) -> None:
    with pytest.raises(QrmError, match=reason):
        with_token(text, ENTRY)
