"""Property: a standalone server (``tp.start_server``) behaves like a small Python model.

The server holds an int. Each example runs a random sequence of commands:
``call`` / ``cast`` / ``send_nowait`` adding n, a crash (a call that raises),
``get``, ``kill()``, a normal exit (``tp.Stop("normal")``), advancing virtual
time, and bursts of ``*_nowait`` messages, some of which crash the server,
queued with no checkpoint in between (optionally followed by a ``kill()``).

Model (API.md sections 2, 3 and 10):
- the mailbox belongs to the ref: messages queued before a crash or a kill are
  handled by the next incarnation, each exactly once; the message being handled
  at the crash is dropped;
- a restart keeps the last committed state with ``preserve=True`` and runs
  ``init`` again with ``preserve=False``;
- a kill is at once: it wins over messages already queued;
- a standalone server restarts like a transient child: a normal exit is for
  good (calls raise ``tp.NoProc``, casts and sends are dropped), abnormal exits
  restart it, up to Peeper's default intensity (more than 3 restarts within
  5 s: a restart 5 s or more ago no longer counts). Past that, its last
  exception propagates into the nursery (a kill has no exception: then a
  ``tp.RestartIntensityExceeded`` is accepted, as API.md names no other).

Each example is its own ``trio.run`` on a fresh autojump ``MockClock``
(STYLE.md S8.3), so these tests are sync and get no conftest clock.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest
import trio
import trio.testing
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

import trio_peeper as tp

INIT = 1000
MAX_RESTARTS, MAX_SECONDS = 3, 5.0  # a standalone server's intensity (API.md section 2)
SLEEPS = (2, 4, 6)  # even seconds: no restart ever sits exactly MAX_SECONDS back

# the conftest's autouse clock fixture is function-scoped; these sync tests never use it
SETTINGS = settings(
    deadline=None, max_examples=150, suppress_health_check=[HealthCheck.function_scoped_fixture]
)

COMMANDS = st.sampled_from(
    ["call", "cast", "send", "get", "crash", "kill", "sleep", "burst", "burst", "normal_exit"]
)
AMOUNTS = st.integers(-9, 9)
BURST_ITEMS = st.one_of(
    st.tuples(st.sampled_from(["cast", "send"]), AMOUNTS),
    st.just(("crash", 0)),
)


class Acc(tp.GenServer):
    """An int: add through call, cast or send; ``"boom"`` crashes, ``"stop"`` exits normally."""

    async def init(self, start: int) -> int:
        return start

    async def handle_call(self, request: Any, caller: object, state: int) -> object:
        if request == "get":
            return tp.Reply(state, state)
        if request == "boom":
            raise RuntimeError("boom")
        _, n = request
        return tp.Reply(state + n, state + n)

    async def handle_cast(self, message: Any, state: int) -> object:
        if message == "boom":
            raise RuntimeError("boom")
        if message == "stop":
            return tp.Stop("normal", state)
        _, n = message
        return tp.NoReply(state + n)

    async def handle_info(self, message: Any, state: int) -> object:
        _, n = message
        return tp.NoReply(state + n)


@dataclass
class Model:
    preserve: bool
    value: int = INIT
    restarts: int = 0
    now: float = 0.0
    restart_times: list[float] = field(default_factory=list)
    stopped: bool = False  # a normal exit: for good
    gave_up: object = None  # the reason of the exit that exceeded the intensity

    @property
    def running(self) -> bool:
        return not self.stopped and self.gave_up is None

    def add(self, n: int) -> None:
        if self.running:
            self.value += n

    def crashed(self, reason: object) -> None:
        """An abnormal exit of the running server."""
        if not self.running:
            return
        self.restart_times = [t for t in self.restart_times if self.now - t < MAX_SECONDS]
        self.restart_times.append(self.now)
        if len(self.restart_times) > MAX_RESTARTS:
            self.gave_up = reason
            event("the server gives up")
            return
        self.restarts += 1
        if not self.preserve:
            self.value = INIT


async def _check(ref: tp.ServerRef, model: Model, t0: float) -> None:
    assert model.now == trio.current_time() - t0  # nothing waited on a timeout
    assert model.running == ref.alive
    assert model.restarts == ref.restarts
    assert 0 == ref.statistics().mailbox_len
    if model.running:
        assert model.value == await ref.call("get")
    else:
        with pytest.raises(tp.NoProc):
            await ref.call("get")


async def _command(data: Any, ref: tp.ServerRef, model: Model) -> None:
    cmd = data.draw(COMMANDS, label="command")
    if cmd == "sleep":
        seconds = data.draw(st.sampled_from(SLEEPS), label="seconds")
        await trio.sleep(seconds)
        model.now += seconds
    elif cmd in ("call", "get", "crash") and not model.running:
        with pytest.raises(tp.NoProc):
            await ref.call("get")
    elif cmd == "call":
        n = data.draw(AMOUNTS, label="n")
        model.add(n)
        assert model.value == await ref.call(("add", n))
    elif cmd == "get":
        assert model.value == await ref.call("get")
    elif cmd == "crash":
        with pytest.raises(tp.ServerExited) as info:
            await ref.call("boom")
        assert isinstance(info.value.reason, RuntimeError)
        assert info.value.__cause__ is info.value.reason
        model.crashed(info.value.reason)
    elif cmd == "cast":
        n = data.draw(AMOUNTS, label="n")
        await ref.cast(("add", n))
        model.add(n)
    elif cmd == "send":
        n = data.draw(AMOUNTS, label="n")
        ref.send_nowait(("add", n))
        model.add(n)
    elif cmd == "kill":
        ref.kill()
        model.crashed(tp.KILLED)
    elif cmd == "normal_exit":
        await ref.cast("stop")
        model.stopped = True
    else:  # "burst": queued with no checkpoint in between
        items = data.draw(st.lists(BURST_ITEMS, min_size=1, max_size=8), label="burst")
        kill = data.draw(st.booleans(), label="kill after the burst")
        for kind, n in items:
            if kind == "cast":
                ref.cast_nowait(("add", n))
            elif kind == "send":
                ref.send_nowait(("add", n))
            else:
                ref.cast_nowait("boom")
        if kill:
            ref.kill()  # at once: before any of the queued messages
            model.crashed(tp.KILLED)
        if any(kind == "crash" for kind, _ in items) and any(kind != "crash" for kind, _ in items):
            event("a burst mixes crashes with other messages")
        for kind, n in items:
            if kind == "crash":
                model.crashed(RuntimeError("boom"))
            else:
                model.add(n)


async def _drive(data: Any, preserve: bool) -> None:
    model = Model(preserve)
    t0 = trio.current_time()
    ref = None
    try:
        async with trio.open_nursery() as nursery:
            ref = await tp.start_server(nursery, Acc, INIT, preserve=preserve)
            await _check(ref, model, t0)
            for _ in range(data.draw(st.integers(1, 25), label="steps")):
                await _command(data, ref, model)
                # after a give-up the body is cancelled here at the latest
                await trio.testing.wait_all_tasks_blocked()
                assert model.gave_up is None, "the server should have given up"
                await _check(ref, model, t0)
            if model.running:
                await ref.stop()
            else:
                with pytest.raises(tp.NoProc):
                    await ref.stop()
    except BaseExceptionGroup as group:
        if model.gave_up is None or group.subgroup(AssertionError) is not None:
            raise  # a failed check, or Hypothesis' own StopTest: not the server giving up
        assert len(group.exceptions) == 1
        (exc,) = group.exceptions
        if isinstance(model.gave_up, RuntimeError):
            assert isinstance(exc, RuntimeError)
            assert exc.args == ("boom",)
        else:  # a kill: there is no exception of the server's own
            assert isinstance(exc, tp.RestartIntensityExceeded)
    else:
        assert model.gave_up is None
    assert ref is not None
    assert not ref.alive
    assert model.restarts == ref.restarts
    with pytest.raises(tp.NoProc):
        await ref.call("get")


@pytest.mark.parametrize("preserve", [False, True], ids=["reset", "preserve"])
@SETTINGS
@given(st.data())
def test_standalone_server_matches_model(preserve: bool, data: st.DataObject) -> None:
    """Calls, casts, sends, crashes, kills and bursts against the model, with or without preserve."""
    trio.run(_drive, data, preserve, clock=trio.testing.MockClock(autojump_threshold=0))


async def _drive_queued_casts(data: Any) -> None:
    before = data.draw(st.lists(AMOUNTS, max_size=6), label="casts before the crash")
    after = data.draw(st.lists(AMOUNTS, max_size=6), label="casts after the crash")
    async with trio.open_nursery() as nursery:
        ref = await tp.start_server(nursery, Acc, INIT, preserve=True)
        for n in before:
            ref.cast_nowait(("add", n))
        ref.cast_nowait("boom")
        for n in after:
            ref.cast_nowait(("add", n))
        await trio.testing.wait_all_tasks_blocked()
        assert (True, 1) == (ref.alive, ref.restarts)
        assert INIT + sum(before) + sum(after) == await ref.call("get")
        assert ref.statistics().handled == len(before) + 1 + len(after) + 1
        await ref.stop()


@SETTINGS
@given(st.data())
def test_casts_queued_around_a_crash_are_applied_once(data: st.DataObject) -> None:
    """The mailbox belongs to the ref: casts queued before and after a crash all apply, once."""
    trio.run(_drive_queued_casts, data, clock=trio.testing.MockClock(autojump_threshold=0))
