"""Callback return values, exit reasons, sentinels and public records.

The return records are frozen and slotted. They are built on every message,
so they are filled through raw slot setters (no ``object.__setattr__``), and
the options that are almost always defaults are packed in one ``_opts`` slot
that is ``None`` in the common case: the loop tests a single slot.
"""

from __future__ import annotations

from typing import Final

from ._util import final, frozen_delattr, frozen_setattr, record, slot_setters


@final
class _Sentinel:
    __slots__ = ("_name",)

    def __init__(self, name: str) -> None:
        object.__setattr__(self, "_name", name)

    def __repr__(self) -> str:
        return "tp." + self._name

    def __reduce__(self) -> str:
        return self._name

    __setattr__ = frozen_setattr
    __delattr__ = frozen_delattr


IGNORE: Final = _Sentinel("IGNORE")
"""Returned by ``init``: do not start; the start returns ``None``."""
TIMEOUT: Final = _Sentinel("TIMEOUT")
"""Delivered to ``handle_info`` after ``timeout=`` seconds of idleness."""
NO_REPLY: Final = _Sentinel("NO_REPLY")
"""Default of ``Stop(reply=...)``: stop without replying."""
SHUTDOWN: Final = _Sentinel("SHUTDOWN")
"""The normal-ish exit reason a supervisor stops its children with."""
KILLED: Final = _Sentinel("KILLED")
"""The exit reason of ``ref.kill()``: abnormal, ``terminate`` does not run."""

Shutdown = record(
    "Shutdown",
    ("info",),
    "A normal-ish exit reason carrying extra information (OTP's ``{shutdown, Info}``).",
    __name__,
)


def is_normal(reason: object) -> bool:
    """True for the normal-ish exit reasons: ``"normal"``, `SHUTDOWN`, `Shutdown(info)`."""
    return (
        reason is SHUTDOWN
        or (type(reason) is str and reason == "normal")
        or type(reason) is Shutdown
    )


@final
class _Opts:
    """The rarely used options of a return value (``None`` when all are defaults)."""

    __slots__ = ("continue_", "hibernate", "sync", "timeout")

    def __init__(self, timeout: float | None, continue_: object, hibernate: bool, sync: bool) -> None:
        self.timeout, self.continue_, self.hibernate, self.sync = timeout, continue_, hibernate, sync


def _opts(timeout: object, continue_: object, hibernate: object, sync: object) -> _Opts | None:
    if timeout is None and continue_ is None and hibernate is False and sync is False:
        return None
    if timeout is not None and not (
        isinstance(timeout, (int, float)) and not isinstance(timeout, bool) and timeout >= 0
    ):
        msg = f"timeout must be a non-negative number of seconds or None, got {timeout!r}"
        raise ValueError(msg)
    if type(hibernate) is not bool:
        msg = f"hibernate must be a bool, got {hibernate!r}"
        raise TypeError(msg)
    if type(sync) is not bool:
        msg = f"sync must be a bool, got {sync!r}"
        raise TypeError(msg)
    return _Opts(timeout, continue_, hibernate, sync)


class _OptsMixin:
    __slots__ = ()
    _opts: _Opts | None

    @property
    def timeout(self) -> float | None:
        """Seconds of idleness before ``handle_info(tp.TIMEOUT)``, or None."""
        o = self._opts
        return None if o is None else o.timeout

    @property
    def continue_(self) -> object:
        """The argument for ``handle_continue``, or None when there is none."""
        o = self._opts
        return None if o is None else o.continue_

    @property
    def hibernate(self) -> bool:
        """Give up the Trio task while idle."""
        o = self._opts
        return False if o is None else o.hibernate

    @property
    def sync(self) -> bool:
        """Durable servers: make this commit durable before replying."""
        o = self._opts
        return False if o is None else o.sync

    def _options_repr(self) -> str:
        o = self._opts
        if o is None:
            return ""
        parts = []
        if o.timeout is not None:
            parts.append(f", timeout={o.timeout!r}")
        if o.continue_ is not None:
            parts.append(f", continue_={o.continue_!r}")
        if o.hibernate:
            parts.append(", hibernate=True")
        if o.sync:
            parts.append(", sync=True")
        return "".join(parts)

    __setattr__ = frozen_setattr
    __delattr__ = frozen_delattr


class _ReplySlots(_OptsMixin):
    __slots__ = ("_opts", "state", "value")


_r_value, _r_state, _r_opts = slot_setters(_ReplySlots, "value", "state", "_opts")


@final
class Reply(_ReplySlots):
    """``handle_call`` result: reply *value* and continue with *state*."""

    __slots__ = ()

    def __init__(
        self,
        value: object,
        state: object,
        *,
        timeout: float | None = None,
        continue_: object = None,
        hibernate: bool = False,
        sync: bool = False,
    ) -> None:
        _r_value(self, value)
        _r_state(self, state)
        if timeout is None and continue_ is None and hibernate is False and sync is False:
            _r_opts(self, None)  # the common case, without a call
        else:
            _r_opts(self, _opts(timeout, continue_, hibernate, sync))

    def __repr__(self) -> str:
        return f"Reply({self.value!r}, {self.state!r}{self._options_repr()})"


class _NoReplySlots(_OptsMixin):
    __slots__ = ("_opts", "state")


_n_state, _n_opts = slot_setters(_NoReplySlots, "state", "_opts")


@final
class NoReply(_NoReplySlots):
    """Result of any ``handle_*``: continue with *state*, reply nothing now."""

    __slots__ = ()

    def __init__(
        self,
        state: object,
        *,
        timeout: float | None = None,
        continue_: object = None,
        hibernate: bool = False,
        sync: bool = False,
    ) -> None:
        _n_state(self, state)
        if timeout is None and continue_ is None and hibernate is False and sync is False:
            _n_opts(self, None)
        else:
            _n_opts(self, _opts(timeout, continue_, hibernate, sync))

    def __repr__(self) -> str:
        return f"NoReply({self.state!r}{self._options_repr()})"


class _InitSlots(_OptsMixin):
    __slots__ = ("_opts", "state")


_i_state, _i_opts = slot_setters(_InitSlots, "state", "_opts")


@final
class Init(_InitSlots):
    """``init``/``restore`` result carrying options; a bare state works too."""

    __slots__ = ()

    def __init__(
        self,
        state: object,
        *,
        timeout: float | None = None,
        continue_: object = None,
        hibernate: bool = False,
    ) -> None:
        _i_state(self, state)
        _i_opts(self, _opts(timeout, continue_, hibernate, False))

    def __repr__(self) -> str:
        return f"Init({self.state!r}{self._options_repr()})"


class _StopSlots:
    __slots__ = ("reason", "reply", "state")


_s_reason, _s_state, _s_reply = slot_setters(_StopSlots, "reason", "state", "reply")


@final
class Stop(_StopSlots):
    """Any ``handle_*`` result: exit with *reason* after ``terminate``; reply *reply* if given."""

    __slots__ = ()

    def __init__(self, reason: object, state: object, *, reply: object = NO_REPLY) -> None:
        _s_reason(self, reason)
        _s_state(self, state)
        _s_reply(self, reply)

    def __repr__(self) -> str:
        extra = "" if self.reply is NO_REPLY else f", reply={self.reply!r}"
        return f"Stop({self.reason!r}, {self.state!r}{extra})"

    __setattr__ = frozen_setattr
    __delattr__ = frozen_delattr


Down = record(
    "Down",
    ("ref", "reason"),
    "Info message: a monitored server stopped for good with *reason*.",
    __name__,
)
TableTransfer = record(
    "TableTransfer",
    ("table", "from_ref", "data"),
    "Info message: this server now owns *table* (given away by, or inherited from, *from_ref*).",
    __name__,
)
ChildInfo = record(
    "ChildInfo",
    ("id", "ref", "type", "restart", "status"),
    "One row of ``which_children()``.",
    __name__,
)
ChildCounts = record(
    "ChildCounts",
    ("specs", "active", "supervisors", "workers"),
    "The result of ``count_children()`` (OTP's counts).",
    __name__,
)
Statistics = record(
    "Statistics",
    ("mailbox_len", "handled", "restarts", "state_commits"),
    "``ref.statistics()``: a snapshot of a server's counters.",
    __name__,
)
