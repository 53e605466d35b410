"""The objects of a state tree that are neither tracked containers nor immutable values.

Shared by both journal twins (``_cow`` and ``_cow_py``): this is the slow path,
run only for states that hold such objects, so it is written once, in Python.

A *snapshotted* object is kept in the tree by reference and registered with its
journal. Its *kind* (one `Kind` per family of types) knows how to take a shallow
snapshot of it, put that snapshot back in place, and list and replace its
children, which are adopted like a list's items (nested dicts, lists and sets
become tracked copies). The journal saves every registered object when a
transaction begins, restores it on rollback, and at commit compares it with
what was saved: a difference is a change at the object's path, and new children
are adopted. So each snapshotted object costs O(its size) per transaction, where
a tracked container costs O(what changed).

Which objects are snapshotted (`kind`):

- mutable dataclass instances: their fields;
- instances of classes registered with `register` (``tp.snapshotted``) and
  `types.SimpleNamespace`: their attributes (``__dict__`` and ``__slots__``);
- subclasses of ``dict`` (``defaultdict``, ``OrderedDict``, ``Counter``...),
  ``list`` and ``set``: their items, through the type's own methods;
- ``collections.deque``, ``bytearray`` and ``array.array``: their items.

Everything else that is not immutable (handles such as refs, callers, tables
and timers; trio objects, sockets, files, functions, classes, modules; any
other class) is kept by reference and not snapshotted: copying a handle would
break it.
"""

from __future__ import annotations

import array
import collections
import copy
import dataclasses
import datetime
import decimal
import enum
import fractions
import itertools
import operator
import types
import uuid
from collections.abc import Callable, Iterable
from typing import Any, Final

__all__ = ["ITEM_TYPES", "SCALARS", "Kind", "kind", "reachable", "register"]

_MISSING: Final = object()

# immutable values of a state tree: kept by reference (both twins use this set)
SCALARS: Final = frozenset(
    {
        type(None),
        bool,
        int,
        float,
        complex,
        str,
        bytes,
        range,
        frozenset,
        decimal.Decimal,
        fractions.Fraction,
        datetime.date,
        datetime.datetime,
        datetime.time,
        datetime.timedelta,
        datetime.timezone,
        uuid.UUID,
    }
)

_is_not: Final = operator.is_not


def _same(a: tuple[Any, ...], b: tuple[Any, ...]) -> bool:
    """True if the two tuples hold the very same objects (identity, not equality)."""
    return len(a) == len(b) and not any(map(_is_not, a, b))

# fix(value, assigned) -> the form of a child to store: *assigned* is true for a
# child that was put there in the transaction (adopted: copies of anything
# already in a tree), false for one that was there before (adopted only if it is
# not in adopted form yet)
Fix = Callable[[Any, bool], Any]


class Kind:
    """How to snapshot, restore and walk one family of objects (base: no children)."""

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return f"<snapshot kind {self.name}>"

    def save(self, obj: Any) -> Any:
        """A snapshot of *obj* (shallow: children are kept as objects)."""
        return copy.copy(obj)

    def restore(self, obj: Any, saved: Any) -> None:
        """Put the snapshot *saved* back into *obj*, in place."""
        obj[:] = saved

    def readopt(self, obj: Any, saved: Any, fix: Fix) -> bool:
        """Adopt children that need it; True if *obj* differs from *saved*.

        *saved* None: *obj* enters the tree, every child is new.
        """
        return saved is None or bool(obj != saved)

    def children(self, obj: Any) -> Iterable[Any]:
        """The values *obj* holds (for reachability)."""
        return ()

    def detach(self, obj: Any, detach: Callable[[Any], Any]) -> Any:
        """A copy of *obj* with its children detached (for replies and listeners)."""
        return copy.copy(obj)


class _Fields(Kind):
    """A mutable dataclass: its fields, in order."""

    __slots__ = ("get", "names")

    def __init__(self, cls: type) -> None:
        super().__init__(f"dataclass {cls.__qualname__}")
        self.names = names = tuple(f.name for f in dataclasses.fields(cls))
        # the fields as a tuple, read in C
        self.get: Callable[[Any], Any] = (
            operator.attrgetter(*names) if len(names) > 1 else (lambda obj: tuple(getattr(obj, n) for n in names))
        )

    def save(self, obj: Any) -> tuple[Any, ...]:
        return self.get(obj)  # type: ignore[no-any-return]

    def restore(self, obj: Any, saved: tuple[Any, ...]) -> None:
        for name, value in zip(self.names, saved):
            object.__setattr__(obj, name, value)

    def readopt(self, obj: Any, saved: tuple[Any, ...] | None, fix: Fix) -> bool:
        current = self.get(obj)
        if saved is not None and _same(current, saved):
            return False
        for i, name in enumerate(self.names):
            value = current[i]
            if saved is None or value is not saved[i]:
                stored = fix(value, True)
                if stored is not value:
                    object.__setattr__(obj, name, stored)
        return True

    def children(self, obj: Any) -> tuple[Any, ...]:
        return self.get(obj)  # type: ignore[no-any-return]

    def detach(self, obj: Any, detach: Callable[[Any], Any]) -> Any:
        clone = copy.copy(obj)
        for name in self.names:
            object.__setattr__(clone, name, detach(getattr(obj, name)))
        return clone


class _Attrs(Kind):
    """An object with attributes: its ``__dict__`` and its ``__slots__``."""

    __slots__ = ("slots",)

    def __init__(self, cls: type) -> None:
        super().__init__(f"object {cls.__qualname__}")
        slots: list[str] = []
        for base in cls.__mro__:
            names = base.__dict__.get("__slots__", ())
            for name in (names,) if isinstance(names, str) else names:
                if name not in ("__dict__", "__weakref__") and name not in slots:
                    # a private slot is stored under its mangled name
                    slots.append(f"_{base.__name__.lstrip('_')}{name}" if name.startswith("__") else name)
        self.slots = tuple(slots)

    def save(self, obj: Any) -> dict[str, Any]:
        attrs = dict(getattr(obj, "__dict__", ()))
        for name in self.slots:
            value = getattr(obj, name, _MISSING)
            if value is not _MISSING:
                attrs[name] = value
        return attrs

    def restore(self, obj: Any, saved: dict[str, Any]) -> None:
        for name in self.save(obj):
            if name not in saved:
                object.__delattr__(obj, name)
        for name, value in saved.items():
            object.__setattr__(obj, name, value)

    def readopt(self, obj: Any, saved: dict[str, Any] | None, fix: Fix) -> bool:
        current = self.save(obj)
        saved = {} if saved is None else saved
        changed = current.keys() != saved.keys()
        for name, value in current.items():
            if saved.get(name, _MISSING) is not value:
                changed = True
                stored = fix(value, True)
                if stored is not value:
                    object.__setattr__(obj, name, stored)
        return changed

    def children(self, obj: Any) -> Iterable[Any]:
        return self.save(obj).values()

    def detach(self, obj: Any, detach: Callable[[Any], Any]) -> Any:
        clone = copy.copy(obj)
        for name, value in self.save(obj).items():
            object.__setattr__(clone, name, detach(value))
        return clone


class _Items(Kind):
    """A sequence of objects (``deque``, subclasses of ``list``): its items, in order."""

    __slots__ = ()

    def save(self, obj: Any) -> tuple[Any, ...]:
        return tuple(obj)

    def restore(self, obj: Any, saved: tuple[Any, ...]) -> None:
        if isinstance(obj, list):
            list.__setitem__(obj, slice(None), saved)
        else:
            obj.clear()
            obj.extend(saved)

    def readopt(self, obj: Any, saved: tuple[Any, ...] | None, fix: Fix) -> bool:
        current = tuple(obj)
        if saved is not None and _same(current, saved):
            return False
        stored = _fix_all(current, saved, fix)
        if not _same(stored, current):
            self.restore(obj, stored)
        return True

    def children(self, obj: Any) -> Iterable[Any]:
        return tuple(obj)

    def detach(self, obj: Any, detach: Callable[[Any], Any]) -> Any:
        clone = copy.copy(obj)
        self.restore(clone, tuple([detach(v) for v in obj]))
        return clone


def _fix_all(current: tuple[Any, ...], saved: tuple[Any, ...] | None, fix: Fix) -> tuple[Any, ...]:
    """The stored forms of the children of a changed object (*saved*: its children before).

    A child that was there before is adopted only if not in adopted form; one
    put there in the transaction, or a second occurrence of one object, is
    adopted as new (a copy of what is in a tree already): value semantics.
    """
    before = set() if saved is None else {id(v) for v in saved if type(v) not in SCALARS}
    seen: set[int] = set()
    out = []
    for v in current:
        if type(v) in SCALARS:
            out.append(v)
            continue
        key = id(v)
        out.append(fix(v, key in seen or key not in before))
        seen.add(key)
    return tuple(out)


class _Mapping(Kind):
    """A subclass of ``dict``: its items in the type's own order, through its own methods."""

    __slots__ = ()

    def save(self, obj: Any) -> tuple[tuple[Any, ...], tuple[Any, ...]]:
        return tuple(obj), tuple(obj.values())  # keys, values

    def restore(self, obj: Any, saved: tuple[tuple[Any, ...], tuple[Any, ...]]) -> None:
        obj.clear()
        for key, value in zip(*saved):
            obj[key] = value

    def readopt(self, obj: Any, saved: tuple[tuple[Any, ...], tuple[Any, ...]] | None, fix: Fix) -> bool:
        keys, values = self.save(obj)
        if saved is not None and _same(keys, saved[0]):
            if _same(values, saved[1]):
                return False
            # the same keys: only the values that are not the saved ones can need adopting,
            # found without a Python step per item (a Counter of many keys, one changed)
            moved = list(itertools.compress(zip(keys, values), map(_is_not, values, saved[1])))
            if all(type(v) in SCALARS for _, v in moved):
                return True
        for key, value, stored in zip(keys, values, _fix_all(values, None if saved is None else saved[1], fix)):
            if stored is not value:
                obj[key] = stored
        return True

    def children(self, obj: Any) -> Iterable[Any]:
        return tuple(obj.values())

    def detach(self, obj: Any, detach: Callable[[Any], Any]) -> Any:
        clone = copy.copy(obj)
        for key, value in obj.items():
            clone[key] = detach(value)
        return clone


class _Set(Kind):
    """A subclass of ``set``: its items (hashable, so never adopted)."""

    __slots__ = ()

    def save(self, obj: Any) -> frozenset[Any]:
        return frozenset(obj)

    def restore(self, obj: Any, saved: frozenset[Any]) -> None:
        obj.clear()
        obj.update(saved)

    def readopt(self, obj: Any, saved: frozenset[Any] | None, fix: Fix) -> bool:
        return saved is None or len(obj) != len(saved) or not saved.issuperset(obj)


class _Bytes(Kind):
    """A ``bytearray``: its bytes."""

    __slots__ = ()

    def save(self, obj: Any) -> bytes:
        return bytes(obj)


class _Array(Kind):
    """An ``array.array``: its machine values (compared as bytes, so a NaN is no change)."""

    __slots__ = ()

    def save(self, obj: Any) -> bytes:
        return bytes(obj.tobytes())

    def restore(self, obj: Any, saved: bytes) -> None:
        del obj[:]
        obj.frombytes(saved)

    def readopt(self, obj: Any, saved: bytes | None, fix: Fix) -> bool:
        return saved is None or bool(obj.tobytes() != saved)


_ITEMS: Final = _Items("sequence")
_MAPPING: Final = _Mapping("mapping")
_SET: Final = _Set("set")
_BYTES: Final = _Bytes("bytearray")
_ARRAY: Final = _Array("array")

_REGISTERED: set[type] = set()  # classes given to register(), snapshotted by attributes
_KINDS: dict[type, Kind | None] = {}  # {type: its kind, or None: kept by reference}; a cache


# snapshotted by their items already: register() leaves them so
ITEM_TYPES: Final = (dict, list, set, collections.deque, bytearray, array.array)


def register(cls: type) -> None:
    """Snapshot the instances of *cls* (and of its subclasses) by their attributes."""
    _REGISTERED.add(cls)
    _KINDS.clear()


def kind(t: type) -> Kind | None:
    """The kind of the objects of type *t*, or None if they are kept by reference.

    Called only for types that are neither scalars nor the journal's own
    containers, nor exact dict, list, set or tuple.
    """
    try:
        return _KINDS[t]
    except KeyError:
        pass
    k = _kind(t)
    _KINDS[t] = k
    return k


def _kind(t: type) -> Kind | None:
    if issubclass(t, (type, enum.Enum)):
        return None
    if dataclasses.is_dataclass(t):
        params = getattr(t, "__dataclass_params__", None)
        return None if params is not None and params.frozen else _Fields(t)
    if issubclass(t, (collections.deque, list)):
        return _ITEMS
    if issubclass(t, dict):
        return _MAPPING
    if issubclass(t, set):
        return _SET
    if issubclass(t, bytearray):
        return _BYTES
    if issubclass(t, array.array):
        return _ARRAY
    if any(base in _REGISTERED for base in t.__mro__) or issubclass(t, types.SimpleNamespace):
        return _Attrs(t)
    return None


def reachable(node: Any, registered: dict[int, Any], found: set[int]) -> None:
    """Add to *found* the ids of the *registered* objects inside *node* (depth first)."""
    stack = [node]
    while stack:
        value = stack.pop()
        key = id(value)
        if key in registered:
            if key not in found:
                found.add(key)
                stack.extend(registered[key][2].children(value))
        elif isinstance(value, dict):
            stack.extend(dict.values(value))
        elif isinstance(value, (list, tuple)):
            stack.extend(value)
