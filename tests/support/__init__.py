"""Helpers shared by the test suites (stdlib only, importable from any conftest)."""
