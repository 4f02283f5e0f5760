"""A generated corpus of realistic .q components, for the scan benchmark and the scan tests.

write_corpus(root, files, seed) writes ``files`` components of about 3 KB under ``root/components/``
(``root`` is the project's source folder), in subfolders of 50, plus ``components/index.q``. The mix
follows what QUANTUM.md reports of real files: most parse as they are, some carry an ``<?xml?>`` header
or a declared namespace, about 8% need repairs (``<`` in SQL and in attributes, bare ``&``, valueless
attributes, unclosed void tags and ``<q:else>``, ``--`` in comments), and one in 500 cannot be parsed.
Deterministic for a given seed.
"""

from __future__ import annotations

import os
import random
from pathlib import Path

_HEADS = (
    '<q:component name="{name}" type="page">\n',
    '<q:component name="{name}">\n',
    '<?xml version="1.0" encoding="UTF-8"?>\n<q:component name="{name}" type="page">\n',
    '<q:component xmlns:q="https://quantum.lang/ns" name="{name}" type="page" require_auth="true">\n',
    '<q:component name="{name}" type="page" require_auth="true" require_role="admin">\n',
    '<q:component name="{name}" type="partial">\n',
)

_ACTION = """  <q:action name="save{n}" method="POST">
    <q:param name="title" type="string" required="true" minlength="3" maxlength="200" />
    <q:param name="count" type="integer" min="0" max="1000" />
    <q:validate field="email" required="true" minLength="5" maxLength="255" pattern="^[^@]+@[^@]+$" />
    <q:query name="insert{n}" datasource="app-db" type="insert">
      INSERT INTO items (title, count, email) VALUES (:title, :count, :email)
      <q:param name="title" value="{{form.title}}" type="string" />
      <q:param name="count" value="{{form.count}}" type="integer" />
    </q:query>
    <q:redirect url="/items" flash="Item saved" />
  </q:action>
"""

_QUERY = """  <q:query datasource="app-db" name="list{n}" cache="60">
    SELECT id, title, created_at FROM items WHERE owner_id = :owner ORDER BY created_at DESC LIMIT 20
    <q:param name="owner" value="{{session.userId}}" type="integer" />
  </q:query>
  <q:loop query="list{n}">
    <article class="item"><h3>{{list{n}.title}}</h3><p>{{list{n}.created_at}}</p></article>
  </q:loop>
"""

_FORM = """  <form id="form{n}" method="POST" action="{{application.basePath}}/items">
    <input type="hidden" name="action" value="save{n}" />
    <input type="text" name="title" required="required" minlength="3" maxlength="200" />
    <input type="number" name="count" />
    <input type="email" name="email" required="required" pattern="^[^@]+@[^@]+$" />
    <button type="submit">Save</button>
  </form>
"""

_MISC = """  <q:include component="shared/header" />
  <q:import component="Card" />
  <q:if condition="{{session.user}}">
    <ui:card title="Welcome"><p>Hello {{session.user.name}}, you have {{count}} items.</p></ui:card>
  </q:if>
  <q:elseif condition="{{session.guest}}">
    <p>Welcome, guest.</p>
  </q:elseif>
  <q:else>
    <p><a href="/login">Log in</a> to see your items.</p>
  </q:else>
  <q:function name="api{n}" endpoint="/api/items/{n}" method="GET">
    <q:return value="{{list{n}}}" />
  </q:function>
"""

_PAD = "  <p>Quantum renders this paragraph on the server; it is here to make the file realistic.</p>\n"

_QUIRKS = (
    '  <q:query name="stale{n}" datasource="app-db">SELECT id FROM sessions WHERE expires_at < NOW()</q:query>\n',
    '  <q:if condition="{{page < totalPages}}"><a href="?page={{page + 1}}">Next</a></q:if>\n',
    "  <p>Terms & Conditions</p>\n",
    '  <form id="quick{n}" method="post" action="/quick"><input type="text" name="q" required></form>\n',
    "  <p>One<br>Two</p>\n  <hr>\n",
    '  <q:if condition="{{a}}"><p>A</p><q:else><p>B</p></q:if>\n',
    "  <!-- legacy -- remove later -->\n",
    '  <div class="a" class="b">dup</div>\n',
    '  <div class="w" ${{extra}}>dollar</div>\n',
)

_BROKEN = '<q:component name="Broken{n}" type="page"\n  <q:action name="save" method="POST">\n  <<<< ]]>\n'


def _component(index: int, rng: random.Random) -> str:
    if index % 500 == 499:
        return _BROKEN.format(n=index)
    parts = [rng.choice(_HEADS).format(name=f"Page{index}")]
    for block in (_ACTION, _QUERY, _FORM, _MISC):
        parts.append(block.format(n=index))
    if rng.random() < 0.08:  # about 1 file in 13 needs a repair, as in the real files QUANTUM.md counts
        parts.append(rng.choice(_QUIRKS).format(n=index))
    size = sum(len(p) for p in parts)
    parts.append(_PAD * max(0, (3000 - size) // len(_PAD)))
    parts.append("</q:component>\n")
    return "".join(parts)


def write_corpus(root: Path, files: int, seed: int = 0) -> None:
    """Write ``files`` .q components (index.q first) under root/components/, about 3 KB each."""
    rng = random.Random(seed)
    components = root / "components"
    components.mkdir(parents=True, exist_ok=True)
    base = str(components)
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC
    for index in range(files):
        if index == 0:
            name = f"{base}/index.q"
        else:
            folder = f"{base}/section{index // 50:03d}"
            if index == 1 or index % 50 == 0:
                os.makedirs(folder, exist_ok=True)
            name = f"{folder}/page{index}.q"
        descriptor = os.open(name, flags, 0o644)
        try:
            os.write(descriptor, _component(index, rng).encode("utf-8"))
        finally:
            os.close(descriptor)
