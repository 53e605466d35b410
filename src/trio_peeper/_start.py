"""Starting standalone servers, and ``send_after`` timers."""

from __future__ import annotations

import math
from collections.abc import Hashable
from typing import Any

import trio

from ._durable import DurableServer, check_durable_options
from ._genserver import GenServer, validate_options
from ._ref import _INFO, ServerRef
from ._registry import resolve, whereis
from ._runtime import current_runtime
from ._util import final


def server_options(
    server_class: object, options: dict[str, object], args: tuple[object, ...] = ()
) -> dict[str, object]:
    """Class defaults < class keywords < start options, validated; raises on bad input."""
    if not (isinstance(server_class, type) and issubclass(server_class, GenServer)):
        msg = f"server_class must be a tp.GenServer subclass, got {server_class!r}"
        raise TypeError(msg)
    if not options:  # the common case: one shared, read-only dict per class
        cached = server_class.__dict__.get("_tp_merged_options")
        if cached is not None:
            return cached  # type: ignore[no-any-return]
    validate_options(server_class.__qualname__, options, server_class._option_defaults)
    merged = dict(server_class._option_defaults)
    merged.update(server_class._class_options)
    merged.update(options)
    if issubclass(server_class, DurableServer):
        check_durable_options(server_class.__qualname__, merged)
        if args:
            msg = f"{server_class.__qualname__} is durable: it takes key= and initial_state=, not positional args {args!r}"
            raise TypeError(msg)
    if not options:
        server_class._tp_merged_options = merged  # type: ignore[attr-defined]
    return merged


async def start_server(
    nursery: trio.Nursery,
    server_class: type[GenServer],
    *args: object,
    name: Hashable | None = None,
    timeout: float = 5.0,
    **options: object,
) -> Any:
    """Start a standalone server in *nursery*; returns its `ServerRef` once ``init`` finished.

    The server restarts itself after a crash like a transient child (at most
    3 restarts in 5 seconds); past that, its last exception propagates into
    *nursery*. Returns None when ``init`` returned ``tp.IGNORE``.

    Raises:
      StartError: ``init`` raised (``__cause__``) or did not finish within *timeout*.
      AlreadyStarted: *name* is taken.

    .. versionadded:: 0.1
    """
    merged = server_options(server_class, options, args)
    ref = ServerRef._create(server_class, args, merged, name)
    ref._nursery = nursery
    if timeout is not None and timeout != math.inf:
        # a wheel entry, not a cancel scope: it kills a server still in init
        timers = ref._timers
        ref._start_timer = timers.add(timers.now() + timeout, ref)
    return await nursery.start(ref._run)


@final
class Timer:
    """A pending ``send_after``; `cancel` it before it fires."""

    __slots__ = ("_handle", "_message", "_target", "_timers")

    def __init__(self, target: object, message: object) -> None:
        self._target = target
        self._message = message
        self._handle = 0
        self._timers = current_runtime().timers

    def _fire(self) -> None:
        self._handle = 0
        ref = whereis(self._target)
        if isinstance(ref, ServerRef):
            ref._post(_INFO, self._message)

    @property
    def active(self) -> bool:
        """True until it fires or is cancelled."""
        return self._handle != 0

    def cancel(self) -> bool:
        """Cancel the timer; True if it had not fired yet."""
        handle, self._handle = self._handle, 0
        return bool(handle) and self._timers.cancel(handle)


def send_after(target: object, message: object, delay: float) -> Timer:
    """Deliver *message* to ``handle_info`` of *target* after *delay* seconds.

    Plain function. *target* is a ref, a name or a via-name; a name is looked
    up when the timer fires (nothing is delivered if nobody holds it then).

    Raises:
      NoProc: *target* is a name nobody holds now.
      ValueError: *delay* is not a finite number >= 0.
    """
    if not isinstance(target, ServerRef):
        resolve(target)
    if (
        not isinstance(delay, (int, float))
        or isinstance(delay, bool)
        or not 0 <= delay < math.inf
    ):
        msg = f"delay must be a finite number of seconds >= 0, got {delay!r}"
        raise ValueError(msg)
    timer = Timer(target, message)
    timer._handle = timer._timers.add(trio.current_time() + delay, timer)
    return timer
