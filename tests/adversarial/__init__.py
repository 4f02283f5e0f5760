"""Regression tests of issue 15's attacks, one module per area: each reproduces the hostile input for real."""
