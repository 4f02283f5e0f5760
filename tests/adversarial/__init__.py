"""Regression tests of hostile input (issue 15), one module per area: each reproduces an attack and
asserts what a user sees."""
