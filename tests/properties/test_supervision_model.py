"""Property: a static supervisor behaves like a small Python model of OTP supervision.

Each example draws a supervisor (2-4 children with random restart types, a
random strategy) and a random sequence of commands aimed at its children:
call, cast, crash (a call that raises), a normal exit (``tp.Stop("normal")``
from a cast), ``kill()``, ``ref.stop()`` and advancing virtual time. After
every command the supervisor must agree with the model: which children are
listed and with which status, the counts, each child's ``ServerRef`` and
``restarts``, and each child's state (reset to the ``init`` value on restart
with ``preserve=False``, the last committed state with ``preserve=True``).

Model (OTP semantics, API.md sections 4 and 10):
- a child that exits is restarted when permanent, or transient with an
  abnormal reason; ``ref.stop()`` is for good whatever the restart type;
- a restart applies the strategy to the children still listed: the crashed
  child alone (one_for_one), all of them (one_for_all) or it and the ones
  after it (rest_for_one); bystanders count a restart too, temporary
  bystanders are removed, static children that were stopped come back as a
  new server (a new ref, ``init`` state, 0 restarts), as OTP's
  ``start_children`` does; a group restart counts as one restart;
- a temporary child that exits is removed; a permanent or transient child that
  is not restarted stays listed as ``"stopped"``;
- restart intensity: more than ``max_restarts`` restarts within
  ``max_seconds`` (a restart ``max_seconds`` or more ago no longer counts)
  makes the supervisor stop everything and raise
  ``tp.RestartIntensityExceeded`` out of the ``async with``.

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

STRATEGIES = ("one_for_one", "one_for_all", "rest_for_one")
RESTART_TYPES = ("permanent", "transient", "temporary")
COMMANDS = ("get", "inc", "crash", "normal_exit", "kill", "stop", "sleep")
# exits and time weigh more when the intensity is what is tested
INTENSITY_COMMANDS = ("get", "inc", "crash", "crash", "normal_exit", "kill", "stop", "sleep", "sleep")
SLEEPS = (1, 2, 3, 6)  # whole seconds; the windows below are x.5 s, so no restart sits on an edge

# the conftest's autouse clock fixture is function-scoped; these sync tests never use it
SETTINGS = settings(
    deadline=None, max_examples=150, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


class Cell(tp.GenServer):
    """An int that casts increment; ``"boom"`` crashes, ``"stop"`` exits normally."""

    async def init(self, start: int) -> int:
        return start

    async def handle_call(self, request: object, caller: object, state: int) -> object:
        if request == "get":
            return tp.Reply(state, state)
        if request == "boom":
            raise RuntimeError("boom")
        raise AssertionError(f"unexpected call {request!r}")

    async def handle_cast(self, message: object, state: int) -> object:
        if message == "inc":
            return tp.NoReply(state + 1)
        if message == "stop":
            return tp.Stop("normal", state)
        raise AssertionError(f"unexpected cast {message!r}")


@dataclass
class Child:
    """The model of one child spec."""

    id: str
    restart: str
    init: int
    ref: Any = None  # the ServerRef the test holds (the last one seen running)
    status: str = "running"  # "running" | "stopped" (listed) | "removed"
    value: int = 0
    restarts: int = 0
    fresh: bool = False  # restarted after stopping for good: a new ServerRef is expected
    dead_refs: list[tuple[Any, int]] = field(default_factory=list)  # (ref, restarts) stopped for good


@dataclass
class Model:
    children: list[Child]
    strategy: str
    preserve: bool
    max_restarts: int
    max_seconds: float
    now: float = 0.0
    restart_times: list[float] = field(default_factory=list)
    gave_up_on: Child | None = None

    def listed(self) -> list[Child]:
        return [c for c in self.children if c.status != "removed"]

    def _died(self, c: Child) -> None:
        """*c*'s current ref stopped for good."""
        c.dead_refs.append((c.ref, c.restarts))

    def stopped_for_good(self, c: Child) -> None:
        """``ref.stop()``: never restarted, whatever the restart type."""
        c.status = "removed" if c.restart == "temporary" else "stopped"
        self._died(c)

    def exited(self, c: Child, *, normal: bool) -> None:
        """*c* (running) exited on its own: crash, kill or a returned ``tp.Stop``."""
        if not (c.restart == "permanent" or (c.restart == "transient" and not normal)):
            c.status = "removed" if c.restart == "temporary" else "stopped"
            self._died(c)
            return
        self.restart_times = [t for t in self.restart_times if self.now - t < self.max_seconds]
        self.restart_times.append(self.now)
        if len(self.restart_times) > self.max_restarts:
            self.gave_up_on = c
            event("the supervisor gives up")
            return
        listed = self.listed()
        if self.strategy == "one_for_one":
            group = [c]
        elif self.strategy == "one_for_all":
            group = listed
        else:
            group = listed[listed.index(c) :]
        for g in group:
            if g is not c and g.restart == "temporary":
                g.status = "removed"  # a temporary bystander is stopped and not restarted
                event("a temporary bystander is removed")
                self._died(g)
            elif g.status == "stopped":  # started again, as a new server
                g.status, g.value, g.restarts, g.fresh = "running", g.init, 0, True
                event("a stopped child is started again by a group restart")
            else:
                g.restarts += 1
                if not self.preserve:
                    g.value = g.init


async def _check(sup: tp.Supervisor, model: Model, t0: float) -> None:
    """The supervisor, the refs and the servers' states agree with the model."""
    assert model.now == trio.current_time() - t0  # nothing waited on a timeout
    listed = model.listed()
    infos = sup.which_children()
    assert [(c.id, c.restart, c.status) for c in listed] == [
        (i.id, i.restart, i.status) for i in infos
    ]
    assert all(i.type == "worker" for i in infos)
    running = sum(1 for c in listed if c.status == "running")
    assert tp.ChildCounts(len(listed), running, 0, len(listed)) == sup.count_children()
    for c, info in zip(listed, infos, strict=True):
        if c.status != "running":
            continue
        if c.fresh:
            assert info.ref is not c.ref
            c.ref, c.fresh = info.ref, False
        assert c.ref is info.ref
        assert c.ref.alive
        assert c.restarts == c.ref.restarts
        assert c.value == await c.ref.call("get")
    for c in model.children:
        for ref, restarts in c.dead_refs:
            assert not ref.alive
            assert restarts == ref.restarts  # a ref that stopped for good is never restarted


async def _command(data: Any, model: Model, commands: tuple[str, ...]) -> None:
    """Draw one command, run it, and update the model."""
    cmd = data.draw(st.sampled_from(commands), label="command")
    if cmd == "sleep":
        seconds = data.draw(st.sampled_from(SLEEPS), label="seconds")
        await trio.sleep(seconds)
        model.now += seconds
        return
    c = data.draw(st.sampled_from(model.children), label="child")
    ref, running = c.ref, c.status == "running"
    if cmd == "get":
        if running:
            assert c.value == await ref.call("get")
        else:
            with pytest.raises(tp.NoProc):
                await ref.call("get")
    elif cmd == "inc":
        await ref.cast("inc")  # dropped silently by a server that stopped for good
        if running:
            c.value += 1
    elif cmd == "crash":
        if running:
            with pytest.raises(tp.ServerExited) as info:
                await ref.call("boom")
            assert isinstance(info.value.reason, RuntimeError)
            assert info.value.__cause__ is info.value.reason
            model.exited(c, normal=False)
        else:
            with pytest.raises(tp.NoProc):
                await ref.call("boom")
    elif cmd == "normal_exit":
        await ref.cast("stop")
        if running:
            model.exited(c, normal=True)
    elif cmd == "kill":
        ref.kill()  # killing a server that is not running does nothing
        if running:
            model.exited(c, normal=False)
    elif running:  # "stop"
        await ref.stop()
        assert not ref.alive
        model.stopped_for_good(c)
    else:
        with pytest.raises(tp.NoProc):
            await ref.stop()


async def _drive(
    data: Any, preserve: bool, max_restarts: int, max_seconds: float, commands: tuple[str, ...]
) -> None:
    n = data.draw(st.integers(2, 4), label="children")
    strategy = data.draw(st.sampled_from(STRATEGIES), label="strategy")
    children = [
        Child(f"c{i}", data.draw(st.sampled_from(RESTART_TYPES), label=f"restart c{i}"), 100 * i)
        for i in range(n)
    ]
    for c in children:
        c.value = c.init
    model = Model(children, strategy, preserve, max_restarts, max_seconds)
    specs = [
        tp.child(Cell, c.init, id=c.id, restart=c.restart, preserve=preserve) for c in children
    ]
    t0 = trio.current_time()
    try:
        async with tp.open_supervisor(
            *specs, strategy=strategy, max_restarts=max_restarts, max_seconds=max_seconds
        ) as sup:
            for c, info in zip(children, sup.which_children(), strict=True):
                c.ref = info.ref
            await _check(sup, model, t0)
            for _ in range(data.draw(st.integers(1, 25), label="steps")):
                await _command(data, model, commands)
                # after a give-up the body is cancelled here at the latest
                await trio.testing.wait_all_tasks_blocked()
                assert model.gave_up_on is None, "the supervisor should have given up"
                await _check(sup, model, t0)
    except tp.RestartIntensityExceeded as exc:
        assert model.gave_up_on is not None, f"gave up too early: {exc}"
        assert repr(model.gave_up_on.id) in str(exc)
    else:
        assert model.gave_up_on is None
    # whichever way the supervisor ended, none of its servers runs any more
    for c in children:
        for ref in [c.ref, *(r for r, _ in c.dead_refs)]:
            assert not ref.alive
            with pytest.raises(tp.NoProc):
                await ref.call("get")


@pytest.mark.parametrize("preserve", [False, True], ids=["reset", "preserve"])
@SETTINGS
@given(st.data())
def test_supervisor_matches_model(preserve: bool, data: st.DataObject) -> None:
    """Strategies, restart types, listing, refs, restart counts and state; no intensity limit."""
    trio.run(
        _drive, data, preserve, 1000, 5.0, COMMANDS, clock=trio.testing.MockClock(autojump_threshold=0)
    )


@pytest.mark.parametrize("preserve", [False, True], ids=["reset", "preserve"])
@SETTINGS
@given(st.data())
def test_restart_intensity_matches_model(preserve: bool, data: st.DataObject) -> None:
    """The same model with a small intensity: the supervisor gives up exactly when it says."""
    max_restarts = data.draw(st.integers(0, 3), label="max_restarts")
    max_seconds = data.draw(st.sampled_from((1.5, 2.5, 4.5, 10.5)), label="max_seconds")
    trio.run(
        _drive,
        data,
        preserve,
        max_restarts,
        max_seconds,
        INTENSITY_COMMANDS,
        clock=trio.testing.MockClock(autojump_threshold=0),
    )


async def test_a_stopped_ref_keeps_its_restart_count() -> None:
    """A group restart starts a stopped child as a new server; the old ref never restarted.

    The property above models this (a new ref, 0 restarts, the ``init`` state);
    this pins the old ref: it stopped for good, so its ``restarts`` stays what it was.
    """
    async with tp.open_supervisor(
        tp.child(Cell, 0, id="a"), tp.child(Cell, 100, id="b"), strategy="one_for_all"
    ) as sup:
        old_a, b = (info.ref for info in sup.which_children())
        await old_a.stop()
        with pytest.raises(tp.ServerExited):
            await b.call("boom")
        await trio.testing.wait_all_tasks_blocked()
        new_a = sup.which_children()[0].ref
        assert [("a", "running"), ("b", "running")] == [
            (i.id, i.status) for i in sup.which_children()
        ]
        assert new_a is not old_a
        assert (True, 0, 0) == (new_a.alive, new_a.restarts, await new_a.call("get"))
        assert (False, 0) == (old_a.alive, old_a.restarts)
        assert 0 == old_a.statistics().restarts
        assert 1 == b.restarts
