"""Fixtures and helpers shared by the whole test suite (loaded from tests/conftest.py)."""
