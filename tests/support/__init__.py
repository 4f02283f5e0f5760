"""Helpers shared by the tests and the benchmarks (bench/): not tests themselves. Fixtures are in tests/conftest.py."""
