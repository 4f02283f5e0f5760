"""Regression tests of hostile input (issue 15): one module per area, each attack reproduced for real."""
