"""edges/manifest_edit: a document appended to or cut out of a manifest file, every other byte kept."""

from __future__ import annotations

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from reconciler.core.errors import QrmError
from reconciler.edges import manifest_edit

comments = st.lists(st.sampled_from(["# a comment", "#", "  # indented: keep", "", "# ---- not a separator"]),
                    max_size=3)
documents = st.lists(st.tuples(comments, st.sampled_from(["", "   # after the name", "  # x: y"])), min_size=1,
                     max_size=6)


def stream(parts: list[tuple[list[str], str]], first_separator: bool) -> str:
    texts = []
    for index, (above, trailing) in enumerate(parts):
        head = "---\n" if index or first_separator else ""
        body = "\n".join(above) + ("\n" if above else "")
        texts.append(f"{head}{body}kind: Service\nname: svc-{index}{trailing}\nhost: localhost\ntype: app\n")
    return "".join(texts)


def names(text: str) -> list[str]:
    return [doc["name"] for doc in yaml.safe_load_all(text) if doc]


@settings(max_examples=60, deadline=None)
@given(documents, st.booleans(), st.data())
def test_cutting_one_document_keeps_the_others_byte_for_byte(parts: list[tuple[list[str], str]],
                                                             first_separator: bool, data: st.DataObject) -> None:
    text = stream(parts, first_separator)
    spans = [s for s in manifest_edit.documents(text, "f.yaml") if isinstance(s.data, dict)]
    assert [s.data["name"] for s in spans] == [f"svc-{i}" for i in range(len(parts))]
    cut = data.draw(st.integers(0, len(parts) - 1))
    rest = manifest_edit.without(text, spans[cut])
    assert rest == ("" if len(parts) == 1 else text[:spans[cut].start] + text[spans[cut].end:])
    assert names(rest) == [f"svc-{i}" for i in range(len(parts)) if i != cut]


@given(documents, st.booleans())
def test_appending_keeps_the_file_as_its_prefix(parts: list[tuple[list[str], str]], first_separator: bool) -> None:
    text = stream(parts, first_separator)
    added = manifest_edit.appended(text, manifest_edit.render_document({"kind": "Service", "name": "new"}))
    assert added.startswith(text) and names(added)[-1] == "new" and len(names(added)) == len(parts) + 1


@pytest.mark.parametrize("value", ["yes", "on", "off", "1_000", "0777", "8080", "1.5", "a: b", "#x", "null", "- x",
                                   "~", "2026-12-02"])
def test_a_rendered_value_reads_back_as_the_same_string_in_yaml_1_1(value: str) -> None:
    """The manifests are read as YAML 1.1 (PyYAML): a name such as `yes` or `1_000` must come back a string."""
    assert yaml.safe_load(manifest_edit.render_document({"name": value}))["name"] == value


def test_a_file_that_is_not_yaml_cannot_be_edited() -> None:
    with pytest.raises(QrmError, match=r"f.yaml: cannot be edited: invalid YAML"):
        manifest_edit.documents("kind: Service\nname: [unclosed\n", "f.yaml")


def test_a_file_left_with_only_comments_is_empty() -> None:
    text = "# the team's services\nkind: Service\nname: a\n"
    [span] = [s for s in manifest_edit.documents(text, "f.yaml") if s.data]
    assert manifest_edit.without(text, span) == ""
