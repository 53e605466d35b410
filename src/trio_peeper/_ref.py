"""ServerRef: the only handle user code holds, and the incarnation loop behind it.

A `ServerRef` is stable for the life of a server, across all its restarts. It
owns the server's `Keeper` (mailbox + committed state). Each *incarnation* is a
run of `ServerRef._serve` in a Trio task: it reads messages from the keeper's
mailbox and commits states to it. When an incarnation dies, everything it
raised is caught here and turned into an exit reason for its controller (a
supervisor) or, for a standalone server, into a restart in the same task.

Hot path (enqueue -> dequeue -> dispatch -> handler -> commit -> reply):
- a call parks the caller once (`wait_task_rescheduled`) and is woken once
  (`reschedule`); its deadline is an entry in the run's timer wheel;
- ``*_nowait`` enqueues with no schedule point; the loop parks only on an
  empty mailbox and takes a full checkpoint every ``_BUDGET`` messages;
- mailbox items are ``(tag, payload)`` tuples; a call's payload is the
  `_Call` that is also the opaque ``caller`` handed to ``handle_call``.
"""

from __future__ import annotations

import logging
import math
from collections import deque
from contextvars import ContextVar
from functools import partial
from typing import TYPE_CHECKING, Any, Final

import trio
from outcome import Error, Value
from trio.lowlevel import (
    Abort,
    checkpoint,
    current_task,
    reschedule,
    wait_task_rescheduled,
)

from _fastcore import SCALARS, detach

from ._durable import Durable, DurableServer
from ._errors import (
    AlreadyStarted,
    CallingSelf,
    CallTimeout,
    InvalidReturn,
    NoProc,
    RestartIntensityExceeded,
    ServerExited,
    StartError,
    VersionError,
)
from ._intensity import Intensity
from ._keeper import Keeper
from ._messages import (
    IGNORE,
    KILLED,
    NO_REPLY,
    TIMEOUT,
    Down,
    Init,
    NoReply,
    Reply,
    Statistics,
    Stop,
    is_normal,
)
from ._runtime import TICK, current_runtime
from ._util import final

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Hashable

    from _fastcore import Journal

    from ._genserver import GenServer
    from ._messages import _Opts
    from ._runtime import Runtime, Timers

# mailbox tags
_CALL: Final = 0
_CAST: Final = 1
_INFO: Final = 2
_STOP: Final = 3
_SYNC: Final = 4  # a durable server's interval sync is due

# status
STARTING: Final = "starting"
RUNNING: Final = "running"
RESTARTING: Final = "restarting"
STOPPED: Final = "stopped"

_BUDGET: Final = 64  # messages handled between full checkpoints

# how an incarnation boots
_BOOT_INIT: Final = 0
_BOOT_RESTORE: Final = 1
_BOOT_RESUME: Final = 2  # after hibernation: same state, same server instance

_HIBERNATE: Final = object()  # _serve's result when the server gives up its task
_MOVED: Final = object()  # _serve's result when tp.transfer takes it to another supervisor
_NO_LIMIT: Final = 1 << 62

log = logging.getLogger("trio_peeper")

_current_server: ContextVar[ServerRef | None] = ContextVar("trio_peeper.current_server", default=None)

_CALL_RESULTS: Final = "tp.Reply, tp.NoReply or tp.Stop"
_OTHER_RESULTS: Final = "tp.NoReply or tp.Stop"


@final
class _Call:
    """One pending call; also the opaque, hashable ``caller`` given to ``handle_call``."""

    __slots__ = ("deadline", "deferred", "ref", "request", "task", "timeout", "timer")

    def __init__(self, ref: ServerRef, request: object, task: trio.lowlevel.Task) -> None:
        self.ref = ref
        self.request = request
        self.task: trio.lowlevel.Task | None = task  # None once answered, timed out or abandoned
        self.timer = 0  # wheel handle, once the timer task moved the deadline there
        self.timeout = math.inf
        self.deadline = math.inf
        self.deferred = False  # in ref._deferred: handle_call returned NoReply

    def _settle(self) -> None:
        self.task = None
        if self.timer:
            self.ref._timers.cancel_handle(self.timer)
        if self.deferred:
            self.deferred = False
            self.ref._deferred.discard(self)  # type: ignore[union-attr]

    def _fire(self) -> None:  # the call's deadline passed
        task = self.task
        if task is not None:
            self.timer = 0
            self._settle()
            reschedule(task, Error(CallTimeout(self.ref, self.timeout)))

    def _abort(self, raise_cancel: object) -> Abort:  # the caller was cancelled
        self._settle()
        return Abort.SUCCEEDED

    def _answer(self, value: object) -> None:
        task = self.task
        if task is not None:
            self._settle()
            reschedule(task, Value(value))

    def _fail(self, reason: object) -> None:
        task = self.task
        if task is not None:
            self._settle()
            err = ServerExited(self.ref, reason)
            if isinstance(reason, BaseException):
                err.__cause__ = reason
            reschedule(task, Error(err))

    def __repr__(self) -> str:
        return f"<caller of {self.ref!r}>"


def reply(caller: object, value: object) -> None:
    """Answer a call that ``handle_call`` deferred with ``tp.NoReply``.

    Plain function; callable from any task of the run. A reply to a call that
    already timed out, was abandoned or answered is dropped.

    Raises:
      TypeError: *caller* is not the ``caller`` argument of a ``handle_call``.
    """
    if type(caller) is not _Call:
        msg = f"reply() needs the caller argument of handle_call, got {caller!r}"
        raise TypeError(msg)
    if type(value) not in SCALARS and caller.ref._keeper.journal is not None:
        value = detach(value)  # a reply never exposes a server's live state
    caller._answer(value)


@final
class _Hooks:
    """A server's listener, its hooks looked up once; a hook that raises is logged, never fatal."""

    __slots__ = ("_crash", "_restart", "_terminate", "changed", "listener")

    def __init__(self, listener: object) -> None:
        self.listener = listener
        self.changed: Callable[[object, object], object] | None = getattr(listener, "on_state_changed", None)
        self._terminate = getattr(listener, "on_terminate", None)
        self._crash = getattr(listener, "on_crash", None)
        self._restart = getattr(listener, "on_restart", None)

    def _call(self, hook: Callable[..., object] | None, *args: object) -> None:
        if hook is not None:
            try:
                hook(*args)
            except Exception:
                log.exception("listener %r failed in %s", self.listener, getattr(hook, "__name__", hook))

    def state_changed(self, old: object, new: object) -> None:
        self._call(self.changed, old, new)

    def terminated(self, reason: object, state: object) -> None:
        self._call(self._terminate, reason, detach(state))

    def crashed(self, exc: BaseException, state: object) -> None:
        self._call(self._crash, exc, detach(state))

    def restarted(self, state: object, restarts: int) -> None:
        self._call(self._restart, detach(state), restarts)


@final
class _SyncTimer:
    """The wheel entry of a durable server's interval sync."""

    __slots__ = ("ref",)

    def __init__(self, ref: ServerRef) -> None:
        self.ref = ref

    def _fire(self) -> None:
        durable = self.ref._durable
        if durable is not None:
            durable._timer = 0
            self.ref._post(_SYNC, None)


@final
class _IdleTimeout:
    """The wheel entry of a server's idle ``timeout=`` (one per ref, reused)."""

    __slots__ = ("ref",)

    def __init__(self, ref: ServerRef) -> None:
        self.ref = ref

    def _fire(self) -> None:
        ref = self.ref
        ref._idle_handle = 0
        # only if no message arrived first: the server is still parked on an empty mailbox
        if (ref._waiter is not None or ref._hibernating) and not ref._mailbox:
            ref._mailbox.push((_INFO, TIMEOUT))
            ref._wake()


@final
class Monitor:
    """Watches one server until it stops for good (``ref.monitor()``, ``self.monitor(ref)``)."""

    __slots__ = ("_done", "_event", "_reason", "_target", "_watcher")

    def __init__(self, target: Any, watcher: ServerRef | None) -> None:
        self._target = target
        self._watcher = watcher
        self._done = False
        self._reason: object = None
        self._event: trio.Event | None = None

    @property
    def target(self) -> Any:
        """The monitored server (or task, or supervisor)."""
        return self._target

    async def wait(self) -> object:
        """Wait until the target stops for good and return its exit reason; a checkpoint."""
        if self._done:
            await checkpoint()
        else:
            if self._event is None:
                self._event = trio.Event()
            await self._event.wait()
        return self._reason

    def cancel(self) -> None:
        """Stop watching; no ``Down`` and no wake-up will come from this monitor."""
        self._target._unmonitor(self)
        self._done = True

    def _notify(self, reason: object) -> None:
        if self._done:
            return
        self._done = True
        self._reason = reason
        watcher = self._watcher
        if watcher is not None:
            watcher._post(_INFO, Down(self._target, reason))
        if self._event is not None:
            self._event.set()


class Stoppable:
    """What supervisors need of a child handle: exits, stop requests, kill, monitors."""

    __slots__ = ("_exit_reason", "_monitors", "_on_final", "_on_reset", "_stopped")

    def _init_stoppable(self) -> None:
        self._exit_reason: object = None
        self._monitors: list[Monitor] | None = None
        self._stopped: trio.Event | None = None
        # called when it stops for good / when a non-preserving incarnation ends
        self._on_final: list[Callable[[Any], None]] | None = None
        self._on_reset: list[Callable[[Any], None]] | None = None

    def _add_final_hook(self, hook: Callable[[Any], None]) -> None:
        if self._on_final is None:
            self._on_final = []
        self._on_final.append(hook)

    def _add_reset_hook(self, hook: Callable[[Any], None]) -> None:
        if self._on_reset is None:
            self._on_reset = []
        self._on_reset.append(hook)

    def _run_hooks(self, which: str) -> None:
        hooks = getattr(self, which)
        setattr(self, which, None)
        if hooks:
            for hook in hooks:
                hook(self)

    def monitor(self) -> Monitor:
        """A `Monitor` whose ``wait()`` returns the exit reason when this stops for good."""
        return self._monitor_for(None)

    def _monitor_for(self, watcher: ServerRef | None) -> Monitor:
        m = Monitor(self, watcher)
        if self._is_stopped():
            m._notify(self._exit_reason)
        else:
            if self._monitors is None:
                self._monitors = []
            self._monitors.append(m)
        return m

    def _unmonitor(self, m: Monitor) -> None:
        if self._monitors is not None and m in self._monitors:
            self._monitors.remove(m)

    def _is_stopped(self) -> bool:
        raise NotImplementedError

    async def wait_stopped(self) -> object:
        """Wait until this stops for good; returns the exit reason. A checkpoint."""
        if self._is_stopped():
            await checkpoint()
        else:
            if self._stopped is None:
                self._stopped = trio.Event()
            await self._stopped.wait()
        return self._exit_reason

    def _announce_exit(self, reason: object) -> None:
        """Stopped for good: run final hooks, tell monitors and waiters (once)."""
        if self._stopped is not None and self._stopped.is_set():
            return
        if self._stopped is None:
            self._stopped = trio.Event()
        self._stopped.set()
        self._run_hooks("_on_final")
        self._on_reset = None
        self._exit_reason = reason
        monitors, self._monitors = self._monitors, None
        if monitors:
            for m in monitors:
                m._notify(reason)


class ServerRef(Stoppable):
    """A handle to a server, stable across all its restarts; compares by identity.

    Returned by `start_server`, a supervisor's ``start_child`` and
    `current_server`. Not constructed by users.

    .. versionadded:: 0.1
    """

    __slots__ = (
        "__weakref__",
        "_args",
        "_boot_status",
        "_cls",
        "_controller",
        "_current",
        "_deferred",
        "_durable",
        "_ended",
        "_for_good",
        "_handled",
        "_hibernating",
        "_hooks",
        "_idle",
        "_idle_handle",
        "_intensity",
        "_keeper",
        "_keep_tables",
        "_killed",
        "_moving",
        "_limit",
        "_mailbox",
        "_name",
        "_nursery",
        "_preserve",
        "_restarts",
        "_resuming",
        "_room",
        "_rt",
        "_scope",
        "_server",
        "_start_timer",
        "_status",
        "_tables",
        "_task",
        "_timers",
        "_waiter",
    )

    def __init__(self, *args: object, **kwargs: object) -> None:
        msg = "ServerRef is not constructed directly; use tp.start_server or a supervisor"
        raise TypeError(msg)

    def __init_subclass__(cls, **kwargs: object) -> None:
        msg = "ServerRef is final and cannot be subclassed"
        raise TypeError(msg)

    @classmethod
    def _create(
        cls,
        server_class: type[GenServer],
        args: tuple[object, ...],
        options: dict[str, object],
        name: Hashable | None,
    ) -> ServerRef:
        self = object.__new__(cls)
        self._init_stoppable()
        rt = current_runtime()
        self._rt: Runtime = rt
        self._timers: Timers = rt.timers
        self._boot_status: trio.TaskStatus[ServerRef | None] = trio.TASK_STATUS_IGNORED
        self._start_timer = 0  # wheel handle of the start timeout; -1 once it fired
        self._intensity: Intensity | None = None  # standalone only, made on the first crash
        self._cls = server_class
        self._args = args
        self._preserve = bool(options["preserve"])
        size = options["mailbox_size"]
        self._limit = _NO_LIMIT if size is None else size
        self._keeper = Keeper(self, self._preserve)
        self._durable = Durable(self, server_class, options) if issubclass(server_class, DurableServer) else None
        listener = options["listener"]
        self._hooks = None if listener is None else _Hooks(listener)
        self._mailbox = self._keeper.mailbox
        self._status = STARTING
        self._task: trio.lowlevel.Task | None = None
        self._scope: trio.CancelScope | None = None
        self._waiter: trio.lowlevel.Task | None = None
        self._ended: trio.Event | None = None
        self._current: _Call | None = None
        self._deferred: set[_Call] | None = None  # calls answered later with tp.reply
        self._handled = 0
        self._restarts = 0
        self._controller: Any = None
        self._for_good = False
        self._killed = False
        self._moving = False  # tp.transfer asked this incarnation to give up its task
        self._tables: list[Any] | None = None  # tables this server owns
        self._keep_tables = bool(options["keep_tables"])
        self._hibernating = False
        self._resuming = False
        self._server: GenServer | None = None
        self._nursery: trio.Nursery | None = None
        self._idle: _IdleTimeout | None = None  # made when a timeout= is first used
        self._idle_handle = 0
        self._room: deque[trio.lowlevel.Task] | None = None
        self._name = None
        if name is not None:
            from ._registry import claim_name  # noqa: PLC0415 - registry imports this module

            claim_name(rt, name, self)
            self._name = name
        return self

    # ------------------------------------------------------------ properties

    @property
    def alive(self) -> bool:
        """True while an incarnation is running (a hibernating server is alive)."""
        return self._status is RUNNING

    @property
    def name(self) -> Hashable | None:
        """The registered name, or None."""
        return self._name

    @property
    def restarts(self) -> int:
        """How many times this server was restarted so far."""
        return self._restarts

    @property
    def server_class(self) -> type[GenServer]:
        """The `GenServer` subclass this ref runs."""
        return self._cls

    def statistics(self) -> Statistics:
        """A frozen snapshot: ``mailbox_len``, ``handled``, ``restarts``, ``state_commits``."""
        return Statistics(len(self._mailbox), self._handled, self._restarts, self._keeper.commits)

    def __repr__(self) -> str:
        label = self._cls.__qualname__ if self._name is None else repr(self._name)
        return f"<ServerRef {label} {self._status}>"

    def _is_stopped(self) -> bool:
        return self._status is STOPPED

    # ------------------------------------------------------------- messaging

    def _wake(self) -> None:
        w = self._waiter
        if w is not None:
            self._waiter = None
            reschedule(w)
        elif self._hibernating:
            self._resume()

    def _post(self, tag: int, payload: object) -> None:
        """Enqueue ignoring the bound (internal messages: Down, timers, stop)."""
        if self._status is not STOPPED:
            self._mailbox.push((tag, payload))
            w = self._waiter
            if w is not None:
                self._waiter = None
                reschedule(w)
            elif self._hibernating:
                self._resume()

    async def call(self, request: object, *, timeout: float | None = 5.0) -> Any:
        """Send *request* to ``handle_call`` and wait for the reply.

        This is a checkpoint. If the caller is cancelled after the request was
        queued, the server still handles it and the late reply is dropped.

        Args:
          request: Passed unchanged to the server's ``handle_call``.
          timeout: Seconds to wait (virtual under `trio.testing.MockClock`);
            ``math.inf`` or None waits forever.

        Returns:
          The value ``handle_call`` replied with.

        Raises:
          CallTimeout: no reply within *timeout*; the server keeps running and
            a late reply never answers a later call.
          NoProc: the server is not running and not restarting.
          ServerExited: it stopped or crashed while handling this call.
          CallingSelf: called from inside the server itself.
        """
        if self._status is STOPPED:
            await checkpoint()
            raise NoProc(self)
        task = current_task()
        if task is self._task:
            await checkpoint()
            raise CallingSelf(self)
        if timeout is not None and (type(timeout) is not float or timeout != timeout):
            _check_timeout(timeout)  # before anything is queued
        ring = self._mailbox
        if len(ring) >= self._limit:
            await self._wait_room(task)
        c = _Call(self, request, task)
        ring.push((_CALL, c))
        w = self._waiter
        if w is not None:
            self._waiter = None
            reschedule(w)
        elif self._hibernating:
            self._resume()
        if timeout is not None and timeout != math.inf:
            timers = self._timers
            now = timers.now()
            c.timeout = timeout
            c.deadline = deadline = now + timeout
            staged = timers.staged
            if not staged:  # the first since the last sweep: have one within a tick
                timers.wake_at(now + TICK if now + TICK < deadline else deadline)
            elif deadline < timers._target:
                timers.wake_at(deadline)
            staged.append(c)
        return await wait_task_rescheduled(c._abort)

    def cast_nowait(self, message: object) -> None:
        """Send *message* to ``handle_cast`` without blocking (no schedule point).

        Raises:
          trio.WouldBlock: a bounded mailbox is full; nothing was queued.
        """
        if self._status is STOPPED:
            return
        ring = self._mailbox
        if len(ring) >= self._limit:
            raise trio.WouldBlock
        ring.push((_CAST, message))
        w = self._waiter
        if w is not None:
            self._waiter = None
            reschedule(w)
        elif self._hibernating:
            self._resume()

    def send_nowait(self, message: object) -> None:
        """Send *message* to ``handle_info`` without blocking (no schedule point).

        Raises:
          trio.WouldBlock: a bounded mailbox is full; nothing was queued.
        """
        if self._status is STOPPED:
            return
        ring = self._mailbox
        if len(ring) >= self._limit:
            raise trio.WouldBlock
        ring.push((_INFO, message))
        w = self._waiter
        if w is not None:
            self._waiter = None
            reschedule(w)
        elif self._hibernating:
            self._resume()

    async def cast(self, message: object) -> None:
        """Send *message* to ``handle_cast``; a checkpoint that waits for room in a bounded mailbox."""
        await self._send(_CAST, message)

    async def send(self, message: object) -> None:
        """Send *message* to ``handle_info``; a checkpoint that waits for room in a bounded mailbox."""
        await self._send(_INFO, message)

    async def _send(self, tag: int, message: object) -> None:
        await checkpoint()
        if self._status is STOPPED:
            return
        if len(self._mailbox) >= self._limit:
            await self._wait_room(current_task())
            if self._status is STOPPED:
                return
        self._mailbox.push((tag, message))
        self._wake()

    async def _wait_room(self, task: trio.lowlevel.Task) -> None:
        room = self._room
        if room is None:
            room = self._room = deque()
        while len(self._mailbox) >= self._limit and self._status is not STOPPED:
            room.append(task)

            def abort(_: object, task: trio.lowlevel.Task = task) -> Abort:
                if task in room:
                    room.remove(task)
                return Abort.SUCCEEDED

            await wait_task_rescheduled(abort)

    def _release_room(self) -> None:
        room = self._room
        while room and len(self._mailbox) < self._limit:
            reschedule(room.popleft())

    # ------------------------------------------------------------- stopping

    async def stop(self, reason: object = "normal", *, timeout: float = math.inf) -> None:
        """Stop the server gracefully and for good: ``terminate`` runs, then it exits.

        The stop request is a message: it is handled after the messages already
        queued and never interrupts a running callback. This is a checkpoint.
        When *timeout* runs out, the server is killed (no ``terminate``).

        Raises:
          NoProc: the server already stopped for good.
          CallingSelf: called from inside the server itself.
        """
        if self._status is STOPPED:
            await checkpoint()
            raise NoProc(self)
        if current_task() is self._task:
            await checkpoint()
            raise CallingSelf(self, "stop")
        await self._halt(reason, timeout, True)
        await self.wait_stopped()

    async def _halt(self, reason: object, timeout: float | str, for_good: bool) -> None:
        """Stop the running incarnation: a stop message, then a kill after *timeout*.

        Returns when the incarnation has ended (not when a supervisor has
        finalized the server: use `wait_stopped` for that).
        """
        if for_good:
            self._for_good = True
        if not self._incarnated():
            return
        if timeout == "brutal_kill":
            self.kill()
        else:
            self._post(_STOP, reason)
            with trio.move_on_after(timeout):  # type: ignore[arg-type]
                await self._wait_ended()
                return
            self.kill()
        await self._wait_ended()

    def _incarnated(self) -> bool:
        """An incarnation exists: running, resuming or hibernating."""
        return self._task is not None or self._resuming or self._hibernating

    async def _wait_ended(self) -> None:
        if not self._incarnated():
            return
        ended = self._ended
        if ended is None:
            ended = self._ended = trio.Event()
        await ended.wait()

    def kill(self) -> None:
        """Exit at once (cancellation); ``terminate`` does not run; the reason is ``tp.KILLED``.

        Plain function. Its supervisor restarts it as for any crash. Killing a
        server that is not running does nothing.
        """
        scope = self._scope
        if scope is not None:
            self._killed = True
            scope.cancel()
        elif self._hibernating:
            self._killed = True
            self._resume()
        elif self._resuming:  # between tasks (waking, or just transferred): the new task cancels itself
            self._killed = True

    # ---------------------------------------------------------- incarnations

    async def _run(
        self,
        boot: int = 0,  # _BOOT_INIT; a supervisor passes its restore flag (0/1)
        supervised: bool = False,
        task_status: trio.TaskStatus[ServerRef | None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Every incarnation of this server that runs in this task.

        Standalone, it restarts here like a transient child (3 in 5 s);
        supervised, it restarts here only when its supervisor allows it on the
        spot (`Supervisor._restart_inline`) and otherwise reports the exit. One
        coroutine frame above `_serve`: an idle server's memory counts.
        """
        # the TaskStatus holds nursery.start's temporary nursery: no frame may
        # keep it once started (see _take_boot_status)
        self._boot_status = task_status
        del task_status
        first = boot != _BOOT_RESUME
        try:
            while True:
                self._task = current_task()
                self._resuming = False
                if boot != _BOOT_RESUME:
                    self._killed = False
                scope = self._scope = trio.CancelScope()
                _current_server.set(self)  # this task's own context: no reset needed
                started = False
                reason: object = IGNORE
                exc: BaseException | None = None
                try:
                    with scope:
                        booted = await self._boot(boot)
                        if booted is not None:
                            started = True
                            server, state, opts = booted
                            reason = await self._serve(server, state, opts)
                            if reason is _HIBERNATE or reason is _MOVED:
                                self._server = server  # resumed later, as it is
                            if reason is _HIBERNATE:
                                self._hibernating = True
                                _anchor(self)
                except Exception as e:  # a crash: everything a callback raises
                    reason = exc = e
                finally:
                    self._end_task()
                if scope.cancelled_caught:
                    reason, exc = KILLED, None
                if reason is _HIBERNATE or reason is _MOVED:
                    return
                self._incarnation_ended(reason)
                if supervised:
                    boot = self._next_supervised(started, first, reason, exc)
                else:
                    boot = self._next_standalone(started, reason, exc)
                if boot < 0:
                    return
                first = False
        except BaseException:
            if not supervised:
                self._finalize(KILLED)
            raise

    @property
    def _run_supervised(self) -> Callable[..., Awaitable[None]]:
        """What a supervisor starts: ``_run(restore, supervised=True)``."""
        return partial(self._run, supervised=True)

    async def _boot(self, boot: int) -> tuple[GenServer, object, _Opts | None] | None:
        """Init, restore or resume; None when ``init``/``restore`` returned IGNORE."""
        if boot == _BOOT_RESUME:
            server, self._server = self._server, None
            assert server is not None
            if self._killed:
                self._scope.cancel()  # type: ignore[union-attr]
            return server, self._keeper.state, None
        server = self._cls()
        keeper = self._keeper
        j = keeper.journal
        loaded = False  # a durable server loaded from storage (not a restore)
        if self._durable is not None:
            self._durable.check_owner()
        if boot == _BOOT_RESTORE:
            if j is not None:
                j.begin()
            try:
                result = await server.restore(keeper.state)
            except BaseException:
                if j is not None:
                    j.rollback()
                raise
            where = "restore"
        elif self._durable is not None:
            result = await self._durable.boot(server)  # type: ignore[arg-type]
            where = "init"
            loaded = True
        else:
            result = await server.init(*self._args)
            where = "init"
        if result is IGNORE:
            if j is not None and j.active:
                j.rollback()
            return None
        if type(result) is Init:
            state, opts = result.state, result._opts
        elif type(result) in (Reply, NoReply, Stop):
            if j is not None and j.active:
                j.rollback()
            raise InvalidReturn(where, result, "a state, tp.Init or tp.IGNORE")
        else:
            state, opts = result, None
        if j is not None and j.active:
            state = self._store(state)
        else:
            state = keeper.adopt(state)
        if loaded and self._durable is not None and self._durable.dirty:
            await self._durable.sync(server, state)  # first boot or migration: durable before started
        if self._hooks is not None and boot == _BOOT_RESTORE:
            self._hooks.restarted(state, self._restarts)
        self._status = RUNNING
        if self._start_timer > 0:
            self._timers.cancel_handle(self._start_timer)
        self._start_timer = 0
        self._take_boot_status().started(self)
        return server, state, opts

    def _end_task(self) -> None:
        """The incarnation's task part ended (or went into hibernation)."""
        self._task = None
        self._scope = None
        self._waiter = None
        if not self._hibernating:
            ended, self._ended = self._ended, None
            if ended is not None:
                ended.set()
            if self._idle_handle:
                self._timers.cancel(self._idle_handle)
                self._idle_handle = 0

    def _own_table(self, table: Any) -> None:
        if self._tables is None:
            self._tables = []
        self._tables.append(table)

    def _disown_table(self, table: Any) -> None:
        if self._tables is not None and table in self._tables:
            self._tables.remove(table)

    def _tables_lost(self) -> None:
        """Its tables go to their heirs, or are deleted."""
        if self._tables:
            for table in list(self._tables):
                table._owner_lost(self)

    def _incarnation_ended(self, reason: object) -> None:
        """Callers that can no longer be answered learn why; a fresh process forgets."""
        if not self._keep_tables:
            self._tables_lost()
        if not self._preserve:
            # a non-preserving restart is a fresh process: its dictionary and
            # what it registered go
            self._keeper.pdict = None
            if self._on_reset is not None:
                self._run_hooks("_on_reset")
        current = self._current
        if current is not None:
            self._current = None
            current._fail(reason)
        if self._deferred and not self._preserve:
            self._fail_deferred(reason)  # nobody left who could answer them

    def _next_standalone(self, started: bool, reason: object, exc: BaseException | None) -> int:
        """Restart here (the next boot mode), end (-1), or raise into the nursery."""
        if not started:
            self._finalize(reason)
            if reason is IGNORE:
                self._take_boot_status().started(None)
                return -1
            if self._start_timer == -1:
                reason = "timeout"
            if isinstance(exc, (AlreadyStarted, VersionError)):
                raise exc  # not wrapped: the caller acts on exactly this
            raise StartError(self._cls.__qualname__, reason) from exc
        if self._for_good or is_normal(reason):
            self._finalize(reason)
            return -1
        intensity = self._intensity
        if intensity is None:
            intensity = self._intensity = Intensity(3, 5.0)
        if intensity.add(trio.current_time()):
            self._finalize(reason)
            if exc is not None:
                raise exc
            raise RestartIntensityExceeded(repr(self), intensity.count, 5.0)
        self._restarts += 1
        return _BOOT_RESTORE if self._preserve and self._keeper.has_state else _BOOT_INIT

    def _next_supervised(self, started: bool, first: bool, reason: object, exc: BaseException | None) -> int:
        """Restart here when the supervisor allows it at once; else report (-1)."""
        if not started and first:
            if reason is IGNORE:
                self._finalize("normal")
                self._take_boot_status().started(None)
                return -1
            if isinstance(exc, (AlreadyStarted, VersionError)):
                raise exc  # not wrapped: the caller acts on exactly this
            raise StartError(self._cls.__qualname__, reason) from exc
        if not started and reason is IGNORE:
            reason = "normal"  # restore() returned IGNORE: the server ends
        self._status = RESTARTING
        boot: int = self._controller._restart_inline(self, reason) if started else -1
        if boot < 0:
            self._controller._child_exited(self, self._restarts, reason)
        return boot

    def _fire(self) -> None:
        """The start timeout (a wheel entry): a server still in ``init`` is killed."""
        if self._status is STARTING:
            self._start_timer = -1
            self.kill()

    def _resume(self) -> None:
        """A message (or a kill) for a hibernating server: give it a fresh task."""
        self._hibernating = False
        self._resuming = True
        nursery = self._nursery
        assert nursery is not None
        nursery.start_soon(partial(self._run, _BOOT_RESUME, self._controller is not None))
        _unanchor(self)

    def _take_boot_status(self) -> trio.TaskStatus[ServerRef | None]:
        status, self._boot_status = self._boot_status, trio.TASK_STATUS_IGNORED
        return status

    def _fail_deferred(self, reason: object) -> None:
        for call in list(self._deferred):
            call._fail(reason)

    async def _serve(self, server: GenServer, state: object, opts: _Opts | None) -> object:
        """The receive/dispatch loop; returns the exit reason of a graceful exit.

        Every callback of a preserving server is a transaction on its journal:
        ``begin()`` before, `_store` commits after a valid return, and anything
        escaping this loop (a raise, an invalid return, a kill) rolls back the
        open transaction, so the keeper holds exactly the last committed state.
        """
        keeper = self._keeper
        j = keeper.journal
        try:
            return await self._loop(server, state, opts, keeper, j)
        except BaseException as e:
            if j is not None and j.active:
                j.rollback()
            if self._hooks is not None and isinstance(e, Exception):
                self._hooks.crashed(e, keeper.state)
            raise

    async def _loop(
        self, server: GenServer, state: object, opts: _Opts | None, keeper: Keeper, j: Journal | None
    ) -> object:
        ring = self._mailbox
        task = self._task
        handle_call = server.handle_call
        handle_cast = server.handle_cast
        handle_info = server.handle_info
        park = self._park_abort
        timers = self._timers
        hooks = self._hooks
        durable = self._durable
        budget = _BUDGET
        while True:
            idle = None
            hibernate = False
            while opts is not None:
                idle = opts.timeout
                hibernate = opts.hibernate
                arg = opts.continue_
                if arg is None:
                    break
                old = self._before(state)
                if j is not None:
                    j.begin()
                result = await server.handle_continue(arg, state)
                rt = type(result)
                if rt is NoReply:
                    if durable is None:
                        state = self._commit(result.state, old)
                    else:
                        state = await self._sync_commit(server, result, old)
                    opts = result._opts
                elif rt is Stop:
                    return await self._stop_with(server, result, None, old)
                else:
                    raise InvalidReturn("handle_continue", result, _OTHER_RESULTS)
            else:
                opts = None
            opts = None
            if not ring:
                if idle is not None:
                    if idle <= 0:
                        ring.push((_INFO, TIMEOUT))
                    else:
                        if self._idle is None:
                            self._idle = _IdleTimeout(self)
                        self._idle_handle = timers.add(timers.now() + idle, self._idle)
                if not ring:
                    if hibernate:
                        return _HIBERNATE
                    self._waiter = task
                    await wait_task_rescheduled(park)
                    if self._idle_handle:
                        timers.cancel(self._idle_handle)
                        self._idle_handle = 0
                    if self._moving:
                        return _MOVED  # woken by tp.transfer, not by a message
                budget = _BUDGET
            elif budget:
                budget -= 1
            else:
                budget = _BUDGET
                await checkpoint()
            if self._killed:
                await checkpoint()  # raises Cancelled: the kill wins over queued messages
            if self._moving:
                return _MOVED  # tp.transfer: stop at this message boundary, nothing lost
            tag, payload = ring.pop()
            self._handled += 1
            if self._room:
                self._release_room()
            if tag is _SYNC:
                assert durable is not None
                await durable.sync(server, state)  # SyncFailed: a crash, the state is kept
                continue
            old = None if hooks is None else self._before(state)
            if j is not None:
                j.begin()
            if tag is _CALL:
                self._current = payload
                result = await handle_call(payload.request, payload, state)
                rt = type(result)
                if rt is Reply:
                    if durable is None:
                        state = self._commit(result.state, old)
                    else:  # the output gate: durable before the reply leaves
                        state = await self._sync_commit(server, result, old)
                    self._current = None
                    value = result.value
                    if j is not None and type(value) not in SCALARS:
                        value = detach(value)  # a reply never exposes the live state
                    payload._answer(value)
                    opts = result._opts
                elif rt is NoReply:
                    if durable is None:
                        state = self._commit(result.state, old)
                    else:
                        state = await self._sync_commit(server, result, old)
                    self._current = None
                    if payload.task is not None:  # deferred: tracked until answered
                        payload.deferred = True
                        if self._deferred is None:
                            self._deferred = set()
                        self._deferred.add(payload)
                    opts = result._opts
                elif rt is Stop:
                    return await self._stop_with(server, result, payload, old)
                else:
                    raise InvalidReturn("handle_call", result, _CALL_RESULTS)
            elif tag is _CAST or tag is _INFO:
                if tag is _CAST:
                    result = await handle_cast(payload, state)
                else:
                    result = await handle_info(payload, state)
                rt = type(result)
                if rt is NoReply:
                    if durable is None:
                        state = self._commit(result.state, old)
                    else:
                        state = await self._sync_commit(server, result, old)
                    opts = result._opts
                elif rt is Stop:
                    return await self._stop_with(server, result, None, old)
                else:
                    where = "handle_cast" if tag is _CAST else "handle_info"
                    raise InvalidReturn(where, result, _OTHER_RESULTS)
            else:  # _STOP: a graceful stop request, for good
                await server.terminate(payload, state)
                if j is not None:
                    j.rollback()  # terminate's changes are not kept: the state is left as committed
                if durable is not None:
                    await self._final_sync(server)
                if hooks is not None:
                    hooks.terminated(payload, keeper.state)
                return payload

    async def _final_sync(self, server: GenServer) -> None:
        """Every policy syncs on a graceful stop; a failure is logged and becomes the exit reason."""
        durable = self._durable
        assert durable is not None
        try:
            await durable.sync(server, self._keeper.state)
        except Exception:
            log.exception("the final sync of durable server %r failed; its last changes are not stored", durable.key)
            raise

    def _before(self, state: object) -> object:
        """What ``on_state_changed`` will get as *old* (a copy if the state is tracked)."""
        hooks = self._hooks
        if hooks is None or hooks.changed is None:
            return None
        return detach(state) if self._keeper.journal is not None else state

    def _store(self, new: object) -> object:
        """Make *new* the committed state: commit the journal's transaction; returns what is kept."""
        keeper = self._keeper
        j = keeper.journal
        if j is not None:
            if new is not j.root:
                new = j.adopt_root(new)
            j.commit()
        keeper.state = new
        return new

    def _commit(self, new: object, old: object) -> object:
        """A callback returned *new*: store it, count the commit, tell the listener."""
        keeper = self._keeper
        prior = keeper.state
        j = keeper.journal
        if j is not None:  # as _store, inline: this runs for every message
            if new is not j.root:
                new = j.adopt_root(new)
            j.commit()
        keeper.state = new
        keeper.commits += 1
        hooks = self._hooks
        if hooks is not None and hooks.changed is not None:
            if j is not None:
                changed = bool(j._changed) and not (
                    new is not prior and type(new) in SCALARS and new == prior
                )
            else:
                changed = new is not prior
            if changed:
                new_copy = detach(new)
                if j is None or old != new_copy:  # an in-place write of an equal value is no change
                    hooks.state_changed(old, new_copy)
        return new

    async def _sync_commit(self, server: GenServer, result: Any, old: object) -> object:
        """`_commit` for a durable server: the change is durable first (by policy).

        The sync runs while the callback's transaction is still open, so a
        failed write (`SyncFailed`) rolls the change back with the crash.
        """
        durable = self._durable
        assert durable is not None
        j = self._keeper.journal
        new = result.state
        unsynced = set(durable.dirty)  # a failed sync rolls the change back: so must the marks
        if j is not None:
            if new is not j.root:
                new = j.adopt_root(new)
            j.settle()  # dataclass fields assigned in the callback count as changes
            durable.mark(j.changes())
        else:
            durable.mark([()])
        opts = getattr(result, "_opts", None)
        if durable.policy == "commit" or (opts is not None and opts.sync):
            try:
                await durable.sync(server, new)
            except BaseException:
                durable.dirty = unsynced
                raise
        return self._commit(new, old)

    async def _stop_with(self, server: GenServer, stop: Stop, caller: _Call | None, old: object) -> object:
        if self._durable is None:
            state = self._commit(stop.state, old)
        else:
            state = await self._sync_commit(server, stop, old)
        j = self._keeper.journal
        if j is not None:
            j.begin()
        await server.terminate(stop.reason, state)
        if j is not None:
            j.rollback()
        if self._durable is not None:
            await self._final_sync(server)
        if self._hooks is not None:
            self._hooks.terminated(stop.reason, self._keeper.state)
        if caller is not None and stop.reply is not NO_REPLY:
            self._current = None
            reply = stop.reply
            if j is not None and type(reply) not in SCALARS:
                reply = detach(reply)
            caller._answer(reply)
        return stop.reason

    def _park_abort(self, raise_cancel: object) -> Abort:
        self._waiter = None
        return Abort.SUCCEEDED

    def _finalize(self, reason: object) -> None:
        """The server stopped for good: fail queued calls, free the name, tell monitors."""
        if self._status is STOPPED:
            return
        self._status = STOPPED
        self._for_good = True
        if self._hibernating:
            self._hibernating = False
            _unanchor(self)
        for tag, payload in self._mailbox.drain():
            if tag is _CALL:
                payload._fail(reason)
        if self._deferred:
            self._fail_deferred(reason)
        self._tables_lost()
        if self._room:
            self._release_room_all()
        name = self._name
        if name is not None:
            from ._registry import release_name  # noqa: PLC0415

            release_name(self._rt, name, self)
        self._keeper.forget()
        self._announce_exit(reason)

    def _release_room_all(self) -> None:
        room = self._room
        while room:
            reschedule(room.popleft())


def _check_timeout(timeout: object) -> None:
    if (
        not isinstance(timeout, (int, float))
        or isinstance(timeout, bool)
        or timeout != timeout  # nan
    ):
        msg = f"timeout must be a number of seconds, math.inf or None, got {timeout!r}"
        raise TypeError(msg)


def current_server() -> ServerRef:
    """The `ServerRef` of the server whose callback (or ``init``) is running.

    Raises:
      RuntimeError: not called from inside a server.
    """
    ref = _current_server.get()
    if ref is None:
        msg = "current_server() called outside a server"
        raise RuntimeError(msg)
    return ref


def pdict() -> dict[Any, Any]:
    """The process dictionary of the current server: a plain dict that survives its restarts.

    It is not transactional (a crash does not roll it back, as Erlang's
    process dictionary); a ``preserve=False`` server gets an empty one at
    every restart; it is dropped when the server stops for good.

    Raises:
      RuntimeError: not called from inside a server.
    """
    keeper = current_server()._keeper
    d = keeper.pdict
    if d is None:
        d = keeper.pdict = {}
    return d


@final
class _Anchor:
    """Keeps a nursery open while servers started in it hibernate (one task per nursery)."""

    __slots__ = ("members", "nursery", "task")

    def __init__(self, nursery: trio.Nursery) -> None:
        self.nursery = nursery
        self.members: set[ServerRef] = set()
        self.task: trio.lowlevel.Task | None = None

    async def run(self) -> None:
        self.task = current_task()
        try:
            while self.members:
                await wait_task_rescheduled(_abort_ok)
        except BaseException:
            # the nursery is going away: hibernating servers in it are gone too
            for ref in list(self.members):
                ref._hibernating = False
                ref._finalize(KILLED)
            raise
        finally:
            self.task = None
            anchors = current_runtime().anchors
            if anchors.get(self.nursery) is self:
                del anchors[self.nursery]


def _abort_ok(_: object) -> Abort:
    return Abort.SUCCEEDED


def _anchor(ref: ServerRef) -> None:
    nursery = ref._nursery
    assert nursery is not None
    anchors = ref._rt.anchors
    anchor = anchors.get(nursery)
    if anchor is None:
        anchor = anchors[nursery] = _Anchor(nursery)
        nursery.start_soon(anchor.run, name="trio_peeper.hibernation_anchor")
    anchor.members.add(ref)


def _unanchor(ref: ServerRef) -> None:
    anchor = ref._rt.anchors.get(ref._nursery)
    if anchor is not None and ref in anchor.members:
        anchor.members.discard(ref)
        if not anchor.members and anchor.task is not None:
            reschedule(anchor.task)
