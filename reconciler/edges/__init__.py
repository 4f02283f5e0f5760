"""The edges: one technology each (YAML, SQLAlchemy, sockets and /proc, files, locks, GitPython,
watchfiles, lxml, the HTTP test client, query tests, SOPS/age, the state cache).

Edges import the core and never each other (import-linter), so a technology is swapped in one module.
"""
