# cython: language_level=3, auto_pickle=False, autotestdict=False
"""Compiled ``_fastcore._ring``: the mailbox ring buffer (twin: ``_ring_py``).

Layout: a power-of-two list of slots, ``_head`` indexes the oldest item and
``_size`` counts items; slot ``(head + i) & mask`` holds the i-th oldest.
Invariants: ``0 <= size <= len(slots) == mask + 1``; free slots hold ``None``
so the ring never keeps a popped item alive. Complexity: push/push_front/pop/
peek O(1) amortised (the ring doubles when full and never shrinks below its
capacity hint); drain(n) O(n).

A Python list (not a C array) holds the slots so the cyclic GC sees the items:
a mailbox message that refers back to its server must stay collectable. The
list costs nothing measurable next to the method call (benches/bench_fastcore.py).

Every list index below is masked with ``_mask == len(_slots) - 1`` read together
with ``_slots``, so it is in range: bounds and wraparound checks are off.
Allocations can run the cyclic GC, hence finalizers that may touch this ring:
state is read after each allocation, never cached across one.
"""

cimport cython

cdef extern from *:
    """
    /* Move the reference held by list slot i to the caller; the slot gets None. */
    static CYTHON_INLINE PyObject *_ring_take(PyObject *slots, Py_ssize_t i) {
        PyObject *item = PyList_GET_ITEM(slots, i);
        Py_INCREF(Py_None);
        PyList_SET_ITEM(slots, i, Py_None);
        return item;
    }
    """
    object _ring_take(list slots, Py_ssize_t i)

_EMPTY = "pop from an empty ring"


@cython.final
cdef class Ring:
    """An unbounded FIFO of Python objects (bounds are the mailbox's business)."""

    def __cinit__(self):
        # a usable empty ring even if __init__ is never run (Ring.__new__)
        self._slots = [None]
        self._head = 0
        self._size = 0
        self._mask = 0

    def __init__(self, capacity=8):
        if type(capacity) is not int or capacity < 1:
            msg = f"capacity must be a positive int, got {capacity!r}"
            raise ValueError(msg)
        n = 1
        while n < capacity:
            n <<= 1
        slots = [None] * n  # same OverflowError/MemoryError as the twin
        self._slots = slots
        self._head = 0
        self._size = 0
        self._mask = n - 1

    @cython.boundscheck(False)
    @cython.wraparound(False)
    cdef int _grow(self) except -1:
        cdef list old, slots
        cdef Py_ssize_t head, size, mask, n, i
        while True:
            n = (self._mask + 1) * 2
            slots = [None] * n
            if n == (self._mask + 1) * 2:  # no finalizer grew us meanwhile
                break
        old, head, size, mask = self._slots, self._head, self._size, self._mask
        for i in range(size):
            slots[i] = old[(head + i) & mask]
        self._slots = slots
        self._head = 0
        self._mask = n - 1
        return 0

    @cython.boundscheck(False)
    @cython.wraparound(False)
    cpdef void push(self, object item) except *:
        """Append *item* at the back."""
        if self._size == self._mask + 1:
            self._grow()
        self._slots[(self._head + self._size) & self._mask] = item
        self._size += 1

    @cython.boundscheck(False)
    @cython.wraparound(False)
    cpdef void push_front(self, object item) except *:
        """Put *item* at the front, to be popped next."""
        if self._size == self._mask + 1:
            self._grow()
        self._head = (self._head - 1) & self._mask
        self._slots[self._head] = item
        self._size += 1

    cpdef object pop(self):
        """Remove and return the oldest item; `IndexError` when empty."""
        if self._size == 0:
            raise IndexError(_EMPTY)
        cdef Py_ssize_t head = self._head
        self._head = (head + 1) & self._mask
        self._size -= 1
        return _ring_take(self._slots, head)

    @cython.boundscheck(False)
    @cython.wraparound(False)
    cpdef object peek(self):
        """Return the oldest item without removing it; `IndexError` when empty."""
        if self._size == 0:
            msg = "peek at an empty ring"
            raise IndexError(msg)
        return self._slots[self._head]

    @cython.boundscheck(False)
    @cython.wraparound(False)
    def drain(self, n=-1):
        """Remove and return up to *n* oldest items (all when *n* < 0), oldest first."""
        if type(n) is not int:
            msg = f"n must be an int, got {n!r}"
            raise TypeError(msg)
        cdef Py_ssize_t count = self._size if n < 0 or n > self._size else n
        cdef list out = [None] * count
        cdef Py_ssize_t i
        if count > self._size:  # a finalizer run by the allocation popped some
            count = self._size
            del out[count:]
        cdef list slots = self._slots
        cdef Py_ssize_t head = self._head, mask = self._mask
        for i in range(count):
            out[i] = _ring_take(slots, (head + i) & mask)
        self._head = (head + count) & mask
        self._size -= count
        return out

    def clear(self):
        """Drop every item."""
        self.drain()

    def __len__(self):
        return self._size

    def __bool__(self):
        return self._size != 0

    @cython.boundscheck(False)
    @cython.wraparound(False)
    def __iter__(self):
        """Iterate over a snapshot, oldest first."""
        cdef list slots = self._slots
        cdef Py_ssize_t head = self._head, mask = self._mask, size = self._size, i
        return iter([slots[(head + i) & mask] for i in range(size)])

    def __repr__(self):
        return f"Ring(len={self._size})"
