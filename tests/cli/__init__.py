"""Tests of qrm as a user runs it, end to end: CliRunner or real processes, real git repositories."""
