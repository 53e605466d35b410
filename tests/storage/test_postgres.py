"""`trio_peeper.storage.Postgres` against a real PostgreSQL server (the `postgres_dsn` fixture).

Each test works in its own schema. Waiting for the server to reach a state
(a query blocked on a lock, a dead session gone) polls it from a worker
thread: real time is spent there, virtual time elsewhere.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg
import pytest
import trio

from trio_peeper._errors import AlreadyStarted, StorageError
from trio_peeper.storage import Fenced, Postgres, Write
from trio_peeper.storage._base import WHOLE
from trio_peeper.storage._codec import decode_record, encode_record, part_name
from trio_peeper.testing import check_storage

SAFETY = 30.0  # real seconds after which a blocker lets go even if cancellation failed


@pytest.fixture
def schema() -> str:
    return f"t_{uuid.uuid4().hex[:12]}"


def _sql(dsn: str, query: str, params: tuple[object, ...] = ()) -> list[tuple[Any, ...]]:
    """Run one statement on a fresh autocommit connection; its rows (if any)."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        cur = conn.execute(query, params)  # type: ignore[arg-type]
        return cur.fetchall() if cur.description is not None else []


async def sql(dsn: str, query: str, *params: object) -> list[tuple[Any, ...]]:
    return await trio.to_thread.run_sync(_sql, dsn, query, params)


def _wait_until(dsn: str, query: str, params: tuple[object, ...], ok: Callable[[Any], bool], what: str) -> None:
    """Poll *query*'s first value until ``ok(value)`` (worker thread; at most 10 real seconds)."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        deadline = time.monotonic() + 10
        while True:
            row = conn.execute(query, params).fetchone()  # type: ignore[arg-type]
            if row is not None and ok(row[0]):
                return
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what}")
            time.sleep(0.01)


async def wait_until(dsn: str, query: str, *params: object, ok: Callable[[Any], bool] = bool, what: str) -> None:
    await trio.to_thread.run_sync(_wait_until, dsn, query, params, ok, what)


def app(schema: str) -> str:
    """The application_name of the storage sessions of the test working in *schema*."""
    return f"tp_{schema}"


async def wait_for_lock_wait(dsn: str, schema: str) -> None:
    """Until one of the storage's queries waits for a lock."""
    await wait_until(
        dsn,
        "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s AND wait_event_type = 'Lock'",
        app(schema),
        what="the storage's query to wait for a lock",
    )


async def storage_sessions(dsn: str, schema: str) -> list[tuple[str, str]]:
    """(state, last query) of the storage's sessions."""
    rows = await sql(dsn, "SELECT state, query FROM pg_stat_activity WHERE application_name = %s", app(schema))
    return [(r[0], r[1]) for r in rows]


class Blocker:
    """A transaction on its own connection that holds a lock until `release` (or SAFETY seconds)."""

    def __init__(self, dsn: str, statement: str) -> None:
        self.conn = psycopg.connect(dsn)  # not autocommit: the lock lasts until rollback
        self.conn.execute(statement)  # type: ignore[arg-type]
        self._timer = threading.Timer(SAFETY, self.release)
        self._timer.start()
        self._mutex = threading.Lock()

    def release(self) -> None:
        with self._mutex:
            if not self.conn.closed:
                self.conn.rollback()
                self.conn.close()
        self._timer.cancel()


async def blocker(dsn: str, statement: str) -> Blocker:
    return await trio.to_thread.run_sync(Blocker, dsn, statement)


async def opened(dsn: str, schema: str) -> Postgres:
    s = Postgres(f"{dsn} application_name={app(schema)}", schema=schema)
    await s.open()
    return s


# -- the contract --------------------------------------------------------------------


async def test_conformance_kit(postgres_dsn: str, schema: str) -> None:
    await check_storage(lambda: Postgres(postgres_dsn, schema=schema))
    await check_storage(lambda: Postgres(postgres_dsn, schema=schema))  # over existing data


async def test_open_creates_the_tables(postgres_dsn: str, schema: str) -> None:
    a, b = await opened(postgres_dsn, schema), await opened(postgres_dsn, schema)  # the second finds them
    try:
        rows = await sql(
            postgres_dsn,
            "SELECT table_name, column_name, data_type FROM information_schema.columns"
            " WHERE table_schema = %s ORDER BY table_name, ordinal_position",
            schema,
        )
        assert rows == [
            ("parts", "key", "text"),
            ("parts", "part", "bytea"),
            ("parts", "value", "bytea"),
            ("servers", "key", "text"),
            ("servers", "vsn", "integer"),
            ("servers", "token", "bigint"),
            ("servers", "owner", "text"),
        ]
    finally:
        await a.aclose()
        await b.aclose()


async def test_closed_storage_refuses_calls(postgres_dsn: str, schema: str) -> None:
    s = Postgres(postgres_dsn, schema=schema)
    with pytest.raises(StorageError, match="not open"):
        await s.load("k")
    await s.open()
    await s.aclose()
    with pytest.raises(StorageError, match="not open"):
        await s.claim("k", "A")
    await s.release("k", 1)  # nothing held: ignored


async def test_unreachable_server_is_a_storage_error(schema: str) -> None:
    s = Postgres("host=127.0.0.1 port=1 dbname=nothing connect_timeout=5", schema=schema)
    with pytest.raises(StorageError, match="cannot connect"):
        await s.open()


def test_constructor_validates() -> None:
    with pytest.raises(TypeError, match="dsn must be a str"):
        Postgres(b"dbname=x")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="schema must be a non-empty str"):
        Postgres("dbname=x", schema="")
    with pytest.raises(TypeError, match="final"):
        type("Sub", (Postgres,), {})


def test_import_works_without_psycopg() -> None:
    code = (
        "import sys; sys.modules['psycopg'] = None\n"
        "import trio, trio_peeper, trio_peeper.storage as st\n"
        "s = st.Postgres('dbname=x')\n"
        "try:\n"
        "    trio.run(s.open)\n"
        "except trio_peeper.StorageError as e:\n"
        "    print(e)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=_env(), check=True)
    assert out.stdout.strip() == "the Postgres storage needs psycopg 3: pip install 'psycopg[binary]>=3.2'"


async def test_one_live_owner_per_key(postgres_dsn: str, schema: str) -> None:
    a, b = await opened(postgres_dsn, schema), await opened(postgres_dsn, schema)
    try:
        t1 = await a.claim("k", "A")
        for storage, owner in ((a, "A"), (a, "B"), (b, "A"), (b, "B")):  # same owner again too
            with pytest.raises(AlreadyStarted) as info:
                await storage.claim("k", owner)
            assert info.value.name == "k"
        await a.release("k", t1 + 1)  # stale: ignored
        with pytest.raises(AlreadyStarted):
            await b.claim("k", "B")
        await a.release("k", t1)
        t2 = await b.claim("k", "B")
        assert t2 > t1
        assert await sql(postgres_dsn, f'SELECT owner, token FROM "{schema}".servers') == [("B", t2)]
        await b.release("k", t2)
        assert await sql(postgres_dsn, f'SELECT owner FROM "{schema}".servers') == [(None,)]
        assert await a.claim("k", "A") > t2
    finally:
        await a.aclose()
        await b.aclose()


async def test_aclose_frees_the_keys(postgres_dsn: str, schema: str) -> None:
    a, b = await opened(postgres_dsn, schema), await opened(postgres_dsn, schema)
    try:
        t1 = await a.claim("k", "A")
        await a.aclose()
        assert await b.claim("k", "B") > t1
    finally:
        await b.aclose()


async def test_write_load_delete(postgres_dsn: str, schema: str) -> None:
    s = await opened(postgres_dsn, schema)
    try:
        assert await s.load("k") is None
        t = await s.claim("k", "A")
        assert await s.load("k") is None  # claimed, nothing written yet
        pa, pb, pc = part_name("a"), part_name("b"), part_name("c")
        assert await s.write([Write("k", t, 3, {pa: encode_record(1), pb: encode_record(2)})]) == [None]
        stored = await s.load("k")
        assert stored is not None
        assert (stored.vsn, stored.token) == (3, t)
        assert {k: decode_record(v) for k, v in stored.parts.items()} == {pa: 1, pb: 2}
        # one batch, one key three times: applied in order
        results = await s.write(
            [
                Write("k", t, 4, {pc: encode_record(3)}, [pa]),
                Write("k", t, 5, {pa: encode_record(10)}, [pb]),
                Write("k", t, 6, {pb: encode_record(20), pc: encode_record(30)}, [pa], replace=True),
            ]
        )
        assert results == [None, None, None]
        stored = await s.load("k")
        assert stored is not None
        assert stored.vsn == 6
        assert {k: decode_record(v) for k, v in stored.parts.items()} == {pb: 20, pc: 30}
        assert await s.write([]) == []
        with pytest.raises(Fenced) as info:
            await s.delete("k", t - 1)
        assert (info.value.token, info.value.current) == (t - 1, t)
        assert await s.load("k") is not None
        await s.delete("k", t)
        assert await s.load("k") is None
        with pytest.raises(Fenced):
            await s.delete("never-claimed", 1)
    finally:
        await s.aclose()


async def test_state_survives_the_storage_object(postgres_dsn: str, schema: str) -> None:
    s = await opened(postgres_dsn, schema)
    t = await s.claim("k", "A")
    await s.write([Write("k", t, 1, {WHOLE: encode_record({"n": 7})})])
    await s.aclose()
    s = await opened(postgres_dsn, schema)
    try:
        stored = await s.load("k")
        assert stored is not None
        assert decode_record(stored.parts[WHOLE]) == {"n": 7}
        assert await s.claim("k", "A") > t
    finally:
        await s.aclose()


async def test_group_commit_is_one_transaction(postgres_dsn: str, schema: str) -> None:
    s = await opened(postgres_dsn, schema)
    try:
        keys = [f"k{i}" for i in range(50)]
        tokens = [await s.claim(k, "A") for k in keys]
        batch = [Write(k, t, 1, {part_name(j): encode_record([k, j]) for j in range(3)}) for k, t in zip(keys, tokens, strict=True)]
        assert await s.write(batch) == [None] * len(keys)
        # every row the batch touched carries the id of one and the same transaction
        xids = await sql(
            postgres_dsn,
            f'SELECT DISTINCT xmin::text FROM "{schema}".parts UNION SELECT DISTINCT xmin::text FROM "{schema}".servers',
        )
        assert len(xids) == 1
        assert await sql(postgres_dsn, f'SELECT count(*) FROM "{schema}".parts') == [(150,)]
    finally:
        await s.aclose()


async def test_a_failing_batch_writes_nothing(postgres_dsn: str, schema: str) -> None:
    s = await opened(postgres_dsn, schema)
    try:
        t1, t2 = await s.claim("k1", "A"), await s.claim("k2", "A")
        await s.write([Write("k1", t1, 1, {WHOLE: encode_record(1)})])
        with pytest.raises(StorageError, match=r"^Postgres storage: write of 2 change\(s\) failed: .*integer"):
            await s.write([Write("k1", t1, 2, {WHOLE: encode_record(2)}), Write("k2", t2, 2**40, {WHOLE: encode_record(2)})])
        stored = await s.load("k1")
        assert stored is not None
        assert (stored.vsn, decode_record(stored.parts[WHOLE])) == (1, 1)
        assert await s.load("k2") is None
        assert await s.write([Write("k2", t2, 2, {WHOLE: encode_record(2)})]) == [None]  # still usable
    finally:
        await s.aclose()


async def test_fencing(postgres_dsn: str, schema: str) -> None:
    a, b = await opened(postgres_dsn, schema), await opened(postgres_dsn, schema)
    try:
        t1 = await a.claim("k", "A")
        await a.write([Write("k", t1, 1, {WHOLE: encode_record("a")})])
        await a.release("k", t1)
        t2 = await b.claim("k", "B")
        other = await a.claim("other", "A")
        results = await a.write(
            [
                Write("k", t1, 9, {WHOLE: encode_record("stale")}, replace=True),
                Write("other", other, 1, {WHOLE: encode_record("fine")}),
                Write("nobody", 1, 1, {WHOLE: encode_record("never claimed")}),
            ]
        )
        assert isinstance(results[0], Fenced)
        assert (results[0].key, results[0].token, results[0].current) == ("k", t1, t2)
        assert results[1] is None
        assert isinstance(results[2], Fenced)
        assert results[2].current is None
        stored = await b.load("k")
        assert stored is not None
        assert (stored.vsn, stored.token, decode_record(stored.parts[WHOLE])) == (1, t2, "a")
        assert await a.load("nobody") is None
        assert await b.write([Write("k", t2, 2, {WHOLE: encode_record("b")})]) == [None]
    finally:
        await a.aclose()
        await b.aclose()


# -- owners that die -----------------------------------------------------------------

_CLAIMER = """
import sys, trio
from trio_peeper.storage import Postgres

async def main(dsn, schema, key):
    s = Postgres(dsn, schema=schema)
    await s.open()
    token = await s.claim(key, "the-other-process")
    print("claimed", token, flush=True)
    await trio.sleep_forever()

trio.run(main, *sys.argv[1:])
"""


def _env() -> dict[str, str]:
    src = Path(__file__).resolve().parents[2] / "src"
    path = os.environ.get("PYTHONPATH", "")
    return {**os.environ, "PYTHONPATH": f"{src}{os.pathsep}{path}" if path else str(src)}


async def test_a_dead_owner_process_frees_its_keys_at_once(postgres_dsn: str, schema: str) -> None:
    name = f"dead_{schema}"
    dsn = f"{postgres_dsn} application_name={name}"
    proc = subprocess.Popen(
        [sys.executable, "-c", _CLAIMER, dsn, schema, "k"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=_env(),
    )
    s = await opened(postgres_dsn, schema)
    try:
        assert proc.stdout is not None
        line = await trio.to_thread.run_sync(proc.stdout.readline)
        if not line.startswith("claimed "):
            proc.kill()
            _, err = await trio.to_thread.run_sync(proc.communicate)
            pytest.fail(f"the claiming process said {line!r}:\n{err}")
        theirs = int(line.split()[1])
        with pytest.raises(AlreadyStarted):
            await s.claim("k", "me")
        proc.send_signal(signal.SIGKILL)
        await trio.to_thread.run_sync(proc.wait)
        # no lease: the key is free as soon as the server has seen the session end
        await wait_until(
            postgres_dsn,
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s",
            name,
            ok=lambda n: n == 0,
            what="the dead process's session to end",
        )
        mine = await s.claim("k", "me")
        assert mine > theirs
    finally:
        if proc.poll() is None:
            proc.kill()
        await trio.to_thread.run_sync(proc.communicate)
        await s.aclose()


async def test_lost_sessions_are_replaced(postgres_dsn: str, schema: str) -> None:
    name = f"lost_{schema}"
    a = Postgres(f"{postgres_dsn} application_name={name}", schema=schema)
    await a.open()
    b = await opened(postgres_dsn, schema)
    try:
        t1 = await a.claim("k", "A")
        await a.write([Write("k", t1, 1, {WHOLE: encode_record(1)})])
        assert await a.load("k") is not None
        # the server ends every session of *a* (an administrator, a failover)
        await sql(postgres_dsn, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = %s", name)
        await wait_until(
            postgres_dsn,
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s",
            name,
            ok=lambda n: n == 0,
            what="the sessions to end",
        )
        t2 = await b.claim("k", "B")  # a's lock died with its session
        assert t2 > t1
        with pytest.raises(StorageError, match=r"^Postgres storage: write of 1 change\(s\) failed"):
            await a.write([Write("k", t1, 2, {WHOLE: encode_record(2)})])
        results = await a.write([Write("k", t1, 2, {WHOLE: encode_record(2)})])  # a new session: fenced
        assert isinstance(results[0], Fenced)
        with pytest.raises(StorageError, match=r"^Postgres storage: load of key 'k' failed"):
            await a.load("k")
        stored = await a.load("k")
        assert stored is not None
        assert (stored.vsn, stored.token) == (1, t2)
        with pytest.raises(AlreadyStarted):
            await a.claim("k", "A")  # a still believes it holds "k"; b does
        await b.release("k", t2)
        await a.release("k", t1)  # a stale token: ignored, and its session is replaced on the next call
        t3 = await a.claim("other", "A")
        assert t3 == 1
        assert await a.claim("k", "A") > t2  # the lost claim was forgotten with its session
    finally:
        await a.aclose()
        await b.aclose()


# -- cancellation --------------------------------------------------------------------


async def _cancel_when_blocked(dsn: str, schema: str, call: Callable[[], Any]) -> tuple[bool, float]:
    """Run *call*, cancel it once its query waits for a lock; (whether it returned, real seconds)."""
    returned = False

    async def victim() -> None:
        nonlocal returned
        await call()
        returned = True

    start = time.monotonic()
    with trio.CancelScope() as cs:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(victim)
            await wait_for_lock_wait(dsn, schema)
            cs.cancel()
    assert cs.cancelled_caught
    return returned, time.monotonic() - start


async def test_a_cancelled_write_stops_its_query(postgres_dsn: str, schema: str) -> None:
    s = await opened(postgres_dsn, schema)
    try:
        t = await s.claim("k", "A")
        await s.write([Write("k", t, 1, {WHOLE: encode_record(1)})])
        lock = await blocker(postgres_dsn, f'LOCK TABLE "{schema}".parts IN ACCESS EXCLUSIVE MODE')
        try:
            # the write updates servers, then waits for the parts table
            returned, elapsed = await _cancel_when_blocked(
                postgres_dsn, schema, lambda: s.write([Write("k", t, 2, {WHOLE: encode_record(2)})])
            )
            assert not returned
            assert elapsed < SAFETY / 2  # the blocker still holds its lock: the query was stopped
            sessions = await storage_sessions(postgres_dsn, schema)
            assert sessions
            assert all(state == "idle" for state, _ in sessions), sessions  # no open transaction
            assert await sql(postgres_dsn, f'SELECT vsn FROM "{schema}".servers') == [(1,)]  # rolled back
        finally:
            await trio.to_thread.run_sync(lock.release)
        assert await s.write([Write("k", t, 3, {WHOLE: encode_record(3)})]) == [None]
        stored = await s.load("k")
        assert stored is not None
        assert (stored.vsn, decode_record(stored.parts[WHOLE])) == (3, 3)
    finally:
        await s.aclose()


async def test_a_cancelled_load_stops_its_query(postgres_dsn: str, schema: str) -> None:
    s = await opened(postgres_dsn, schema)
    try:
        t = await s.claim("k", "A")
        await s.write([Write("k", t, 1, {WHOLE: encode_record(1)})])
        lock = await blocker(postgres_dsn, f'LOCK TABLE "{schema}".parts IN ACCESS EXCLUSIVE MODE')
        try:
            returned, elapsed = await _cancel_when_blocked(postgres_dsn, schema, lambda: s.load("k"))
            assert not returned
            assert elapsed < SAFETY / 2
        finally:
            await trio.to_thread.run_sync(lock.release)
        stored = await s.load("k")
        assert stored is not None
        assert stored.vsn == 1
    finally:
        await s.aclose()


async def test_a_cancelled_claim_holds_nothing(postgres_dsn: str, schema: str) -> None:
    a, b = await opened(postgres_dsn, schema), await opened(postgres_dsn, schema)
    try:
        t1 = await a.claim("k", "A")
        await a.release("k", t1)
        lock = await blocker(postgres_dsn, f"SELECT 1 FROM \"{schema}\".servers WHERE key = 'k' FOR UPDATE")
        try:
            # the claim takes the advisory lock, then waits to bump the token
            returned, elapsed = await _cancel_when_blocked(postgres_dsn, schema, lambda: a.claim("k", "A"))
            assert not returned
            assert elapsed < SAFETY / 2
            assert await sql(postgres_dsn, "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'") == [(0,)]
        finally:
            await trio.to_thread.run_sync(lock.release)
        t2 = await b.claim("k", "B")  # the cancelled claim left the key free
        assert t2 == t1 + 1  # and did not bump the token
        await b.release("k", t2)
        assert await a.claim("k", "A") > t2  # nor did it leave "k" marked as held by a
    finally:
        await a.aclose()
        await b.aclose()


async def test_a_cancelled_slow_query_returns_promptly(postgres_dsn: str, schema: str) -> None:
    s = await opened(postgres_dsn, schema)
    try:

        def slow(conn: psycopg.Connection[Any], call: Any) -> None:
            call.execute(conn.cursor(), f"SELECT pg_sleep({SAFETY}) /* {schema} */")

        returned = False

        async def victim() -> None:
            nonlocal returned
            await s._run(s._reader, "sleep", slow)
            returned = True

        start = time.monotonic()
        with trio.CancelScope() as cs:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(victim)
                await wait_until(
                    postgres_dsn,
                    "SELECT count(*) FROM pg_stat_activity WHERE state = 'active' AND position(%s in query) > 0"
                    " AND pid <> pg_backend_pid()",
                    f"/* {schema} */",
                    what="pg_sleep to run",
                )
                cs.cancel()
        assert cs.cancelled_caught
        assert not returned
        assert time.monotonic() - start < SAFETY / 2
        assert [state for state, _ in await storage_sessions(postgres_dsn, schema)] == ["idle", "idle"]  # writer, reader
        assert await s.load("k") is None  # the same connection, usable
    finally:
        await s.aclose()


async def test_a_call_cancelled_before_it_starts_does_nothing(postgres_dsn: str, schema: str) -> None:
    s = await opened(postgres_dsn, schema)
    try:
        with trio.CancelScope() as cs:
            cs.cancel()
            await s.claim("k", "A")
        assert cs.cancelled_caught
        assert await sql(postgres_dsn, f'SELECT count(*) FROM "{schema}".servers') == [(0,)]
        t = await s.claim("k", "A")
        with trio.CancelScope() as cs:
            cs.cancel()
            await s.write([Write("k", t, 1, {WHOLE: encode_record(1)})])
        assert cs.cancelled_caught
        assert await s.load("k") is None
    finally:
        await s.aclose()
