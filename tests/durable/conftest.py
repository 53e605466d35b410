"""Fixtures of the durability tests: the three backends, and a storage wrapper that records.

`backend` is parametrized over ``memory``, ``sqlite`` (a file under
``tmp_path``) and ``postgres`` (a schema of its own on the real server of
``tests/storage/_pg.py``: the session fixture `postgres_dsn` of tests/conftest.py). A `Backend` makes new storage objects over the same
data, flips bytes of stored parts behind the library's back, and tells a child
process (`_child.py`) how to reach the same data.
"""

from __future__ import annotations

import os
import sqlite3
import sys
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest
import trio

from trio_peeper.storage import Memory, Postgres, SQLite, Storage, Stored, Write
from _child import assemble

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
CHILD = HERE / "_child.py"


BACKENDS = ["memory", "sqlite", "postgres"]
PROCESS_BACKENDS = ["sqlite", "postgres"]  # the ones another process can share


class Backend:
    """One backend's data, for one test: new storage objects over it, and ways to tamper with it."""

    def __init__(self, name: str, target: str) -> None:
        self.name = name
        self.target = target  # SQLite: the database path; Postgres: "dsn|schema"; Memory: ""
        self._memory = Memory() if name == "memory" else None

    def __repr__(self) -> str:
        return f"<Backend {self.name}>"

    @property
    def shared_by_processes(self) -> bool:
        return self.name != "memory"

    def make(self) -> Storage:
        """A new storage object over this test's data (for Memory: the one instance)."""
        if self._memory is not None:
            return self._memory
        if self.name == "sqlite":
            return SQLite(self.target)
        dsn, schema = self.target.rsplit("|", 1)
        return Postgres(dsn, schema=schema)

    async def load(self, key: str) -> Stored | None:
        """What is stored for *key*, read through a storage object of its own."""
        storage = self.make()
        await storage.open()
        try:
            return await storage.load(key)
        finally:
            with trio.CancelScope(shield=True):
                await storage.aclose()

    async def data(self, key: str) -> Any:
        return assemble(await self.load(key))

    async def corrupt(self, key: str, part: bytes | None = None) -> bytes:
        """Flip the last byte of one stored part of *key* (any part if *part* is None); the new bytes."""
        if self._memory is not None:
            parts: dict[bytes, bytes] = self._memory._data[key][3]  # type: ignore[assignment]
            name = next(iter(parts)) if part is None else part
            value = parts[name]
            bad = value[:-1] + bytes([value[-1] ^ 0xFF])
            parts[name] = bad
            return bad
        return await trio.to_thread.run_sync(self._corrupt_sql, key, part)

    def _corrupt_sql(self, key: str, part: bytes | None) -> bytes:
        if self.name == "sqlite":
            with sqlite3.connect(self.target, isolation_level=None) as conn:
                rows = conn.execute("SELECT part, value FROM parts WHERE key = ?", (key,)).fetchall()
                name, value = next((bytes(p), bytes(v)) for p, v in rows if part is None or bytes(p) == part)
                bad = value[:-1] + bytes([value[-1] ^ 0xFF])
                conn.execute("UPDATE parts SET value = ? WHERE key = ? AND part = ?", (bad, key, name))
            conn.close()
            return bad
        import psycopg  # noqa: PLC0415

        dsn, schema = self.target.rsplit("|", 1)
        with psycopg.connect(dsn, autocommit=True) as conn:
            rows = conn.execute(f'SELECT part, value FROM "{schema}".parts WHERE key = %s', (key,)).fetchall()
            name, value = next((bytes(p), bytes(v)) for p, v in rows if part is None or bytes(p) == part)
            bad = value[:-1] + bytes([value[-1] ^ 0xFF])
            conn.execute(f'UPDATE "{schema}".parts SET value = %s WHERE key = %s AND part = %s', (bad, key, name))
        return bad

    def child_args(self, key: str, *extra: str) -> list[str]:
        """The command line of `_child.py` over this data."""
        assert self.shared_by_processes
        return [sys.executable, str(CHILD), self.name, self.target, key, *extra]

    @staticmethod
    def env() -> dict[str, str]:
        """The child's environment: ours (the same _fastcore core) with src/ on its path."""
        env = dict(os.environ)
        src = str(ROOT / "src")
        env["PYTHONPATH"] = src + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
        env["PYTHONUNBUFFERED"] = "1"
        return env


def make_backend(request: pytest.FixtureRequest, name: str, tmp_path: Path) -> Backend:
    if name == "memory":
        return Backend("memory", "")
    if name == "sqlite":
        return Backend("sqlite", str(tmp_path / "state.db"))
    dsn = request.getfixturevalue("postgres_dsn")
    return Backend("postgres", f"{dsn}|t_{uuid.uuid4().hex[:12]}")


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    """Each of the three backends, with fresh data."""
    return make_backend(request, request.param, tmp_path)


@pytest.fixture(params=PROCESS_BACKENDS)
def process_backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    """The backends several processes can share (SQLite, PostgreSQL), with fresh data."""
    return make_backend(request, request.param, tmp_path)


class Recording(Storage):
    """Wraps a backend and records every state write batch (and, optionally, delays it).

    ``batches`` holds one list of `Write` per call of `write`; ``events`` gets
    ``("write", key)`` when a batch is handed to the inner storage and
    ``("written", key)`` when it returned, for every write of the batch.
    """

    def __init__(self, inner: Storage, *, delay: float = 0.0, events: list[Any] | None = None) -> None:
        self.inner, self.delay = inner, delay
        self.batches: list[list[Write]] = []
        self.events: list[Any] = [] if events is None else events
        self.times: list[float] = []

    @property
    def writes(self) -> list[Write]:
        return [w for batch in self.batches for w in batch]

    def writes_of(self, key: str) -> list[Write]:
        return [w for w in self.writes if w.key == key]

    async def open(self) -> None:
        await self.inner.open()

    async def aclose(self) -> None:
        await self.inner.aclose()

    async def claim(self, key: str, owner: str) -> int:
        return await self.inner.claim(key, owner)

    async def release(self, key: str, token: int) -> None:
        await self.inner.release(key, token)

    async def load(self, key: str) -> Stored | None:
        return await self.inner.load(key)

    async def delete(self, key: str, token: int) -> None:
        await self.inner.delete(key, token)

    async def write(self, batch: Sequence[Write]) -> list[BaseException | None]:
        batch = list(batch)
        self.batches.append(batch)
        self.times.append(trio.current_time())
        self.events.extend(("write", w.key) for w in batch)
        if self.delay:
            await trio.sleep(self.delay)
        results = await self.inner.write(batch)
        self.events.extend(("written", w.key) for w in batch)
        return results


@pytest.fixture
def recording() -> Callable[..., Recording]:
    """The `Recording` wrapper class (``recording(inner, delay=..., events=...)``)."""
    return Recording


def chain(exc: BaseException | None) -> list[BaseException]:
    """*exc* and its causes/contexts, outermost first."""
    seen: list[BaseException] = []
    while exc is not None and exc not in seen:
        seen.append(exc)
        exc = exc.__cause__ or exc.__context__
    return seen


@pytest.fixture
def causes() -> Callable[[BaseException | None], list[BaseException]]:
    """``causes(exc)``: *exc* and everything it was raised from."""
    return chain
