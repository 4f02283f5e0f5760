"""Tests of reconciler/core: pure values and functions (no files, sockets or processes of their own)."""
