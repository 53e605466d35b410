"""The `GenServer` base class: callbacks, their defaults, and start options."""

from __future__ import annotations

import logging
from typing import Any, ClassVar

log = logging.getLogger("trio_peeper")

_UNSET: Any = object()

# option name -> default; subclasses (DurableServer) extend it
SERVER_OPTIONS: dict[str, object] = {
    "preserve": True,
    "keep_tables": True,
    "listener": None,
    "mailbox_size": None,
}


def validate_options(cls_name: str, options: dict[str, object], known: dict[str, object]) -> None:
    """Check start options (class keywords or start keywords) where they enter."""
    for key, value in options.items():
        if key not in known:
            allowed = ", ".join(sorted(known))
            msg = f"{cls_name}: unknown option {key!r}; expected one of {allowed}"
            raise TypeError(msg)
        if key in ("preserve", "keep_tables") and type(value) is not bool:
            msg = f"{key} must be a bool, got {value!r}"
            raise TypeError(msg)
        if key == "mailbox_size" and value is not None and (
            type(value) is not int or value < 1
        ):
            msg = f"mailbox_size must be a positive int or None, got {value!r}"
            raise ValueError(msg)
        if key == "listener" and value is not None:
            hooks = ("on_state_changed", "on_terminate", "on_crash", "on_restart")
            if not any(callable(getattr(value, h, None)) for h in hooks):
                msg = f"listener must have at least one of {', '.join(hooks)}, got {value!r}"
                raise TypeError(msg)


class GenServer:
    """Base class of servers: override the callbacks you need (all ``async def``).

    Class keywords set default start options::

        class Cache(tp.GenServer, preserve=True, mailbox_size=1000): ...

    A fresh instance is made for every incarnation (first start and each
    restart), so instance attributes do not survive a crash; the state does.

    .. versionadded:: 0.1
    """

    _option_defaults: ClassVar[dict[str, object]] = dict(SERVER_OPTIONS)
    _class_options: ClassVar[dict[str, object]] = {}

    def __init_subclass__(cls, **options: object) -> None:
        known = cls._option_defaults
        validate_options(cls.__qualname__, options, known)
        merged = dict(cls._class_options)
        merged.update(options)
        cls._class_options = merged
        super().__init_subclass__()

    async def init(self, *args: Any) -> Any:
        """Make the first state; default: the single argument (None, or a tuple of several)."""
        if len(args) == 1:
            return args[0]
        return args or None

    async def restore(self, state: Any) -> Any:
        """Run instead of ``init`` on restarts of a preserving server; default: *state*."""
        return state

    async def handle_call(self, request: Any, caller: Any, state: Any) -> Any:
        """Answer a ``call``. The default crashes the server: calls need an override."""
        msg = f"{type(self).__qualname__} has no handle_call for {request!r}"
        raise NotImplementedError(msg)

    async def handle_cast(self, message: Any, state: Any) -> Any:
        """Handle a ``cast``. The default crashes the server: casts need an override."""
        msg = f"{type(self).__qualname__} has no handle_cast for {message!r}"
        raise NotImplementedError(msg)

    async def handle_info(self, message: Any, state: Any) -> Any:
        """Handle a ``send``, a timer, a ``Down`` or ``TIMEOUT``; the default logs and ignores."""
        from ._messages import NoReply  # noqa: PLC0415 - keep the base class import-light

        log.warning("%s ignored an unexpected message %r", type(self).__qualname__, message)
        return NoReply(state)

    async def handle_continue(self, arg: Any, state: Any) -> Any:
        """Run after a return carrying ``continue_=arg``; the default crashes the server."""
        msg = f"{type(self).__qualname__} has no handle_continue for {arg!r}"
        raise NotImplementedError(msg)

    async def terminate(self, reason: Any, state: Any) -> None:
        """Run on a graceful stop (never after a crash or a kill); the default does nothing."""

    def monitor(self, ref: Any) -> Any:
        """Deliver ``tp.Down(ref, reason)`` to this server's ``handle_info`` when *ref* stops."""
        from ._ref import current_server  # noqa: PLC0415

        return ref._monitor_for(current_server())
