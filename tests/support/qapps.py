"""A Quantum repository laid out as upstream's is, for the scan, generate and query tests.

The source folder holds the app's served folder (components/, or another one named by the app's
quantum.config.yaml), plus what a real repository holds beside it and the server does not serve:
examples/ and another app under projects/other-app/ (with a quantum.config.yaml of its own).
"""

from __future__ import annotations

import textwrap
from pathlib import Path

INDEX = """\
<q:component name="Home" type="page">
  <q:query name="recent" datasource="blog-db">SELECT id, title FROM posts</q:query>
  <q:include component="shared/header" />
</q:component>
"""
POST = """\
<q:component name="Post" type="page">
  <q:import component="Card" from="./ui" />
  <q:action name="comment" method="POST">
    <q:param name="body" type="string" required="true" minlength="2" />
    <q:query name="addComment" datasource="app-db" type="insert">INSERT INTO comments (body) VALUES (:body)</q:query>
    <q:redirect url="/blog/post" flash="Thanks!" />
  </q:action>
  <q:query name="comments" datasource="app-db">SELECT id, body FROM comments</q:query>
</q:component>
"""
HEADER = """\
<q:component name="Header" type="partial">
  <nav><a href="/">Blog</a></nav>
</q:component>
"""
API = """\
<q:component name="Api" type="microservice">
  <q:function name="list" endpoint="/api/posts" method="GET">SELECT 1</q:function>
</q:component>
"""
DEMO = """\
<q:component name="Demo" type="page">
  <q:action name="subscribe" method="POST">
    <q:param name="email" type="email" required="true" />
  </q:action>
  <form method="POST"><input type="email" name="email" required></form>
  <q:function name="demo" endpoint="/api/demo" method="GET">SELECT 1</q:function>
  <q:query name="everything" datasource="default">SELECT * FROM demo</q:query>
</q:component>
"""
OTHER = """\
<q:component name="OtherHome" type="page">
  <q:query name="tasks" datasource="tasks-db">SELECT id FROM tasks</q:query>
</q:component>
"""
OTHER_CONFIG = """\
paths:
  components: ./components
datasources:
  tasks-db: {driver: sqlite, database: ./tasks.db}
"""
CONFIG = """\
server:
  port: 8080
paths:
  components: ./src/components
  static: ./static
datasources:
  app-db:
    driver: ${DB_DRIVER:sqlite}
    database: ./data/app.db
"""
# The served folder's files (relative to it) and the URL each is served at; None: not a page.
SERVED = {"index.q": "/", "blog/post.q": "/blog/post", "shared/header.q": None, "api.q": None}
NOT_SERVED = ("examples/demo.q", "projects/other-app/components/index.q")


def write(folder: Path, relative: str, content: str) -> Path:
    path = folder / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(content))
    return path


def write_app(folder: Path, config: bool) -> str:
    """The upstream shape under `folder`; with `config`, a quantum.config.yaml that serves ./src/components
    (then a components/ folder beside it is not served either). Returns the served folder."""
    served = "src/components" if config else "components"
    for relative, content in (("index.q", INDEX), ("blog/post.q", POST), ("shared/header.q", HEADER),
                              ("api.q", API)):
        write(folder, f"{served}/{relative}", content)
    write(folder, "examples/demo.q", DEMO)
    write(folder, "projects/other-app/components/index.q", OTHER)
    write(folder, "projects/other-app/quantum.config.yaml", OTHER_CONFIG)
    if config:
        write(folder, "quantum.config.yaml", CONFIG)
        write(folder, "components/legacy.q", HEADER.replace("Header", "Legacy").replace("partial", "page"))
    return served


def not_served(config: bool) -> list[str]:
    """The .q files of write_app's layout that the app does not serve, sorted."""
    return sorted([*NOT_SERVED, *(["components/legacy.q"] if config else [])])
