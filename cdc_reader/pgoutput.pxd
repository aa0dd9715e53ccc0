# The C-level interface of the pgoutput decoder (pgoutput.pyx), for the compiled assembler
# (assembler.pyx): the message classes' fields and the decoder's entry point from a pointer.

from libc.stdint cimport int16_t, uint8_t, uint32_t, uint64_t


cdef class TupleData:
    cdef readonly bytes kinds
    cdef readonly tuple values


cdef class RelationColumn:
    cdef readonly bint is_key
    cdef readonly str name
    cdef readonly object type_oid
    cdef readonly object type_modifier


cdef class Begin:
    cdef readonly object final_lsn
    cdef readonly object commit_time
    cdef readonly object xid


cdef class Commit:
    cdef readonly object flags
    cdef readonly object commit_lsn
    cdef readonly object end_lsn
    cdef readonly object commit_time


cdef class Origin:
    cdef readonly object commit_lsn
    cdef readonly str name


cdef class Relation:
    cdef readonly object oid
    cdef readonly str namespace
    cdef readonly str name
    cdef readonly str replica_identity
    cdef readonly tuple columns


cdef class Type:
    cdef readonly object oid
    cdef readonly str namespace
    cdef readonly str name


cdef class Insert:
    cdef readonly object relation_oid
    cdef readonly TupleData new


cdef class Update:
    cdef readonly object relation_oid
    cdef readonly object old_kind
    cdef readonly object old
    cdef readonly TupleData new


cdef class Delete:
    cdef readonly object relation_oid
    cdef readonly str old_kind
    cdef readonly TupleData old


cdef class Truncate:
    cdef readonly object options
    cdef readonly tuple relation_oids


cdef class Message:
    cdef readonly bint transactional
    cdef readonly object lsn
    cdef readonly str prefix
    cdef readonly bytes content


cdef class _Reader:
    cdef const uint8_t* data
    cdef Py_ssize_t size
    cdef Py_ssize_t pos

    cdef int need(self, Py_ssize_t count) except -1
    cdef uint8_t byte(self) except? 255
    cdef uint32_t u32(self) except? 0xFFFFFFFF
    cdef uint64_t u64(self) except? 0xFFFFFFFFFFFFFFFF
    cdef int16_t i16(self) except? -1
    cdef str string(self)
    cdef object timestamp(self)
    cdef TupleData tuple_data(self)
    cdef int expect(self, uint8_t marker) except -1


cdef class Decoder:
    cdef readonly int protocol_version
    cdef _Reader reader

    cdef object decode_at(self, object payload, Py_ssize_t start)
    cdef object _decode(self, const uint8_t* data, Py_ssize_t size)
    cdef Begin _begin(self, _Reader reader)
    cdef Commit _commit(self, _Reader reader)
    cdef Relation _relation(self, _Reader reader)
    cdef Insert _insert(self, _Reader reader)
    cdef Update _update(self, _Reader reader)
    cdef Delete _delete(self, _Reader reader)
    cdef Truncate _truncate(self, _Reader reader)
    cdef Message _message(self, _Reader reader)
