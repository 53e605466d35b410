"""Sync policies (API.md section 9): "commit" (an output gate), "interval", "manual";
every policy syncs on a graceful stop, none after a brutal kill; group commit.

Writes are observed through the `recording` wrapper (every batch handed to
the storage, in order, with the virtual time it was handed over). On the
suite's autojump clock, virtual time jumps to the next deadline whenever every
task waits, also while SQLite or psycopg work in a thread: an interval timer
would fire during any storage call. So the tests about *when* writes happen
bring pytest-trio's `mock_clock` (time moves only when the test jumps it);
elsewhere calls pass ``timeout=None``, children ``shutdown=inf`` (unless the
test is about ``brutal_kill``), and times are only compared with inequalities.
"""

from __future__ import annotations

import math
from typing import Any

import pytest
import trio
import trio.testing

import trio_peeper as tp
from _child import assemble
from trio_peeper.storage._codec import decode_record, part_name
from trio_peeper.testing import FaultyStorage

INF = math.inf
N = part_name("n")
POLICIES = ["commit", "interval", "manual"]


class Counter(tp.DurableServer):
    """State ``{"n": count}``; the policy comes from the start options."""

    async def handle_call(self, request: Any, caller: Any, state: Any) -> Any:
        match request:
            case "inc":
                state["n"] += 1
                return tp.Reply(state["n"], state)
            case "inc_sync":
                state["n"] += 1
                return tp.Reply(state["n"], state, sync=True)
            case "get":
                return tp.Reply(state["n"], state)
            case "crash":
                raise RuntimeError("boom")
            case "stop":
                state["n"] += 1
                return tp.Stop("normal", state, reply=state["n"])
        raise AssertionError(request)

    async def handle_cast(self, message: Any, state: Any) -> Any:
        state["n"] += 1
        return tp.NoReply(state)

    async def terminate(self, reason: Any, state: Any) -> None:
        state["n"] = -1000  # changes made in terminate are never kept, nor stored


async def call(ref: Any, request: Any) -> Any:
    return await ref.call(request, timeout=None)


async def start(nursery: trio.Nursery, key: str, **options: Any) -> Any:
    options.setdefault("initial_state", {"n": 0})
    return await tp.start_server(nursery, Counter, key=key, timeout=INF, **options)


def spec(key: str, **options: Any) -> tp.ChildSpec:
    options.setdefault("initial_state", {"n": 0})
    options.setdefault("shutdown", INF)
    return tp.child(Counter, key=key, **options)


def counts(storage: Any, key: str) -> list[int]:
    """The values of n that the writes of *key* carried, in order."""
    return [decode_record(w.set_parts[N]) for w in storage.writes_of(key) if N in w.set_parts]  # type: ignore[misc]


async def advance(clock: Any, seconds: float) -> None:
    """Let what is queued run, move the manual clock on, and let every timer that came due run."""
    await trio.testing.wait_all_tasks_blocked()
    clock.jump(seconds)
    await trio.testing.wait_all_tasks_blocked()


async def stored_n(storage: Any, key: str) -> Any:
    data = assemble(await storage.load(key))
    return None if data is None else data["n"]


# ------------------------------------------------------------------ commit


async def test_commit_replies_only_after_the_write_is_durable(backend: Any, recording: Any) -> None:
    events: list[Any] = []
    storage = recording(backend.make(), delay=1.0, events=events)  # every write takes a virtual second
    async with tp.open_node(storage=storage):
        async with trio.open_nursery() as nursery:
            ref = await start(nursery, "gate", sync="commit")
            events.clear()
            for i in range(1, 4):
                n = await call(ref, "inc")
                events.append(("reply", n))
                assert n == i
                # durable by the time the reply is here
                assert await stored_n(storage, "gate") == i
            assert events == [("write", "gate"), ("written", "gate"), ("reply", 1)] + [
                ("write", "gate"),
                ("written", "gate"),
                ("reply", 2),
                ("write", "gate"),
                ("written", "gate"),
                ("reply", 3),
            ]
            # a cast is written before the next message is handled
            events.clear()
            await ref.cast("inc")
            assert await call(ref, "get") == 4
            assert events[:2] == [("write", "gate"), ("written", "gate")]
            assert counts(storage, "gate")[-1] == 4
            await ref.stop()


async def test_commit_a_concurrent_caller_waits_for_the_write_in_flight(backend: Any, recording: Any) -> None:
    """While a write is in flight the server handles nothing else (the journal has not committed)."""
    events: list[Any] = []
    storage = recording(backend.make(), delay=5.0, events=events)
    async with tp.open_node(storage=storage):
        async with trio.open_nursery() as nursery:
            ref = await start(nursery, "busy", sync="commit")
            events.clear()

            async def reader() -> None:
                events.append(("get", await call(ref, "get")))

            async with trio.open_nursery() as inner:
                inner.start_soon(call, ref, "inc")
                await trio.testing.wait_all_tasks_blocked()
                inner.start_soon(reader)
            assert events == [("write", "busy"), ("written", "busy"), ("get", 1)]
            await ref.stop()


# ------------------------------------------------------------------ interval


async def test_interval_writes_every_sync_every_only_when_changed(
    backend: Any, recording: Any, mock_clock: trio.testing.MockClock
) -> None:
    storage = recording(backend.make())
    async with tp.open_node(storage=storage):
        async with trio.open_nursery() as nursery:
            ref = await start(nursery, "tick", sync="interval", sync_every=10.0)
            assert counts(storage, "tick") == [0]  # the first boot is written at once
            t0 = trio.current_time()
            assert await call(ref, "inc") == 1
            assert await call(ref, "inc") == 2
            assert counts(storage, "tick") == [0]  # not yet
            await advance(mock_clock, 9.5)
            assert counts(storage, "tick") == [0]
            await advance(mock_clock, 1.0)
            assert counts(storage, "tick") == [0, 2]  # both changes, in one write
            assert storage.times[-1] >= t0 + 10.0
            await call(ref, "get")  # the server finished its sync
            assert await stored_n(storage, "tick") == 2

            for _ in range(10):  # nothing changed: nothing written
                await advance(mock_clock, 10.0)
            assert counts(storage, "tick") == [0, 2]

            for _ in range(3):  # changes spread over one interval: one write
                await ref.cast("inc")
                await advance(mock_clock, 3.0)
            assert counts(storage, "tick") == [0, 2]
            await advance(mock_clock, 2.0)
            assert counts(storage, "tick") == [0, 2, 5]
            for _ in range(3):  # one change per interval: one write each
                await call(ref, "inc")
                await advance(mock_clock, 10.0)
            assert counts(storage, "tick") == [0, 2, 5, 6, 7, 8]
            times = storage.times[-4:]
            assert all(later - earlier >= 10.0 for earlier, later in zip(times, times[1:]))

            # a crash between syncs loses nothing within the run: the state is kept in memory
            await call(ref, "inc")
            with pytest.raises(tp.ServerExited):
                await call(ref, "crash")
            assert await call(ref, "get") == 9
            await advance(mock_clock, 10.0)
            await call(ref, "get")
            assert await stored_n(storage, "tick") == 9
            await ref.stop()


async def test_interval_what_was_not_synced_is_lost_when_the_node_dies(
    backend: Any, recording: Any, mock_clock: trio.testing.MockClock
) -> None:
    storage = recording(backend.make())
    async with tp.open_node(storage=storage):
        async with tp.open_dynamic_supervisor() as dsup:
            ref = await dsup.start_child(spec("lossy", sync="interval", sync_every=10.0, shutdown="brutal_kill"))
            await call(ref, "inc")
            await advance(mock_clock, 10.0)
            assert await call(ref, "get") == 1
            assert counts(storage, "lossy") == [0, 1]
            await call(ref, "inc")
            await call(ref, "inc")
            await advance(mock_clock, 5.0)
            assert await call(ref, "get") == 3
        # brutal_kill: no final sync
    assert counts(storage, "lossy") == [0, 1]
    async with tp.open_node(storage=backend.make()):
        async with tp.open_dynamic_supervisor() as dsup:
            ref = await dsup.start_child(spec("lossy", sync="interval", sync_every=10.0))
            assert await call(ref, "get") == 1


# ------------------------------------------------------------------ manual


async def test_manual_writes_only_on_sync_true(
    backend: Any, recording: Any, mock_clock: trio.testing.MockClock
) -> None:
    storage = recording(backend.make())
    async with tp.open_node(storage=storage):
        async with tp.open_dynamic_supervisor() as dsup:
            ref = await dsup.start_child(spec("by-hand", sync="manual", shutdown="brutal_kill"))
            assert counts(storage, "by-hand") == [0]
            await call(ref, "inc")
            await ref.cast("inc")
            await advance(mock_clock, 1000.0)  # no interval under "manual"
            assert await call(ref, "get") == 2
            assert counts(storage, "by-hand") == [0]
            assert await call(ref, "inc_sync") == 3  # durable before the reply
            assert counts(storage, "by-hand") == [0, 3]
            assert await stored_n(storage, "by-hand") == 3
            await call(ref, "inc")
            await advance(mock_clock, 1000.0)
            assert counts(storage, "by-hand") == [0, 3]
        # brutal_kill: the unsynced 4 is lost
    assert counts(storage, "by-hand") == [0, 3]
    async with tp.open_node(storage=backend.make()):
        async with tp.open_dynamic_supervisor() as dsup:
            ref = await dsup.start_child(spec("by-hand", sync="manual"))
            assert await call(ref, "get") == 3


async def test_manual_a_crash_and_restart_write_nothing(backend: Any, recording: Any) -> None:
    """Under "manual" only a ``sync=True`` return (or a graceful stop) writes: a restart does not."""
    storage = recording(backend.make())
    async with tp.open_node(storage=storage):
        async with tp.open_dynamic_supervisor() as dsup:
            ref = await dsup.start_child(spec("by-hand/crash", sync="manual", shutdown="brutal_kill"))
            await call(ref, "inc")
            with pytest.raises(tp.ServerExited):
                await call(ref, "crash")
            assert await call(ref, "get") == 1  # kept in memory
            assert counts(storage, "by-hand/crash") == [0]
            assert await stored_n(storage, "by-hand/crash") == 0


async def test_a_failed_sync_true_write_is_not_acknowledged(backend: Any) -> None:
    storage = FaultyStorage(backend.make(), fail_on=lambda n: n == 2)  # #1: the first boot
    async with tp.open_node(storage=storage):
        async with tp.open_dynamic_supervisor() as dsup:
            ref = await dsup.start_child(spec("by-hand/f", sync="manual"))
            await call(ref, "inc")
            with pytest.raises(tp.ServerExited) as ei:
                await call(ref, "inc_sync")
            assert isinstance(ei.value.__cause__, tp.SyncFailed) or isinstance(ei.value.reason, tp.SyncFailed)
            assert await call(ref, "get") == 1  # rolled back to the last committed state
            assert await stored_n(storage, "by-hand/f") in (0, 1)
            assert await call(ref, "inc_sync") == 2
            assert await stored_n(storage, "by-hand/f") == 2


# -------------------------------------------------------- stops and kills


@pytest.mark.parametrize("policy", POLICIES)
async def test_every_policy_syncs_on_a_graceful_stop(backend: Any, recording: Any, policy: str) -> None:
    storage = recording(backend.make())
    opts = {"sync": policy, "sync_every": 1000.0}
    async with tp.open_node(storage=storage):
        async with trio.open_nursery() as nursery:
            # ref.stop()
            ref = await start(nursery, "g/stop", **opts)
            await call(ref, "inc")
            await ref.cast("inc")
            await ref.stop()
            assert await stored_n(storage, "g/stop") == 2  # not terminate's -1000
            # a callback returning tp.Stop (normal: for good)
            ref = await start(nursery, "g/Stop", **opts)
            await call(ref, "inc")
            assert await call(ref, "stop") == 2
            await ref.wait_stopped()
            assert await stored_n(storage, "g/Stop") == 2
        # supervisor shutdown and terminate_child
        async with tp.open_dynamic_supervisor() as dsup:
            ref = await dsup.start_child(spec("g/sup", **opts))
            await call(ref, "inc")
            ref2 = await dsup.start_child(spec("g/term", **opts))
            await call(ref2, "inc")
            await call(ref2, "inc")
            await dsup.terminate_child(ref2)
            assert await stored_n(storage, "g/term") == 2
        assert await stored_n(storage, "g/sup") == 1
        async with tp.open_supervisor(spec("g/static", **opts)) as sup:
            (info,) = sup.which_children()
            await call(info.ref, "inc")
            await call(info.ref, "inc")
            await call(info.ref, "inc")
        assert await stored_n(storage, "g/static") == 3


@pytest.mark.parametrize("policy", ["interval", "manual"])
async def test_brutal_kill_does_not_sync(
    backend: Any, recording: Any, policy: str, mock_clock: trio.testing.MockClock
) -> None:
    storage = recording(backend.make())
    opts = {"sync": policy, "sync_every": 1000.0}
    async with tp.open_node(storage=storage):
        async with tp.open_dynamic_supervisor() as dsup:
            ref = await dsup.start_child(spec("k/brutal", shutdown="brutal_kill", **opts))
            await call(ref, "inc")
            ref2 = await dsup.start_child(spec("k/kill", restart="temporary", **opts))
            await call(ref2, "inc")
            ref2.kill()
            assert await ref2.wait_stopped() is tp.KILLED
            await dsup.terminate_child(ref)
            ref3 = await dsup.start_child(spec("k/crash", restart="temporary", **opts))
            await call(ref3, "inc")
            with pytest.raises(tp.ServerExited):
                await call(ref3, "crash")
        assert await stored_n(storage, "k/brutal") == 0
        assert await stored_n(storage, "k/kill") == 0
        assert await stored_n(storage, "k/crash") == 0
    assert [w.key for w in storage.writes] == ["k/brutal", "k/kill", "k/crash"]  # the first boots only


# ------------------------------------------------------------ group commit


async def test_concurrent_writes_share_transactions(backend: Any, recording: Any) -> None:
    storage = recording(backend.make())
    servers, rounds = 100, 3
    async with tp.open_node(storage=storage):
        async with tp.open_dynamic_supervisor() as dsup:
            refs = [await dsup.start_child(spec(f"group/{i}", sync="commit")) for i in range(servers)]
            assert len(storage.writes) == servers  # the first boots
            boots = len(storage.batches)
            acked: dict[int, int] = {}

            async def client(i: int) -> None:
                for _ in range(rounds):
                    acked[i] = await call(refs[i], "inc")

            async with trio.open_nursery() as nursery:
                for i in range(servers):
                    nursery.start_soon(client, i)
            batches = storage.batches[boots:]
            writes = sum(len(b) for b in batches)
            assert writes == servers * rounds
            assert len(batches) <= writes // 10, f"{len(batches)} transactions for {writes} writes"
            assert max(len(b) for b in batches) >= servers // 2
            assert acked == {i: rounds for i in range(servers)}
            for i in (0, 37, 99):
                assert await stored_n(storage, f"group/{i}") == rounds
