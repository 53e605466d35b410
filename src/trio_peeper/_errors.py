"""The exception hierarchy (API.md section 8), nothing else.

Every class mixes in the stdlib or Trio class whose ``except`` clauses should
catch it, and pickles (classes with a custom ``__init__`` define ``__reduce__``).
"""

from __future__ import annotations

import trio


class PeeperError(Exception):
    """Base class of every exception trio_peeper raises on purpose."""


class CallTimeout(PeeperError, TimeoutError):
    """No reply arrived within the call's timeout; the server keeps running.

    A reply that arrives later is dropped: it never answers a later call.
    """

    def __init__(self, target: object, timeout: float) -> None:
        super().__init__(f"call to {target!r} timed out after {timeout:g}s")
        self.target, self.timeout = target, timeout

    def __reduce__(self) -> tuple[object, ...]:
        return type(self), (self.target, self.timeout)


class NoProc(PeeperError, LookupError):
    """The target is not running and not restarting (or no server has that name)."""

    def __init__(self, target: object) -> None:
        super().__init__(f"no server {target!r}: not running and not restarting")
        self.target = target

    def __reduce__(self) -> tuple[object, ...]:
        return type(self), (self.target,)


class ServerExited(PeeperError, trio.BrokenResourceError):
    """The server stopped or crashed before replying.

    ``reason`` is its exit reason; ``__cause__`` is the exception of a crash.
    """

    def __init__(self, target: object, reason: object) -> None:
        super().__init__(f"server {target!r} exited before replying: {reason!r}")
        self.target, self.reason = target, reason

    def __reduce__(self) -> tuple[object, ...]:
        return type(self), (self.target, self.reason)


class CallingSelf(PeeperError, RuntimeError):
    """A server called (or stopped) itself, which would deadlock."""

    def __init__(self, target: object, what: str = "call") -> None:
        super().__init__(f"server {target!r} cannot {what} itself")
        self.target, self.what = target, what

    def __reduce__(self) -> tuple[object, ...]:
        return type(self), (self.target, self.what)


class AlreadyStarted(PeeperError):
    """A server is already running under that name; ``ref`` is the running one."""

    def __init__(self, name: object, ref: object = None, *, what: str = "named") -> None:
        label = "with key" if what == "key" else "named"
        super().__init__(f"a server {label} {name!r} is already started")
        self.name, self.ref, self.what = name, ref, what

    def __reduce__(self) -> tuple[object, ...]:
        # the ref belongs to one trio.run and does not travel
        return _already_started, (self.name, self.what)


def _already_started(name: object, what: str) -> AlreadyStarted:
    return AlreadyStarted(name, what=what)


class AlreadyRegistered(PeeperError):
    """The unique registry key is taken; ``ref`` holds it."""

    def __init__(self, key: object, ref: object = None) -> None:
        super().__init__(f"key {key!r} is already registered")
        self.key, self.ref = key, ref

    def __reduce__(self) -> tuple[object, ...]:
        return type(self), (self.key,)


class StartError(PeeperError):
    """A server or child could not start; ``__cause__`` is why (``reason`` says too)."""

    def __init__(self, target: object, reason: object) -> None:
        super().__init__(f"{target!r} failed to start: {reason!r}")
        self.target, self.reason = target, reason

    def __reduce__(self) -> tuple[object, ...]:
        return type(self), (self.target, self.reason)


class RestartIntensityExceeded(PeeperError):
    """A supervisor gave up: more than ``max_restarts`` restarts inside its window."""

    def __init__(self, child: object, restarts: int, window: float) -> None:
        super().__init__(f"child {child!r} restarted {restarts} times in {window:g}s; giving up")
        self.child, self.restarts, self.window = child, restarts, window

    def __reduce__(self) -> tuple[object, ...]:
        return type(self), (self.child, self.restarts, self.window)


class MaxChildren(PeeperError):
    """A dynamic supervisor already runs ``max_children`` children."""

    def __init__(self, max_children: int) -> None:
        super().__init__(f"dynamic supervisor is full: max_children={max_children!r}")
        self.max_children = max_children

    def __reduce__(self) -> tuple[object, ...]:
        return type(self), (self.max_children,)


class InvalidReturn(PeeperError, TypeError):
    """A callback returned something its contract does not allow (a forgotten ``return``?)."""

    def __init__(self, callback: str, value: object, expected: str) -> None:
        super().__init__(f"{callback} returned {value!r}; expected {expected}")
        self.callback, self.value, self.expected = callback, value, expected

    def __reduce__(self) -> tuple[object, ...]:
        return type(self), (self.callback, self.value, self.expected)


class AccessError(PeeperError, PermissionError):
    """A table was used against its ``access`` setting."""


class TableDeleted(PeeperError):
    """The table was deleted (its owner stopped with no heir, or ``delete_table``)."""


class StorageError(PeeperError):
    """A storage backend failed."""


class SyncFailed(PeeperError):
    """A durable write failed; the change was not acknowledged."""


class VersionError(PeeperError):
    """Stored state has a version this code cannot load."""
