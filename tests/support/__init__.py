"""Helpers shared by the test suites (importable from any conftest)."""
