"""Pure-Python twin of ``_fastcore._cow``: transactional state with undo records and diffs.

A server's state is a tree of values. Its dicts, lists and sets are *tracked*:
subclasses (`TDict`, `TList`, `TSet`) whose mutating methods, while the
owning `Journal` has a transaction open, write an undo record before they
change anything and mark what changed. Reads are the builtin ones, at native
speed, and user code sees real dicts, lists and sets.

- ``begin()`` opens a transaction: O(1).
- ``commit()`` closes it: O(1); ``changes()`` then gives the changed paths.
- ``rollback()`` replays the undo records backwards: O(changes), and every
  container comes back *identical* (same object, same contents).

Costs are proportional to what changed, at container granularity: a dict
records one undo entry per key written; a list or set is copied (shallow) the
first time it is changed in a transaction.

Values entering the tree are *adopted*: plain dicts/lists/sets become tracked
copies (the state has value semantics: assigning ``state["b"] = state["a"]``
stores a copy), tuples holding containers are rebuilt, and immutable values
(numbers, strings, bytes, None, frozensets, tuples and frozen dataclasses of
immutables, enums, dates) are kept by reference. *Snapshotted* objects
(mutable dataclasses, subclasses of dict/list/set, deques, bytearrays, arrays,
SimpleNamespaces and classes registered with ``_objects.register``: see
``_objects``) are kept by reference and registered: each is saved at
``begin()``, restored in place by ``rollback()``, and compared at ``commit()``,
where a difference is a change at its path and its new children are adopted:
O(its size) per transaction. One already in the tree is copied when stored
again elsewhere, as a container is. Registered objects that left the tree are
forgotten at the commit that removed them. Any other object (a ServerRef, a
caller, a table, a socket, an instance of an unregistered class) is kept by
reference and not tracked: its changes are not rolled back.

Paths: a change inside dicts reached from the root through dict keys only is
reported at its exact path (the tuple of keys); a change anywhere below a list,
a set or a dataclass is reported as the whole value at the nearest such path.
``diff()`` maps each changed path to its current value or `DELETED`; shorter
paths cover longer ones. ``apply(diff, old)`` replays a diff on plain values.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable
from typing import Any, Final

from . import _objects
from ._deleted import DELETED as DELETED
from ._objects import SCALARS as SCALARS

__all__ = ["DELETED", "SCALARS", "Journal", "TDict", "TList", "TSet", "apply", "detach", "is_tracked"]


_MISSING: Final = object()

# undo record kinds
_U_KEY: Final = 0  # (kind, dict, key, old value or _MISSING)
_U_LIST: Final = 1  # (kind, list, saved items)
_U_SET: Final = 2  # (kind, set, saved items)
_U_DICT: Final = 3  # (kind, dict, saved items)
_U_OBJ: Final = 4  # (kind, object, its Kind, its snapshot)
_U_ROOT: Final = 5  # (kind, old root, old {id: (object, anchor, Kind)}, old fresh ids)


def _outside(j: Journal | None) -> RuntimeError:
    owner = "a server" if j is None else repr(j.owner)
    return RuntimeError(
        f"the state of {owner} was changed outside its callbacks; "
        "change it only in the server's own callbacks"
    )


class Journal:
    """The transaction log of one state tree (one per server keeper)."""

    __slots__ = ("_changed", "_fresh", "_objs", "_seen", "_settled", "_undo", "active", "owner", "root")

    def __init__(self, owner: object = None) -> None:
        self.owner = owner  # for error messages
        self.root: object = None
        self.active = False
        self._settled = False
        self._undo: list[tuple[Any, ...]] = []
        # {path: None}: paths changed in the open (or last committed) transaction
        self._changed: dict[tuple[Any, ...], None] = {}
        self._seen: set[int] = set()  # ids of lists/sets/dicts saved whole in this transaction
        # the snapshotted objects of the tree: {id: (object, anchor, kind)}
        self._objs: dict[int, tuple[Any, tuple[Any, ...], _objects.Kind]] = {}
        self._fresh: list[int] = []  # ids of the objects registered in this transaction

    def __repr__(self) -> str:
        return f"<Journal of {self.owner!r} active={self.active}>"

    # ------------------------------------------------------------ adoption

    def adopt_root(self, value: object) -> object:
        """Make *value* the root of the tree (adopting it) and return what is stored."""
        if self.active:  # a rollback brings the old root back, with its registry
            self._undo.append((_U_ROOT, self.root, self._objs, self._fresh))
            self._fresh = []
        self._objs = {}
        self.root = root = self.adopt(value, (), True)
        self._changed = {(): None}  # the whole state was replaced
        return root

    def adopt(self, value: object, anchor: tuple[Any, ...], exact: bool) -> Any:
        """The form of *value* stored in this tree at *anchor*."""
        t = type(value)
        if t in SCALARS:
            return value
        if t is TDict or t is TList or t is TSet:
            # a container already in a tree: the state has value semantics
            return self.adopt(detach(value), anchor, exact)
        if t is dict:
            d = TDict()
            d._j, d._anchor, d._exact = self, anchor, exact
            for k, v in value.items():  # type: ignore[attr-defined]
                dict.__setitem__(d, k, self.adopt(v, anchor + (k,) if exact else anchor, exact))
            return d
        if t is list:
            lst = TList()
            lst._j, lst._anchor = self, anchor
            list.extend(lst, [self.adopt(v, anchor, False) for v in value])  # type: ignore[attr-defined]
            return lst
        if t is set:
            s = TSet(value)  # type: ignore[arg-type]
            s._j, s._anchor = self, anchor
            return s
        if t is tuple:
            items = tuple(self.adopt(v, anchor, False) for v in value)  # type: ignore[attr-defined]
            return value if all(a is b for a, b in zip(items, value)) else items  # type: ignore[call-overload]
        k = _objects.kind(t)
        if k is None:
            return value  # immutable, or a handle: kept by reference, not tracked
        if id(value) in self._objs:
            value = copy.copy(value)  # already in the tree: value semantics, as for containers
        k.readopt(value, None, self._fixer(anchor))
        self._objs[id(value)] = (value, anchor, k)
        if self.active:  # what readopt() compares with at commit; dropped again by a rollback
            self._undo.append((_U_OBJ, value, k, k.save(value)))
            self._fresh.append(id(value))
        return value

    def _fixer(self, anchor: tuple[Any, ...]) -> Callable[[Any, bool], Any]:
        # the children of a snapshotted object at *anchor*: one put there in the
        # transaction is adopted (copies of what is in a tree already), one that
        # was there only if it is not in adopted form (assigned outside a transaction)
        def fix(value: Any, assigned: bool) -> Any:
            if assigned or _foreign(self, value, anchor):
                return self.adopt(value, anchor, False)
            return value

        return fix

    # --------------------------------------------------------- transactions

    def begin(self) -> None:
        """Open a transaction: from now on changes are recorded."""
        if self._changed:
            self._changed.clear()  # reused: no allocation per transaction
        self.active = True
        self._settled = False
        if self._objs:
            undo = self._undo
            for obj, _, k in self._objs.values():
                undo.append((_U_OBJ, obj, k, k.save(obj)))

    def settle(self) -> None:
        """Inside a transaction: note snapshotted objects changed so far (once), so ``changes()`` shows them."""
        if self._objs and not self._settled:
            self._readopt()
            self._settled = True

    def commit(self) -> None:
        """Close the transaction, keeping its changes (``changes()`` lists them)."""
        self.active = False
        if self._objs:
            if not self._settled:
                self._readopt()
            if self._changed:
                self._prune()
        if self._fresh:
            self._fresh = []
        if self._undo:
            self._undo.clear()
            self._seen.clear()

    def rollback(self) -> None:
        """Close the transaction, undoing its changes: every container comes back identical."""
        self.active = False
        undo = self._undo
        for rec in reversed(undo):
            kind = rec[0]
            if kind == _U_KEY:
                _, d, key, old = rec
                if old is _MISSING:
                    dict.pop(d, key, None)
                else:
                    dict.__setitem__(d, key, old)
            elif kind == _U_LIST:
                list.__setitem__(rec[1], slice(None), rec[2])
            elif kind == _U_SET:
                set.clear(rec[1])
                set.update(rec[1], rec[2])
            elif kind == _U_DICT:
                dict.clear(rec[1])
                dict.update(rec[1], rec[2])
            elif kind == _U_OBJ:
                rec[2].restore(rec[1], rec[3])
            else:
                self.root, self._objs, self._fresh = rec[1], rec[2], rec[3]
        if self._fresh:  # registered by the transaction: not in the tree any more
            for key in self._fresh:
                self._objs.pop(key, None)
            self._fresh = []
        self._undo = []
        self._seen.clear()
        self._changed = {}

    def _readopt(self) -> None:
        # Each snapshotted object against what was saved of it (at begin(), or when
        # it entered the tree in this transaction): a difference is a change at its
        # anchor, and then its children that were put there in the transaction
        # are adopted (an untouched object costs one comparison: its children
        # are left alone, so one changed outside a transaction stays unnoticed).
        saved: dict[int, Any] = {}
        for rec in self._undo:
            if rec[0] == _U_OBJ:
                saved.setdefault(id(rec[1]), rec[3])
        for obj, anchor, k in list(self._objs.values()):
            before = saved.get(id(obj), _MISSING)
            if before is _MISSING:  # no transaction saw it: nothing changed it
                continue
            if k.readopt(obj, before, self._fixer(anchor)):
                self._changed[anchor] = None

    def _prune(self) -> None:
        # forget the objects that left the tree: only those under a changed path can
        # have, and each such path's subtree is walked once (the cost of what changed)
        changed, objs = self._changed, self._objs
        suspects: dict[tuple[Any, ...], list[int]] = {}
        root = self.root
        heads = {p[0] for p in changed if p}  # the top-level keys of the changed paths
        everything = () in changed
        for key, (obj, anchor, _) in objs.items():
            if not everything and (not anchor or anchor[0] not in heads):
                continue  # nothing on its way from the root changed
            if any(anchor[:i] in changed for i in range(len(anchor) + 1)) and _lookup(root, anchor) is not obj:
                suspects.setdefault(anchor, []).append(key)
        for anchor, keys in suspects.items():
            found: set[int] = set()
            node = _lookup(root, anchor)
            if node is not DELETED:
                _objects.reachable(node, objs, found)
            for key in keys:
                if key not in found:
                    del objs[key]

    def changes(self) -> list[tuple[Any, ...]]:
        """The paths changed by the last transaction, shortest first, none covered by another."""
        paths = sorted(self._changed, key=len)
        kept: list[tuple[Any, ...]] = []
        covered: set[tuple[Any, ...]] = set()
        for p in paths:
            if any(p[:i] in covered for i in range(len(p))):
                continue
            covered.add(p)
            kept.append(p)
        return kept

    def diff(self) -> dict[tuple[Any, ...], object]:
        """``{path: current value or DELETED}`` for the last transaction (values are live)."""
        out: dict[tuple[Any, ...], object] = {}
        for path in self.changes():
            out[path] = _lookup(self.root, path)
        return out

    # ---------------------------------------------------- record (internal)

    def _key(self, d: TDict, key: Any) -> None:
        # may raise (unhashable/hostile key) before anything is recorded
        old = dict.get(d, key, _MISSING)
        self._undo.append((_U_KEY, d, key, old))
        self._changed[d._anchor + (key,) if d._exact else d._anchor] = None

    def _whole(self, kind: int, c: Any) -> None:
        if id(c) not in self._seen:
            self._seen.add(id(c))
            saved = dict(c) if kind == _U_DICT else list(c)
            self._undo.append((kind, c, saved))
        self._changed[c._anchor] = None


def _foreign(j: Journal, value: object, anchor: tuple[Any, ...]) -> bool:
    """True if a child *value* of a snapshotted object at *anchor* is not in its adopted form.

    That is a plain container, a container of another path or tree, a tuple
    holding one, or a snapshotted object not registered here at *anchor*.
    """
    t = type(value)
    if t in SCALARS:
        return False
    if t is TDict or t is TList or t is TSet:
        return value._j is not j or value._anchor is not anchor  # type: ignore[attr-defined]
    if t is dict or t is list or t is set:
        return True
    if t is tuple:
        return any(_foreign(j, v, anchor) for v in value)  # type: ignore[attr-defined]
    if _objects.kind(t) is None:
        return False
    entry = j._objs.get(id(value))
    return entry is None or entry[0] is not value or entry[1] != anchor


def _lookup(root: object, path: tuple[Any, ...]) -> object:
    node = root
    for key in path:
        if type(node) is not TDict or key not in node:
            return DELETED
        node = dict.__getitem__(node, key)
    return node


_dict_get: Final = dict.get
_dict_set: Final = dict.__setitem__


def _journal(c: Any) -> Journal:
    j: Journal | None = c._j
    if j is None or not j.active:
        raise _outside(j)
    return j


class TDict(dict):  # type: ignore[type-arg]
    """A dict of a state tree: changes are recorded while a transaction is open."""

    __slots__ = ("_anchor", "_exact", "_j")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        dict.__init__(self, *args, **kwargs)
        self._j: Journal | None = None
        self._anchor: tuple[Any, ...] = ()
        self._exact = True

    def __setitem__(self, key: Any, value: Any) -> None:
        # the hot write: Journal._key and adopt() inlined (the twin's cost per change)
        j = self._j
        if j is None or not j.active:
            raise _outside(j)
        old = _dict_get(self, key, _MISSING)  # a bad key fails before anything is recorded
        path = self._anchor + (key,) if self._exact else self._anchor
        if type(value) not in SCALARS:
            value = j.adopt(value, path, self._exact)
        j._undo.append((_U_KEY, self, key, old))
        j._changed[path] = None
        _dict_set(self, key, value)

    def __delitem__(self, key: Any) -> None:
        j = _journal(self)
        dict.__getitem__(self, key)  # KeyError before anything is recorded
        j._key(self, key)
        dict.__delitem__(self, key)

    def pop(self, key: Any, *default: Any) -> Any:
        j = _journal(self)
        if key not in self:
            if default:
                return default[0]
            raise KeyError(key)
        j._key(self, key)
        return dict.pop(self, key)

    def popitem(self) -> tuple[Any, Any]:
        j = _journal(self)
        if not self:
            msg = "popitem(): dictionary is empty"
            raise KeyError(msg)
        key = next(reversed(self))
        j._key(self, key)
        return key, dict.pop(self, key)

    def setdefault(self, key: Any, default: Any = None) -> Any:
        if key in self:
            return dict.__getitem__(self, key)
        self[key] = default
        return dict.__getitem__(self, key)

    def update(self, *args: Any, **kwargs: Any) -> None:
        _journal(self)
        for key, value in dict(*args, **kwargs).items():
            self[key] = value

    def __ior__(self, other: Any) -> TDict:  # type: ignore[override,misc]
        self.update(other)
        return self

    def clear(self) -> None:
        j = _journal(self)
        if self:
            if self._exact:
                for key in list(self):
                    j._key(self, key)
            else:
                j._whole(_U_DICT, self)
            dict.clear(self)

    def __copy__(self) -> dict[Any, Any]:
        return dict(self)

    def __deepcopy__(self, memo: dict[int, Any]) -> dict[Any, Any]:
        return {copy.deepcopy(k, memo): copy.deepcopy(v, memo) for k, v in self.items()}

    def __reduce__(self) -> tuple[Any, ...]:
        return dict, (dict(self),)


class TList(list):  # type: ignore[type-arg]
    """A list of a state tree: saved whole the first time it changes in a transaction."""

    __slots__ = ("_anchor", "_j")

    def __init__(self, *args: Any) -> None:
        list.__init__(self, *args)
        self._j: Journal | None = None
        self._anchor: tuple[Any, ...] = ()

    def _touch(self) -> Journal:
        j = _journal(self)
        j._whole(_U_LIST, self)
        return j

    def _in(self, j: Journal, value: Any) -> Any:
        return j.adopt(value, self._anchor, False)

    def __setitem__(self, index: Any, value: Any) -> None:
        j = _journal(self)
        if isinstance(index, slice):
            value = [self._in(j, v) for v in value]
        else:
            list.__getitem__(self, index)  # IndexError before anything is recorded or adopted
            value = self._in(j, value)
        j._whole(_U_LIST, self)
        list.__setitem__(self, index, value)

    def __delitem__(self, index: Any) -> None:
        j = _journal(self)
        list.__getitem__(self, index)
        j._whole(_U_LIST, self)
        list.__delitem__(self, index)

    def append(self, value: Any) -> None:
        j = _journal(self)
        value = self._in(j, value)
        j._whole(_U_LIST, self)
        list.append(self, value)

    def extend(self, values: Iterable[Any]) -> None:
        j = _journal(self)
        items = [self._in(j, v) for v in values]
        j._whole(_U_LIST, self)
        list.extend(self, items)

    def __iadd__(self, values: Iterable[Any]) -> TList:  # type: ignore[override,misc]
        self.extend(values)
        return self

    def __imul__(self, n: Any) -> TList:  # type: ignore[override,misc]
        j = _journal(self)
        items = list(self) * n
        if n > 1:
            items = [self._in(j, v) for v in items]
        j._whole(_U_LIST, self)
        list.__setitem__(self, slice(None), items)
        return self

    def insert(self, index: Any, value: Any) -> None:
        j = _journal(self)
        value = self._in(j, value)
        j._whole(_U_LIST, self)
        list.insert(self, index, value)

    def pop(self, index: Any = -1) -> Any:
        j = _journal(self)
        list.__getitem__(self, index) if self else list.pop(self)  # errors first
        j._whole(_U_LIST, self)
        return list.pop(self, index)

    def remove(self, value: Any) -> None:
        j = _journal(self)
        i = list.index(self, value)
        j._whole(_U_LIST, self)
        list.__delitem__(self, i)

    def clear(self) -> None:
        self._touch()
        list.clear(self)

    def sort(self, *, key: Callable[[Any], Any] | None = None, reverse: bool = False) -> None:
        j = _journal(self)
        ordered = sorted(self, key=key, reverse=reverse)  # a failing comparison changes nothing
        j._whole(_U_LIST, self)
        list.__setitem__(self, slice(None), ordered)

    def reverse(self) -> None:
        self._touch()
        list.reverse(self)

    def __copy__(self) -> list[Any]:
        return list(self)

    def __deepcopy__(self, memo: dict[int, Any]) -> list[Any]:
        return [copy.deepcopy(v, memo) for v in self]

    def __reduce__(self) -> tuple[Any, ...]:
        return list, (list(self),)


class TSet(set):  # type: ignore[type-arg]
    """A set of a state tree: saved whole the first time it changes in a transaction."""

    __slots__ = ("_anchor", "_j")

    def __init__(self, *args: Any) -> None:
        set.__init__(self, *args)
        self._j: Journal | None = None
        self._anchor: tuple[Any, ...] = ()

    def _touch(self) -> None:
        _journal(self)._whole(_U_SET, self)

    def add(self, value: Any) -> None:
        j = _journal(self)
        hash(value)  # TypeError before anything is recorded
        j._whole(_U_SET, self)
        set.add(self, value)

    def discard(self, value: Any) -> None:
        j = _journal(self)
        if value in self:
            j._whole(_U_SET, self)
            set.discard(self, value)

    def remove(self, value: Any) -> None:
        j = _journal(self)
        if value not in self:
            raise KeyError(value)
        j._whole(_U_SET, self)
        set.discard(self, value)

    def pop(self) -> Any:
        j = _journal(self)
        if not self:
            msg = "pop from an empty set"
            raise KeyError(msg)
        j._whole(_U_SET, self)
        return set.pop(self)

    def clear(self) -> None:
        self._touch()
        set.clear(self)

    def update(self, *others: Iterable[Any]) -> None:
        j = _journal(self)
        items = set().union(*others)
        j._whole(_U_SET, self)
        set.update(self, items)

    def difference_update(self, *others: Iterable[Any]) -> None:
        j = _journal(self)
        items = set().union(*others)
        j._whole(_U_SET, self)
        set.difference_update(self, items)

    def intersection_update(self, *others: Iterable[Any]) -> None:
        j = _journal(self)
        keep = set(self).intersection(*others)
        j._whole(_U_SET, self)
        set.intersection_update(self, keep)

    def symmetric_difference_update(self, other: Iterable[Any]) -> None:
        j = _journal(self)
        items = set(other)
        j._whole(_U_SET, self)
        set.symmetric_difference_update(self, items)

    def __ior__(self, other: Any) -> TSet:  # type: ignore[override,misc]
        self.update(other)
        return self

    def __iand__(self, other: Any) -> TSet:  # type: ignore[override,misc]
        self.intersection_update(other)
        return self

    def __isub__(self, other: Any) -> TSet:  # type: ignore[override,misc]
        self.difference_update(other)
        return self

    def __ixor__(self, other: Any) -> TSet:  # type: ignore[override,misc]
        self.symmetric_difference_update(other)
        return self

    def __copy__(self) -> set[Any]:
        return set(self)

    def __deepcopy__(self, memo: dict[int, Any]) -> set[Any]:
        return {copy.deepcopy(v, memo) for v in self}

    def __reduce__(self) -> tuple[Any, ...]:
        return set, (set(self),)


def is_tracked(value: object) -> bool:
    """True for the tracked containers of a state tree."""
    t = type(value)
    return t is TDict or t is TList or t is TSet


def detach(value: object) -> Any:
    """A plain copy of *value* with no tracked container left inside (for replies, listeners).

    Immutable values come back as they are; only tracked parts are copied.
    """
    t = type(value)
    if t in SCALARS:
        return value
    if t is TDict:
        return {k: detach(v) for k, v in dict.items(value)}  # type: ignore[arg-type]
    if t is TList:
        return [detach(v) for v in value]  # type: ignore[attr-defined]
    if t is TSet:
        return set(value)  # type: ignore[arg-type]
    if t is tuple:
        items = tuple(detach(v) for v in value)  # type: ignore[attr-defined]
        return value if all(a is b for a, b in zip(items, value)) else items  # type: ignore[call-overload]
    if t is dict:
        return {k: detach(v) for k, v in value.items()}  # type: ignore[attr-defined]
    if t is list:
        return [detach(v) for v in value]  # type: ignore[attr-defined]
    k = _objects.kind(t)
    return value if k is None else k.detach(value, detach)


def apply(diff: dict[tuple[Any, ...], object], old: object) -> object:
    """Replay *diff* on the plain value *old* (not changed) and return the new value."""
    if () in diff:
        return detach(diff[()])
    new = detach(old)
    for path, value in sorted(diff.items(), key=lambda item: len(item[0])):
        node = new
        for key in path[:-1]:
            node = node[key]  # type: ignore[index]
        if value is DELETED:
            node.pop(path[-1], None)  # type: ignore[attr-defined]
        else:
            node[path[-1]] = detach(value)  # type: ignore[index]
    return new
