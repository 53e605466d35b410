"""Storage faults under ``sync="commit"`` (API.md section 9): `FaultyStorage` fails chosen writes.

A failed write is never acknowledged: the caller gets `tp.ServerExited` with
`tp.SyncFailed` as its cause, the server restarts from the last durable
state, and a fresh node loads exactly what was acknowledged. Torn writes (a
failing write that applied half of its parts) lose nothing acknowledged
either. A hypothesis property drives random increments against random
failures and compares the reloaded state with the model of acknowledged
increments, on each backend.

Calls pass ``timeout=None`` and children ``shutdown=inf``: on the autojump
clock, virtual time may jump during a storage call made in a thread.
"""

from __future__ import annotations

import math
import tempfile
import uuid
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import trio_peeper as tp
from _child import assemble
from trio_peeper.testing import FaultyStorage

INF = math.inf
KEYS = ("a", "b", "c", "d")


class Multi(tp.DurableServer, sync="commit"):
    """State ``{"a": int, "b": int, ...}``; ``("add", k, n)`` adds to one key, ``("bump", n)`` to all."""

    async def handle_call(self, request: Any, caller: Any, state: Any) -> Any:
        match request:
            case ("add", k, n):
                state[k] += n
                return tp.Reply(state[k], state)
            case ("bump", n):
                for k in state:
                    state[k] += n
                return tp.Reply(dict(state), state)
            case "get":
                return tp.Reply(state, state)
        raise AssertionError(request)


def zeros() -> dict[str, int]:
    return dict.fromkeys(KEYS, 0)


def spec(key: str, **options: Any) -> tp.ChildSpec:
    return tp.child(Multi, key=key, initial_state=zeros(), shutdown=INF, **options)


async def call(ref: Any, request: Any) -> Any:
    return await ref.call(request, timeout=None)


async def fresh_load(backend: Any, key: str) -> Any:
    """The state a fresh node starts *key* with, over the plain backend."""
    async with tp.open_node(storage=backend.make()):
        async with tp.open_dynamic_supervisor() as dsup:
            ref = await dsup.start_child(spec(key))
            state = await call(ref, "get")
            await dsup.terminate_child(ref)
            return state


def assert_sync_failed(exc: tp.ServerExited) -> None:
    assert isinstance(exc.__cause__, tp.SyncFailed), repr(exc.__cause__)
    assert isinstance(exc.reason, tp.SyncFailed)
    assert isinstance(exc.__cause__.__cause__, tp.StorageError)
    assert "injected failure" in str(exc.__cause__)


@pytest.mark.parametrize("failing", [(2,), (3,), (5,), (8,), (3, 4), (2, 4, 6), (4, 5, 6, 7)])
async def test_a_failed_write_is_not_acknowledged(backend: Any, failing: tuple[int, ...]) -> None:
    """Write #1 is the first boot; #k (k > 1) is a call's (a restart writes nothing: the state is the durable one)."""
    storage = FaultyStorage(backend.make(), fail_on=lambda n: n in failing)
    acked = 0
    failures = 0
    async with tp.open_node(storage=storage):
        async with tp.open_dynamic_supervisor(max_restarts=100) as dsup:
            ref = await dsup.start_child(spec("faulty"))
            for _ in range(10):
                try:
                    reply = await call(ref, ("add", "a", 1))
                except tp.ServerExited as e:
                    assert_sync_failed(e)
                    failures += 1
                else:
                    acked += 1
                    assert reply == acked
                # restarted (if it crashed) from the last durable state
                assert (await call(ref, "get"))["a"] == acked
                stored = assemble(await storage.load("faulty"))
                assert stored["a"] == acked
            assert storage.failed == list(failing)
            assert 1 <= failures <= len(failing)
            assert acked == 10 - failures
    assert (await fresh_load(backend, "faulty"))["a"] == acked


async def test_a_failed_first_boot_write_fails_the_start_and_stores_nothing(backend: Any, causes: Any) -> None:
    storage = FaultyStorage(backend.make(), fail_on=lambda n: n == 1)
    async with tp.open_node(storage=storage):
        async with tp.open_dynamic_supervisor() as dsup:
            with pytest.raises(tp.StartError) as ei:
                await dsup.start_child(spec("boot"))
            assert any(isinstance(e, tp.SyncFailed) for e in causes(ei.value))
            assert await storage.load("boot") is None
    assert await fresh_load(backend, "boot") == zeros()


@pytest.mark.parametrize("failing", [(2,), (3,), (4,), (3, 5), (2, 3)])
async def test_torn_writes_lose_nothing_acknowledged(backend: Any, failing: tuple[int, ...]) -> None:
    """Each call changes all four parts; a failing write first applies half of them."""
    storage = FaultyStorage(backend.make(), fail_on=lambda n: n in failing, tear=True)
    acked = 0
    async with tp.open_node(storage=storage):
        async with tp.open_dynamic_supervisor(max_restarts=100) as dsup:
            ref = await dsup.start_child(spec("torn"))
            for _ in range(6):
                try:
                    reply = await call(ref, ("bump", 1))
                except tp.ServerExited as e:
                    assert_sync_failed(e)
                else:
                    acked += 1
                    assert reply == dict.fromkeys(KEYS, acked)
                stored = assemble(await storage.load("torn"))
                assert set(stored) == set(KEYS)
                # every part holds the acknowledged value, or the unacknowledged one after it
                assert all(acked <= stored[k] <= acked + 1 for k in KEYS), (acked, stored)
                assert await call(ref, "get") == dict.fromkeys(KEYS, acked)
            assert storage.failed == list(failing)
            await call(ref, ("bump", 1))  # a write after the last failure: everything consistent
            acked += 1
            assert assemble(await storage.load("torn")) == dict.fromkeys(KEYS, acked)
    assert await fresh_load(backend, "torn") == dict.fromkeys(KEYS, acked)


async def test_a_failed_interval_sync_crashes_keeps_the_state_and_syncs_later(
    backend: Any, mock_clock: trio.testing.MockClock
) -> None:
    """Under "interval" the change was committed already: a failed sync keeps it, a later one stores it."""
    storage = FaultyStorage(backend.make(), fail_on=lambda n: n == 2)
    async with tp.open_node(storage=storage):
        async with tp.open_dynamic_supervisor() as dsup:
            ref = await dsup.start_child(spec("interval", sync="interval", sync_every=10.0))
            await call(ref, ("add", "a", 5))
            await trio.testing.wait_all_tasks_blocked()
            mock_clock.jump(10.0)
            await trio.testing.wait_all_tasks_blocked()
            assert (await call(ref, "get"))["a"] == 5  # kept in memory through the crash
            assert storage.failed == [2]
            assert ref.restarts == 1
            mock_clock.jump(10.0)
            await trio.testing.wait_all_tasks_blocked()
            await call(ref, "get")
            assert assemble(await storage.load("interval"))["a"] == 5
    assert (await fresh_load(backend, "interval"))["a"] == 5


# ------------------------------------------------------------------ property

OPS = st.lists(st.tuples(st.sampled_from(KEYS), st.integers(1, 3)), min_size=1, max_size=15)
FAILS = st.sets(st.integers(2, 40), max_size=8)


async def _model_run(make: Any, key: str, ops: list[tuple[str, int]], fails: set[int], tear: bool) -> None:
    storage = FaultyStorage(make(), fail_on=lambda n: n in fails, tear=tear)
    acked = zeros()
    unacked = zeros()
    async with tp.open_node(storage=storage):
        async with tp.open_dynamic_supervisor(max_restarts=10_000) as dsup:
            ref = await dsup.start_child(spec(key))
            for k, n in ops:
                try:
                    reply = await call(ref, ("add", k, n))
                except tp.ServerExited as e:
                    assert_sync_failed(e)
                    unacked[k] += n
                else:
                    acked[k] += n
                    assert reply == acked[k]
                assert await call(ref, "get") == acked
    # a fresh node over the plain backend
    async with tp.open_node(storage=make()):
        async with tp.open_dynamic_supervisor() as dsup:
            ref = await dsup.start_child(spec(key))
            stored = await call(ref, "get")
            await dsup.terminate_child(ref)
    if tear:
        # a torn, unacknowledged write may have left part of itself; never less than acknowledged
        assert all(acked[k] <= stored[k] <= acked[k] + unacked[k] for k in KEYS), (acked, unacked, stored)
    else:
        assert stored == acked


def _check(make: Any, ops: list[tuple[str, int]], fails: set[int], tear: bool) -> None:
    key = f"prop/{uuid.uuid4().hex}"
    trio.run(_model_run, make, key, ops, fails, tear, clock=trio.testing.MockClock(autojump_threshold=0))


def _settings(examples: int) -> Any:
    return settings(
        max_examples=examples,
        deadline=None,
        derandomize=True,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )


@_settings(300)
@given(ops=OPS, fails=FAILS, tear=st.booleans())
def test_reloaded_state_is_the_acknowledged_state_memory(
    ops: list[tuple[str, int]], fails: set[int], tear: bool
) -> None:
    memory = tp.storage.Memory()
    _check(lambda: memory, ops, fails, tear)


@_settings(20)
@given(ops=OPS, fails=FAILS, tear=st.booleans())
def test_reloaded_state_is_the_acknowledged_state_sqlite(
    ops: list[tuple[str, int]], fails: set[int], tear: bool
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = str(Path(tmp) / "state.db")
        _check(lambda: tp.storage.SQLite(path), ops, fails, tear)


@_settings(12)
@given(ops=OPS, fails=FAILS, tear=st.booleans())
def test_reloaded_state_is_the_acknowledged_state_postgres(
    postgres_dsn: str, ops: list[tuple[str, int]], fails: set[int], tear: bool
) -> None:
    schema = "prop"  # keys are unique per example
    _check(lambda: tp.storage.Postgres(postgres_dsn, schema=schema), ops, fails, tear)
