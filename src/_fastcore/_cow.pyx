# cython: language_level=3, auto_pickle=False, autotestdict=False
"""Compiled ``_fastcore._cow``: transactional state with undo records and diffs (twin: ``_cow_py``).

The semantics (adoption, paths, ``changes()``/``diff()``, errors) are those of
the twin, function by function; read its docstring first. What differs is the
machinery:

* `TDict`, `TList`, `TSet` subclass the builtins in C; the journal, the anchor
  (the path their changes are reported at) and, for a dict, whether its keys
  extend that path are C fields, not slots.
* The twin's ``_seen`` set of ids is an *epoch* stamp instead: a container is
  saved whole at most once per transaction, when its ``_epoch`` differs from
  its journal's, which moves on whenever the twin clears ``_seen`` (a commit
  that recorded something, a rollback). Same saves, no id objects.
* Base behaviour is reached through the base type's own slots or methods
  (``PyDict_Type.mp_subscript`` is ``dict.__getitem__``), never through the
  subclass, so the overrides do not recurse and errors are the builtin ones.
* The undo records are the twin's, flattened into one list with the kind
  last: ``dict, key, old or _MISSING, 0``; ``list, saved items, 1``; ``set,
  saved items, 2``; ``dict, saved copy, 3``; ``object, its Kind, its
  snapshot, 4``; ``old root, old registry, 5``. No tuple per record: a write
  costs a few list appends and nothing for the cyclic GC to track.
* Snapshotted objects (dataclasses, deques, subclasses of the builtins...)
  are the slow path: both twins use the one ``_objects`` module for them.

User code (``__hash__``, ``__eq__``, ``__del__``, dataclass attributes) may run
inside almost every step and may re-enter the journal: no borrowed reference
outlives a call and the undo list is walked with bounds checks (Cython stores
a new attribute value before releasing the old one, so a finalizer run by the
release sees a consistent object). ``no_gc_clear`` on `Journal`: its lists
and dicts stay valid under a finalizer the cyclic GC runs.
A container does not reference its journal: it holds the journal's `_Link`,
a small object outside the cyclic GC whose borrowed pointer the journal sets
to NULL when it is deallocated. So no reference cycle runs through a journal
(journal -> root -> container -> journal in the twin), and a tracked dict
holding only atomic keys and values (numbers, strings...) is taken out of the
cyclic GC when adopted, as CPython does for a plain dict: a full collection
does not walk a big state. CPython tracks such a dict again as soon as a
container is stored in it. A container whose journal is gone refuses changes,
as one outside a transaction (its message names "a server": the twin's
containers keep their journal alive, so it never says so).
Deep trees: adoption and `detach` count C recursion like Python frames
(`RecursionError`, not a crash), and tracked dicts/lists free through the
trashcan.
"""

cimport cython
from cpython.dict cimport PyDict_Clear, PyDict_Contains, PyDict_DelItem, PyDict_SetItem, PyDict_Update
from cpython.list cimport PyList_Append, PyList_GET_SIZE, PyList_Reverse, PyList_SetSlice
from cpython.long cimport PyLong_FromVoidPtr
from cpython.object cimport PyObject, PyObject_Hash, PyObject_IsInstance, PyObject_SetItem
from cpython.sequence cimport PySequence_Contains, PySequence_List
from cpython.set cimport PySet_Add, PySet_Clear, PySet_New, PySet_Pop
from cpython.tuple cimport PyTuple_GET_SIZE

import copy as _copy_module

from . import _objects
from ._deleted import DELETED

cdef extern from *:
    """
    /* The base types' own slots: exactly dict.__getitem__(o, k) and friends,
       whatever the subclass overrides. */
    static PyObject *_cow_dict_subscript(PyObject *o, PyObject *k) {
        return PyDict_Type.tp_as_mapping->mp_subscript(o, k);
    }
    static PyObject *_cow_list_subscript(PyObject *o, PyObject *k) {
        return PyList_Type.tp_as_mapping->mp_subscript(o, k);
    }
    static int _cow_list_ass_subscript(PyObject *o, PyObject *k, PyObject *v) {
        return PyList_Type.tp_as_mapping->mp_ass_subscript(o, k, v);
    }
    static int _cow_list_del_subscript(PyObject *o, PyObject *k) {
        return PyList_Type.tp_as_mapping->mp_ass_subscript(o, k, NULL);
    }
    static int _cow_dict_init(PyObject *o, PyObject *args, PyObject *kwargs) {
        return PyDict_Type.tp_init(o, args, kwargs);
    }
    static int _cow_list_init(PyObject *o, PyObject *args) {
        return PyList_Type.tp_init(o, args, NULL);
    }
    static int _cow_set_init(PyObject *o, PyObject *args) {
        return PySet_Type.tp_init(o, args, NULL);
    }

    /* dict.get(d, k, missing): a new reference (one hash, as dict.get). */
    static PyObject *_cow_dict_get(PyObject *d, PyObject *k, PyObject *missing) {
        PyObject *v = PyDict_GetItemWithError(d, k);
        if (v == NULL) {
            if (PyErr_Occurred()) return NULL;
            v = missing;
        }
        Py_INCREF(v);
        return v;
    }

    /* dict.pop(d, k, missing): a new reference (one hash, as dict.pop). */
    static PyObject *_cow_dict_pop(PyObject *d, PyObject *k, PyObject *missing) {
    #if PY_VERSION_HEX >= 0x030D0000
        PyObject *v;
        int found = PyDict_Pop(d, k, &v);
        if (found < 0) return NULL;
        if (found == 0) {
            Py_INCREF(missing);
            return missing;
        }
        return v;
    #else
        return _PyDict_Pop(d, k, missing);
    #endif
    }

    /* set.update(s, other) for a set *other*, past an override (no rehash). */
    static int _cow_set_merge(PyObject *s, PyObject *other) {
        PyObject *r = PySet_Type.tp_as_number->nb_inplace_or(s, other);
        if (r == NULL) return -1;
        Py_DECREF(r);  /* s itself: other is a set, never NotImplemented */
        return 0;
    }

    /* anchor + (key,) in one allocation. */
    static PyObject *_cow_path(PyObject *anchor, PyObject *key) {
        Py_ssize_t i, n;
        PyObject *t, *item;
        if (!PyTuple_Check(anchor)) {  /* only a container the GC cleared */
            PyErr_SetString(PyExc_SystemError, "_cow: a tracked container lost its anchor");
            return NULL;
        }
        n = PyTuple_GET_SIZE(anchor);
        t = PyTuple_New(n + 1);
        if (t == NULL) return NULL;
        for (i = 0; i < n; i++) {
            item = PyTuple_GET_ITEM(anchor, i);
            Py_INCREF(item);
            PyTuple_SET_ITEM(t, i, item);
        }
        Py_INCREF(key);
        PyTuple_SET_ITEM(t, n, key);
        return t;
    }

    /* list.clear(o), past an override. */
    static int _cow_list_clear(PyObject *o) {
        return PyList_SetSlice(o, 0, PY_SSIZE_T_MAX, NULL);
    }

    /* Append one undo record (a, b[, c], kind) to the flat undo list, whole or
       not at all: on failure (MemoryError) the list is cut back. */
    static int _cow_push(PyObject *undo, PyObject *a, PyObject *b, PyObject *c, PyObject *kind) {
        Py_ssize_t n = PyList_GET_SIZE(undo);
        PyObject *et, *ev, *tb;
        if (PyList_Append(undo, a) == 0 && PyList_Append(undo, b) == 0
                && (c == NULL || PyList_Append(undo, c) == 0) && PyList_Append(undo, kind) == 0)
            return 0;
        PyErr_Fetch(&et, &ev, &tb);
        (void)PyList_SetSlice(undo, n, PY_SSIZE_T_MAX, NULL);
        PyErr_Restore(et, ev, tb);
        return -1;
    }

    /* What CPython's own untracking of dicts counts as atomic. */
    static int _cow_atomic(PyObject *o) {
        return !PyObject_IS_GC(o) || (PyTuple_CheckExact(o) && !PyObject_GC_IsTracked(o));
    }

    /* Take a dict out of the cyclic GC if its keys, its values and its anchor's
       keys are all atomic (CPython's insertdict tracks it again as soon as
       something trackable is stored in it). */
    static void _cow_maybe_untrack(PyObject *d, PyObject *anchor) {
        Py_ssize_t pos = 0, i;
        PyObject *k, *v;
        if (!PyObject_GC_IsTracked(d)) return;
        for (i = 0; i < PyTuple_GET_SIZE(anchor); i++)
            if (!_cow_atomic(PyTuple_GET_ITEM(anchor, i))) return;
        while (PyDict_Next(d, &pos, &k, &v))
            if (!_cow_atomic(k) || !_cow_atomic(v)) return;
        PyObject_GC_UnTrack(d);
    }

    /* Py_EnterRecursiveCall with the message of a Python frame. */
    static int _cow_enter(void) {
        return Py_EnterRecursiveCall("") ? -1 : 0;
    }
    """
    object _cow_dict_subscript(object o, object k)
    object _cow_list_subscript(object o, object k)
    int _cow_list_ass_subscript(object o, object k, object v) except -1
    int _cow_list_del_subscript(object o, object k) except -1
    int _cow_dict_init(object o, object args, object kwargs) except -1
    int _cow_list_init(object o, object args) except -1
    int _cow_set_init(object o, object args) except -1
    object _cow_dict_get(object d, object k, object missing)
    object _cow_dict_pop(object d, object k, object missing)
    int _cow_set_merge(object s, object other) except -1
    tuple _cow_path(object anchor, object key)
    int _cow_list_clear(object o) except -1
    int _cow_push(list undo, object a, object b, PyObject *c, object kind) except -1
    int _cow_enter() except -1
    void _cow_maybe_untrack(object d, object anchor)
    void Py_LeaveRecursiveCall()
    int Py_ReprEnter(object o) except -1
    void Py_ReprLeave(object o)
    const Py_ssize_t PY_SSIZE_T_MAX

__all__ = ["DELETED", "SCALARS", "Journal", "TDict", "TList", "TSet", "apply", "detach", "is_tracked"]


cdef object _DELETED = DELETED  # shared with the twin (see _deleted.py)
cdef object _MISSING = object()

from ._objects import SCALARS  # one set for both twins

cdef frozenset _SCALARS = SCALARS
cdef type _NoneType = type(None)

# undo record kinds: the last item of a record in the flat undo list
cdef object _U_KEY = 0  # dict, key, old value or _MISSING, kind
cdef object _U_LIST = 1  # list, saved items, kind
cdef object _U_SET = 2  # set, saved items, kind
cdef object _U_DICT = 3  # dict, saved items, kind
cdef object _U_OBJ = 4  # object, its Kind, its snapshot, kind
cdef object _U_ROOT = 5  # old root, old {id: (object, anchor, Kind)}, old fresh ids, kind

# the base methods whose argument handling and messages are reused as they are
cdef object _list_pop = list.pop
cdef object _list_index = list.index
cdef object _list_insert = list.insert
cdef object _set_discard = set.discard
cdef object _set_difference_update = set.difference_update
cdef object _set_intersection_update = set.intersection_update
cdef object _set_symmetric_difference_update = set.symmetric_difference_update
cdef object _copy = _copy_module.copy
cdef object _deepcopy = _copy_module.deepcopy
cdef object _kind = _objects.kind
cdef object _reachable = _objects.reachable


cdef inline bint _scalar(type t) except -1:
    # `t in SCALARS`, the common types first (all of them are in SCALARS)
    if t is int or t is str or t is float or t is bool or t is _NoneType or t is bytes:
        return True
    return t in _SCALARS


cdef object _outside(Journal j):
    owner = "a server" if j is None else repr(j.owner)
    return RuntimeError(
        f"the state of {owner} was changed outside its callbacks; "
        "change it only in the server's own callbacks"
    )


cdef inline Journal _journal(_Link link):
    cdef Journal j
    if link is None or link.journal == NULL:
        raise _outside(None)
    j = <Journal>link.journal
    if not j.active:
        raise _outside(j)
    return j


@cython.final
cdef class _Link:
    """A journal's handle for its containers (see the module docstring)."""


@cython.final
@cython.no_gc_clear
cdef class Journal:
    """The transaction log of one state tree (one per server keeper)."""

    def __cinit__(self):
        # a usable journal even if __init__ is never run (Journal.__new__)
        self._undo = []
        self._changed = {}
        self._objs = {}
        self._fresh = []
        self._epoch = 1  # a new container has epoch 0: never saved yet
        self._link = _Link.__new__(_Link)
        self._link.journal = <PyObject*>self

    def __dealloc__(self):
        if self._link is not None:
            self._link.journal = NULL  # its containers outlive it: they refuse changes

    def __init__(self, owner=None):
        self.owner = owner  # for error messages
        self.root = None
        self.active = False
        self._undo = []
        # {path: None}: paths changed in the open (or last committed) transaction
        self._changed = {}
        self._epoch += 1  # the twin's fresh _seen set
        # the snapshotted objects of the tree: {id: (object, anchor, kind)}
        self._objs = {}
        self._fresh = []  # ids of the objects registered in this transaction

    def __repr__(self):
        return f"<Journal of {self.owner!r} active={bool(self.active)}>"

    # ------------------------------------------------------------ adoption

    cpdef object adopt_root(self, object value):
        """Make *value* the root of the tree (adopting it) and return what is stored."""
        if self.active:  # a rollback brings the old root back, with its registry
            _cow_push(self._undo, self.root, self._objs, <PyObject*>self._fresh, _U_ROOT)
            self._fresh = []
        self._objs = {}
        self.root = root = _adopt(self, value, (), True)
        self._changed = {(): None}  # the whole state was replaced
        return root

    cpdef object adopt(self, object value, tuple anchor, bint exact):
        """The form of *value* stored in this tree at *anchor*."""
        return _adopt(self, value, anchor, exact)

    # --------------------------------------------------------- transactions

    @cython.always_allow_keywords(False)  # METH_NOARGS: the cheapest call
    cpdef void begin(self) except *:
        """Open a transaction: from now on changes are recorded."""
        if self._changed:
            self._changed = {}
        self.active = True
        self._settled = False
        cdef list undo
        if self._objs:
            undo = self._undo
            for item in self._objs.values():
                obj, _, k = item
                saved = k.save(obj)
                _cow_push(undo, obj, k, <PyObject*>saved, _U_OBJ)

    cpdef void settle(self) except *:
        """Inside a transaction: note snapshotted objects changed so far (once), so ``changes()`` shows them."""
        if self._objs and not self._settled:
            self._readopt()
            self._settled = True

    @cython.always_allow_keywords(False)  # METH_NOARGS: the cheapest call
    cpdef void commit(self) except *:
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
            self._undo = []
            self._epoch += 1

    @cython.always_allow_keywords(False)
    @cython.wraparound(False)
    cpdef void rollback(self) except *:
        """Close the transaction, undoing its changes: every container comes back identical."""
        cdef list undo = self._undo
        cdef Py_ssize_t i
        cdef list saved
        self.active = False
        # newest record first. The list only grows meanwhile (a finalizer that
        # re-enters appends past i, never replayed, as with the twin's
        # reversed()), and records are whole (_cow_push), so every index read
        # below is in range; the reads stay bounds-checked all the same.
        i = PyList_GET_SIZE(undo) - 1
        while 0 <= i < PyList_GET_SIZE(undo):
            kind = undo[i]
            if kind is _U_KEY:
                c, key, old = undo[i - 3], undo[i - 2], undo[i - 1]
                i -= 4
                if old is _MISSING:
                    _cow_dict_pop(c, key, None)
                else:
                    PyDict_SetItem(c, key, old)
                continue
            if kind is _U_OBJ:
                c, k, saved_obj = undo[i - 3], undo[i - 2], undo[i - 1]
                i -= 4
                k.restore(c, saved_obj)
                continue
            if kind is _U_ROOT:
                self.root, self._objs, self._fresh = undo[i - 3], undo[i - 2], undo[i - 1]
                i -= 4
                continue
            c, saved_items = undo[i - 2], undo[i - 1]
            i -= 3
            if kind is _U_LIST:
                PyList_SetSlice(c, 0, PY_SSIZE_T_MAX, saved_items)
            elif kind is _U_SET:
                PySet_Clear(c)
                saved = saved_items
                for item in saved:
                    PySet_Add(c, item)
            else:  # _U_DICT
                PyDict_Clear(c)
                PyDict_Update(c, saved_items)
        if self._fresh:  # registered by the transaction: not in the tree any more
            for key in self._fresh:
                self._objs.pop(key, None)
            self._fresh = []
        self._undo = []
        self._epoch += 1
        self._changed = {}

    cdef int _readopt(self) except -1:
        # Each snapshotted object against what was saved of it (at begin(), or when
        # it entered the tree in this transaction): a difference is a change at its
        # anchor, and then its children that were put there in the transaction
        # are adopted (see the twin).
        cdef dict saved = {}
        cdef list undo = self._undo
        cdef Py_ssize_t i = PyList_GET_SIZE(undo) - 1
        while i >= 0:  # newest first: the oldest snapshot of an object wins
            kind = undo[i]
            if kind is _U_OBJ:
                saved[PyLong_FromVoidPtr(<void*>undo[i - 3])] = undo[i - 1]
            i -= 4 if kind is _U_KEY or kind is _U_OBJ or kind is _U_ROOT else 3
        for item in list(self._objs.values()):
            obj, anchor, k = item
            before = saved.get(PyLong_FromVoidPtr(<void*>obj), _MISSING)
            if before is _MISSING:  # no transaction saw it: nothing changed it
                continue
            if k.readopt(obj, before, _Fixer(self, anchor)):
                self._changed[anchor] = None
        return 0

    cdef int _prune(self) except -1:
        # forget the objects that left the tree: only those under a changed path can
        # have, and each such path's subtree is walked once (the cost of what changed)
        cdef dict changed = self._changed, objs = self._objs
        cdef dict suspects = {}
        cdef tuple anchor
        cdef Py_ssize_t i
        root = self.root
        cdef set heads = {p[0] for p in changed if p}  # the top-level keys of the changed paths
        cdef bint everything = () in changed
        for key, item in objs.items():
            anchor = item[1]
            if not everything and (not anchor or anchor[0] not in heads):
                continue  # nothing on its way from the root changed
            for i in range(len(anchor) + 1):
                if anchor[:i] in changed:
                    if _lookup(root, anchor) is not item[0]:  # not where it was: look inside
                        suspects.setdefault(anchor, []).append(key)
                    break
        for anchor, keys in suspects.items():
            found = set()
            node = _lookup(root, anchor)
            if node is not _DELETED:
                _reachable(node, objs, found)
            for key in keys:
                if key not in found:
                    del objs[key]
        return 0

    def changes(self):
        """The paths changed by the last transaction, shortest first, none covered by another."""
        paths = sorted(self._changed, key=len)
        cdef list kept = []
        cdef set covered = set()
        cdef tuple p
        cdef Py_ssize_t i
        cdef bint hidden
        for p in paths:
            hidden = False
            for i in range(len(p)):
                if p[:i] in covered:
                    hidden = True
                    break
            if hidden:
                continue
            covered.add(p)
            kept.append(p)
        return kept

    def diff(self):
        """``{path: current value or DELETED}`` for the last transaction (values are live)."""
        cdef dict out = {}
        for path in self.changes():
            out[path] = _lookup(self.root, path)
        return out


# ---------------------------------------------------------------- adoption


cdef object _adopt(Journal j, object value, tuple anchor, bint exact):
    """The form of *value* stored in *j*'s tree at *anchor* (``Journal.adopt``)."""
    cdef type t = type(value)
    if _scalar(t):
        return value
    if t is TDict or t is TList or t is TSet:
        # a container already in a tree: the state has value semantics
        return _adopt(j, _detach(value), anchor, exact)
    _cow_enter()
    try:
        if t is dict:
            return _adopt_dict(j, <dict>value, anchor, exact)
        if t is list:
            return _adopt_list(j, <list>value, anchor)
        if t is set:
            return _adopt_set(j, value, anchor)
        if t is tuple:
            return _adopt_tuple(j, <tuple>value, anchor)
        return _adopt_other(j, value, anchor)
    finally:
        Py_LeaveRecursiveCall()


cdef TDict _adopt_dict(Journal j, dict value, tuple anchor, bint exact):
    cdef TDict d = TDict.__new__(TDict)
    d._j = j._link
    d._anchor = anchor
    d._exact = exact
    for k, v in value.items():
        PyDict_SetItem(d, k, _adopt(j, v, _cow_path(anchor, k) if exact else anchor, exact))
    _cow_maybe_untrack(d, anchor)
    return d


cdef TList _adopt_list(Journal j, list value, tuple anchor):
    cdef TList lst = TList.__new__(TList)
    lst._j = j._link
    lst._anchor = anchor
    for v in value:  # bounds-checked each step, like list's iterator
        PyList_Append(lst, _adopt(j, v, anchor, False))
    return lst


cdef TSet _adopt_set(Journal j, object value, tuple anchor):
    cdef TSet s = TSet.__new__(TSet)
    s._j = j._link
    s._anchor = anchor
    _cow_set_merge(s, value)
    return s


cdef object _adopt_tuple(Journal j, tuple value, tuple anchor):
    # the tuple itself unless an item had to change (then a rebuilt one)
    cdef Py_ssize_t i, n = PyTuple_GET_SIZE(value)
    cdef list items = None
    for i in range(n):
        v = value[i]
        a = _adopt(j, v, anchor, False)
        if items is None and a is not v:
            items = list(value[:i])
        if items is not None:
            items.append(a)
    return value if items is None else tuple(items)


cdef object _adopt_other(Journal j, object value, tuple anchor):
    k = _kind(type(value))
    if k is None:
        return value  # immutable, or a handle: kept by reference, not tracked
    if PyLong_FromVoidPtr(<void*>value) in j._objs:
        value = _copy(value)  # already in the tree: value semantics, as for containers
    k.readopt(value, None, _Fixer(j, anchor))
    key = PyLong_FromVoidPtr(<void*>value)
    j._objs[key] = (value, anchor, k)
    if j.active:  # what _readopt() compares with at commit; dropped again by a rollback
        saved = k.save(value)
        _cow_push(j._undo, value, k, <PyObject*>saved, _U_OBJ)
        j._fresh.append(key)
    return value


@cython.final
cdef class _Fixer:
    """The children of a snapshotted object at *anchor* (the twin's ``fix`` closure).

    One put there in the transaction is adopted (copies of what is in a tree
    already); one that was there only if it is not in adopted form.
    """

    cdef Journal j
    cdef tuple anchor

    def __cinit__(self, Journal j, tuple anchor):
        self.j = j
        self.anchor = anchor

    def __call__(self, value, assigned):
        if assigned or _foreign(self.j, value, self.anchor):
            return _adopt(self.j, value, self.anchor, False)
        return value


# ------------------------------------------------------ records (internal)


cdef inline int _key(Journal j, TDict d, object key, object path) except -1:
    # may raise (unhashable/hostile key) before anything is recorded
    return _record_key(j, d, key, _cow_dict_get(d, key, _MISSING), path)


cdef inline int _record_key(Journal j, TDict d, object key, object old, object path) except -1:
    _cow_push(j._undo, d, key, <PyObject*>old, _U_KEY)
    j._changed[path] = None
    return 0


cdef inline object _key_path(TDict d, object key):
    return _cow_path(d._anchor, key) if d._exact else d._anchor


cdef inline int _whole_dict(Journal j, TDict c) except -1:
    if c._epoch != j._epoch:
        _cow_push(j._undo, c, dict(c), NULL, _U_DICT)
        c._epoch = j._epoch
    j._changed[c._anchor] = None
    return 0


cdef inline int _whole_list(Journal j, TList c) except -1:
    if c._epoch != j._epoch:
        _cow_push(j._undo, c, PySequence_List(c), NULL, _U_LIST)
        c._epoch = j._epoch
    j._changed[c._anchor] = None
    return 0


cdef inline int _whole_set(Journal j, TSet c) except -1:
    if c._epoch != j._epoch:
        _cow_push(j._undo, c, PySequence_List(c), NULL, _U_SET)
        c._epoch = j._epoch
    j._changed[c._anchor] = None
    return 0


cdef bint _foreign(Journal j, object value, object anchor) except -1:
    """True if a child *value* of a snapshotted object at *anchor* is not in its adopted form."""
    cdef type t = type(value)
    if _scalar(t):
        return False
    if t is TDict:
        return (<TDict>value)._j is not j._link or (<TDict>value)._anchor is not anchor
    if t is TList:
        return (<TList>value)._j is not j._link or (<TList>value)._anchor is not anchor
    if t is TSet:
        return (<TSet>value)._j is not j._link or (<TSet>value)._anchor is not anchor
    if t is dict or t is list or t is set:
        return True
    if t is tuple:
        for v in <tuple>value:
            if _foreign(j, v, anchor):
                return True
        return False
    if _kind(t) is None:
        return False
    entry = j._objs.get(PyLong_FromVoidPtr(<void*>value))
    return entry is None or entry[0] is not value or entry[1] != anchor


cdef object _lookup(object root, tuple path):
    node = root
    for key in path:
        if type(node) is not TDict or not PyDict_Contains(node, key):
            return _DELETED
        node = _cow_dict_subscript(node, key)
    return node


# --------------------------------------------------------------- containers


@cython.trashcan(True)
cdef class TDict(dict):
    """A dict of a state tree: changes are recorded while a transaction is open."""

    def __cinit__(self):
        self._anchor = ()
        self._exact = True

    def __init__(self, *args, **kwargs):
        _cow_dict_init(self, args, kwargs)
        self._j = None
        self._anchor = ()
        self._exact = True

    def __setitem__(self, key, value):
        cdef Journal j = _journal(self._j)
        # a bad key (hash or comparison) fails before the value enters the tree
        old = _cow_dict_get(self, key, _MISSING)
        path = _key_path(self, key)
        value = _adopt(j, value, path, self._exact)
        _record_key(j, self, key, old, path)
        PyDict_SetItem(self, key, value)

    def __delitem__(self, key):
        cdef Journal j = _journal(self._j)
        _cow_dict_subscript(self, key)  # KeyError before anything is recorded
        _key(j, self, key, _key_path(self, key))
        PyDict_DelItem(self, key)

    def pop(self, key, *default):
        cdef Journal j = _journal(self._j)
        if not PyDict_Contains(self, key):
            if default:
                return default[0]
            raise KeyError(key)
        _key(j, self, key, _key_path(self, key))
        value = _cow_dict_pop(self, key, _MISSING)
        if value is _MISSING:
            raise KeyError(key)
        return value

    def popitem(self):
        cdef Journal j = _journal(self._j)
        if not self:
            msg = "popitem(): dictionary is empty"
            raise KeyError(msg)
        key = next(reversed(self))
        _key(j, self, key, _key_path(self, key))
        value = _cow_dict_pop(self, key, _MISSING)
        if value is _MISSING:
            raise KeyError(key)
        return key, value

    def setdefault(self, key, default=None):
        if PyDict_Contains(self, key):
            return _cow_dict_subscript(self, key)
        PyObject_SetItem(self, key, default)  # through the override, as self[key] = default
        return _cow_dict_subscript(self, key)

    def update(self, *args, **kwargs):
        _tdict_update(self, args, kwargs)

    def __ior__(self, other):
        _tdict_update(self, (other,), {})
        return self

    def clear(self):
        cdef Journal j = _journal(self._j)
        if self:
            if self._exact:
                for key in list(self):
                    _key(j, self, key, _key_path(self, key))
            else:
                _whole_dict(j, self)
            PyDict_Clear(self)

    def __copy__(self):
        return dict(self)

    def __deepcopy__(self, memo):
        return {_deepcopy(k, memo): _deepcopy(v, memo) for k, v in self.items()}

    def __reduce__(self):
        return dict, (dict(self),)


cdef int _tdict_update(TDict self, tuple args, dict kwargs) except -1:
    _journal(self._j)
    for key, value in dict(*args, **kwargs).items():
        PyObject_SetItem(self, key, value)
    return 0


@cython.trashcan(True)
cdef class TList(list):
    """A list of a state tree: saved whole the first time it changes in a transaction."""

    def __cinit__(self):
        self._anchor = ()

    def __init__(self, *args):
        _cow_list_init(self, args)
        self._j = None
        self._anchor = ()

    def __setitem__(self, index, value):
        cdef Journal j = _journal(self._j)
        if PyObject_IsInstance(index, slice):
            value = [_adopt(j, v, self._anchor, False) for v in value]
        else:
            _cow_list_subscript(self, index)  # IndexError before anything is recorded or adopted
            value = _adopt(j, value, self._anchor, False)
        _whole_list(j, self)
        _cow_list_ass_subscript(self, index, value)

    def __delitem__(self, index):
        cdef Journal j = _journal(self._j)
        _cow_list_subscript(self, index)
        _whole_list(j, self)
        _cow_list_del_subscript(self, index)

    def append(self, value):
        cdef Journal j = _journal(self._j)
        value = _adopt(j, value, self._anchor, False)
        _whole_list(j, self)
        PyList_Append(self, value)

    def extend(self, values):
        _tlist_extend(self, values)

    def __iadd__(self, values):
        _tlist_extend(self, values)
        return self

    def __imul__(self, n):
        cdef Journal j = _journal(self._j)
        items = PySequence_List(self) * n
        if n > 1:
            items = [_adopt(j, v, self._anchor, False) for v in items]
        _whole_list(j, self)
        PyList_SetSlice(self, 0, PY_SSIZE_T_MAX, items)
        return self

    def insert(self, index, value):
        cdef Journal j = _journal(self._j)
        value = _adopt(j, value, self._anchor, False)
        _whole_list(j, self)
        _list_insert(self, index, value)

    def pop(self, index=-1):
        cdef Journal j = _journal(self._j)
        if PyList_GET_SIZE(self):  # errors first
            _cow_list_subscript(self, index)
        else:
            _list_pop(self)
        _whole_list(j, self)
        return _list_pop(self, index)

    def remove(self, value):
        cdef Journal j = _journal(self._j)
        i = _list_index(self, value)
        _whole_list(j, self)
        _cow_list_del_subscript(self, i)

    def clear(self):
        _whole_list(_journal(self._j), self)
        _cow_list_clear(self)

    def sort(self, *, key=None, reverse=False):
        cdef Journal j = _journal(self._j)
        ordered = sorted(self, key=key, reverse=reverse)  # a failing comparison changes nothing
        _whole_list(j, self)
        PyList_SetSlice(self, 0, PY_SSIZE_T_MAX, ordered)

    def reverse(self):
        _whole_list(_journal(self._j), self)
        PyList_Reverse(self)

    def __copy__(self):
        return PySequence_List(self)

    def __deepcopy__(self, memo):
        return [_deepcopy(v, memo) for v in self]

    def __reduce__(self):
        return list, (PySequence_List(self),)


cdef int _tlist_extend(TList self, object values) except -1:
    cdef Journal j = _journal(self._j)
    items = [_adopt(j, v, self._anchor, False) for v in values]
    _whole_list(j, self)
    cdef Py_ssize_t n = PyList_GET_SIZE(self)
    PyList_SetSlice(self, n, n, items)
    return 0


cdef class TSet(set):
    """A set of a state tree: saved whole the first time it changes in a transaction."""

    def __cinit__(self):
        self._anchor = ()

    def __init__(self, *args):
        _cow_set_init(self, args)
        self._j = None
        self._anchor = ()

    def __repr__(self):
        # set's repr names the type by tp_name, dotted for a compiled class: the twin's is "TSet"
        if not self:
            return "TSet()"
        if Py_ReprEnter(self):
            return "TSet(...)"
        try:
            r = repr(PySequence_List(self))
            return f"TSet({{{r[1:-1]}}})"
        finally:
            Py_ReprLeave(self)

    def add(self, value):
        cdef Journal j = _journal(self._j)
        PyObject_Hash(value)  # TypeError before anything is recorded
        _whole_set(j, self)
        PySet_Add(self, value)

    def discard(self, value):
        cdef Journal j = _journal(self._j)
        if PySequence_Contains(self, value):
            _whole_set(j, self)
            _set_discard(self, value)

    def remove(self, value):
        cdef Journal j = _journal(self._j)
        if not PySequence_Contains(self, value):
            raise KeyError(value)
        _whole_set(j, self)
        _set_discard(self, value)

    def pop(self):
        cdef Journal j = _journal(self._j)
        if not self:
            msg = "pop from an empty set"
            raise KeyError(msg)
        _whole_set(j, self)
        return PySet_Pop(self)

    def clear(self):
        _whole_set(_journal(self._j), self)
        PySet_Clear(self)

    def update(self, *others):
        _tset_update(self, others)

    def difference_update(self, *others):
        _tset_difference_update(self, others)

    def intersection_update(self, *others):
        _tset_intersection_update(self, others)

    def symmetric_difference_update(self, other):
        _tset_symmetric_difference_update(self, other)

    def __ior__(self, other):
        _tset_update(self, (other,))
        return self

    def __iand__(self, other):
        _tset_intersection_update(self, (other,))
        return self

    def __isub__(self, other):
        _tset_difference_update(self, (other,))
        return self

    def __ixor__(self, other):
        _tset_symmetric_difference_update(self, other)
        return self

    def __copy__(self):
        return PySet_New(self)

    def __deepcopy__(self, memo):
        return {_deepcopy(v, memo) for v in self}

    def __reduce__(self):
        return set, (PySet_New(self),)


cdef int _tset_update(TSet self, tuple others) except -1:
    cdef Journal j = _journal(self._j)
    items = set().union(*others)
    _whole_set(j, self)
    _cow_set_merge(self, items)
    return 0


cdef int _tset_difference_update(TSet self, tuple others) except -1:
    cdef Journal j = _journal(self._j)
    items = set().union(*others)
    _whole_set(j, self)
    _set_difference_update(self, items)
    return 0


cdef int _tset_intersection_update(TSet self, tuple others) except -1:
    cdef Journal j = _journal(self._j)
    keep = PySet_New(self).intersection(*others)
    _whole_set(j, self)
    _set_intersection_update(self, keep)
    return 0


cdef int _tset_symmetric_difference_update(TSet self, object other) except -1:
    cdef Journal j = _journal(self._j)
    items = PySet_New(other)
    _whole_set(j, self)
    _set_symmetric_difference_update(self, items)
    return 0


# ------------------------------------------------------------------ helpers


def is_tracked(value):
    """True for the tracked containers of a state tree."""
    cdef type t = type(value)
    return t is TDict or t is TList or t is TSet


def detach(value):
    """A plain copy of *value* with no tracked container left inside (for replies, listeners).

    Immutable values come back as they are; only tracked parts are copied.
    """
    return _detach(value)


cdef object _detach(object value):
    cdef type t = type(value)
    if _scalar(t):
        return value
    if t is TSet:
        return PySet_New(value)
    _cow_enter()
    try:
        if t is TDict or t is dict:
            return {k: _detach(v) for k, v in (<dict>value).items()}
        if t is TList or t is list:
            return [_detach(v) for v in <list>value]
        if t is tuple:
            return _detach_tuple(<tuple>value)
        k = _kind(t)
        return value if k is None else k.detach(value, detach)
    finally:
        Py_LeaveRecursiveCall()


cdef object _detach_tuple(tuple value):
    cdef Py_ssize_t i, n = PyTuple_GET_SIZE(value)
    cdef list items = None
    for i in range(n):
        v = value[i]
        d = _detach(v)
        if items is None and d is not v:
            items = list(value[:i])
        if items is not None:
            items.append(d)
    return value if items is None else tuple(items)


def apply(diff, old):
    """Replay *diff* on the plain value *old* (not changed) and return the new value."""
    if () in diff:
        return _detach(diff[()])
    new = _detach(old)
    for path, value in sorted(diff.items(), key=lambda item: len(item[0])):
        node = new
        for key in path[:-1]:
            node = node[key]
        if value is _DELETED:
            node.pop(path[-1], None)
        else:
            node[path[-1]] = _detach(value)
    return new
