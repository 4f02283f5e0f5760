"""Regression tests of attacks on qrm (issue 15): one module per area, each attack reproduced for real."""
