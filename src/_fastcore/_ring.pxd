# The C-level contract other .pyx modules cimport (see _ring.pyx for the layout).
cimport cython


@cython.final
cdef class Ring:
    cdef list _slots
    cdef Py_ssize_t _head, _size, _mask
    cdef int _grow(self) except -1
    cpdef void push(self, object item) except *
    cpdef void push_front(self, object item) except *
    cpdef object pop(self)
    cpdef object peek(self)
