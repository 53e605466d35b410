# The C-level contract other .pyx modules cimport (see _table.pyx for the layout).
cimport cython


@cython.final
cdef class TableCore:
    cdef readonly str kind
    cdef int _code
    cdef dict _data
    cdef list _cells
    cdef Py_ssize_t _size
    cdef object _gvar
    cdef object _gowner
    cdef object _grefuse
    cdef int _guard(self, str op) except -1
    cpdef void set_write_guard(self, object var, object owner, object refuse) except *
    cdef int _insert_cell(self, object key, object value) except -1
    cdef list _remove_cell(self, object key)
    cdef int _need_ordered(self, str name) except -1
    cpdef void insert(self, object key, object value) except *
    cpdef void insert_many(self, object pairs) except *
    cpdef bint insert_new(self, object key, object value) except -1
    cpdef void delete(self, object key) except *
    cpdef void delete_object(self, object key, object value) except *
    cpdef list take(self, object key)
    cpdef void clear(self) except *
    cpdef object update_counter(self, object key, object incr, object default=*)
    cpdef list lookup_all(self, object key)
    cpdef object lookup(self, object key, object default=*)
    cpdef object getitem(self, object key)
    cpdef bint contains(self, object key) except -1
    cpdef list select(self, object predicate, object limit=*)
    cpdef list keys(self)
    cpdef list items(self)
    cpdef object first(self)
    cpdef object last(self)
    cpdef object next(self, object key)
    cpdef object prev(self, object key)
    cpdef list range(self, object lo, object hi)
