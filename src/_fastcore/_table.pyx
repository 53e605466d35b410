# cython: language_level=3, auto_pickle=False, autotestdict=False
"""Compiled ``_fastcore._table``: the core of ETS-like tables (twin: ``_table_py``).

Layout: one dict ``_data`` whose entries depend on the kind:

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

The kind is an int code so the hot methods dispatch with one C comparison.
User code (``__hash__``, ``__eq__``, ``__lt__``, finalizers) may run inside
any dict or list operation and may even change this table: list indexing
keeps its bounds checks, and the comparisons of the binary searches are those
of `bisect` (same operands, same order) so both twins call user code alike.
``no_gc_clear``: the cyclic GC must not set ``_data``/``_cells`` to None under
a finalizer that still uses the table; every cycle through a table passes
through its dict or a list, which the GC clears instead.
"""

cimport cython
from cpython.dict cimport PyDict_GetItemWithError
from cpython.object cimport PyObject
from cpython.contextvars cimport PyContextVar_Get
from cpython.ref cimport Py_XDECREF

cdef enum:
    SET = 0
    ORDERED = 1
    BAG = 2
    DUPLICATE_BAG = 3

_CODES = {"set": SET, "ordered_set": ORDERED, "bag": BAG, "duplicate_bag": DUPLICATE_BAG}
_KINDS = ("set", "ordered_set", "bag", "duplicate_bag")
cdef object _MISSING = object()


cdef Py_ssize_t _bisect_left(list cells, object key) except -1:
    # bisect.bisect_left(cells, key, key=itemgetter(0)), comparison for comparison
    cdef Py_ssize_t lo = 0, hi = len(cells), mid
    while lo < hi:
        mid = (lo + hi) >> 1
        if cells[mid][0] < key:  # bounds-checked: "<" may have shrunk the list
            lo = mid + 1
        else:
            hi = mid
    return lo


cdef Py_ssize_t _bisect_right(list cells, object key) except -1:
    # bisect.bisect_right(cells, key, key=itemgetter(0)), comparison for comparison
    cdef Py_ssize_t lo = 0, hi = len(cells), mid
    while lo < hi:
        mid = (lo + hi) >> 1
        if key < cells[mid][0]:
            hi = mid
        else:
            lo = mid + 1
    return lo


cdef Py_ssize_t _position(list cells, object key) except -1:
    """``bisect_left`` on the cells' keys; an incomparable *key* is a `TypeError` naming it."""
    try:
        return _bisect_left(cells, key)
    except TypeError as exc:
        msg = f"ordered_set keys must be mutually comparable, got {key!r}"
        raise TypeError(msg) from exc


cdef Py_ssize_t _position_right(list cells, object key) except -1:
    """``bisect_right`` on the cells' keys; an incomparable *key* is a `TypeError` naming it."""
    try:
        return _bisect_right(cells, key)
    except TypeError as exc:
        msg = f"ordered_set keys must be mutually comparable, got {key!r}"
        raise TypeError(msg) from exc


cdef inline str _for_sets(str name, str kind):
    return f"{name}() needs a set or ordered_set table, got a {kind!r} table"


# binding=False: plain C methods, so ``t.lookup`` is a builtin method called
# straight through vectorcall (a CyFunction goes through a bound-method object
# first: lookup went from 1.57x to 1.15x a bound dict.get, benches/bench_table.py).
# embedsignature "clinic" keeps them introspectable (``__text_signature__``),
# which is also why the class docstring opens with the constructor's signature.
@cython.final
@cython.no_gc_clear
@cython.binding(False)
@cython.embedsignature(True)
@cython.embedsignature.format("clinic")
cdef class TableCore:
    """TableCore(kind)
--

The objects ((key, value) pairs) of one table; no ownership, no access control."""

    def __cinit__(self):
        # a usable empty set even if __init__ is never run (TableCore.__new__)
        self.kind = "set"
        self._code = SET
        self._data = {}
        self._cells = []
        self._size = 0

    def __init__(self, kind):
        code = _CODES.get(kind) if type(kind) is str else None
        if code is None:
            msg = f"kind must be 'set', 'ordered_set', 'bag' or 'duplicate_bag', got {kind!r}"
            raise ValueError(msg)
        self.kind = _KINDS[code]
        self._code = code
        self._data = {}
        self._cells = []  # ordered_set: [[key, value], ...] sorted by key
        self._size = 0  # bags: number of objects

    # ---- writes

    cdef int _insert_cell(self, object key, object value) except -1:
        """Insert a key known to be absent (ordered_set)."""
        cdef list cells = self._cells
        cdef Py_ssize_t i = _position(cells, key)
        cdef list cell = [key, value]
        self._data[key] = cell
        cells.insert(i, cell)
        return 0

    cdef list _remove_cell(self, object key):
        """Remove *key* (ordered_set) and return its cell, or None if absent."""
        cdef dict index = self._data
        cdef list cell = index.get(key)
        if cell is None:
            return None
        cdef list cells = self._cells
        cdef Py_ssize_t i = _position(cells, cell[0]), n
        if i == len(cells) or cells[i] is not cell:
            # the keys' "<" is no total order (NaN): find the cell by identity
            n = len(cells)
            i = 0
            while i < n and cells[i] is not cell:
                i += 1
            if i == n:
                msg = "ordered_set changed during a key comparison"
                raise RuntimeError(msg)
        del index[key]
        del cells[i]
        return cell

    cpdef void set_write_guard(self, object var, object owner, object refuse) except *:
        """Let writes through only while context variable *var* holds *owner*; else call *refuse()*.

        ``refuse(op)`` (*op*: the refused method's name) must raise. ``set_write_guard(None, None, None)`` removes the guard.
        """
        self._gvar, self._gowner, self._grefuse = var, owner, refuse

    cdef int _guard(self, str op) except -1:
        cdef PyObject *value = NULL
        PyContextVar_Get(self._gvar, NULL, &value)
        cdef bint mine = value == <PyObject *>self._gowner
        Py_XDECREF(value)
        if not mine:
            self._grefuse(op)
            raise RuntimeError("a write guard's refuse() must raise")
        return 0

    cpdef void insert(self, object key, object value) except *:
        """Store the object (*key*, *value*): replace a set's value, add to a bag."""
        if self._gvar is not None:
            self._guard("insert")
        cdef int code = self._code
        cdef list values
        if code == SET:
            self._data[key] = value
        elif code == ORDERED:
            values = self._data.get(key)
            if values is None:
                self._insert_cell(key, value)
            else:
                values[1] = value
        else:
            values = self._data.get(key)
            if values is None:
                self._data[key] = [value]
            elif code == DUPLICATE_BAG or value not in values:
                values.append(value)
            else:
                return
            self._size += 1

    cpdef void insert_many(self, object pairs) except *:
        """Insert every (key, value) of *pairs* in order, or none of them."""
        if self._gvar is not None:
            self._guard("insert_many")
        cdef list items = list(pairs)
        cdef object item, key, value
        for item in items:
            if not isinstance(item, tuple) or len(item) != 2:
                msg = f"insert_many takes (key, value) 2-tuples, got {item!r}"
                raise TypeError(msg)
        cdef int code = self._code
        cdef dict new
        cdef list cells, cell, updates, values
        cdef set copied
        cdef Py_ssize_t added
        if code == SET:
            new = self._data.copy()
            for key, value in items:
                new[key] = value
            self._data = new
        elif code == ORDERED:
            new = self._data.copy()
            cells = self._cells[:]
            updates = []  # (cell, value): cells shared with the old state
            for key, value in items:
                cell = new.get(key)
                if cell is None:
                    cell = [key, value]
                    cells.insert(_position(cells, key), cell)
                    new[key] = cell
                else:
                    updates.append((cell, value))
            for cell, value in updates:  # no user code from here on
                cell[1] = value
            self._data = new
            self._cells = cells
        else:
            new = self._data.copy()
            copied = set()  # ids of the lists that are ours to append to
            added = 0
            for key, value in items:
                values = new.get(key)
                if values is None:
                    values = [value]
                    new[key] = values
                    copied.add(id(values))
                elif code == DUPLICATE_BAG or value not in values:
                    if id(values) not in copied:
                        values = values[:]
                        new[key] = values
                        copied.add(id(values))
                    values.append(value)
                else:
                    continue
                added += 1
            self._data = new
            self._size += added

    cpdef bint insert_new(self, object key, object value) except -1:
        """Insert (*key*, *value*) and return True, or return False if *key* is present."""
        if self._gvar is not None:
            self._guard("insert_new")
        cdef int code = self._code
        cdef dict data = self._data
        cdef Py_ssize_t n
        if code == SET:
            n = len(data)
            data.setdefault(key, value)
            return len(data) != n
        if code == ORDERED:
            if key in data:
                return False
            self._insert_cell(key, value)
            return True
        n = len(data)
        data.setdefault(key, [value])
        if len(data) == n:
            return False
        self._size += 1
        return True

    cpdef void delete(self, object key) except *:
        """Remove every object with *key* (nothing happens if there is none)."""
        if self._gvar is not None:
            self._guard("delete")
        cdef int code = self._code
        cdef list values
        if code == SET:
            self._data.pop(key, None)
        elif code == ORDERED:
            self._remove_cell(key)
        else:
            values = self._data.pop(key, None)
            if values is not None:
                self._size -= len(values)

    cpdef void delete_object(self, object key, object value) except *:
        """Remove the objects equal to (*key*, *value*), every duplicate of it included."""
        if self._gvar is not None:
            self._guard("delete_object")
        cdef int code = self._code
        cdef dict data = self._data
        cdef object stored, v
        cdef list values, kept
        cdef Py_ssize_t removed
        if code == SET:
            stored = data.get(key, _MISSING)
            if stored is not _MISSING and (stored is value or stored == value):
                data.pop(key, None)
        elif code == ORDERED:
            values = data.get(key)
            if values is not None and (values[1] is value or values[1] == value):
                self._remove_cell(key)
        else:
            values = data.get(key)
            if values is None:
                return
            kept = [v for v in values if not (v is value or v == value)]
            removed = len(values) - len(kept)
            if not removed:
                return
            if kept:
                values[:] = kept
            else:
                del data[key]
            self._size -= removed

    cpdef list take(self, object key):
        """Remove the objects with *key* and return their values."""
        if self._gvar is not None:
            self._guard("take")
        cdef int code = self._code
        cdef object value
        cdef list found
        if code == SET:
            value = self._data.pop(key, _MISSING)
            return [] if value is _MISSING else [value]
        if code == ORDERED:
            found = self._remove_cell(key)
            return [] if found is None else [found[1]]
        found = self._data.pop(key, None)
        if found is None:
            return []
        self._size -= len(found)
        return found

    cpdef void clear(self) except *:
        """Remove every object."""
        if self._gvar is not None:
            self._guard("clear")
        old = self._data, self._cells  # dropped on return, once the table is consistent
        self._data = {}
        self._cells = []
        self._size = 0
        del old

    cpdef object update_counter(self, object key, object incr, object default=0):
        """Add *incr* to the int value of *key* (*default* if absent) and return the sum."""
        if self._gvar is not None:
            self._guard("update_counter")
        cdef int code = self._code
        cdef object old, new
        cdef list cell
        if code >= BAG:
            raise TypeError(_for_sets("update_counter", self.kind))
        if type(incr) is not int:
            msg = f"incr must be an int, got {incr!r}"
            raise TypeError(msg)
        if type(default) is not int:
            msg = f"default must be an int, got {default!r}"
            raise TypeError(msg)
        if code == SET:
            old = self._data.get(key, _MISSING)
            if old is _MISSING:
                new = default + incr
            elif type(old) is not int:
                msg = f"update_counter() needs an int value at key {key!r}, got {old!r}"
                raise TypeError(msg)
            else:
                new = old + incr
            self._data[key] = new
            return new
        cell = self._data.get(key)
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

    cpdef list lookup_all(self, object key):
        """The values stored under *key*, oldest first (``[]`` if none)."""
        cdef int code = self._code
        cdef object value
        cdef list found
        if code == SET:
            value = self._data.get(key, _MISSING)
            return [] if value is _MISSING else [value]
        found = self._data.get(key)
        if found is None:
            return []
        if code == ORDERED:
            return [found[1]]
        return found[:]

    cpdef object lookup(self, object key, object default=None):
        """The value of *key*, or *default* (set and ordered_set only)."""
        cdef PyObject *found
        cdef int code = self._code
        if code == SET:
            found = PyDict_GetItemWithError(self._data, key)
            return default if found is NULL else <object>found
        if code == ORDERED:
            found = PyDict_GetItemWithError(self._data, key)
            return default if found is NULL else (<list>found)[1]
        raise TypeError(_for_sets("lookup", self.kind) + "; use lookup_all()")

    cpdef object getitem(self, object key):
        """The value of *key*; `KeyError` if absent (set and ordered_set only)."""
        cdef PyObject *found
        cdef int code = self._code
        if code == SET:
            found = PyDict_GetItemWithError(self._data, key)
            if found is NULL:
                raise KeyError(key)
            return <object>found
        if code == ORDERED:
            found = PyDict_GetItemWithError(self._data, key)
            if found is NULL:
                raise KeyError(key)
            return (<list>found)[1]
        raise TypeError(_for_sets("getitem", self.kind) + "; use lookup_all()")

    cpdef bint contains(self, object key) except -1:
        """Whether some object has *key*."""
        return key in self._data

    cpdef list select(self, object predicate, object limit=None):
        """The objects for which ``predicate(key, value)`` is true, at most *limit* of them."""
        if limit is not None and (type(limit) is not int or limit < 0):
            msg = f"limit must be None or an int >= 0, got {limit!r}"
            raise ValueError(msg)
        cdef list out = []
        cdef tuple item
        if limit == 0:
            return out
        for item in self.items():  # a snapshot: the predicate may change the table
            if predicate(item[0], item[1]):
                out.append(item)
                if len(out) == limit:
                    break
        return out

    cpdef list keys(self):
        """The distinct keys: sorted for ordered_set, else in first-insertion order."""
        cdef list cell
        if self._code == ORDERED:
            return [cell[0] for cell in self._cells]
        return list(self._data)

    cpdef list items(self):
        """Every object as a (key, value) tuple, in `keys` order (a bag's values oldest first)."""
        cdef int code = self._code
        cdef list cell, values
        cdef object key, value
        if code == SET:
            return list(self._data.items())
        if code == ORDERED:
            return [(cell[0], cell[1]) for cell in self._cells]
        return [(key, value) for key, values in self._data.items() for value in values]

    def __len__(self):
        return self._size if self._code >= BAG else len(self._data)

    def __iter__(self):
        """Iterate over a snapshot of the keys, in `keys` order."""
        return iter(self.keys())

    # ---- ordered_set only

    cdef int _need_ordered(self, str name) except -1:
        if self._code != ORDERED:
            msg = f"{name}() needs an ordered_set table, got a {self.kind!r} table"
            raise TypeError(msg)
        return 0

    cpdef object first(self):
        """The smallest key, or None when empty."""
        self._need_ordered("first")
        cdef list cells = self._cells
        return cells[0][0] if cells else None

    cpdef object last(self):
        """The largest key, or None when empty."""
        self._need_ordered("last")
        cdef list cells = self._cells
        return cells[-1][0] if cells else None

    cpdef object next(self, object key):
        """The smallest key greater than *key* (present or not), or None."""
        self._need_ordered("next")
        cdef list cells = self._cells
        cdef Py_ssize_t i = _position_right(cells, key)
        return cells[i][0] if i < len(cells) else None

    cpdef object prev(self, object key):
        """The largest key smaller than *key* (present or not), or None."""
        self._need_ordered("prev")
        cdef list cells = self._cells
        cdef Py_ssize_t i = _position(cells, key)
        return cells[i - 1][0] if i else None

    cpdef list range(self, object lo, object hi):
        """The objects with ``lo <= key < hi``, in key order."""
        self._need_ordered("range")
        cdef list cells = self._cells
        cdef Py_ssize_t i = _position(cells, lo)
        cdef Py_ssize_t j = _position(cells, hi)
        cdef list cell
        return [(cell[0], cell[1]) for cell in cells[i:j]]
