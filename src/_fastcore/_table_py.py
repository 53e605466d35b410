"""Pure-Python twin of ``_fastcore._table``: the core of ETS-like tables.

Layout: one dict ``_data`` (two typed names, ``_map`` and ``_lists``, for the
same dict object) whose entries depend on the kind:

* set: ``{key: value}``;
* ordered_set: ``{key: [key, value]}``, a *cell* per key, and ``_cells``, the
  same cells sorted by key (``<``), so a value is updated in one place;
* bag / duplicate_bag: ``{key: [value, ...]}``, oldest first, never empty;
  ``_size`` counts their objects (a set's size is ``len(_data)``).

Invariants: the keys of ``_data`` are those of ``_cells``, cell for cell (the
dict keeps the first key object inserted among equal ones, and so does the
cell); ``_cells`` is sorted; a bag list holds no two equal values.
Atomicity: every step that may run user code (``hash``, ``==``, ``<``, an
iterator) comes before the first mutation, so an exception leaves the table
exactly as it was; `insert_many` builds the new state beside the old one and
swaps it in.
Complexity: set O(1); ordered_set lookup O(1), insert/delete O(log n)
comparisons plus an O(n) memmove, first/last O(1), next/prev O(log n),
range O(log n + k); bag insert O(values of the key); duplicate_bag insert
O(1); insert_many O(n + m) (it copies the dict); select/keys/items O(n).
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Callable, Iterable, Iterator
from operator import itemgetter
from typing import Literal, cast, final

Kind = Literal["set", "ordered_set", "bag", "duplicate_bag"]

_SET, _ORDERED, _BAG, _DUPLICATE_BAG = 0, 1, 2, 3
_CODES: dict[str, int] = {"set": _SET, "ordered_set": _ORDERED, "bag": _BAG, "duplicate_bag": _DUPLICATE_BAG}
_KINDS: tuple[Kind, ...] = ("set", "ordered_set", "bag", "duplicate_bag")
_MISSING = object()
_cell_key = itemgetter(0)


def _position(cells: list[list[object]], key: object) -> int:
    """``bisect_left`` on the cells' keys; an incomparable *key* is a `TypeError` naming it."""
    try:
        return bisect_left(cells, key, key=_cell_key)  # type: ignore[call-overload,no-any-return]
    except TypeError as exc:
        msg = f"ordered_set keys must be mutually comparable, got {key!r}"
        raise TypeError(msg) from exc


def _position_right(cells: list[list[object]], key: object) -> int:
    """``bisect_right`` on the cells' keys; an incomparable *key* is a `TypeError` naming it."""
    try:
        return bisect_right(cells, key, key=_cell_key)  # type: ignore[call-overload,no-any-return]
    except TypeError as exc:
        msg = f"ordered_set keys must be mutually comparable, got {key!r}"
        raise TypeError(msg) from exc


def _for_sets(name: str, kind: str) -> str:
    return f"{name}() needs a set or ordered_set table, got a {kind!r} table"


@final
class TableCore:
    """The objects ((key, value) pairs) of one table; no ownership, no access control."""

    __slots__ = ("_cells", "_code", "_gowner", "_grefuse", "_gvar", "_kind", "_lists", "_map", "_size")

    def __init__(self, kind: Kind) -> None:
        code = _CODES.get(kind) if type(kind) is str else None
        if code is None:
            msg = f"kind must be 'set', 'ordered_set', 'bag' or 'duplicate_bag', got {kind!r}"
            raise ValueError(msg)
        self._kind: Kind = _KINDS[code]
        self._code: int = code
        self._gvar: object = None  # write guard (set_write_guard): context var, owner, refuse
        self._gowner: object = None
        self._grefuse: object = None
        self._adopt({})
        self._cells: list[list[object]] = []  # ordered_set: [[key, value], ...] sorted by key
        self._size: int = 0  # bags: number of objects

    def _adopt(self, data: dict[object, object]) -> None:
        # _map and _lists name the same dict: _lists for the kinds whose values are lists
        self._map: dict[object, object] = data
        self._lists: dict[object, list[object]] = cast("dict[object, list[object]]", data)

    @property
    def kind(self) -> Kind:
        """``"set"``, ``"ordered_set"``, ``"bag"`` or ``"duplicate_bag"``."""
        return self._kind

    # ---- writes

    def _insert_cell(self, key: object, value: object) -> None:
        """Insert a key known to be absent (ordered_set)."""
        cells = self._cells
        i = _position(cells, key)
        cell = [key, value]
        self._lists[key] = cell
        cells.insert(i, cell)

    def _remove_cell(self, key: object) -> list[object] | None:
        """Remove *key* (ordered_set) and return its cell, or None if absent."""
        index = self._lists
        cell = index.get(key)
        if cell is None:
            return None
        cells = self._cells
        i = _position(cells, cell[0])
        if i == len(cells) or cells[i] is not cell:
            # the keys' "<" is no total order (NaN): find the cell by identity
            for i, other in enumerate(cells):  # noqa: B007
                if other is cell:
                    break
            else:
                msg = "ordered_set changed during a key comparison"
                raise RuntimeError(msg)
        del index[key]
        del cells[i]
        return cell

    def set_write_guard(self, var: object, owner: object, refuse: object) -> None:
        """Let writes through only while context variable *var* holds *owner*; else call *refuse()*.

        ``refuse(op)`` (*op*: the refused method's name) must raise. ``set_write_guard(None, None, None)`` removes the guard.
        """
        self._gvar, self._gowner, self._grefuse = var, owner, refuse

    def _guard(self, op: str) -> None:
        if self._gvar.get(None) is not self._gowner:  # type: ignore[attr-defined]
            self._grefuse(op)  # type: ignore[operator]
            msg = "a write guard's refuse() must raise"
            raise RuntimeError(msg)

    def insert(self, key: object, value: object) -> None:
        """Store the object (*key*, *value*): replace a set's value, add to a bag."""
        if self._gvar is not None:
            self._guard("insert")
        code = self._code
        if code == _SET:
            self._map[key] = value
        elif code == _ORDERED:
            cell = self._lists.get(key)
            if cell is None:
                self._insert_cell(key, value)
            else:
                cell[1] = value
        else:
            lists = self._lists
            values = lists.get(key)
            if values is None:
                lists[key] = [value]
            elif code == _DUPLICATE_BAG or value not in values:
                values.append(value)
            else:
                return
            self._size += 1

    def insert_many(self, pairs: Iterable[tuple[object, object]]) -> None:
        """Insert every (key, value) of *pairs* in order, or none of them."""
        if self._gvar is not None:
            self._guard("insert_many")
        items = list(pairs)
        for item in items:
            if not isinstance(item, tuple) or len(item) != 2:
                msg = f"insert_many takes (key, value) 2-tuples, got {item!r}"
                raise TypeError(msg)
        code = self._code
        if code == _SET:
            new = self._map.copy()
            for key, value in items:
                new[key] = value
            self._adopt(new)
        elif code == _ORDERED:
            index = self._lists.copy()
            cells = self._cells[:]
            updates: list[tuple[list[object], object]] = []  # cells shared with the old state
            for key, value in items:
                cell = index.get(key)
                if cell is None:
                    cell = [key, value]
                    cells.insert(_position(cells, key), cell)
                    index[key] = cell
                else:
                    updates.append((cell, value))
            for cell, value in updates:  # no user code from here on
                cell[1] = value
            self._adopt(cast("dict[object, object]", index))
            self._cells = cells
        else:
            lists = self._lists.copy()
            copied: set[int] = set()  # ids of the lists that are ours to append to
            added = 0
            for key, value in items:
                values = lists.get(key)
                if values is None:
                    values = [value]
                    lists[key] = values
                    copied.add(id(values))
                elif code == _DUPLICATE_BAG or value not in values:
                    if id(values) not in copied:
                        values = values[:]
                        lists[key] = values
                        copied.add(id(values))
                    values.append(value)
                else:
                    continue
                added += 1
            self._adopt(cast("dict[object, object]", lists))
            self._size += added

    def insert_new(self, key: object, value: object) -> bool:
        """Insert (*key*, *value*) and return True, or return False if *key* is present."""
        if self._gvar is not None:
            self._guard("insert_new")
        code = self._code
        if code == _SET:
            data = self._map
            n = len(data)
            data.setdefault(key, value)
            return len(data) != n
        if code == _ORDERED:
            if key in self._lists:
                return False
            self._insert_cell(key, value)
            return True
        lists = self._lists
        n = len(lists)
        lists.setdefault(key, [value])
        if len(lists) == n:
            return False
        self._size += 1
        return True

    def delete(self, key: object) -> None:
        """Remove every object with *key* (nothing happens if there is none)."""
        if self._gvar is not None:
            self._guard("delete")
        code = self._code
        if code == _SET:
            self._map.pop(key, None)
        elif code == _ORDERED:
            self._remove_cell(key)
        else:
            values = self._lists.pop(key, None)
            if values is not None:
                self._size -= len(values)

    def delete_object(self, key: object, value: object) -> None:
        """Remove the objects equal to (*key*, *value*), every duplicate of it included."""
        if self._gvar is not None:
            self._guard("delete_object")
        code = self._code
        if code == _SET:
            data = self._map
            stored = data.get(key, _MISSING)
            if stored is not _MISSING and (stored is value or stored == value):
                data.pop(key, None)
        elif code == _ORDERED:
            cell = self._lists.get(key)
            if cell is not None and (cell[1] is value or cell[1] == value):
                self._remove_cell(key)
        else:
            lists = self._lists
            values = lists.get(key)
            if values is None:
                return
            kept = [v for v in values if not (v is value or v == value)]
            removed = len(values) - len(kept)
            if not removed:
                return
            if kept:
                values[:] = kept
            else:
                del lists[key]
            self._size -= removed

    def take(self, key: object) -> list[object]:
        """Remove the objects with *key* and return their values."""
        if self._gvar is not None:
            self._guard("take")
        code = self._code
        if code == _SET:
            value = self._map.pop(key, _MISSING)
            return [] if value is _MISSING else [value]
        if code == _ORDERED:
            cell = self._remove_cell(key)
            return [] if cell is None else [cell[1]]
        values = self._lists.pop(key, None)
        if values is None:
            return []
        self._size -= len(values)
        return values

    def clear(self) -> None:
        """Remove every object."""
        if self._gvar is not None:
            self._guard("clear")
        old = self._map, self._cells  # dropped on return, once the table is consistent
        self._adopt({})
        self._cells = []
        self._size = 0
        del old

    def update_counter(self, key: object, incr: int, default: int = 0) -> int:
        """Add *incr* to the int value of *key* (*default* if absent) and return the sum."""
        if self._gvar is not None:
            self._guard("update_counter")
        code = self._code
        if code >= _BAG:
            raise TypeError(_for_sets("update_counter", self._kind))
        if type(incr) is not int:
            msg = f"incr must be an int, got {incr!r}"
            raise TypeError(msg)
        if type(default) is not int:
            msg = f"default must be an int, got {default!r}"
            raise TypeError(msg)
        if code == _SET:
            data = self._map
            old = data.get(key, _MISSING)
            if old is _MISSING:
                new = default + incr
            elif type(old) is not int:
                msg = f"update_counter() needs an int value at key {key!r}, got {old!r}"
                raise TypeError(msg)
            else:
                new = old + incr
            data[key] = new
            return new
        cell = self._lists.get(key)
        if cell is None:
            new = default + incr
            self._insert_cell(key, new)
            return new
        old = cell[1]
        if type(old) is not int:
            msg = f"update_counter() needs an int value at key {key!r}, got {old!r}"
            raise TypeError(msg)
        new = old + incr
        cell[1] = new
        return new

    # ---- reads

    def lookup_all(self, key: object) -> list[object]:
        """The values stored under *key*, oldest first (``[]`` if none)."""
        code = self._code
        if code == _SET:
            value = self._map.get(key, _MISSING)
            return [] if value is _MISSING else [value]
        found = self._lists.get(key)
        if found is None:
            return []
        if code == _ORDERED:
            return [found[1]]
        return found[:]

    def lookup(self, key: object, default: object = None) -> object:
        """The value of *key*, or *default* (set and ordered_set only)."""
        code = self._code
        if code == _SET:
            return self._map.get(key, default)
        if code == _ORDERED:
            cell = self._lists.get(key)
            return default if cell is None else cell[1]
        raise TypeError(_for_sets("lookup", self._kind) + "; use lookup_all()")

    def getitem(self, key: object) -> object:
        """The value of *key*; `KeyError` if absent (set and ordered_set only)."""
        code = self._code
        if code == _SET:
            value = self._map.get(key, _MISSING)
            if value is _MISSING:
                raise KeyError(key)
            return value
        if code == _ORDERED:
            cell = self._lists.get(key)
            if cell is None:
                raise KeyError(key)
            return cell[1]
        raise TypeError(_for_sets("getitem", self._kind) + "; use lookup_all()")

    def contains(self, key: object) -> bool:
        """Whether some object has *key*."""
        return key in self._map

    def select(
        self, predicate: Callable[[object, object], object], limit: int | None = None
    ) -> list[tuple[object, object]]:
        """The objects for which ``predicate(key, value)`` is true, at most *limit* of them."""
        if limit is not None and (type(limit) is not int or limit < 0):
            msg = f"limit must be None or an int >= 0, got {limit!r}"
            raise ValueError(msg)
        out: list[tuple[object, object]] = []
        if limit == 0:
            return out
        for item in self.items():  # a snapshot: the predicate may change the table
            if predicate(item[0], item[1]):
                out.append(item)
                if len(out) == limit:
                    break
        return out

    def keys(self) -> list[object]:
        """The distinct keys: sorted for ordered_set, else in first-insertion order."""
        if self._code == _ORDERED:
            return [cell[0] for cell in self._cells]
        return list(self._map)

    def items(self) -> list[tuple[object, object]]:
        """Every object as a (key, value) tuple, in `keys` order (a bag's values oldest first)."""
        code = self._code
        if code == _SET:
            return list(self._map.items())
        if code == _ORDERED:
            return [(cell[0], cell[1]) for cell in self._cells]
        return [(key, value) for key, values in self._lists.items() for value in values]

    def __len__(self) -> int:
        return self._size if self._code >= _BAG else len(self._map)

    def __iter__(self) -> Iterator[object]:
        """Iterate over a snapshot of the keys, in `keys` order."""
        return iter(self.keys())

    # ---- ordered_set only

    def _need_ordered(self, name: str) -> None:
        if self._code != _ORDERED:
            msg = f"{name}() needs an ordered_set table, got a {self._kind!r} table"
            raise TypeError(msg)

    def first(self) -> object:
        """The smallest key, or None when empty."""
        self._need_ordered("first")
        cells = self._cells
        return cells[0][0] if cells else None

    def last(self) -> object:
        """The largest key, or None when empty."""
        self._need_ordered("last")
        cells = self._cells
        return cells[-1][0] if cells else None

    def next(self, key: object) -> object:
        """The smallest key greater than *key* (present or not), or None."""
        self._need_ordered("next")
        cells = self._cells
        i = _position_right(cells, key)
        return cells[i][0] if i < len(cells) else None

    def prev(self, key: object) -> object:
        """The largest key smaller than *key* (present or not), or None."""
        self._need_ordered("prev")
        cells = self._cells
        i = _position(cells, key)
        return cells[i - 1][0] if i else None

    def range(self, lo: object, hi: object) -> list[tuple[object, object]]:
        """The objects with ``lo <= key < hi``, in key order."""
        self._need_ordered("range")
        cells = self._cells
        i = _position(cells, lo)
        j = _position(cells, hi)
        return [(cell[0], cell[1]) for cell in cells[i:j]]
