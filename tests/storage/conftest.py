"""Fixtures of the storage tests: `postgres_dsn` (a real PostgreSQL server, see `_pg`) comes from tests/conftest.py."""
