"""Static and dynamic supervisors, nested supervisors and plain-function children.

A supervisor owns a nursery. Every child incarnation runs in a task of that
nursery whose wrapper catches everything the child raises and reports it here
(`Supervisor._child_exited`), so nothing a child raises ever reaches the
nursery and siblings are never cancelled by accident. One control task reads
those reports and applies the strategy; it and the public methods serialize on
one lock, as an OTP supervisor handles one message at a time.

When the supervisor gives up (restart intensity) or shuts itself down
(``auto_shutdown``), the control task stops every child in reverse start
order, records the outcome and cancels the nursery: the user's body is
cancelled and the ``async with`` raises `RestartIntensityExceeded` itself (or
nothing, for an auto-shutdown), never inside an exception group.
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator, Hashable
from functools import partial
from contextlib import asynccontextmanager
from typing import Any, Final

import trio

from ._child_spec import ChildSpec, SupervisorSpec, check_flags, check_significant, check_specs
from ._errors import AlreadyStarted, MaxChildren, RestartIntensityExceeded, StartError
from ._intensity import Intensity
from ._messages import KILLED, SHUTDOWN, ChildCounts, ChildInfo, is_normal
from ._ref import _BOOT_RESUME, ServerRef, Stoppable, _unanchor
from ._registry import claim_name, release_name
from ._runtime import current_runtime
from ._util import final

RUNNING: Final = "running"
RESTARTING: Final = "restarting"
STOPPED: Final = "stopped"


class _Proxy:
    """The ``task_status`` handed to a plain-function child."""

    __slots__ = ("_owner", "_real", "called")

    def __init__(self, owner: TaskRef, real: trio.TaskStatus[Any]) -> None:
        self._owner, self._real, self.called = owner, real, False

    def started(self, value: object = None) -> None:
        if self.called:
            msg = "task_status.started() called twice"
            raise RuntimeError(msg)
        self.called = True
        self._owner._value = value
        self._real.started(self._owner)


@final
class TaskRef(Stoppable):
    """The handle of a plain async-function child (``ChildInfo.ref``).

    Stable across the child's restarts, like a `ServerRef`.
    """

    __slots__ = (
        "_args",
        "_controller",
        "_ended",
        "_fn",
        "_for_good",
        "_restarts",
        "_scope",
        "_status",
        "_stopping",
        "_task",
        "_value",
    )

    def __init__(self, fn: Any, args: tuple[object, ...]) -> None:
        self._init_stoppable()
        self._fn, self._args = fn, args
        self._controller: Any = None
        self._scope: trio.CancelScope | None = None
        self._task: trio.lowlevel.Task | None = None
        self._ended: trio.Event | None = None
        self._status = "starting"
        self._restarts = 0
        self._for_good = False
        self._stopping = False
        self._value: object = None

    def __repr__(self) -> str:
        return f"<TaskRef {getattr(self._fn, '__qualname__', self._fn)!r} {self._status}>"

    @property
    def alive(self) -> bool:
        """True while the function runs."""
        return self._status == RUNNING

    @property
    def restarts(self) -> int:
        """How many times the child was restarted."""
        return self._restarts

    @property
    def started_value(self) -> object:
        """What the function passed to ``task_status.started()``, if anything."""
        return self._value

    def _is_stopped(self) -> bool:
        return self._status == STOPPED

    def kill(self) -> None:
        """Cancel the function at once; its supervisor restarts it as for any crash."""
        if self._scope is not None:
            self._scope.cancel()

    async def _run_supervised(self, restore: bool, task_status: trio.TaskStatus[Any]) -> None:
        self._task = trio.lowlevel.current_task()
        self._stopping = False
        proxy = _Proxy(self, task_status)
        reason: object = "normal"
        exc: BaseException | None = None
        scope = self._scope = trio.CancelScope()
        try:
            with scope:
                await self._fn(*self._args, task_status=proxy)
        except Exception as e:
            reason = exc = e
        finally:
            self._task = None
            self._scope = None
            ended, self._ended = self._ended, None
            if ended is not None:
                ended.set()
        if scope.cancelled_caught:
            reason, exc = (SHUTDOWN if self._stopping else KILLED), None
        if not proxy.called:
            raise StartError(getattr(self._fn, "__qualname__", self._fn), reason) from exc
        self._status = RESTARTING
        self._controller._child_exited(self, self._restarts, reason)

    async def _halt(self, reason: object, timeout: float | str, for_good: bool) -> None:
        """A plain function has no graceful stop: cancelling it is the stop (``finally`` runs)."""
        if for_good:
            self._for_good = True
        if self._task is None:
            return
        self._stopping = True
        self.kill()
        if self._task is not None:
            if self._ended is None:
                self._ended = trio.Event()
            await self._ended.wait()

    def _finalize(self, reason: object) -> None:
        if self._status == STOPPED:
            return
        self._status = STOPPED
        self._announce_exit(reason)


@final
class _Child:
    """A supervisor's record of one child."""

    __slots__ = ("handle", "spec", "status")

    def __init__(self, spec: ChildSpec) -> None:
        self.spec = spec
        self.handle: Any = None
        self.status = STOPPED


@final
class Supervisor(Stoppable):
    """The handle of a running supervisor (static or dynamic).

    Its methods may be called from any task of the run.

    .. versionadded:: 0.1
    """

    __slots__ = (
        "_auto_done",
        "_auto_shutdown",
        "_children",
        "_controller",
        "_dynamic",
        "_ended",
        "_events",
        "_extra_args",
        "_failure",
        "_for_good",
        "_intensity",
        "_lock",
        "_max_children",
        "_name",
        "_nursery",
        "_receive",
        "_restarts",
        "_scope",
        "_specs",
        "_status",
        "_stop_reason",
        "_stop_requested",
        "_strategy",
        "_task",
    )

    def __init__(self, dynamic: bool, specs: tuple[ChildSpec, ...], flags: dict[str, Any]) -> None:
        self._init_stoppable()
        self._dynamic = dynamic
        self._specs = specs
        self._strategy = flags.get("strategy", "one_for_one")
        self._intensity = Intensity(flags.get("max_restarts", 3), flags.get("max_seconds", 5.0))
        self._auto_shutdown = flags.get("auto_shutdown", "never")
        self._max_children = flags.get("max_children")
        self._extra_args = flags.get("extra_args", ())
        self._name = flags.get("name")
        self._children: list[_Child] = []
        self._status = "starting"
        self._restarts = 0
        self._controller: Any = None
        self._for_good = False
        self._failure: BaseException | None = None
        self._scope: trio.CancelScope | None = None
        self._task: trio.lowlevel.Task | None = None
        self._ended: trio.Event | None = None
        self._stop_requested: trio.Event | None = None
        self._stop_reason: object = SHUTDOWN
        self._auto_done = False

    def __repr__(self) -> str:
        kind = "DynamicSupervisor" if self._dynamic else "Supervisor"
        label = "" if self._name is None else f" {self._name!r}"
        return f"<{kind}{label} {self._status} children={len(self._children)}>"

    @property
    def alive(self) -> bool:
        """True while the supervisor runs."""
        return self._status == RUNNING

    @property
    def name(self) -> Hashable | None:
        """The registered name, or None."""
        return self._name

    @property
    def restarts(self) -> int:
        """How many times this supervisor was itself restarted by its parent."""
        return self._restarts

    def _is_stopped(self) -> bool:
        return self._status == STOPPED

    # ------------------------------------------------------------ lifecycle

    @asynccontextmanager
    async def _open(self) -> AsyncIterator[Supervisor]:
        rt = current_runtime()
        if self._name is not None:
            claim_name(rt, self._name, self)
        self._failure = None
        self._lock = trio.Lock()
        self._events, self._receive = trio.open_memory_channel[tuple[Any, int, object]](math.inf)
        self._children = [_Child(spec) for spec in self._specs]
        self._auto_done = False
        try:
            try:
                async with trio.open_nursery() as nursery:
                    self._nursery = nursery
                    self._scope = nursery.cancel_scope
                    for child in self._children:
                        try:
                            await self._start(child, restart=False)
                        except (StartError, AlreadyStarted) as e:
                            await self._stop_all(self._children)
                            if isinstance(e, StartError) or e.what == "key":
                                raise  # a durable key conflict passes unwrapped (API.md section 10)
                            raise StartError(child.spec.id, e) from e
                    self._status = RUNNING
                    nursery.start_soon(self._control)
                    try:
                        yield self
                    finally:
                        if self._failure is None and self._running_children():
                            async with self._lock:
                                await self._stop_all(self._children)
                        nursery.cancel_scope.cancel()
            except BaseExceptionGroup as group:
                leaf = _single(group)
                if self._failure is not None and _only_cancelled(group):
                    raise self._failure from None
                if leaf is not None:
                    raise leaf from leaf.__cause__
                raise
            if self._failure is not None:
                raise self._failure
        finally:
            self._status = STOPPED
            for child in self._children:
                h = child.handle
                if h is not None and not h._is_stopped():
                    h._finalize(KILLED)
            if self._name is not None:
                release_name(rt, self._name, self)
            if self._controller is None:  # top level: nobody else will say it stopped
                self._finalize(self._failure if self._failure is not None else SHUTDOWN)

    def _running_children(self) -> bool:
        return any(c.status == RUNNING for c in self._children)

    async def _run_supervised(self, restore: bool, task_status: trio.TaskStatus[Any]) -> None:
        """Run as the child of another supervisor until told to stop."""
        self._task = trio.lowlevel.current_task()
        self._stop_requested = trio.Event()
        self._stop_reason = SHUTDOWN
        reason: object = SHUTDOWN
        exc: BaseException | None = None
        started = False
        scope = trio.CancelScope()
        try:
            with scope:
                async with self._open():
                    started = True
                    task_status.started(self)
                    await self._stop_requested.wait()
                reason = self._stop_reason
        except StartError:
            self._status = STOPPED
            raise
        except Exception as e:  # RestartIntensityExceeded, or a crash of its own
            reason = exc = e
        finally:
            self._task = None
            ended, self._ended = self._ended, None
            if ended is not None:
                ended.set()
        if scope.cancelled_caught:
            reason = KILLED
        if not started:
            raise StartError(repr(self), reason) from exc
        self._status = RESTARTING
        self._controller._child_exited(self, self._restarts, reason)

    async def _halt(self, reason: object, timeout: float | str, for_good: bool) -> None:
        if for_good:
            self._for_good = True
        if self._task is None:
            return
        if timeout == "brutal_kill":
            self.kill()
        else:
            self._stop_reason = reason
            if self._stop_requested is not None:
                self._stop_requested.set()
            with trio.move_on_after(timeout):  # type: ignore[arg-type]
                await self._wait_ended()
                return
            self.kill()
        await self._wait_ended()

    async def _wait_ended(self) -> None:
        if self._task is None:
            return
        if self._ended is None:
            self._ended = trio.Event()
        await self._ended.wait()

    def kill(self) -> None:
        """Cancel the supervisor and, with it, all its children (no ``terminate``)."""
        if self._scope is not None and self._task is not None:
            self._scope.cancel()

    def _finalize(self, reason: object) -> None:
        self._status = STOPPED
        self._announce_exit(reason)

    # --------------------------------------------------------- child control

    async def _start(self, child: _Child, *, restart: bool) -> Any:
        """Start *child*, or restart its handle; returns the handle or None (``IGNORE``).

        A failed first start finalizes the new handle; a failed restart leaves
        the handle (and what it preserves) for the next attempt.
        """
        handle = child.handle if restart else None
        if handle is None or handle._is_stopped():
            try:
                handle = _new_handle(child.spec, self._extra_args)  # may raise AlreadyStarted
            except BaseException:
                child.status = STOPPED
                raise
            restart = False
        handle._controller = self
        if isinstance(handle, ServerRef):
            handle._nursery = self._nursery  # where it resumes after hibernating
        child.handle = handle
        child.status = RESTARTING
        try:
            started = await self._nursery.start(handle._run_supervised, self._preserving(handle))
        except BaseException as e:
            if not restart or not isinstance(e, StartError):
                child.status = STOPPED
                handle._finalize(e if isinstance(e, StartError) else KILLED)
            raise
        if started is None:  # init returned IGNORE
            child.status = STOPPED
            child.handle = None
            return None
        child.status = RUNNING
        if isinstance(handle, (TaskRef, Supervisor)):
            handle._status = RUNNING
        return handle

    async def _stop(self, child: _Child, *, for_good: bool) -> None:
        handle = child.handle
        if handle is None or child.status != RUNNING:
            return
        child.status = RESTARTING if not for_good else STOPPED
        await handle._halt(SHUTDOWN, child.spec.shutdown, for_good)
        if for_good:
            handle._finalize(SHUTDOWN)

    async def _stop_all(self, children: list[_Child]) -> None:
        """Stop *children* for good: reverse order (static) or concurrently (dynamic)."""
        if self._dynamic:
            async with trio.open_nursery() as n:
                for child in children:
                    n.start_soon(self._stop_for_good, child)
        else:
            for child in reversed(children):
                await self._stop_for_good(child)

    async def _stop_for_good(self, child: _Child) -> None:
        await self._stop(child, for_good=True)
        if child.handle is not None and not child.handle._is_stopped():
            child.handle._finalize(SHUTDOWN)

    def _restart_inline(self, handle: ServerRef, reason: object) -> int:
        """May this crashed one_for_one child restart in its own task right now?

        Sync, under the lock taken without waiting: only when nothing else
        holds it, the child is restartable and the intensity allows it.
        Returns the boot mode, or -1 to go through the control task instead.
        """
        if (self._strategy != "one_for_one" and not self._dynamic) or handle._for_good:
            return -1
        if self._failure is not None or self._auto_done:
            return -1
        spec_restart = None
        for child in self._children:
            if child.handle is handle:
                if child.status != RUNNING:
                    return -1
                spec_restart = child.spec.restart
                break
        if spec_restart is None or not (
            spec_restart == "permanent" or (spec_restart == "transient" and not is_normal(reason))
        ):
            return -1
        try:
            self._lock.acquire_nowait()
        except trio.WouldBlock:
            return -1
        try:
            now = trio.current_time()
            if self._intensity.would_exceed(now):
                return -1
            self._intensity.add(now)
            handle._restarts += 1
            return 1 if self._preserving(handle) else 0  # _BOOT_RESTORE / _BOOT_INIT
        finally:
            self._lock.release()

    def _child_exited(self, handle: Any, incarnation: int, reason: object) -> None:
        """Called (sync) by a child's wrapper when its incarnation ended."""
        self._events.send_nowait((handle, incarnation, reason))

    async def _control(self) -> None:
        async for handle, incarnation, reason in self._receive:
            async with self._lock:
                await self._on_exit(handle, incarnation, reason)
            if self._failure is not None or self._auto_done:
                self._scope.cancel()  # type: ignore[union-attr]
                return

    def _find(self, handle: Any) -> _Child | None:
        for child in self._children:
            if child.handle is handle:
                return child
        return None

    async def _on_exit(self, handle: Any, incarnation: int, reason: object) -> None:
        child = self._find(handle)
        if child is None or child.status != RUNNING or handle._restarts != incarnation:
            if child is None or child.status == STOPPED:
                if not handle._is_stopped() and handle._task is None and handle._for_good:
                    handle._finalize(reason)
            return  # a stale report: this incarnation was stopped on purpose
        spec = child.spec
        if handle._for_good or not (
            spec.restart == "permanent" or (spec.restart == "transient" and not is_normal(reason))
        ):
            self._forget(child, reason)
            await self._check_auto_shutdown(child)
            return
        child.status = RESTARTING
        if self._intensity.add(trio.current_time()):
            await self._give_up(child, reason)
            return
        await self._restart_group(child, reason)

    def _forget(self, child: _Child, reason: object) -> None:
        """A child that is not restarted: finalize it; drop it if temporary or dynamic."""
        child.status = STOPPED
        child.handle._finalize(reason)
        if self._dynamic or child.spec.restart == "temporary":
            self._children.remove(child)

    async def _check_auto_shutdown(self, child: _Child) -> None:
        if not child.spec.significant or self._auto_shutdown == "never":
            return
        if self._auto_shutdown == "all_significant" and any(
            c.spec.significant and c.status != STOPPED for c in self._children
        ):
            return
        self._auto_done = True
        await self._stop_all(self._children)

    async def _give_up(self, child: _Child, reason: object) -> None:
        child.status = STOPPED
        child.handle._finalize(reason)
        err = RestartIntensityExceeded(child.spec.id, self._intensity.count, self._intensity.max_seconds)
        if isinstance(reason, BaseException):
            err.__cause__ = reason
        self._failure = err
        await self._stop_all(self._children)

    async def _restart_group(self, crashed: _Child, reason: object) -> None:
        if self._strategy == "one_for_one" or self._dynamic:
            group = [crashed]
        elif self._strategy == "one_for_all":
            group = list(self._children)
        else:
            group = self._children[self._children.index(crashed) :]
        # bystanders stop in reverse start order (not for good: they come back)
        for child in reversed(group):
            if child is not crashed:
                await self._stop(child, for_good=False)
        for child in group:
            if child is not crashed and child.spec.restart == "temporary":
                self._forget(child, SHUTDOWN)
        group = [c for c in group if c in self._children]
        for child in group:
            handle = child.handle
            if handle is None or handle._is_stopped():
                # IGNOREd or stopped for good: a new server, started afresh with the group
                try:
                    await self._start(child, restart=False)
                except (StartError, AlreadyStarted):
                    child.status = STOPPED  # as a failed start_child: listed, not running
                continue
            handle._restarts += 1
            try:
                await self._start(child, restart=True)
            except StartError as e:
                # a failed restart counts as another crash of the same child
                child.status = RUNNING
                self._child_exited(handle, handle._restarts, e)
                return

    @staticmethod
    def _preserving(handle: Any) -> bool:
        return bool(isinstance(handle, ServerRef) and handle._preserve and handle._keeper.has_state)

    # ---------------------------------------------------------- public API

    def _child(self, child_id: Hashable) -> _Child:
        for child in self._children:
            if child.spec.id == child_id:
                return child
        msg = f"no child with id {child_id!r}"
        raise LookupError(msg)

    async def start_child(self, spec: ChildSpec) -> Any:
        """Add *spec* and start it; returns its ref (None if ``init`` returned ``IGNORE``).

        Raises:
          StartError: it failed to start; nothing was added.
          MaxChildren: a dynamic supervisor is full.
          ValueError: a static supervisor already has a child with that id.
        """
        if type(spec) is not ChildSpec:
            msg = f"start_child takes a tp.child(...) spec, got {spec!r}"
            raise TypeError(msg)
        self._check_open()
        if self._dynamic:
            return await self._start_dynamic(spec)
        check_significant(spec, self._auto_shutdown)
        async with self._lock:
            if any(c.spec.id == spec.id for c in self._children):
                msg = f"duplicate child id {spec.id!r}"
                raise ValueError(msg)
            child = _Child(spec)
            self._children.append(child)
            try:
                return await self._start(child, restart=False)
            except BaseException:
                self._children.remove(child)
                raise

    async def _start_dynamic(self, spec: ChildSpec) -> Any:
        if spec.significant:
            msg = "a dynamic supervisor has no significant children"
            raise ValueError(msg)
        if self._max_children is not None and len(self._children) >= self._max_children:
            await trio.lowlevel.checkpoint()
            raise MaxChildren(self._max_children)
        child = _Child(spec)
        self._children.append(child)
        try:
            handle = await self._start(child, restart=False)
        except BaseException:
            if child in self._children:
                self._children.remove(child)
            raise
        if handle is None:
            self._children.remove(child)
        return handle

    def _check_open(self) -> None:
        if self._status != RUNNING:
            msg = f"{self!r} is not running"
            raise trio.ClosedResourceError(msg)

    async def terminate_child(self, child: Any) -> None:
        """Stop a child for good (by id, or by ref for a dynamic supervisor).

        A static child stays listed as ``"stopped"`` (temporary ones are
        removed); a dynamic child is removed.
        """
        self._check_open()
        async with self._lock:
            if self._dynamic:
                record = self._find(child)
                if record is None:
                    msg = f"{child!r} is not a child of this supervisor"
                    raise LookupError(msg)
            else:
                record = self._child(child)
            await self._stop(record, for_good=True)
            if record.handle is not None and not record.handle._is_stopped():
                record.handle._finalize(SHUTDOWN)
            record.status = STOPPED
            if self._dynamic or record.spec.restart == "temporary":
                self._children.remove(record)

    async def restart_child(self, child_id: Hashable) -> Any:
        """Start a stopped static child again; returns its new ref.

        Raises:
          ValueError: the child is running.
        """
        self._check_open()
        self._static_only("restart_child")
        async with self._lock:
            record = self._child(child_id)
            if record.status != STOPPED:
                msg = f"child {child_id!r} is {record.status}, not stopped"
                raise ValueError(msg)
            return await self._start(record, restart=False)

    def delete_child(self, child_id: Hashable) -> None:
        """Remove a stopped static child's spec.

        Raises:
          ValueError: the child is running.
        """
        self._static_only("delete_child")
        record = self._child(child_id)
        if record.status != STOPPED:
            msg = f"child {child_id!r} is {record.status}, not stopped"
            raise ValueError(msg)
        self._children.remove(record)

    def _static_only(self, what: str) -> None:
        if self._dynamic:
            msg = f"{what} is for static supervisors; a dynamic child is addressed by its ref"
            raise TypeError(msg)

    def which_children(self) -> list[ChildInfo]:
        """One `ChildInfo` per child, in the order they were added."""
        return [
            ChildInfo(None if self._dynamic else c.spec.id, c.handle, c.spec.type, c.spec.restart, _status(c))
            for c in self._children
        ]

    def count_children(self) -> ChildCounts:
        """OTP's counts: specs, active (running), supervisors, workers."""
        children = self._children
        sups = sum(1 for c in children if c.spec.type == "supervisor")
        return ChildCounts(
            len(children),
            sum(1 for c in children if _status(c) == RUNNING),
            sups,
            len(children) - sups,
        )


def _status(child: _Child) -> str:
    """What a user sees: the live handle says running or not, before the supervisor catches up."""
    if child.status == STOPPED or child.handle is None:
        return STOPPED
    return RUNNING if child.handle.alive else RESTARTING


def _new_handle(spec: ChildSpec, extra_args: tuple[object, ...]) -> Any:
    if spec.kind == "server":
        return ServerRef._create(spec.target, extra_args + spec.args, dict(spec.options), spec.name)
    if spec.kind == "function":
        return TaskRef(spec.target, extra_args + spec.args)
    target: SupervisorSpec = spec.target
    return Supervisor(target.dynamic, target.specs, dict(target.flags))


def _leaves(group: BaseException) -> list[BaseException]:
    if isinstance(group, BaseExceptionGroup):
        return [leaf for e in group.exceptions for leaf in _leaves(e)]
    return [group]


def _single(group: BaseExceptionGroup[BaseException]) -> BaseException | None:
    leaves = [e for e in _leaves(group) if not isinstance(e, trio.Cancelled)]
    return leaves[0] if len(leaves) == 1 else None


def _only_cancelled(group: BaseExceptionGroup[BaseException]) -> bool:
    return all(isinstance(e, trio.Cancelled) for e in _leaves(group))


@asynccontextmanager
async def open_supervisor(
    *specs: ChildSpec,
    strategy: str = "one_for_one",
    max_restarts: int = 3,
    max_seconds: float = 5.0,
    auto_shutdown: str = "never",
    name: Hashable | None = None,
) -> AsyncIterator[Supervisor]:
    """Run a static supervisor for the body of the ``async with``.

    Children start in order, each fully started before the next; leaving the
    block stops them in reverse order, each per its ``shutdown``.

    Raises:
      StartError: a child failed to start (the started ones were stopped).
      RestartIntensityExceeded: too many restarts; the body was cancelled.

    .. versionadded:: 0.1
    """
    flags = {
        "strategy": strategy,
        "max_restarts": max_restarts,
        "max_seconds": max_seconds,
        "auto_shutdown": auto_shutdown,
        "name": name,
    }
    check_flags(dynamic=False, **flags)
    check_specs(specs, auto_shutdown)
    sup = Supervisor(False, specs, flags)
    async with sup._open():
        yield sup


@asynccontextmanager
async def open_dynamic_supervisor(
    *,
    max_children: int | None = None,
    max_restarts: int = 3,
    max_seconds: float = 5.0,
    extra_args: tuple[object, ...] = (),
    name: Hashable | None = None,
) -> AsyncIterator[Supervisor]:
    """Run a dynamic supervisor (children added with ``start_child``) for the body.

    Children start independently and are stopped concurrently on shutdown.

    .. versionadded:: 0.1
    """
    flags = {
        "max_children": max_children,
        "max_restarts": max_restarts,
        "max_seconds": max_seconds,
        "extra_args": extra_args,
        "name": name,
    }
    check_flags(dynamic=True, **flags)
    sup = Supervisor(True, (), flags)
    async with sup._open():
        yield sup


async def transfer(ref: ServerRef, source: Supervisor, target: Supervisor) -> None:
    """Move a running server from dynamic supervisor *source* to *target*.

    The server finishes the callback it is in, gives up its task at that
    message boundary (``terminate`` does not run) and resumes under *target*
    with the same state, mailbox, tables, dictionary, name and ref; messages
    sent meanwhile wait in its mailbox, so none is lost. A checkpoint.

    Raises:
      TypeError: *ref* is not a `ServerRef`, or a supervisor is not dynamic.
      ValueError: *source* and *target* are the same supervisor.
      LookupError: *ref* is not a running child of *source* (or stopped
        before it could move). Nothing was changed.
      MaxChildren: *target* is full. Nothing was changed.
    """
    if not isinstance(ref, ServerRef):
        msg = f"transfer() moves a tp.ServerRef, got {ref!r}"
        raise TypeError(msg)
    for sup in (source, target):
        if not isinstance(sup, Supervisor) or not sup._dynamic:
            msg = f"transfer() moves between dynamic supervisors, got {sup!r}"
            raise TypeError(msg)
    if source is target:
        msg = "transfer() needs two different supervisors"
        raise ValueError(msg)
    source._check_open()
    target._check_open()
    first, second = sorted((source, target), key=id)  # one lock order: no deadlock
    async with first._lock, second._lock:
        record = source._find(ref)
        if record is None or record.status != RUNNING:
            msg = f"{ref!r} is not a running child of {source!r}"
            raise LookupError(msg)
        if target._max_children is not None and len(target._children) >= target._max_children:
            raise MaxChildren(target._max_children)
        if ref._hibernating:  # no task to stop: it resumes under target
            ref._hibernating = False
            _unanchor(ref)
        else:
            ref._moving = True
            waiter = ref._waiter
            if waiter is not None:
                ref._waiter = None
                trio.lowlevel.reschedule(waiter)
            try:
                await ref._wait_ended()
            finally:
                ref._moving = False
            if ref._server is None:  # it crashed or stopped meanwhile: the source handles that
                msg = f"{ref!r} stopped before it could be transferred"
                raise LookupError(msg)
        source._children.remove(record)
        target._children.append(record)
        ref._controller = target
        ref._nursery = target._nursery
        ref._resuming = True
        target._nursery.start_soon(partial(ref._run, _BOOT_RESUME, True))
