"""Tests of reconciler/edges: one technology each, against the real thing (SQLite, PostgreSQL, sockets,
servers, SOPS/age, .q files)."""
