# The C-level contract other .pyx modules cimport (see _cow.pyx for the layout).
cimport cython
from cpython.object cimport PyObject


@cython.final
cdef class _Link:
    cdef PyObject *journal  # borrowed: the Journal sets it to NULL when it goes


@cython.final
cdef class Journal:
    cdef public object owner
    cdef public object root
    cdef public bint active
    cdef list _undo
    cdef readonly dict _changed
    cdef readonly dict _objs
    cdef list _fresh
    cdef unsigned long long _epoch
    cdef bint _settled
    cdef _Link _link  # what its containers hold: no reference cycle through the journal
    cpdef object adopt_root(self, object value)
    cpdef object adopt(self, object value, tuple anchor, bint exact)
    cpdef void begin(self) except *
    cpdef void settle(self) except *
    cpdef void commit(self) except *
    cpdef void rollback(self) except *
    cdef int _readopt(self) except -1
    cdef int _prune(self) except -1


cdef class TDict(dict):
    cdef _Link _j
    cdef tuple _anchor
    cdef bint _exact
    cdef unsigned long long _epoch


cdef class TList(list):
    cdef _Link _j
    cdef tuple _anchor
    cdef unsigned long long _epoch


cdef class TSet(set):
    cdef _Link _j
    cdef tuple _anchor
    cdef unsigned long long _epoch


cdef object _detach(object value)
