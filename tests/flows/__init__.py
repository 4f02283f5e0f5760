"""Tests of reconciler/flows: one use case each (scan, generated files, tests generate, tests history),
mostly driven as a user would through qrm."""
