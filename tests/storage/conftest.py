"""Fixtures of the storage tests: a real PostgreSQL server (see `_pg`)."""

from __future__ import annotations

from _pg import postgres_dsn as postgres_dsn
