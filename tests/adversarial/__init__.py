"""Adversarial regression tests: each reproduces an attack of issue 15 (a hostile file, server answer or name)
and asserts what a user sees. One module per area."""
