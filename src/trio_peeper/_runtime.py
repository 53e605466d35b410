"""The per-``trio.run`` context: names, the shared timer wheel and its task.

One `Runtime` exists per run, created on first use (a `trio.lowlevel.RunVar`).
All timed things (call deadlines, ``send_after``, idle timeouts) are entries
in one hashed timer wheel served by one system task, never a cancel scope per
call: most call deadlines are cancelled long before they fire.

Call deadlines go one step further: a new call is only *staged* (appended to a
list with its exact deadline). The timer task sweeps the list at most one
tick (`TICK`) later, or at the earliest staged deadline if that is sooner,
and moves the calls still pending into the wheel; calls answered by then
(nearly all of them) never touch it. Deadlines stay exact.
"""

from __future__ import annotations

import logging
import math
from typing import TYPE_CHECKING, Protocol

import trio

import _fastcore

from ._util import final

if TYPE_CHECKING:
    from collections.abc import Hashable

log = logging.getLogger("trio_peeper")

TICK = 0.01  # seconds between a call being staged and its deadline entering the wheel


class Fires(Protocol):
    """A wheel entry: the timer task calls ``_fire()`` at its deadline."""

    def _fire(self) -> None: ...


class Staged(Fires, Protocol):
    """A staged call: a wheel entry with its deadline, pending while ``task`` is set."""

    task: object
    deadline: float
    timer: int


@final
class Timers:
    """The run's timer wheel and the task that fires it."""

    __slots__ = ("_scope", "_target", "cancel_handle", "now", "staged", "wheel")

    def __init__(self) -> None:
        # the run's clock, read directly (trio.current_time() looks the run up each time)
        self.now = trio.lowlevel.current_clock().current_time
        self.wheel = _fastcore.TimerWheel(resolution=0.01, slots=1024, now=self.now())
        self.cancel_handle = self.wheel.cancel  # bound once: hot for calls still waiting after a tick
        self._scope: trio.CancelScope | None = None
        self._target = math.inf  # when the timer task wakes next
        self.staged: list[Staged] = []  # calls with a deadline, not yet in the wheel
        trio.lowlevel.spawn_system_task(self._run, name="trio_peeper.timers")

    def add(self, deadline: float, item: Fires) -> int:
        """Fire *item* at *deadline*; returns a handle for `cancel`."""
        handle: int = self.wheel.insert(deadline, item)
        if deadline < self._target:
            self.wake_at(deadline)
        return handle

    def wake_at(self, when: float) -> None:
        """Make the timer task wake no later than *when*."""
        if when < self._target:
            self._target = when
            if self._scope is not None:
                self._scope.deadline = when

    def _sweep(self) -> None:
        staged, self.staged = self.staged, []
        insert = self.wheel.insert
        for call in staged:
            if call.task is not None:  # still waiting: its deadline goes in the wheel
                call.timer = insert(call.deadline, call)

    def cancel(self, handle: int) -> bool:
        """Forget a pending entry; False when it fired or was cancelled already."""
        cancelled: bool = self.wheel.cancel(handle)
        return cancelled

    async def _run(self) -> None:
        wheel = self.wheel
        while True:
            if self.staged:
                self._sweep()
            for item in wheel.expire(self.now()):
                try:
                    item._fire()
                except Exception:
                    log.exception("timer entry %r failed", item)
            # entries added while firing are seen here
            self._target = target = wheel.next_deadline()
            with trio.CancelScope(deadline=target) as scope:
                self._scope = scope
                await trio.sleep_forever()
            self._scope = None


@final
class Runtime:
    """Everything trio_peeper keeps per run."""

    __slots__ = ("__weakref__", "_timers", "anchors", "names", "node", "tables")

    def __init__(self) -> None:
        self.anchors: dict[trio.Nursery, object] = {}  # {nursery: hibernation anchor}
        self.names: dict[Hashable, object] = {}  # {name: ServerRef | Supervisor}
        self.tables: dict[Hashable, object] = {}  # {table name: Table}
        self._timers: Timers | None = None
        self.node: object = None  # the open tp.open_node(), if any

    @property
    def timers(self) -> Timers:
        """The run's timer service, started on first use."""
        t = self._timers
        if t is None:
            t = self._timers = Timers()
        return t


_RUNTIME: trio.lowlevel.RunVar[Runtime] = trio.lowlevel.RunVar("trio_peeper.runtime")


def current_runtime() -> Runtime:
    """The `Runtime` of the current ``trio.run`` (created on first use)."""
    try:
        return _RUNTIME.get()
    except LookupError:
        rt = Runtime()
        _RUNTIME.set(rt)
        return rt
