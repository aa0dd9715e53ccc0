# cython: boundscheck=False, wraparound=False
"""Records (msgspec Structs) encoded as ClickHouse RowBinary, in one compiled loop per block.

The writer's blocks are ~1 kB a row, most of it the event's `data` JSON: RowBinary carries it as
its UTF-8 bytes after a length, which the engine copies, where a text format would escape every
quote in it for the engine to unescape. Each column is read from its record (a Struct's field
from its slot, any other record's by attribute name) and written by
its ClickHouse type (`column_kind`); the types are the tables' own (query/schema.py), so a block
reads back exactly as the records were:

- UUID: two little-endian 64-bit halves, the high half first.
- DateTime64(6): microseconds since the epoch, a little-endian Int64. An aware datetime is
  converted to UTC; a naive one is taken as UTC (the column's zone).
- String, LowCardinality(String): a LEB128 length, then the UTF-8 bytes.
- UInt64: 8 bytes little-endian. Bool: one byte.
- Nullable(T): a byte (1: NULL, 0: a value follows), then T.
"""

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize
from cpython.datetime cimport (
    PyDateTime_DATE_GET_HOUR,
    PyDateTime_DATE_GET_MICROSECOND,
    PyDateTime_DATE_GET_MINUTE,
    PyDateTime_DATE_GET_SECOND,
    PyDateTime_GET_DAY,
    PyDateTime_GET_MONTH,
    PyDateTime_GET_YEAR,
    datetime,
    import_datetime,
)
from cpython.mem cimport PyMem_Free, PyMem_Malloc
from cpython.object cimport PyObject
from cpython.ref cimport Py_INCREF, Py_XDECREF
from libc.stdint cimport int64_t, uint8_t, uint64_t
from libc.string cimport memcpy

from mappers.uuidbits cimport uuid_halves

import datetime as _datetime_module
import types as _types
import uuid as _uuid_module

cdef type _MemberDescriptor = _types.MemberDescriptorType

import_datetime()

cdef extern from "structmember.h":
    ctypedef struct PyMemberDef:
        int type
        Py_ssize_t offset
    int T_OBJECT_EX

cdef extern from "Python.h":
    int _PyBytes_Resize(PyObject** block, Py_ssize_t size) except -1
    ctypedef struct PyMemberDescrObject:
        PyMemberDef* d_member
    const char* PyUnicode_AsUTF8AndSize(object unicode, Py_ssize_t* size) except NULL
    unsigned long long PyLong_AsUnsignedLongLong(object value) except? <unsigned long long>-1

# The kinds of column a block can hold; `column_kind` names them by ClickHouse type.
cdef enum:
    K_UUID = 0
    K_STRING = 1
    K_DATETIME64_6 = 2
    K_UINT64 = 3
    K_BOOL = 4
    NULLABLE = 8

_KINDS = {
    "UUID": K_UUID,
    "String": K_STRING,
    "LowCardinality(String)": K_STRING,
    "DateTime64(6, 'UTC')": K_DATETIME64_6,
    "UInt64": K_UINT64,
    "Bool": K_BOOL,
}

cdef object _UUID = _uuid_module.UUID
cdef Py_ssize_t _UUID_INT_SLOT  # where a UUID keeps its `int` (set below, by `_slots`)
cdef object _UTC = _datetime_module.timezone.utc
cdef object _EPOCH = _datetime_module.datetime(1970, 1, 1, tzinfo=_UTC)


def column_kind(str clickhouse_type):
    """How a column of this ClickHouse type is written (ValueError for a type it cannot write)."""
    nullable = clickhouse_type.startswith("Nullable(") and clickhouse_type.endswith(")")
    inner = clickhouse_type[len("Nullable("):len(clickhouse_type) - 1] if nullable else clickhouse_type
    if inner not in _KINDS:
        raise ValueError(f"RowBinary: no encoding for ClickHouse type {clickhouse_type}")
    return _KINDS[inner] | (NULLABLE if nullable else 0)


cdef class _Buffer:
    """The block, written straight into the bytes object it is returned as (`finish`): a
    40,000-row block is ~30 MB, and copying it out of a buffer of its own would touch as much
    fresh memory again, page by page."""
    cdef PyObject* block  # owned: the only reference until `finish`
    cdef char* data
    cdef Py_ssize_t size
    cdef Py_ssize_t capacity

    def __cinit__(self, Py_ssize_t capacity):
        self.capacity = max(capacity, 64)
        self.size = 0
        block = PyBytes_FromStringAndSize(NULL, self.capacity)
        Py_INCREF(block)
        self.block = <PyObject*>block
        self.data = PyBytes_AS_STRING(block)

    def __dealloc__(self):
        Py_XDECREF(self.block)

    cdef inline char* reserve(self, Py_ssize_t count) except NULL:
        cdef Py_ssize_t needed = self.size + count
        cdef Py_ssize_t capacity
        if needed > self.capacity:
            capacity = max(needed, self.capacity * 2)
            _PyBytes_Resize(&self.block, capacity)  # on failure it frees the block, sets NULL and raises
            self.data = PyBytes_AS_STRING(<object>self.block)
            self.capacity = capacity
        return self.data + self.size

    cdef object finish(self):
        """The block, cut to what was written (the buffer is done with)."""
        _PyBytes_Resize(&self.block, self.size)
        block = <object>self.block
        Py_XDECREF(self.block)
        self.block = NULL
        return block


cdef inline void _put_u64(char* out, uint64_t value) noexcept:
    cdef int index
    for index in range(8):
        out[index] = <char>(value & 0xFF)
        value >>= 8


cdef int _write_uuid(_Buffer buffer, object value) except -1:
    if type(value) is not _UUID:
        raise TypeError(f"RowBinary: expected a UUID, got {type(value).__name__}")
    # its `int` read from the slot (a UUID always has one set); the high half goes first
    cdef PyObject* held = (<PyObject**>((<char*><PyObject*>value) + _UUID_INT_SLOT))[0]
    cdef object number = <object>held if held != NULL else value.int
    cdef uint64_t low, high
    uuid_halves(number, &low, &high)
    cdef char* out = buffer.reserve(16)
    _put_u64(out, high)
    _put_u64(out + 8, low)
    buffer.size += 16
    return 0


cdef int _write_string(_Buffer buffer, object value) except -1:
    if type(value) is not str:
        raise TypeError(f"RowBinary: expected a str, got {type(value).__name__}")
    cdef Py_ssize_t length
    cdef const char* text = PyUnicode_AsUTF8AndSize(value, &length)
    cdef char* out = buffer.reserve(length + 10)
    cdef uint64_t remaining = <uint64_t>length
    cdef Py_ssize_t written = 0
    while remaining >= 0x80:
        out[written] = <char>((remaining & 0x7F) | 0x80)
        remaining >>= 7
        written += 1
    out[written] = <char>remaining
    written += 1
    memcpy(out + written, text, length)
    buffer.size += written + length
    return 0


cdef inline int64_t _days_from_civil(int64_t year, int64_t month, int64_t day) noexcept:
    # Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
    year -= month <= 2
    cdef int64_t era = (year if year >= 0 else year - 399) // 400
    cdef int64_t year_of_era = year - era * 400
    cdef int64_t day_of_year = (153 * (month + (-3 if month > 2 else 9)) + 2) // 5 + day - 1
    cdef int64_t day_of_era = year_of_era * 365 + year_of_era // 4 - year_of_era // 100 + day_of_year
    return era * 146097 + day_of_era - 719468


cdef int _write_datetime(_Buffer buffer, object value) except -1:
    if not isinstance(value, datetime):
        raise TypeError(f"RowBinary: expected a datetime, got {type(value).__name__}")
    cdef int64_t micros
    if value.tzinfo is not None and value.tzinfo is not _UTC:
        micros = (value - _EPOCH) // _datetime_module.timedelta(microseconds=1)
    else:
        micros = ((_days_from_civil(PyDateTime_GET_YEAR(value), PyDateTime_GET_MONTH(value),
                                    PyDateTime_GET_DAY(value)) * 86400
                   + PyDateTime_DATE_GET_HOUR(value) * 3600 + PyDateTime_DATE_GET_MINUTE(value) * 60
                   + PyDateTime_DATE_GET_SECOND(value)) * 1000000
                  + PyDateTime_DATE_GET_MICROSECOND(value))
    _put_u64(buffer.reserve(8), <uint64_t>micros)
    buffer.size += 8
    return 0


cdef int _write_uint64(_Buffer buffer, object value) except -1:
    if type(value) is not int:
        raise TypeError(f"RowBinary: expected an int, got {type(value).__name__}")
    _put_u64(buffer.reserve(8), PyLong_AsUnsignedLongLong(value))
    buffer.size += 8
    return 0


cdef int _write_bool(_Buffer buffer, object value) except -1:
    if type(value) is not bool:
        raise TypeError(f"RowBinary: expected a bool, got {type(value).__name__}")
    buffer.reserve(1)[0] = 1 if value is True else 0
    buffer.size += 1
    return 0


def encode_rows(list records, tuple columns, tuple kinds):
    """`records` as one RowBinary block of `columns` (attribute names, in order), each written as
    its kind (`column_kind`)."""
    cdef Py_ssize_t count = len(columns)
    if len(kinds) != count:
        raise ValueError("RowBinary: one kind per column")
    cdef int* kind_of = <int*>PyMem_Malloc(max(count, 1) * sizeof(int))
    if kind_of == NULL:
        raise MemoryError()
    cdef Py_ssize_t* slot_of = <Py_ssize_t*>PyMem_Malloc(max(count, 1) * sizeof(Py_ssize_t))
    if slot_of == NULL:
        PyMem_Free(kind_of)
        raise MemoryError()
    cdef _Buffer buffer = _Buffer(len(records) * 256)
    cdef Py_ssize_t index
    cdef int kind
    cdef object record, value
    cdef type slotted = None
    cdef bint by_slot
    cdef PyObject* held
    try:
        for index in range(count):
            kind_of[index] = kinds[index]
        if records:
            slotted = type(records[0])
            if not _slots(slotted, columns, slot_of):
                slotted = None
        for record in records:
            by_slot = type(record) is slotted
            for index in range(count):
                if by_slot:
                    # the field's slot, read as its member descriptor reads it (a Struct's
                    # fields are always set)
                    held = (<PyObject**>((<char*><PyObject*>record) + slot_of[index]))[0]
                    value = <object>held if held != NULL else getattr(record, <str>columns[index])
                else:
                    value = getattr(record, <str>columns[index])
                kind = kind_of[index]
                if kind & NULLABLE:
                    buffer.reserve(1)[0] = 1 if value is None else 0
                    buffer.size += 1
                    if value is None:
                        continue
                    kind &= ~NULLABLE
                if kind == K_UUID:
                    _write_uuid(buffer, value)
                elif kind == K_STRING:
                    _write_string(buffer, value)
                elif kind == K_DATETIME64_6:
                    _write_datetime(buffer, value)
                elif kind == K_UINT64:
                    _write_uint64(buffer, value)
                elif kind == K_BOOL:
                    _write_bool(buffer, value)
                else:
                    raise ValueError(f"RowBinary: unknown column kind {kind}")
        return buffer.finish()
    finally:
        PyMem_Free(kind_of)
        PyMem_Free(slot_of)


cdef bint _slots(type record_type, tuple columns, Py_ssize_t* slot_of) except -1:
    """Whether every column is an object slot of `record_type` (a msgspec Struct's fields are),
    read by its member descriptor; then their offsets are in `slot_of`. Reading a slot skips
    the attribute lookup by name, ~40% of the loop when `getattr` does it."""
    cdef Py_ssize_t index
    cdef PyMemberDef* member
    for index in range(len(columns)):
        descriptor = getattr(record_type, <str>columns[index], None)
        if type(descriptor) is not _MemberDescriptor:
            return False
        member = (<PyMemberDescrObject*><PyObject*>descriptor).d_member
        if member.type != T_OBJECT_EX:
            return False
        slot_of[index] = member.offset
    return True


if not _slots(_UUID, ("int",), &_UUID_INT_SLOT):  # uuid.UUID has __slots__
    raise ImportError("RowBinary: uuid.UUID keeps its int elsewhere than in a slot")
