"""Child specifications: what a supervisor starts, how it restarts and stops it."""

from __future__ import annotations

import inspect
import math
from collections.abc import Hashable
from typing import Any

from ._genserver import GenServer
from ._intensity import check_intensity
from ._util import final, frozen_delattr, frozen_setattr

RESTARTS = ("permanent", "transient", "temporary")
STRATEGIES = ("one_for_one", "one_for_all", "rest_for_one")
AUTO_SHUTDOWNS = ("never", "any_significant", "all_significant")


@final
class SupervisorSpec:
    """A nested supervisor to use as a child target: `supervisor` / `dynamic_supervisor`."""

    __slots__ = ("dynamic", "flags", "specs")

    def __init__(self, dynamic: bool, specs: tuple[ChildSpec, ...], flags: dict[str, Any]) -> None:
        object.__setattr__(self, "dynamic", dynamic)
        object.__setattr__(self, "specs", specs)
        object.__setattr__(self, "flags", flags)

    def __repr__(self) -> str:
        kind = "dynamic_supervisor" if self.dynamic else "supervisor"
        return f"tp.{kind}({len(self.specs)} specs, {self.flags!r})"

    __setattr__ = frozen_setattr
    __delattr__ = frozen_delattr


def check_flags(
    *,
    dynamic: bool,
    strategy: object = "one_for_one",
    max_restarts: object = 3,
    max_seconds: object = 5.0,
    auto_shutdown: object = "never",
    max_children: object = None,
    extra_args: object = (),
    name: object = None,
) -> None:
    """Validate supervisor flags before anything starts."""
    if strategy not in STRATEGIES:
        msg = f"strategy must be 'one_for_one', 'one_for_all' or 'rest_for_one', got {strategy!r}"
        raise ValueError(msg)
    check_intensity(max_restarts, max_seconds)
    if auto_shutdown not in AUTO_SHUTDOWNS:
        msg = f"auto_shutdown must be 'never', 'any_significant' or 'all_significant', got {auto_shutdown!r}"
        raise ValueError(msg)
    if max_children is not None and (type(max_children) is not int or max_children < 0):
        msg = f"max_children must be an int >= 0 or None, got {max_children!r}"
        raise ValueError(msg)
    if type(extra_args) is not tuple:
        msg = f"extra_args must be a tuple, got {extra_args!r}"
        raise TypeError(msg)
    if name is not None:
        hash(name)


def supervisor(*specs: ChildSpec, **flags: Any) -> SupervisorSpec:
    """A nested static supervisor as a child target (flags as `open_supervisor`)."""
    check_flags(dynamic=False, **flags)
    check_specs(specs, flags.get("auto_shutdown", "never"))
    return SupervisorSpec(False, specs, flags)


def dynamic_supervisor(**flags: Any) -> SupervisorSpec:
    """A nested dynamic supervisor as a child target (flags as `open_dynamic_supervisor`)."""
    check_flags(dynamic=True, **flags)
    return SupervisorSpec(True, (), flags)


def check_specs(specs: tuple[object, ...], auto_shutdown: object) -> None:
    """Types, duplicate ids and significant/auto_shutdown combinations."""
    seen: set[Hashable] = set()
    for spec in specs:
        if type(spec) is not ChildSpec:
            msg = f"children must be tp.child(...) specs, got {spec!r}"
            raise TypeError(msg)
        if spec.id in seen:
            msg = f"duplicate child id {spec.id!r}"
            raise ValueError(msg)
        seen.add(spec.id)
        check_significant(spec, auto_shutdown)


def check_significant(spec: ChildSpec, auto_shutdown: object) -> None:
    """OTP: a significant child needs an auto_shutdown other than 'never'."""
    if spec.significant and auto_shutdown == "never":
        msg = f"child {spec.id!r} is significant but auto_shutdown is 'never'"
        raise ValueError(msg)


@final
class ChildSpec:
    """How a supervisor starts, restarts and stops one child (`child` builds it)."""

    __slots__ = ("args", "id", "kind", "name", "options", "restart", "shutdown", "significant", "target")

    def __init__(self, **fields: Any) -> None:
        for key, value in fields.items():
            object.__setattr__(self, key, value)

    @property
    def type(self) -> str:
        """``"supervisor"`` for nested supervisors, ``"worker"`` otherwise."""
        return "supervisor" if self.kind == "supervisor" else "worker"

    def __repr__(self) -> str:
        return f"tp.child({self.target!r}, id={self.id!r}, restart={self.restart!r})"

    __setattr__ = frozen_setattr
    __delattr__ = frozen_delattr


def child(
    target: Any,
    *args: object,
    id: Hashable | None = None,  # noqa: A002 - the API's name
    name: Hashable | None = None,
    restart: str = "permanent",
    shutdown: float | str = 5.0,
    significant: bool = False,
    **options: object,
) -> ChildSpec:
    """A child specification; invalid specs raise before anything starts.

    *target* is a `GenServer` subclass, a `supervisor`/`dynamic_supervisor`
    spec, or an async function following Trio's start protocol.

    .. versionadded:: 0.1
    """
    if isinstance(target, type) and issubclass(target, GenServer):
        from ._start import server_options  # noqa: PLC0415

        kind = "server"
        opts = server_options(target, options, args)
    elif type(target) is SupervisorSpec:
        kind = "supervisor"
        opts = {}
        if options:
            msg = f"a nested supervisor takes no server options, got {sorted(options)!r}"
            raise TypeError(msg)
        if args:
            msg = "a nested supervisor takes no positional args"
            raise TypeError(msg)
    elif inspect.iscoroutinefunction(target) or (
        callable(target) and inspect.iscoroutinefunction(getattr(target, "__call__", None))
    ):
        kind = "function"
        opts = {}
        if options:
            msg = f"a plain async function child takes no server options, got {sorted(options)!r}"
            raise TypeError(msg)
    else:
        msg = (
            "target must be a tp.GenServer subclass, tp.supervisor(...), tp.dynamic_supervisor(...)"
            f" or an async function, got {target!r}"
        )
        raise TypeError(msg)
    if restart not in RESTARTS:
        msg = f"restart must be 'permanent', 'transient' or 'temporary', got {restart!r}"
        raise ValueError(msg)
    if not (
        shutdown == "brutal_kill"
        if isinstance(shutdown, str)
        else isinstance(shutdown, (int, float)) and not isinstance(shutdown, bool) and 0 <= shutdown <= math.inf
    ):
        msg = f"shutdown must be seconds >= 0, math.inf or 'brutal_kill', got {shutdown!r}"
        raise ValueError(msg)
    if type(significant) is not bool:
        msg = f"significant must be a bool, got {significant!r}"
        raise TypeError(msg)
    if significant and restart == "permanent":
        msg = "a significant child must be 'transient' or 'temporary', not 'permanent'"
        raise ValueError(msg)
    if id is None:
        if kind == "supervisor":
            id = "dynamic_supervisor" if target.dynamic else "supervisor"  # noqa: A001
        else:
            id = getattr(target, "__qualname__", None) or repr(target)  # noqa: A001
    try:
        hash(id)
    except TypeError:
        msg = f"id must be hashable, got {id!r}"
        raise TypeError(msg) from None
    if name is not None and kind == "supervisor":
        msg = "name a nested supervisor with its own name= flag"
        raise TypeError(msg)
    return ChildSpec(
        target=target,
        args=args,
        id=id,
        name=name,
        restart=restart,
        shutdown=shutdown,
        significant=significant,
        kind=kind,
        options=opts,
    )
