"""DurableServer behaviour (API.md sections 9 and 10 "Durability"), on Memory, SQLite and PostgreSQL.

State survives a new ``trio.run`` and a new process; the first boot goes
through ``dump_state``/``load_state``; versioned migrations (three versions);
a newer stored version is a `VersionError`; one live owner per key (this
node, another owner of the storage, another process); a key is free again
once its server stopped for good; a stale owner is fenced off; writes carry
only the changed top-level keys; bad input (unencodable data, a raising
``load_state``, a corrupt record) fails clearly and overwrites nothing.

Every trio test runs on an autojump MockClock while SQLite and psycopg work in
threads, so the virtual clock may jump to the next deadline during any storage
call: calls here pass ``timeout=None``, standalone starts ``timeout=inf`` and
children ``shutdown=inf``, and nothing asserts times.
"""

from __future__ import annotations

import math
import subprocess
from typing import Any

import pytest
import trio
import trio.testing

import trio_peeper as tp
from _child import Counter, assemble
from trio_peeper.storage import Fenced, Write
from trio_peeper.storage._base import WHOLE
from trio_peeper.storage._codec import encode_record, part_name

INF = math.inf


def spec(cls: type[tp.DurableServer], key: str, **options: Any) -> tp.ChildSpec:
    return tp.child(cls, key=key, shutdown=INF, **options)


async def start(nursery: trio.Nursery, cls: type[tp.DurableServer], key: str, **options: Any) -> Any:
    return await tp.start_server(nursery, cls, key=key, timeout=INF, **options)


async def once_released(fn: Any, *args: Any, **options: Any) -> Any:
    """``await fn(*args, **options)`` once the node's release of the key, still in flight, landed.

    On PostgreSQL a key whose server just stopped (or failed to start) stays
    held until the node's background release reaches the storage (the bug that
    `test_a_key_can_be_started_again_at_once` shows); tests about other things
    wait that out here. Any other error propagates.
    """
    for _ in range(100_000):
        try:
            return await fn(*args, **options)
        except tp.AlreadyStarted:
            await trio.sleep(0)
    raise AssertionError("the key was never released")


async def call(ref: Any, request: Any) -> Any:
    return await ref.call(request, timeout=None)


def run(fn: Any, *args: Any) -> Any:
    """A whole new ``trio.run`` on virtual time."""
    return trio.run(fn, *args, clock=trio.testing.MockClock(autojump_threshold=0))


def child_run(backend: Any, key: str, commands: str) -> subprocess.CompletedProcess[str]:
    """`_child.py` over *backend*'s data, fed *commands* on stdin, to its end."""
    return subprocess.run(
        backend.child_args(key), input=commands, capture_output=True, text=True, env=backend.env(), timeout=60
    )


def run_child(backend: Any, key: str, commands: str) -> list[str]:
    proc = child_run(backend, key, commands)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.splitlines()


class Opaque:
    """Not msgpack/JSON-able."""

    def __repr__(self) -> str:
        return "<Opaque thing>"


class Store(tp.DurableServer):
    """A dict state and a few in-place operations on it."""

    async def handle_call(self, request: Any, caller: Any, state: Any) -> Any:
        match request:
            case "get":
                return tp.Reply(state, state)
            case ("set", k, v):
                state[k] = v
                return tp.Reply(v, state)
            case ("append", k, v):
                state[k].append(v)
                return tp.Reply(None, state)
            case ("del", k):
                del state[k]
                return tp.Reply(None, state)
            case ("inc", k):
                state[k] = state.get(k, 0) + 1
                return tp.Reply(state[k], state)
            case "crash":
                raise RuntimeError("boom")
            case ("stop", reason):
                return tp.Stop(reason, state, reply="stopping")
        raise AssertionError(request)


# ------------------------------------------------------------------ survival


def test_state_survives_a_new_trio_run(backend: Any) -> None:
    async def first() -> Any:
        async with tp.open_node(storage=backend.make()):
            async with tp.open_dynamic_supervisor() as dsup:
                ref = await dsup.start_child(spec(Store, "acct", initial_state={"n": 0}))
                for _ in range(3):
                    await call(ref, ("inc", "n"))
                await call(ref, ("set", "items", [1, 2, {"x": None, "y": 1.5}]))
                return await call(ref, "get")

    async def second() -> Any:
        async with tp.open_node(storage=backend.make()):
            async with tp.open_dynamic_supervisor() as dsup:
                ref = await dsup.start_child(spec(Store, "acct", initial_state={"n": -1}))
                state = await call(ref, "get")
                await call(ref, ("inc", "n"))
                return state

    expected = {"n": 3, "items": [1, 2, {"x": None, "y": 1.5}]}
    assert run(first) == expected
    assert run(second) == expected
    assert run(second) == {**expected, "n": 4}


def test_state_survives_a_new_process(process_backend: Any) -> None:
    b = process_backend
    assert run_child(b, "proc/1", "inc\ninc\ninc\nget\n") == ["ready 0", "ack 1", "ack 2", "ack 3", "value 3", "bye"]
    assert run_child(b, "proc/1", "inc\n") == ["ready 3", "ack 4", "bye"]

    async def here() -> Any:
        async with tp.open_node(storage=b.make()):
            async with tp.open_dynamic_supervisor() as dsup:
                ref = await dsup.start_child(spec(Counter, "proc/1", initial_state={"n": 0}))
                return await call(ref, "get"), await call(ref, "inc")

    assert run(here) == (4, 5)
    assert run_child(b, "proc/1", "get\n") == ["ready 5", "value 5", "bye"]


# ------------------------------------------------------------- first boot


class Shaped(Store):
    log: list[Any] = []

    def load_state(self, old_vsn: int, data: Any) -> Any:
        type(self).log.append(("load_state", old_vsn, data))
        return data

    async def init(self, state: Any) -> Any:
        type(self).log.append(("init", state))
        return state


async def test_first_boot_sees_the_loaded_shape_and_is_written_at_once(backend: Any, recording: Any) -> None:
    Shaped.log = []
    storage = recording(backend.make())
    initial = {"pair": (1, 2), "nested": {"t": (3, (4,))}, "n": 0}
    loaded = {"pair": [1, 2], "nested": {"t": [3, [4]]}, "n": 0}
    async with tp.open_node(storage=storage) as node:
        async with trio.open_nursery() as nursery:
            ref = await start(nursery, Shaped, "shape", initial_state=initial)
            assert Shaped.log == [("load_state", 1, loaded), ("init", loaded)]
            assert type(Shaped.log[0][2]["pair"]) is list
            # durable before the start returned: one write, the whole state
            assert [(w.key, w.vsn, w.replace) for w in storage.writes] == [("shape", 1, True)]
            stored = await node.storage.load("shape")
            assert stored is not None and stored.vsn == 1
            assert assemble(stored) == loaded
            assert await call(ref, "get") == loaded
            await ref.stop()
        assert initial == {"pair": (1, 2), "nested": {"t": (3, (4,))}, "n": 0}  # not touched
        # a later boot loads the same shape through the same path
        Shaped.log = []
        async with trio.open_nursery() as nursery:
            ref = await once_released(start, nursery, Shaped, "shape", initial_state={"ignored": True})
            assert Shaped.log == [("load_state", 1, loaded), ("init", loaded)]
            assert await call(ref, "get") == loaded
            await ref.stop()
    assert len(storage.writes) == 1  # nothing changed after the first boot


class Account(tp.DurableServer, vsn=2):
    """API.md's example: only the balance is stored; the cache is rebuilt on load."""

    def dump_state(self, state: Any) -> Any:
        return {"balance": state["balance"]}

    def load_state(self, old_vsn: int, data: Any) -> Any:
        return {"balance": data.get("balance", 0), "cache": "fresh"}

    async def handle_call(self, request: Any, caller: Any, state: Any) -> Any:
        if request == "get":
            return tp.Reply(state, state)
        state["balance"] += request
        state["cache"] = "dirty"
        return tp.Reply(state["balance"], state)


async def test_dump_state_decides_what_is_stored(backend: Any) -> None:
    async with tp.open_node(storage=backend.make()) as node:
        async with tp.open_dynamic_supervisor() as dsup:
            ref = await dsup.start_child(spec(Account, "user/123", initial_state={"balance": 5, "cache": "junk"}))
            assert await call(ref, "get") == {"balance": 5, "cache": "fresh"}
            assert await call(ref, 10) == 15
            stored = await node.storage.load("user/123")
            assert stored is not None and stored.vsn == 2 and assemble(stored) == {"balance": 15}
    async with tp.open_node(storage=backend.make()):
        async with tp.open_dynamic_supervisor() as dsup:
            ref = await dsup.start_child(spec(Account, "user/123"))
            assert await call(ref, "get") == {"balance": 15, "cache": "fresh"}


# ------------------------------------------------------------- migrations

MIGRATIONS: list[Any] = []


class V1(Store, vsn=1):
    def load_state(self, old_vsn: int, data: Any) -> Any:
        MIGRATIONS.append(("V1", old_vsn, data))
        return data


class V2(Store, vsn=2):
    def load_state(self, old_vsn: int, data: Any) -> Any:
        MIGRATIONS.append(("V2", old_vsn, data))
        if old_vsn == 1:
            return {"total": data["count"], "history": []}
        return data


class V3(Store, vsn=3):
    def load_state(self, old_vsn: int, data: Any) -> Any:
        MIGRATIONS.append(("V3", old_vsn, data))
        if old_vsn == 1:
            data = {"total": data["count"], "history": []}
        if old_vsn <= 2:
            data = {**data, "unit": "eur"}
        return data


async def test_migrations_across_three_versions(backend: Any, recording: Any) -> None:
    MIGRATIONS.clear()
    storage = recording(backend.make())

    async def boot(cls: type[tp.DurableServer], key: str, **options: Any) -> tuple[Any, int]:
        """Start, read the state, stop; returns the state and how many writes the start made."""
        async with trio.open_nursery() as nursery:
            before = len(storage.writes_of(key))
            ref = await once_released(start, nursery, cls, key, **options)
            writes = len(storage.writes_of(key)) - before
            state = await call(ref, "get")
            await ref.stop()
        return state, writes

    async def stored(key: str) -> tuple[int, Any]:
        s = await storage.load(key)
        assert s is not None
        return s.vsn, assemble(s)

    async with tp.open_node(storage=storage):
        assert await boot(V1, "a", initial_state={"count": 5}) == ({"count": 5}, 1)
        assert await boot(V1, "b", initial_state={"count": 7}) == ({"count": 7}, 1)
        assert await stored("a") == (1, {"count": 5})
        assert MIGRATIONS == [("V1", 1, {"count": 5}), ("V1", 1, {"count": 7})]

        MIGRATIONS.clear()
        v2 = {"total": 5, "history": []}
        assert await boot(V2, "a", initial_state={"count": -1}) == (v2, 1)  # migrated: written at once
        assert MIGRATIONS == [("V2", 1, {"count": 5})]
        assert await stored("a") == (2, v2)
        assert storage.writes_of("a")[-1].vsn == 2

        MIGRATIONS.clear()
        v3a = {"total": 5, "history": [], "unit": "eur"}
        v3b = {"total": 7, "history": [], "unit": "eur"}
        assert await boot(V3, "a") == (v3a, 1)  # from version 2
        assert await boot(V3, "b") == (v3b, 1)  # from version 1
        assert MIGRATIONS == [("V3", 2, v2), ("V3", 1, {"count": 7})]
        assert await stored("a") == (3, v3a)
        assert await stored("b") == (3, v3b)

        # the current version: load_state gets it, nothing is rewritten
        MIGRATIONS.clear()
        assert await boot(V3, "a") == (v3a, 0)
        assert MIGRATIONS == [("V3", 3, v3a)]

    # and in a new node: still version 3
    s = await backend.load("b")
    assert s is not None and (s.vsn, assemble(s)) == (3, v3b)
    async with tp.open_node(storage=backend.make()):
        async with trio.open_nursery() as nursery:
            ref = await start(nursery, V3, "b")
            assert await call(ref, "get") == v3b
            await ref.stop()


async def test_a_newer_stored_version_is_a_version_error(backend: Any) -> None:
    MIGRATIONS.clear()
    async with tp.open_node(storage=backend.make()) as node:
        async with trio.open_nursery() as nursery:
            ref = await start(nursery, V3, "c", initial_state={"total": 1, "history": [], "unit": "chf"})
            await ref.stop()
            before = await node.storage.load("c")
            MIGRATIONS.clear()
            with pytest.raises(tp.VersionError) as ei:
                await once_released(start, nursery, V2, "c")
            assert ei.type is tp.VersionError  # itself, not a StartError
            assert "3" in str(ei.value) and "2" in str(ei.value)
            async with tp.open_dynamic_supervisor() as dsup:
                with pytest.raises(tp.VersionError) as ei:
                    await once_released(dsup.start_child, spec(V2, "c"))
                assert ei.type is tp.VersionError
                assert dsup.which_children() == []
            assert MIGRATIONS == []  # load_state never ran
            after = await node.storage.load("c")
            assert before is not None and after is not None
            assert (after.vsn, after.parts) == (before.vsn, before.parts)
            # the failed starts did not keep the key
            ref = await once_released(start, nursery, V3, "c")
            assert await call(ref, "get") == {"total": 1, "history": [], "unit": "chf"}
            await ref.stop()


# --------------------------------------------------------- one live owner


async def test_a_second_start_in_the_same_node_is_already_started(backend: Any) -> None:
    async with tp.open_node(storage=backend.make()):
        async with trio.open_nursery() as nursery, tp.open_dynamic_supervisor() as dsup:
            ref = await start(nursery, Store, "dup", initial_state={"n": 1})
            with pytest.raises(tp.AlreadyStarted) as ei:
                await start(nursery, Store, "dup", initial_state={"n": 2})
            assert ei.type is tp.AlreadyStarted and ei.value.ref is ref
            with pytest.raises(tp.AlreadyStarted) as ei:
                await dsup.start_child(spec(Counter, "dup"))
            assert ei.type is tp.AlreadyStarted
            assert dsup.which_children() == []
            assert await call(ref, ("inc", "n")) == 2  # the first one is untouched

            # several starts at the same moment: exactly one wins
            results: list[Any] = []

            async def attempt() -> None:
                try:
                    results.append(await dsup.start_child(spec(Store, "race", initial_state={"n": 0})))
                except tp.AlreadyStarted as e:
                    results.append(e)

            async with trio.open_nursery() as racers:
                for _ in range(5):
                    racers.start_soon(attempt)
            winners = [r for r in results if isinstance(r, tp.ServerRef)]
            assert len(winners) == 1
            assert all(type(r) is tp.AlreadyStarted for r in results if r not in winners)
            assert await call(winners[0], "get") == {"n": 0}
            await ref.stop()


async def test_a_static_supervisor_passes_key_errors_on_unwrapped(backend: Any) -> None:
    """open_supervisor's children: VersionError and AlreadyStarted leave it as themselves (API.md 10)."""
    async with tp.open_node(storage=backend.make()):
        async with trio.open_nursery() as nursery:
            ref = await start(nursery, V3, "static/newer", initial_state={"total": 0, "history": [], "unit": "x"})
            await ref.stop()
    async with tp.open_node(storage=backend.make()):
        async with trio.open_nursery() as nursery:
            with pytest.raises(tp.VersionError) as ei:
                async with tp.open_supervisor(spec(V2, "static/newer")):
                    pass
            assert ei.type is tp.VersionError
            held = await start(nursery, Store, "static/held", initial_state={"n": 0})
            with pytest.raises(tp.AlreadyStarted) as ei2:
                async with tp.open_supervisor(spec(Store, "static/held")):
                    pass
            assert ei2.type is tp.AlreadyStarted
            await held.stop()


async def test_another_owner_of_the_storage_makes_a_start_already_started(backend: Any) -> None:
    other = backend.make()
    await other.open()
    try:
        token = await other.claim("held", "another-node")
        async with tp.open_node(storage=backend.make()):
            async with trio.open_nursery() as nursery:
                with pytest.raises(tp.AlreadyStarted) as ei:
                    await start(nursery, Store, "held", initial_state={"n": 0})
                assert ei.type is tp.AlreadyStarted
                async with tp.open_dynamic_supervisor() as dsup:
                    with pytest.raises(tp.AlreadyStarted):
                        await dsup.start_child(spec(Store, "held", initial_state={"n": 0}))
                await other.release("held", token)
                ref = await start(nursery, Store, "held", initial_state={"n": 0})
                assert await call(ref, ("inc", "n")) == 1
                stored = await other.load("held")
                assert stored is not None and stored.token > token and assemble(stored) == {"n": 1}
                await ref.stop()
    finally:
        await other.aclose()


def test_a_second_process_gets_already_started(process_backend: Any) -> None:
    b = process_backend
    with subprocess.Popen(
        b.child_args("shared"), stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=b.env()
    ) as holder:
        try:
            assert holder.stdout is not None and holder.stdin is not None
            assert holder.stdout.readline() == "ready 0\n"
            holder.stdin.write("inc\n")
            holder.stdin.flush()
            assert holder.stdout.readline() == "ack 1\n"

            async def try_here() -> None:
                async with tp.open_node(storage=b.make()):
                    async with tp.open_dynamic_supervisor() as dsup:
                        with pytest.raises(tp.AlreadyStarted) as ei:
                            await dsup.start_child(spec(Counter, "shared", initial_state={"n": 0}))
                        assert ei.type is tp.AlreadyStarted
                        # another key of the same storage is fine meanwhile
                        ref = await dsup.start_child(spec(Counter, "other", initial_state={"n": 0}))
                        assert await call(ref, "inc") == 1

            run(try_here)
            proc = child_run(b, "shared", "")
            assert (proc.returncode, proc.stdout) == (3, "already-started\n")

            holder.stdin.write("quit\n")
            holder.stdin.flush()
            assert holder.stdout.readline() == "bye\n"
            assert holder.wait(timeout=30) == 0
        finally:
            if holder.poll() is None:
                holder.kill()
                holder.wait()

    # the key is free now; while this process holds it, a child cannot have it
    async def hold_here() -> Any:
        async with tp.open_node(storage=b.make()):
            async with tp.open_dynamic_supervisor() as dsup:
                ref = await dsup.start_child(spec(Counter, "shared", initial_state={"n": 0}))
                proc = await trio.to_thread.run_sync(child_run, b, "shared", "")
                assert (proc.returncode, proc.stdout) == (3, "already-started\n")
                return await call(ref, "inc")

    assert run(hold_here) == 2


async def test_a_key_can_be_started_again_at_once(backend: Any) -> None:
    """Once its server stopped for good (or failed to start), a key can be started again at once."""
    async with tp.open_node(storage=backend.make()):
        async with trio.open_nursery() as nursery:
            ref = await start(nursery, Store, "again", initial_state={"n": 0})
            await call(ref, ("inc", "n"))
            await ref.stop()
            ref2 = await start(nursery, Store, "again", initial_state={"n": 0})
            assert ref2 is not ref
            assert await call(ref2, ("inc", "n")) == 2
            # a tp.Stop with a normal reason ends a standalone server for good too
            assert await call(ref2, ("stop", "normal")) == "stopping"
            await ref2.wait_stopped()
            ref3 = await start(nursery, Store, "again", initial_state={"n": 0})
            assert await call(ref3, "get") == {"n": 2}
            await ref3.stop()
            # a start that failed (after its claim) does not keep the key either
            with pytest.raises(tp.StartError):
                await start(nursery, BrokenLoad, "again")
            ref4 = await start(nursery, Store, "again")
            assert await call(ref4, "get") == {"n": 2}
            await ref4.stop()
        async with tp.open_dynamic_supervisor() as dsup:
            ref = await dsup.start_child(spec(Store, "again"))
            assert await call(ref, ("inc", "n")) == 3
            await dsup.terminate_child(ref)
            ref = await dsup.start_child(spec(Store, "again"))
            assert await call(ref, ("inc", "n")) == 4
            # a crash is not "for good": the restarted server still holds the key
            with pytest.raises(tp.ServerExited):
                await call(ref, "crash")
            with pytest.raises(tp.AlreadyStarted):
                await dsup.start_child(spec(Store, "again"))
            assert await call(ref, "get") == {"n": 4}


async def test_a_stale_owner_is_fenced_off(backend: Any, causes: Any) -> None:
    async with tp.open_node(storage=backend.make()) as node:
        storage = node.storage
        async with tp.open_dynamic_supervisor() as dsup:
            ref = await dsup.start_child(spec(Store, "fenced", initial_state={"n": 0}, restart="temporary"))
            assert await call(ref, ("inc", "n")) == 1
            assert storage is not None
            stored = await storage.load("fenced")
            assert stored is not None
            # a new owner claims the key (as after a partition): the token moves on
            await storage.release("fenced", stored.token)
            token = await storage.claim("fenced", "the-new-owner")
            assert token > stored.token
            n_part = part_name("n")
            assert await storage.write([Write("fenced", token, 1, {n_part: encode_record(100)})]) == [None]

            monitor = ref.monitor()
            with pytest.raises(tp.ServerExited) as ei:
                await call(ref, ("inc", "n"))
            reason = await monitor.wait()
            assert isinstance(reason, tp.SyncFailed)
            assert ei.value.reason is reason or isinstance(ei.value.__cause__, tp.SyncFailed)
            assert any(isinstance(e, Fenced) for e in causes(reason))
            after = await storage.load("fenced")
            assert after is not None and after.token == token and assemble(after) == {"n": 100}
            await storage.release("fenced", token)


async def test_a_fenced_permanent_server_never_overwrites_and_its_supervisor_gives_up(backend: Any) -> None:
    """Permanent: every restart of the fenced server fails its write again; none lands."""
    async with tp.open_node(storage=backend.make()) as node:
        storage = node.storage
        with pytest.raises(tp.RestartIntensityExceeded):
            async with tp.open_dynamic_supervisor(max_restarts=5) as dsup:
                ref = await dsup.start_child(spec(Store, "fenced2", initial_state={"n": 0}))
                await call(ref, ("inc", "n"))
                assert storage is not None
                stored = await storage.load("fenced2")
                assert stored is not None
                await storage.release("fenced2", stored.token)
                token = await storage.claim("fenced2", "the-new-owner")
                with pytest.raises(tp.ServerExited):
                    await call(ref, ("inc", "n"))
                await trio.sleep_forever()  # until the supervisor gives up
        assert storage is not None
        after = await storage.load("fenced2")
        assert after is not None and after.token == token and assemble(after) == {"n": 1}
        await storage.release("fenced2", token)


# ------------------------------------------------------ what a write carries


async def test_writes_carry_only_the_changed_keys(backend: Any, recording: Any) -> None:
    storage = recording(backend.make())
    a, b, c, d, two = part_name("a"), part_name("b"), part_name("c"), part_name("d"), part_name(2)
    async with tp.open_node(storage=storage):
        async with trio.open_nursery() as nursery:
            ref = await start(nursery, Store, "parts", initial_state={"a": 1, "b": [1, 2], "c": {"x": 1}, 2: "two"})
            (boot,) = storage.writes
            assert boot.replace and set(boot.set_parts) == {a, b, c, two}
            before = await storage.load("parts")
            assert before is not None and set(before.parts) == {a, b, c, two}

            def last() -> Write:
                (w,) = storage.writes[n:]
                return w

            n = len(storage.writes)
            await call(ref, ("set", "b", [1, 2, 3]))
            w = last()
            assert (set(w.set_parts), w.delete_parts, w.replace) == ({b}, (), False)
            after = await storage.load("parts")
            assert after is not None
            assert {k: v for k, v in after.parts.items() if k != b} == {k: v for k, v in before.parts.items() if k != b}
            assert assemble(after)["b"] == [1, 2, 3]

            n = len(storage.writes)
            await call(ref, ("append", "b", 4))  # a nested in-place change: its top-level key
            assert set(last().set_parts) == {b}

            n = len(storage.writes)
            await call(ref, ("del", "c"))
            w = last()
            assert (w.set_parts, w.delete_parts, w.replace) == ({}, (c,), False)

            n = len(storage.writes)
            await call(ref, ("set", "d", {"new": True}))
            assert set(last().set_parts) == {d}

            n = len(storage.writes)
            await call(ref, "get")  # no change, no write
            await call(ref, ("set", "a", 1))  # the same value again
            assert len(storage.writes) - n <= 1
            assert all(set(w.set_parts) <= {a} for w in storage.writes[n:])

            stored = await storage.load("parts")
            assert stored is not None and set(stored.parts) == {a, b, d, two}
            assert assemble(stored) == {"a": 1, "b": [1, 2, 3, 4], "d": {"new": True}, 2: "two"}
            await ref.stop()
    async with tp.open_node(storage=backend.make()):
        async with trio.open_nursery() as nursery:
            ref = await start(nursery, Store, "parts")
            assert await call(ref, "get") == {"a": 1, "b": [1, 2, 3, 4], "d": {"new": True}, 2: "two"}
            await ref.stop()


class Scalar(tp.DurableServer):
    async def handle_call(self, request: Any, caller: Any, state: Any) -> Any:
        return tp.Reply(state + request, state + request)


async def test_a_state_that_is_not_a_dict_and_a_custom_dump_are_written_whole(backend: Any, recording: Any) -> None:
    storage = recording(backend.make())
    async with tp.open_node(storage=storage):
        async with trio.open_nursery() as nursery:
            ref = await start(nursery, Scalar, "scalar", initial_state=10)
            assert await call(ref, 5) == 15
            assert all(set(w.set_parts) == {WHOLE} for w in storage.writes_of("scalar"))
            assert assemble(await storage.load("scalar")) == 15
            acct = await start(nursery, Account, "acct", initial_state={"balance": 1})
            n = len(storage.writes)
            await call(acct, 2)
            (w,) = storage.writes[n:]
            assert w.replace and set(w.set_parts) == {part_name("balance")}
            await ref.stop()
            await acct.stop()


# ------------------------------------------------------------ bad input


class Poisoned(Store):
    """dump_state turns the value "poison" into something no storage can encode."""

    def dump_state(self, state: Any) -> Any:
        return {k: Opaque() if v == "poison" else v for k, v in state.items()}


async def test_an_unencodable_state_fails_clearly_and_overwrites_nothing(backend: Any, causes: Any) -> None:
    async with tp.open_node(storage=backend.make()) as node:
        storage = node.storage
        async with tp.open_dynamic_supervisor(max_restarts=100) as dsup:
            for cls, key, bad in [(Store, "enc/a", Opaque()), (Poisoned, "enc/b", "poison")]:
                ref = await dsup.start_child(spec(cls, key, initial_state={"n": 1}))
                assert storage is not None
                before = await storage.load(key)
                with pytest.raises(tp.ServerExited) as ei:
                    await call(ref, ("set", "x", bad))
                errors = [e for e in causes(ei.value) if isinstance(e, (tp.StorageError, tp.SyncFailed))]
                assert errors, causes(ei.value)
                assert any("<Opaque thing>" in str(e) for e in errors), errors
                after = await storage.load(key)
                assert before is not None and after is not None and after.parts == before.parts
                # restarted from the last durable state, and it goes on
                assert await call(ref, "get") == {"n": 1}
                assert await call(ref, ("inc", "n")) == 2
                assert assemble(await storage.load(key)) == {"n": 2}

        # on first boot: the start fails, nothing is stored
        async with trio.open_nursery() as nursery:
            with pytest.raises(tp.StartError) as ei:
                await start(nursery, Store, "enc/c", initial_state={"x": Opaque()})
            assert any(isinstance(e, tp.StorageError) and "<Opaque thing>" in str(e) for e in causes(ei.value))
            assert storage is not None and await storage.load("enc/c") is None
            ref = await once_released(start, nursery, Store, "enc/c", initial_state={"x": 1})  # the key is free
            await ref.stop()


class BrokenLoad(Store, vsn=2):
    def load_state(self, old_vsn: int, data: Any) -> Any:
        raise ValueError(f"cannot read version {old_vsn}")


async def test_a_raising_load_state_fails_the_start_and_leaves_storage_alone(backend: Any, causes: Any) -> None:
    async with tp.open_node(storage=backend.make()) as node:
        storage = node.storage
        assert storage is not None
        async with trio.open_nursery() as nursery:
            ref = await start(nursery, Store, "ls", initial_state={"n": 3})
            await ref.stop()
            before = await storage.load("ls")
            with pytest.raises(tp.StartError) as ei:
                await once_released(start, nursery, BrokenLoad, "ls")
            assert any(isinstance(e, ValueError) and "cannot read version 1" in str(e) for e in causes(ei.value))
            async with tp.open_dynamic_supervisor() as dsup:
                with pytest.raises(tp.StartError):
                    await once_released(dsup.start_child, spec(BrokenLoad, "ls"))
            after = await storage.load("ls")
            assert before is not None and after is not None
            assert (after.vsn, after.parts) == (before.vsn, before.parts) == (1, before.parts)
            # first boot: nothing stored
            with pytest.raises(tp.StartError):
                await start(nursery, BrokenLoad, "ls/new", initial_state={"n": 0})
            assert await storage.load("ls/new") is None
            # the key was not kept by the failed starts
            ref = await once_released(start, nursery, Store, "ls")
            assert await call(ref, "get") == {"n": 3}
            await ref.stop()


async def test_a_corrupt_record_fails_the_start_and_is_not_overwritten(backend: Any, causes: Any) -> None:
    async with tp.open_node(storage=backend.make()) as node:
        storage = node.storage
        assert storage is not None
        async with trio.open_nursery() as nursery:
            ref = await start(nursery, Store, "bad", initial_state={"a": 1, "b": "two"})
            await ref.stop()
            good = await storage.load("bad")
            assert good is not None
            bad = await backend.corrupt("bad", part_name("b"))
            for attempt in range(2):
                with pytest.raises(tp.StartError) as ei:
                    if attempt == 0:
                        await once_released(start, nursery, Store, "bad", initial_state={"a": 0})
                    else:
                        async with tp.open_dynamic_supervisor() as dsup:
                            await once_released(dsup.start_child, spec(Store, "bad", initial_state={"a": 0}))
                errors = [e for e in causes(ei.value) if isinstance(e, tp.StorageError)]
                assert errors and "checksum" in str(errors[0]), causes(ei.value)
                assert "'bad'" in str(errors[0])
                now = await storage.load("bad")
                assert now is not None
                assert now.parts == {**good.parts, part_name("b"): bad}
