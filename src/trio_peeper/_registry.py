"""Names and registries: unique names per run, `Registry`, via-names.

A name belongs to a server for its whole life, across restarts, and is freed
the moment it stops for good; so are its registry entries.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import Any

import trio

from ._errors import AlreadyRegistered, AlreadyStarted, NoProc
from ._ref import ServerRef, current_server
from ._runtime import Runtime, current_runtime
from ._util import final


@final
class Via:
    """A name that lives in a `Registry` (``reg.via(key, value)``)."""

    __slots__ = ("key", "registry", "value")

    def __init__(self, registry: Registry, key: Hashable, value: object) -> None:
        self.registry, self.key, self.value = registry, key, value

    def __eq__(self, other: object) -> bool:
        return type(other) is Via and other.registry is self.registry and other.key == self.key

    def __hash__(self) -> int:
        return hash((id(self.registry), self.key))

    def __repr__(self) -> str:
        return f"Via({self.registry!r}, {self.key!r})"


def _check_name(name: object) -> None:
    try:
        hash(name)
    except TypeError:
        msg = f"a name must be hashable, got {name!r}"
        raise TypeError(msg) from None


def claim_name(rt: Runtime, name: Hashable, ref: Any) -> None:
    """Take *name* for *ref*, or raise `AlreadyStarted` with the holder."""
    if type(name) is Via:
        name.registry._claim(name.key, ref, name.value, as_name=True)
        return
    _check_name(name)
    holder = rt.names.get(name)
    if holder is not None:
        raise AlreadyStarted(name, holder)
    rt.names[name] = ref


def release_name(rt: Runtime, name: Hashable, ref: Any) -> None:
    """Free *name* if *ref* still holds it."""
    if type(name) is Via:
        name.registry._drop(name.key, ref)
    elif rt.names.get(name) is ref:
        del rt.names[name]


def whereis(name: Hashable) -> Any:
    """The server (or supervisor) registered under *name*, or None."""
    if type(name) is Via:
        return name.registry._whereis(name.key)
    if isinstance(name, ServerRef):
        return name
    _check_name(name)
    return current_runtime().names.get(name)


def resolve(target: object) -> Any:
    """A ref for *target* (a ref, a name or a via-name); `NoProc` when unknown."""
    if isinstance(target, ServerRef):
        return target
    ref = whereis(target)
    if ref is None:
        raise NoProc(target)
    return ref


async def call(target: object, request: object, *, timeout: float | None = 5.0) -> Any:
    """``resolve(target).call(request)``; a name unknown at call time raises `NoProc`."""
    try:
        ref = resolve(target)
    except NoProc:
        await trio.lowlevel.checkpoint()
        raise
    return await ref.call(request, timeout=timeout)


async def cast(target: object, message: object) -> None:
    """Cast to a ref, a name or a via-name; an unknown name raises `NoProc`."""
    try:
        ref = resolve(target)
    except NoProc:
        await trio.lowlevel.checkpoint()
        raise
    await ref.cast(message)


async def send(target: object, message: object) -> None:
    """Send to ``handle_info`` of a ref, a name or a via-name; an unknown name raises `NoProc`."""
    try:
        ref = resolve(target)
    except NoProc:
        await trio.lowlevel.checkpoint()
        raise
    await ref.send(message)


_KEYS = ("unique", "duplicate")


@final
class Registry:
    """A key -> server registry (Elixir's ``Registry``), unique or duplicate keys.

    Entries belong to servers: a server's entries survive its restarts and are
    removed the moment it stops for good.

    .. versionadded:: 0.1
    """

    __slots__ = ("_by_ref", "_entries", "_names", "_resets", "_unique", "keys_kind", "name")

    def __init__(self, keys: str = "unique", name: Hashable | None = None) -> None:
        if keys not in _KEYS:
            msg = f"keys must be 'unique' or 'duplicate', got {keys!r}"
            raise ValueError(msg)
        self.keys_kind = keys
        self._unique = keys == "unique"
        self.name = name
        # {key: [(ref, value), ...]} (at most one entry per key when unique)
        self._entries: dict[Hashable, list[tuple[Any, object]]] = {}
        # {ref: [key, ...]} with multiplicity
        self._by_ref: dict[Any, list[Hashable]] = {}
        self._names: set[tuple[Any, Hashable]] = set()  # {(ref, key)} held as via-names
        self._resets: set[Any] = set()  # refs with a reset hook installed
        if name is not None:
            claim_name(current_runtime(), name, self)

    def __repr__(self) -> str:
        label = "" if self.name is None else f" {self.name!r}"
        return f"<Registry{label} {self.keys_kind} keys={len(self._entries)}>"

    # ------------------------------------------------------------ internals

    def _claim(self, key: Hashable, ref: Any, value: object, *, as_name: bool = False) -> None:
        entries = self._entries.get(key)
        if self._unique and entries:
            holder = entries[0][0]
            if as_name:
                raise AlreadyStarted(Via(self, key, value), holder)
            raise AlreadyRegistered(key, holder)
        if entries is None:
            entries = self._entries[key] = []
        entries.append((ref, value))
        keys = self._by_ref.get(ref)
        if keys is None:
            keys = self._by_ref[ref] = []
            ref._add_final_hook(self._forget_ref)
        keys.append(key)
        if as_name:
            self._names.add((ref, key))
        elif ref not in self._resets:
            self._resets.add(ref)
            ref._add_reset_hook(self._forget_registered)

    def _drop(self, key: Hashable, ref: Any) -> int:
        entries = self._entries.get(key)
        if not entries:
            return 0
        kept = [e for e in entries if e[0] is not ref]
        dropped = len(entries) - len(kept)
        if kept:
            self._entries[key] = kept
        else:
            del self._entries[key]
        keys = self._by_ref.get(ref)
        if keys is not None:
            self._by_ref[ref] = [k for k in keys if k != key]
        self._names.discard((ref, key))
        return dropped

    def _forget_ref(self, ref: Any) -> None:
        for key in set(self._by_ref.pop(ref, ())):
            self._drop(key, ref)
        self._resets.discard(ref)
        self._names = {n for n in self._names if n[0] is not ref}

    def _forget_registered(self, ref: Any) -> None:
        """Drop what *ref* registered itself (not its via-name): it restarts afresh."""
        self._resets.discard(ref)
        for key in set(self._by_ref.get(ref, ())):
            if (ref, key) not in self._names:
                self._drop(key, ref)

    def _whereis(self, key: Hashable) -> Any:
        entries = self._entries.get(key)
        return entries[0][0] if entries else None

    # --------------------------------------------------------------- public

    def register(self, key: Hashable, value: object = None) -> None:
        """Register the current server under *key* with *value*.

        Raises:
          AlreadyRegistered: a unique registry already has *key*.
          RuntimeError: not called from inside a server.
        """
        _check_name(key)
        self._claim(key, current_server(), value)

    def unregister(self, key: Hashable) -> None:
        """Remove the current server's entries under *key* (nothing if it has none)."""
        self._drop(key, current_server())

    def lookup(self, key: Hashable) -> list[tuple[Any, object]]:
        """``[(ref, value), ...]`` registered under *key* (empty when none)."""
        return list(self._entries.get(key, ()))

    def keys(self, ref: Any) -> list[Hashable]:
        """The keys *ref* is registered under, in registration order."""
        return list(self._by_ref.get(ref, ()))

    def values(self, key: Hashable, ref: Any) -> list[object]:
        """The values *ref* registered under *key*."""
        return [v for r, v in self._entries.get(key, ()) if r is ref]

    def update_value(self, key: Hashable, fn: Callable[[object], object]) -> tuple[object, object]:
        """Replace the current server's value under a unique *key* by ``fn(old)``; ``(new, old)``.

        Raises:
          ValueError: the registry has duplicate keys.
          KeyError: the current server is not registered under *key*.
        """
        if not self._unique:
            msg = "update_value needs a registry with unique keys"
            raise ValueError(msg)
        me = current_server()
        entries = self._entries.get(key)
        if not entries or entries[0][0] is not me:
            raise KeyError(key)
        old = entries[0][1]
        new = fn(old)
        entries[0] = (me, new)
        return new, old

    async def dispatch(self, key: Hashable, fn: Callable[[list[tuple[Any, object]]], object]) -> None:
        """Call ``fn(entries)`` with the entries under *key*, if any; a checkpoint."""
        await trio.lowlevel.checkpoint()
        entries = self._entries.get(key)
        if entries:
            fn(list(entries))

    def count(self) -> int:
        """The number of entries."""
        return sum(len(e) for e in self._entries.values())

    def select(self, predicate: Callable[[Hashable, Any, object], bool]) -> list[tuple[Hashable, Any, object]]:
        """``[(key, ref, value), ...]`` for which ``predicate(key, ref, value)`` is true."""
        return [(k, r, v) for k, entries in list(self._entries.items()) for r, v in entries if predicate(k, r, v)]

    def via(self, key: Hashable, value: object = None) -> Via:
        """A name usable wherever a name is: it registers the server under *key*.

        Raises:
          ValueError: the registry has duplicate keys (a name must be unique).
        """
        if not self._unique:
            msg = "via-names need a registry with unique keys"
            raise ValueError(msg)
        _check_name(key)
        return Via(self, key, value)


