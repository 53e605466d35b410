"""The SQLite storage backend: conformance kit, group commit, fencing, liveness across processes."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import trio

from trio_peeper._errors import AlreadyStarted, StorageError
from trio_peeper.storage import SQLite, Stored, Write
from trio_peeper.storage._base import WHOLE, Fenced
from trio_peeper.storage._codec import decode_record, encode_record, part_name

SRC = str(Path(__file__).resolve().parents[2] / "src")


@pytest.fixture
def db(tmp_path: Path) -> str:
    return str(tmp_path / "state.db")


async def opened(path: str, **kwargs: str) -> SQLite:
    s = SQLite(path, **kwargs)
    await s.open()
    return s


# ---------------------------------------------------------------- conformance


async def test_conformance_kit(db: str) -> None:
    from trio_peeper.testing import check_storage

    await check_storage(lambda: SQLite(db))
    await check_storage(lambda: SQLite(db))  # again over the data the first run left


async def test_conformance_kit_synchronous_normal(db: str) -> None:
    from trio_peeper.testing import check_storage

    await check_storage(lambda: SQLite(db, synchronous="normal"))


# ----------------------------------------------------------- construction, life


def test_constructor_validates() -> None:
    with pytest.raises(ValueError, match="synchronous"):
        SQLite("x.db", synchronous="SOMETIMES")
    with pytest.raises(ValueError, match="Memory"):
        SQLite(":memory:")
    with pytest.raises(TypeError):

        class Sub(SQLite):  # type: ignore[misc]
            pass


async def test_schema_and_pragmas(db: str) -> None:
    s = await opened(db)
    try:
        with sqlite3.connect(db) as raw:
            assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
            tables = {r[0]: r[1] for r in raw.execute("SELECT name, sql FROM sqlite_master WHERE type = 'table'")}
            assert set(tables) == {"servers", "parts"}
            assert "WITHOUT ROWID" in tables["parts"]
            cols = [r[1] for r in raw.execute("PRAGMA table_info(servers)")]
            assert cols == ["key", "vsn", "token", "owner"]
        raw.close()
        assert os.path.isdir(db + ".owners")
    finally:
        await s.aclose()


async def test_unopened_and_closed_raise_storage_error(db: str) -> None:
    s = SQLite(db)
    with pytest.raises(StorageError, match="not open"):
        await s.claim("k", "o")
    await s.open()
    t = await s.claim("k", "o")
    await s.aclose()
    await s.aclose()  # idempotent
    for op in (lambda: s.claim("k", "o"), lambda: s.load("k"), lambda: s.write([]), lambda: s.delete("k", t)):
        with pytest.raises(StorageError, match="not open"):
            await op()
    # and it opens again
    await s.open()
    try:
        assert await s.claim("k", "o") == t + 1
    finally:
        await s.aclose()


async def test_open_fails_cleanly_on_a_bad_path(tmp_path: Path) -> None:
    s = SQLite(str(tmp_path / "no" / "such" / "dir" / "state.db"))
    with pytest.raises(StorageError, match="failed"):
        await s.open()
    with pytest.raises(StorageError, match="not open"):
        await s.load("k")
    await s.aclose()


async def test_newer_schema_refused(db: str) -> None:
    raw = sqlite3.connect(db)
    raw.execute("PRAGMA user_version = 99")
    raw.close()
    with pytest.raises(StorageError, match="schema version 99"):
        await opened(db)


# ---------------------------------------------------------- writes and fencing


async def test_group_commit_of_100_writes_is_one_transaction(db: str) -> None:
    s = await opened(db)
    try:
        tokens = [await s.claim(f"k{i}", "me") for i in range(100)]
        before = s._commits
        batch = [Write(f"k{i}", tokens[i], 1, {WHOLE: encode_record(i)}) for i in range(100)]
        assert await s.write(batch) == [None] * 100
        assert s._commits == before + 1
        for i in (0, 57, 99):
            stored = await s.load(f"k{i}")
            assert stored is not None and decode_record(stored.parts[WHOLE]) == i
    finally:
        await s.aclose()


async def test_a_failing_batch_writes_nothing_and_leaves_no_transaction(db: str) -> None:
    s = await opened(db)
    try:
        tokens = [await s.claim(f"k{i}", "me") for i in range(100)]
        assert await s.write([Write(f"k{i}", tokens[i], 1, {WHOLE: encode_record("old")}) for i in range(100)]) == [None] * 100
        raw = sqlite3.connect(db)
        raw.execute(
            "CREATE TRIGGER boom BEFORE UPDATE ON parts WHEN NEW.key = 'k50'"
            " BEGIN SELECT RAISE(ABORT, 'disk on fire'); END"
        )
        raw.close()
        batch = [Write(f"k{i}", tokens[i], 2, {WHOLE: encode_record("new")}) for i in range(100)]
        with pytest.raises(StorageError, match="disk on fire"):
            await s.write(batch)
        for i in (0, 49, 50, 99):
            stored = await s.load(f"k{i}")
            assert stored is not None and stored.vsn == 1 and decode_record(stored.parts[WHOLE]) == "old"
        raw = sqlite3.connect(db)
        raw.execute("DROP TRIGGER boom")
        raw.close()
        # the connection is usable again: no transaction was left open
        assert await s.write(batch[:3]) == [None] * 3
        stored = await s.load("k1")
        assert stored is not None and decode_record(stored.parts[WHOLE]) == "new"
    finally:
        await s.aclose()


async def test_fencing(db: str) -> None:
    a, b = await opened(db), await opened(db)
    try:
        ta = await a.claim("k", "A")
        tk2 = await a.claim("k2", "A")
        assert await a.write([Write("k", ta, 1, {WHOLE: encode_record("a")})]) == [None]
        with pytest.raises(AlreadyStarted):
            await b.claim("k", "B")
        await a.release("k", ta)
        tb = await b.claim("k", "B")
        assert tb > ta
        results = await a.write(
            [Write("k2", tk2, 1, {WHOLE: encode_record("k2")}), Write("k", ta, 9, {WHOLE: encode_record("stale")})]
        )
        assert results[0] is None
        fenced = results[1]
        assert isinstance(fenced, Fenced) and (fenced.key, fenced.token, fenced.current) == ("k", ta, tb)
        stored = await a.load("k")
        assert stored is not None and (stored.vsn, stored.token) == (1, tb) and decode_record(stored.parts[WHOLE]) == "a"
        # a write to a key never claimed is fenced too
        (never,) = await a.write([Write("nobody", 1, 1, {WHOLE: encode_record(0)})])
        assert isinstance(never, Fenced) and never.current is None
        with pytest.raises(Fenced):
            await a.delete("k", ta)
        await a.release("k", ta)  # stale: ignored
        with pytest.raises(AlreadyStarted):
            await a.claim("k", "A")
        # the same owner claims again: a new token
        assert await b.claim("k", "B") == tb + 1
    finally:
        await a.aclose()
        await b.aclose()


async def test_delete_keeps_tokens_growing_and_survives_reopen(db: str) -> None:
    s = await opened(db)
    t = await s.claim("k", "A")
    await s.write([Write("k", t, 3, {part_name("x"): encode_record(1), part_name("y"): encode_record(2)})])
    await s.delete("k", t)
    assert await s.load("k") is None
    await s.aclose()
    s = await opened(db)
    try:
        t2 = await s.claim("k", "A")
        assert t2 > t
        assert await s.load("k") is None
        await s.write([Write("k", t2, 4, {part_name("z"): encode_record(3)})])
        stored = await s.load("k")
        assert stored is not None and stored.vsn == 4 and set(stored.parts) == {part_name("z")}
    finally:
        await s.aclose()


async def test_closing_frees_the_keys_in_this_process(db: str) -> None:
    a, b = await opened(db), await opened(db)
    try:
        await a.claim("k", "A")
        with pytest.raises(AlreadyStarted):
            await b.claim("k", "B")
        assert os.path.exists(db + ".owners/A.lock")
        await a.aclose()
        assert not os.path.exists(db + ".owners/A.lock")
        assert await b.claim("k", "B") > 0
    finally:
        await a.aclose()
        await b.aclose()


async def test_odd_owner_ids_get_safe_lock_files(db: str) -> None:
    a, b = await opened(db), await opened(db)
    try:
        owners = ["../../etc/passwd", "", ".", "x" * 500, "nœud/1"]
        for i, owner in enumerate(owners):
            await a.claim(f"k{i}", owner)
            with pytest.raises(AlreadyStarted):
                await b.claim(f"k{i}", "other")
        assert all(os.path.dirname(os.path.join(db + ".owners", f)) == db + ".owners" for f in os.listdir(db + ".owners"))
        assert len(os.listdir(db + ".owners")) == len(owners)
    finally:
        await a.aclose()
        await b.aclose()


async def test_concurrent_callers_share_transactions(db: str) -> None:
    s = await opened(db)
    try:
        tokens = {i: await s.claim(f"k{i}", "me") for i in range(50)}
        before = s._commits

        async def one(i: int) -> None:
            assert await s.write([Write(f"k{i}", tokens[i], 1, {WHOLE: encode_record(i)})]) == [None]

        async with trio.open_nursery() as nursery:
            for i in range(50):
                nursery.start_soon(one, i)
        assert 1 <= s._commits - before <= 50
        for i in range(50):
            stored = await s.load(f"k{i}")
            assert stored is not None and decode_record(stored.parts[WHOLE]) == i
    finally:
        await s.aclose()


async def test_cancelled_caller_leaves_an_atomic_result(db: str) -> None:
    s = await opened(db)
    try:
        t = await s.claim("k", "me")
        for n in range(20):
            parts = {part_name(i): encode_record(n) for i in range(50)}
            with trio.CancelScope() as scope:
                scope.cancel()  # cancelled before submitting: nothing is written
                await s.write([Write("k", t, 1, parts)])
            # cancelled while in flight (or just done)
            async with trio.open_nursery() as nursery:
                submitted = trio.Event()

                async def cancellable(task_status: trio.TaskStatus[trio.CancelScope]) -> None:
                    with trio.CancelScope() as scope:
                        task_status.started(scope)
                        submitted.set()
                        await s.write([Write("k", t, 1, parts)])  # may also finish first

                scope = await nursery.start(cancellable)
                await submitted.wait()
                if n % 2:
                    await trio.testing.wait_all_tasks_blocked()
                scope.cancel()
            stored = await s.load("k")
            if stored is not None:
                values = {decode_record(v) for v in stored.parts.values()}
                assert len(values) == 1 and len(stored.parts) == 50
        # the storage goes on working
        assert await s.write([Write("k", t, 2, {WHOLE: encode_record("end")}, replace=True)]) == [None]
        stored = await s.load("k")
        assert stored is not None and stored.parts == {WHOLE: encode_record("end")}
    finally:
        await s.aclose()


async def test_aclose_finishes_pending_writes(db: str) -> None:
    s = await opened(db)
    t = await s.claim("k", "me")
    done: list[int] = []

    async def writer(i: int) -> None:
        await s.write([Write("k", t, 1, {part_name(i): encode_record(i)})])
        done.append(i)

    async with trio.open_nursery() as nursery:
        for i in range(20):
            nursery.start_soon(writer, i)
        await trio.testing.wait_all_tasks_blocked()
        await s.aclose()
    assert sorted(done) == list(range(20))
    s = await opened(db)
    try:
        stored = await s.load("k")
        assert stored is not None and len(stored.parts) == 20
    finally:
        await s.aclose()


async def test_concurrent_readers_while_writing(db: str) -> None:
    w, r = await opened(db), await opened(db)
    try:
        t = await w.claim("k", "writer")
        rounds = 60
        seen: set[int] = set()
        finished = False

        async def writer() -> None:
            nonlocal finished
            for n in range(rounds):
                # every part carries the round number: a torn read would mix rounds
                assert await w.write([Write("k", t, 1, {part_name(i): encode_record(n) for i in range(20)})]) == [None]
            finished = True

        async def reader(storage: SQLite) -> None:
            while not finished:
                stored = await storage.load("k")
                if stored is not None:
                    assert isinstance(stored, Stored) and len(stored.parts) == 20
                    values = {decode_record(v) for v in stored.parts.values()}
                    assert len(values) == 1, values
                    seen.update(values)  # type: ignore[arg-type]

        async with trio.open_nursery() as nursery:
            nursery.start_soon(writer)
            for storage in (r, r, r, w, w):
                nursery.start_soon(reader, storage)
        stored = await r.load("k")
        assert stored is not None and {decode_record(v) for v in stored.parts.values()} == {rounds - 1}
    finally:
        await w.aclose()
        await r.aclose()


# ------------------------------------------------------------ other processes

CHILD = textwrap.dedent(
    """
    import sys, trio
    from trio_peeper.storage import SQLite, Write
    from trio_peeper.storage._base import WHOLE
    from trio_peeper.storage._codec import encode_record

    async def main():
        s = SQLite(sys.argv[1])
        await s.open()
        token = await s.claim("k", "child")
        print("claimed", token, flush=True)
        if sys.argv[2] == "write":
            assert await s.write([Write("k", token, 7, {WHOLE: encode_record("from the child")})]) == [None]
            print("written", flush=True)
        await trio.sleep_forever()

    trio.run(main)
    """
)


async def start_child(db: str, mode: str) -> tuple[trio.Process, list[str]]:
    env = dict(os.environ, PYTHONPATH=SRC + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = await trio.lowlevel.open_process(
        [sys.executable, "-c", CHILD, db, mode], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env
    )
    assert proc.stdout is not None
    want = "written" if mode == "write" else "claimed"
    buf = b""
    lines: list[str] = []
    # no timeout: virtual time would run out at once; a child that dies gives EOF
    while not any(line.startswith(want) for line in lines):
        chunk = await proc.stdout.receive_some()
        if not chunk:
            assert proc.stderr is not None
            err = b""
            while more := await proc.stderr.receive_some():
                err += more
            await proc.wait()
            pytest.fail(f"the child exited ({proc.returncode}) before {want!r}: {err.decode(errors='replace')}")
        buf += chunk
        *done, buf = buf.split(b"\n")
        lines += [line.decode() for line in done]
    return proc, lines


async def kill(proc: trio.Process) -> None:
    proc.send_signal(signal.SIGKILL)
    await proc.wait()
    assert proc.returncode == -signal.SIGKILL
    for stream in (proc.stdout, proc.stderr):
        if stream is not None:
            await stream.aclose()


async def test_dead_owner_in_another_process_is_detected_at_once(db: str) -> None:
    s = await opened(db)  # the schema exists before the child starts
    try:
        proc, lines = await start_child(db, "claim")
        try:
            child_token = int(lines[0].split()[1])
            with pytest.raises(AlreadyStarted):
                await s.claim("k", "parent")
            assert os.path.exists(db + ".owners/child.lock")
        finally:
            await kill(proc)
        token = await s.claim("k", "parent")  # no lease to wait out
        assert token > child_token
        assert not os.path.exists(db + ".owners/child.lock")
    finally:
        await s.aclose()


async def test_acknowledged_write_survives_kill_9(db: str) -> None:
    proc, _ = await start_child(db, "write")
    await kill(proc)
    s = await opened(db)
    try:
        stored = await s.load("k")
        assert stored is not None and stored.vsn == 7
        assert decode_record(stored.parts[WHOLE]) == "from the child"
        assert await s.claim("k", "parent") == stored.token + 1
    finally:
        await s.aclose()


async def test_a_missing_lock_file_means_a_dead_holder(db: str) -> None:
    s = await opened(db)
    try:
        raw = sqlite3.connect(db)
        with raw:
            raw.execute("INSERT INTO servers (key, vsn, token, owner) VALUES ('k', 0, 41, 'ghost')")
        raw.close()
        assert await s.claim("k", "me") == 42
    finally:
        await s.aclose()
