"""discover.scan_file on a corpus of small .q files: one per construct and per quirk of QUANTUM.md.

Each fixture has its exact expected extraction (Component.to_dict() without sha256 and path, which are
checked separately). Hostile files (XXE, entity bomb, binary, oversize, garbage) never raise.
"""

from __future__ import annotations

import hashlib
import socket
from pathlib import Path
from typing import Any

import pytest

from reconciler.core.components import Component
from reconciler.edges.q_components import scan_file
from tests.support import paths
from tests.support.qcorpus import write_corpus

FIXTURES = paths.FIXTURES / "q"

EXPECTED: dict[str, dict[str, Any]] = {
    'components/admin/dashboard.q': {'actions': [{'line': 3,
                  'method': 'POST',
                  'name': 'deletePost',
                  'params': [{'min': 1.0, 'name': 'id', 'required': True, 'source': 'param', 'type': 'integer'}],
                  'queries': [{'datasource': 'blog-db',
                               'line': 5,
                               'name': 'removePost',
                               'params': ['id'],
                               'sql': 'DELETE FROM posts WHERE id = :id',
                               'type': 'delete',
                               'writes': True}],
                  'redirects': [{'flash': 'Post deleted', 'url': '/admin'}],
                  'writes': True}],
     'complexity': 6,
     'conditionals': 3,
     'includes': ['shared/header'],
     'lines': 20,
     'name': 'AdminDashboard',
     'parse': 'xml',
     'require_auth': True,
     'require_role': 'admin',
     'route': '/admin/dashboard',
     'type': 'page'},
    'components/api.q': {'complexity': 3,
     'conditionals': 0,
     'functions': [{'endpoint': '/api/posts', 'line': 2, 'method': 'GET', 'name': 'listPosts'},
                   {'endpoint': '/api/posts', 'line': 6, 'method': 'POST', 'name': 'createPost'}],
     'lines': 9,
     'name': 'PostsApi',
     'parse': 'xml',
     'queries': [{'datasource': 'blog-db',
                  'line': 3,
                  'name': 'allPosts',
                  'sql': 'SELECT id, title FROM posts',
                  'writes': False},
                 {'datasource': 'blog-db',
                  'line': 7,
                  'name': 'insertPost',
                  'sql': 'INSERT INTO posts (title) VALUES (:title)',
                  'writes': True}],
     'require_auth': False,
     'type': 'microservice'},
    'components/bare-amp.q': {'complexity': 1,
     'conditionals': 0,
     'lines': 4,
     'name': 'Terms',
     'parse': 'repaired',
     'problems': ['line 2: bare & in text escaped',
                  'line 2: HTML entity &copy; written as a character reference',
                  'line 3: bare & in the value of href escaped'],
     'require_auth': False,
     'route': '/bare-amp'},
    'components/billion-laughs.q': {'complexity': 1,
     'conditionals': 0,
     'lines': 13,
     'name': 'Laughs',
     'parse': 'fallback',
     'problems': ['line 2: DOCTYPE/ENTITY declaration refused (no DTD or entity is resolved or expanded)',
                  'line 0: could not be parsed; read line by line (names only, no params, SQL or fields)'],
     'require_auth': False,
     'route': '/billion-laughs'},
    'components/dashdash-comment.q': {'complexity': 1,
     'conditionals': 0,
     'lines': 4,
     'name': 'Notes',
     'parse': 'repaired',
     'problems': ['line 2: -- inside a comment'],
     'require_auth': False,
     'route': '/dashdash-comment'},
    'components/declared-namespace.q': {'actions': [{'line': 2,
                  'method': 'POST',
                  'name': 'send',
                  'params': [{'max_length': 500,
                              'name': 'message',
                              'required': True,
                              'source': 'param',
                              'type': 'string'}],
                  'writes': False}],
     'complexity': 2,
     'conditionals': 0,
     'lines': 5,
     'name': 'Contact',
     'parse': 'xml',
     'require_auth': False,
     'route': '/declared-namespace',
     'type': 'page'},
    'components/dollar-in-tag.q': {'complexity': 1,
     'conditionals': 0,
     'lines': 3,
     'name': 'Widget',
     'parse': 'repaired',
     'problems': ['line 2: ${…} inside <div> dropped'],
     'require_auth': False,
     'route': '/dollar-in-tag'},
    'components/duplicate-attrs.q': {'complexity': 1,
     'conditionals': 0,
     'lines': 3,
     'name': 'Banner',
     'parse': 'repaired',
     'problems': ['line 2: duplicate attribute class in <div>; the first is kept'],
     'require_auth': False,
     'route': '/duplicate-attrs',
     'type': 'page'},
    'components/login.q': {'actions': [{'line': 3,
                  'method': 'POST',
                  'name': 'login',
                  'params': [{'name': 'email', 'required': True, 'source': 'param', 'type': 'email'},
                             {'max_length': 255,
                              'min_length': 8,
                              'name': 'password',
                              'required': False,
                              'source': 'param',
                              'type': 'string'},
                             {'max_length': 100,
                              'min_length': 2,
                              'name': 'username',
                              'pattern': '^[a-z0-9_]+$',
                              'required': True,
                              'source': 'validate',
                              'type': 'string'},
                             {'max': 120.0,
                              'min': 18.0,
                              'min_length': 1,
                              'name': 'age',
                              'required': False,
                              'source': 'validate',
                              'type': 'integer'},
                             {'enum': ['free', 'pro', 'team'],
                              'name': 'plan',
                              'required': False,
                              'source': 'validate',
                              'type': 'string'}],
                  'queries': [{'datasource': 'blog-db',
                               'line': 9,
                               'name': 'authUser',
                               'params': ['email'],
                               'sql': 'SELECT id, password_hash FROM users WHERE email = :email',
                               'writes': False}],
                  'redirects': [{'flash': 'Welcome back!', 'url': '/admin'}],
                  'writes': False}],
     'complexity': 3,
     'conditionals': 0,
     'forms': [{'action': '{application.basePath}/login',
                'fields': [{'hidden': True,
                            'name': 'action',
                            'required': False,
                            'type': 'hidden',
                            'value': 'login'},
                           {'hidden': False, 'name': 'email', 'required': True, 'type': 'email'},
                           {'hidden': False,
                            'max_length': 255,
                            'min_length': 8,
                            'name': 'password',
                            'required': True,
                            'type': 'password'}],
                'id': 'login-form',
                'line': 15,
                'method': 'POST'}],
     'lines': 21,
     'name': 'LoginPage',
     'parse': 'xml',
     'require_auth': False,
     'route': '/login',
     'type': 'page'},
    'components/lt-in-attribute.q': {'complexity': 2,
     'conditionals': 1,
     'lines': 5,
     'name': 'Pager',
     'parse': 'repaired',
     'problems': ['line 2: < inside the value of condition in <q:if>'],
     'require_auth': False,
     'route': '/lt-in-attribute'},
    'components/not-xml.q': {'actions': [{'line': 2, 'method': 'POST', 'name': 'save', 'writes': False}],
     'complexity': 3,
     'conditionals': 0,
     'forms': [{'id': 'f', 'line': 3, 'method': 'POST'}],
     'lines': 4,
     'name': 'Broken',
     'parse': 'fallback',
     'problems': ['line 1: raw < in text escaped',
                  'line 3: raw < in text escaped',
                  'line 3: raw < in text escaped',
                  'line 3: raw < in text escaped',
                  'line 3: raw < in text escaped',
                  'line 3: raw < in text escaped',
                  'line 3: raw < in SQL text escaped',
                  'line 4: raw < in SQL text escaped',
                  'line 4: <q:query> never closed; closed before </q:action>',
                  'line 4: stray closing tag </q:action> dropped',
                  "line 3: still not well-formed after repair: Sequence ']]>' not allowed in content, line 3, "
                  'column 20',
                  'line 0: could not be parsed; read line by line (names only, no params, SQL or fields)'],
     'queries': [{'datasource': 'db', 'line': 3, 'name': 'loadAll', 'sql': '', 'type': 'select', 'writes': False}],
     'require_auth': False,
     'route': '/not-xml',
     'type': 'page'},
    'components/posts/index.q': {'complexity': 3,
     'conditionals': 0,
     'lines': 8,
     'name': 'PostList',
     'parse': 'repaired',
     'problems': ['line 3: raw < in SQL text escaped'],
     'queries': [{'datasource': 'blog-db',
                  'line': 2,
                  'name': 'recentPosts',
                  'sql': 'SELECT id, title FROM posts WHERE published_at < NOW() ORDER BY published_at DESC',
                  'type': 'select',
                  'writes': False}],
     'require_auth': False,
     'route': '/posts'},
    'components/shared/header.q': {'complexity': 1,
     'conditionals': 0,
     'imports': ['Card'],
     'includes': ['shared/nav.q'],
     'lines': 5,
     'name': 'Header',
     'parse': 'xml',
     'require_auth': False,
     'type': 'partial'},
    'components/sql-lt.q': {'complexity': 2,
     'conditionals': 0,
     'lines': 5,
     'name': 'Sessions',
     'parse': 'repaired',
     'problems': ['line 3: raw < in SQL text escaped', 'line 3: raw < in SQL text escaped'],
     'queries': [{'datasource': 'auth-db',
                  'line': 2,
                  'name': 'expired',
                  'sql': 'DELETE FROM sessions WHERE expires_at < NOW() AND a<b',
                  'type': 'delete',
                  'writes': True}],
     'require_auth': False,
     'route': '/sql-lt'},
    'components/unclosed-else.q': {'complexity': 3,
     'conditionals': 2,
     'lines': 7,
     'name': 'Greeting',
     'parse': 'repaired',
     'problems': ['line 6: unclosed <q:else> closed before </q:if>'],
     'require_auth': False,
     'route': '/unclosed-else'},
    'components/unclosed-void.q': {'complexity': 1,
     'conditionals': 0,
     'forms': [{'action': '/search',
                'fields': [{'hidden': False, 'max_length': 80, 'name': 'q', 'required': False, 'type': 'search'}],
                'line': 7,
                'method': 'GET'}],
     'lines': 10,
     'name': 'Profile',
     'parse': 'repaired',
     'problems': ['line 2: unclosed void tag <meta> closed',
                  'line 3: unclosed void tag <br> closed',
                  'line 4: unclosed void tag <hr> closed',
                  'line 5: unclosed void tag <img> closed',
                  'line 6: unclosed void tag <link> closed',
                  'line 8: unclosed void tag <input> closed'],
     'require_auth': False,
     'route': '/unclosed-void'},
    'components/valueless-attrs.q': {'complexity': 1,
     'conditionals': 0,
     'forms': [{'action': '/signup',
                'fields': [{'hidden': False, 'min_length': 3, 'name': 'username', 'required': True, 'type': 'text'},
                           {'hidden': False, 'name': 'terms', 'required': True, 'type': 'checkbox'}],
                'id': 'signup',
                'line': 2,
                'method': 'POST'}],
     'lines': 6,
     'name': 'Signup',
     'parse': 'repaired',
     'problems': ['line 3: valueless attribute required in <input>',
                  'line 3: unclosed void tag <input> closed',
                  'line 4: valueless attribute required in <input>',
                  'line 4: valueless attribute checked in <input>',
                  'line 4: unclosed void tag <input> closed'],
     'require_auth': False,
     'route': '/valueless-attrs'},
    'components/xml-header.q': {'complexity': 1,
     'conditionals': 0,
     'lines': 6,
     'name': 'About',
     'parse': 'xml',
     'require_auth': False,
     'route': '/xml-header',
     'type': 'page'},
    'components/xxe.q': {'complexity': 1,
     'conditionals': 0,
     'lines': 5,
     'name': 'Leak',
     'parse': 'fallback',
     'problems': ['line 2: DOCTYPE/ENTITY declaration refused (no DTD or entity is resolved or expanded)',
                  'line 0: could not be parsed; read line by line (names only, no params, SQL or fields)'],
     'require_auth': False,
     'route': '/xxe'},
}


def _scan(rel: str, **kwargs: Any) -> Component:
    return scan_file(FIXTURES / rel, rel, **kwargs)


@pytest.mark.parametrize("rel", sorted(EXPECTED))
def test_fixture_extraction(rel: str) -> None:
    component = _scan(rel)
    found = component.to_dict()
    assert found.pop("path") == rel
    assert found.pop("sha256") == hashlib.sha256((FIXTURES / rel).read_bytes()).hexdigest()
    assert found == EXPECTED[rel]


def test_every_fixture_is_covered() -> None:
    on_disk = {str(p.relative_to(FIXTURES)) for p in FIXTURES.rglob("*.q")}
    assert on_disk == set(EXPECTED) | {"components/big.q", "components/binary.q"}


def test_base_path_prefixes_routes_of_pages_only() -> None:
    assert _scan("components/login.q", base_path="/blog/").route == "/blog/login"
    assert _scan("components/posts/index.q", base_path="/blog").route == "/blog/posts"
    assert _scan("components/shared/header.q", base_path="/blog").route is None


def test_line_count_and_hash_of_any_file(tmp_path: Path) -> None:
    path = tmp_path / "x.q"
    path.write_bytes(b'<q:component name="X">\n</q:component>')  # no final newline
    component = scan_file(path, "components/x.q")
    assert (component.lines, component.parse, component.name) == (2, "xml", "X")
    assert component.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()


def test_binary_file_is_skipped_with_reason() -> None:
    component = _scan("components/binary.q")
    assert component.parse == "skipped"
    assert component.problems == ("line 1: binary file (NUL byte)",)
    assert component.name == "binary" and component.actions == ()


def test_not_utf8_is_skipped(tmp_path: Path) -> None:
    path = tmp_path / "latin.q"
    path.write_bytes(b'<q:component name="Caf\xe9">\n</q:component>\n')
    component = scan_file(path, "components/latin.q")
    assert component.parse == "skipped"
    assert component.problems == ("line 1: binary file (not UTF-8)",)


def test_oversize_file_is_skipped_with_reason_and_hash() -> None:
    size = (FIXTURES / "components/big.q").stat().st_size
    component = _scan("components/big.q", max_bytes=2000)
    assert component.parse == "skipped"
    assert component.problems == (f"line 0: file is {size} bytes, over the 2000-byte limit",)
    assert component.sha256 == hashlib.sha256((FIXTURES / "components/big.q").read_bytes()).hexdigest()
    assert _scan("components/big.q").parse == "xml"  # under the default 5 MB cap


def test_unreadable_file_is_skipped(tmp_path: Path) -> None:
    component = scan_file(tmp_path / "missing.q", "components/missing.q")
    assert component.parse == "skipped" and component.problems[0].startswith("line 0: unreadable")


def test_xxe_reads_no_file_and_opens_no_socket(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_network(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("the scanner opened a network connection")

    monkeypatch.setattr(socket, "create_connection", no_network)
    monkeypatch.setattr(socket.socket, "connect", no_network)
    component = _scan("components/xxe.q")
    assert component.parse == "fallback"
    assert "root:" not in repr(component.to_dict())
    assert component.problems[0].startswith("line 2: DOCTYPE/ENTITY declaration refused")


def test_entity_bomb_is_refused_without_expansion() -> None:
    component = _scan("components/billion-laughs.q")
    assert component.parse == "fallback"
    assert "lollol" not in repr(component.to_dict())
    assert component.name == "Laughs"


@pytest.mark.parametrize(
    "content",
    [
        b"",
        b"\xef\xbb\xbf",
        b"<",
        b"&",
        b"<!--",
        b"<![CDATA[",
        b"<?xml",
        b"<q:component",
        b"</q:component>",
        b'<q:component name="A"><q:action name="x"><q:query>SELECT 1 < 2',
        b"<a b='<' c=\"&\" d e=f ${x}><<<>>>&&&;</q:else></a></a>",
        b"<q:component name=\"A\"><!DOCTYPE x></q:component>",
        b"<q:component name='\xc3\xa9t\xc3\xa9'><p>&nbsp;&unknown;&#65;</p></q:component>",
        "<q:component>\u2028\ufeff</q:component>".encode(),
    ],
)
def test_no_content_ever_raises(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "f.q"
    path.write_bytes(content)
    component = scan_file(path, "components/f.q")
    assert component.parse in ("xml", "repaired", "fallback", "skipped")
    assert component.path == "components/f.q" and component.name


def test_generated_corpus_scans_without_loss(tmp_path: Path) -> None:
    write_corpus(tmp_path, 120, seed=7)
    paths = sorted(tmp_path.rglob("*.q"))
    assert len(paths) == 120
    assert (tmp_path / "components" / "index.q").exists()
    components = [scan_file(p, str(p.relative_to(tmp_path))) for p in paths]
    assert all(c.parse in ("xml", "repaired") for c in components)
    assert all(c.name.startswith("Page") and len(c.actions) == 1 and c.forms for c in components)
    assert any(c.parse == "repaired" for c in components)
    sizes = [p.stat().st_size for p in paths]
    assert 2500 < sum(sizes) / len(sizes) < 3500


def test_generated_corpus_is_deterministic(tmp_path: Path) -> None:
    write_corpus(tmp_path / "a", 30, seed=3)
    write_corpus(tmp_path / "b", 30, seed=3)
    for path in (tmp_path / "a").rglob("*.q"):
        assert path.read_bytes() == (tmp_path / "b" / path.relative_to(tmp_path / "a")).read_bytes()


def test_other_namespace_uri_for_q_reads_the_same(tmp_path: Path) -> None:
    path = tmp_path / "other.q"
    path.write_text('<q:component xmlns:q="urn:example:q" xmlns="http://www.w3.org/1999/xhtml" name="Other">\n'
                    '  <q:action name="go"><q:param name="id" type="integer" /></q:action>\n'
                    '  <form id="f" method="post"><input name="id" type="number" required="required" /></form>\n'
                    "</q:component>\n")
    component = scan_file(path, "components/other.q")
    assert component.parse == "xml"
    assert component.name == "Other"
    assert [(a.name, [p.name for p in a.params]) for a in component.actions] == [("go", ["id"])]
    assert component.forms[0].fields[0].required is True


def test_huge_garbage_falls_back_with_a_bounded_problem_list(tmp_path: Path) -> None:
    path = tmp_path / "garbage.q"
    path.write_text('<q:component name="G">' + "a < b & c " * 200_000)
    component = scan_file(path, "components/garbage.q")
    assert component.parse == "fallback"
    assert component.name == "G"
    assert len(component.problems) < 210
    assert "repair given up" in component.problems[-2]


def test_deep_nesting_does_not_raise(tmp_path: Path) -> None:
    path = tmp_path / "deep.q"
    path.write_text('<q:component name="Deep">' + "<div>" * 5000 + "</div>" * 5000 + "</q:component>")
    component = scan_file(path, "components/deep.q")
    assert component.parse in ("xml", "repaired", "fallback")
    assert component.name == "Deep"


def test_fast_and_generic_walks_agree(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The C-filtered walk (usual files) and the generic walk (files binding q to another URI) read alike."""
    import reconciler.edges.q_components as discover

    write_corpus(tmp_path, 60, seed=11)
    cases = [(p, str(p.relative_to(tmp_path))) for p in sorted(tmp_path.rglob("*.q"))]
    cases += [(FIXTURES / rel, rel) for rel in sorted(EXPECTED)]
    fast = [scan_file(p, rel) for p, rel in cases]
    monkeypatch.setattr(discover, "_fast_walk", lambda root, found: discover._walk(root, found, None, None))
    assert [scan_file(p, rel) for p, rel in cases] == fast


# --- <q:import>: every form, in every reader -------------------------------------------------------

GAME = """\
<q:application id="platformer" type="game" engine="2d">
  <q:import behavior="Hero" from="./behaviors" />
  <q:import behavior="Walker" from="./behaviors" />
  <q:import behavior="Jumper" from="./behaviors/" />
  <q:import behavior="Shell" from="./behaviors" />
  <q:import behavior="Biter" from="./behaviors" />
  <q:import prefab="Gem" from="./prefabs" />
  <q:import prefab="BigGem" from="./prefabs" />
  <q:import prefab="Beetle" from="./prefabs" />
  <q:import prefab="RedBeetle" from="./prefabs" />
  <q:import prefab="Crate" from="./prefabs" />
  <q:import prefab="Flag" from="./prefabs" />
  <q:import tilemap="level1" from="./levels" />
  <q:import component="Hud" from="./ui" as="Overlay" />
  <q:import file="shared/menu.q" />
  <q:import src="../common/pause.q" />
  <q:include component="shared/footer" />
  <qg:scene name="level1" width="3200"><qg:sprite id="hero" x="40" y="350" /></qg:scene>
</q:application>
"""
GAME_IMPORTS = [
    "./behaviors/Hero", "./behaviors/Walker", "./behaviors/Jumper", "./behaviors/Shell", "./behaviors/Biter",
    "./prefabs/Gem", "./prefabs/BigGem", "./prefabs/Beetle", "./prefabs/RedBeetle", "./prefabs/Crate",
    "./prefabs/Flag", "./levels/level1", "./ui/Hud", "shared/menu.q", "../common/pause.q",
]
READERS = {
    "lxml, fast walk": ("xml", lambda text: text),
    "lxml, generic walk": ("xml", lambda text: text.replace('<q:application ', '<q:application xmlns:q="urn:game" ')),
    "line-based fallback": ("fallback", lambda text: "<!DOCTYPE game>\n" + text),
}


@pytest.mark.parametrize("reader", sorted(READERS))
def test_every_import_form_is_an_import_in_every_reader(tmp_path: Path, reader: str) -> None:
    parse, variant = READERS[reader]
    path = tmp_path / "level1.q"
    path.write_text(variant(GAME))
    component = scan_file(path, "components/games/level1.q")
    assert component.parse == parse
    assert list(component.imports) == GAME_IMPORTS
    assert list(component.includes) == ["shared/footer"]


# --- the served folder ------------------------------------------------------------------------------

@pytest.mark.parametrize(("rel", "served", "route", "not_served"), [
    ("components/login.q", "components", "/blog/login", None),
    ("src/components/login.q", "src/components", "/blog/login", None),
    ("src/components/posts/index.q", "src/components", "/blog/posts", None),
    ("login.q", "", "/blog/login", None),
    ("examples/login.q", "components", None, "outside the served folder components/ (paths.components)"),
    ("components/login.q", "src/components", None, "outside the served folder src/components/ (paths.components)"),
])
def test_routes_follow_the_served_folder(rel: str, served: str, route: str | None, not_served: str | None) -> None:
    component = scan_file(FIXTURES / "components/login.q", rel, "/blog", served=served)
    assert (component.route, component.not_served, component.served) == (route, not_served, not_served is None)
    assert component.to_dict().get("not_served") == not_served


def test_a_file_outside_the_served_folder_is_marked_even_when_skipped() -> None:
    component = scan_file(FIXTURES / "components/binary.q", "examples/binary.q")
    assert component.parse == "skipped" and not component.served
