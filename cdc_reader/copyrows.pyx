# cython: language_level=3, boundscheck=False, wraparound=False
"""The rows of a binary `COPY ... TO STDOUT`, taken straight from the connection and loaded by
psycopg's binary loaders, a batch per call: the snapshot reader's inner loop (cdc_reader/snapshot.py).

psycopg's `Copy.rows()` runs a Python generator and the connection's wait loop for every row;
with one row per CopyData message that took the snapshot's reader threads ~5 us a row, time the
mapping thread waited for, as they share the interpreter's lock. Here one compiled loop asks the
connection for each message (`PGconn.get_copy_data`, non-blocking), splits the tuple and hands
its fields to `Transformer.load_sequence`: the same loaders, so a row is the dict `SELECT *` gives.

The COPY itself is started and finished by psycopg (`cursor.copy()`, then `Copy.read()` once the
trailer is seen: it takes the command's result and leaves the connection ready). When the data
ends without its trailer, the command failed: `copy_failure` gives its error, as psycopg would
have raised it.
"""

from cpython.buffer cimport PyBUF_SIMPLE, PyBuffer_Release, PyObject_GetBuffer
from cpython.bytes cimport PyBytes_FromStringAndSize
from cpython.dict cimport PyDict_SetItem
from cpython.list cimport PyList_Append
from cpython.tuple cimport PyTuple_GET_ITEM, PyTuple_GET_SIZE, PyTuple_New, PyTuple_SET_ITEM
from cpython.ref cimport Py_INCREF
from libc.stdint cimport int16_t, int32_t, uint8_t, uint16_t, uint32_t
from libc.string cimport memcmp

import select

import psycopg
from psycopg import DataError
from psycopg.adapt import Transformer
from psycopg.pq import DiagnosticField, Format

cdef bytes _SIGNATURE = b"PGCOPY\n\xff\r\n\x00"
cdef Py_ssize_t _HEADER = 11 + 4 + 4  # signature, flags, header extension length


cdef inline int16_t _int16(const uint8_t* at) noexcept:
    return <int16_t>((<uint16_t>at[0] << 8) | at[1])


cdef inline int32_t _int32(const uint8_t* at) noexcept:
    return <int32_t>((<uint32_t>at[0] << 24) | (<uint32_t>at[1] << 16) | (<uint32_t>at[2] << 8) | at[3])


cdef class CopyRows:
    """Reads the rows of the binary COPY the connection `conn` has just started (psycopg's
    `cursor.copy()`), whose columns are `columns` of types `type_oids` (loaded as the
    connection's adapters load them in binary)."""

    cdef object _get_copy_data, _consume_input, _readable, _load_sequence
    cdef tuple _columns
    cdef Py_ssize_t _count
    cdef bint _started
    cdef readonly bint ended  # the trailer came: `Copy.read()` now finishes the command
    cdef readonly bint failed  # the data ended without its trailer: the command failed

    def __init__(self, conn, tuple columns, type_oids):
        pgconn = conn.pgconn
        self._get_copy_data = pgconn.get_copy_data
        self._consume_input = pgconn.consume_input
        # poll(), not select(): select() cannot watch a descriptor past 1023 (FD_SETSIZE), which
        # a process holding the store's files and many connections reaches.
        poller = select.poll()
        poller.register(pgconn.socket, select.POLLIN)
        self._readable = poller.poll
        transformer = Transformer(conn)
        transformer.set_loader_types(list(type_oids), Format.BINARY)
        self._load_sequence = transformer.load_sequence
        self._columns = columns
        self._count = PyTuple_GET_SIZE(columns)
        self._started = False
        self.ended = False
        self.failed = False

    def read(self, Py_ssize_t limit):
        """Up to `limit` rows (dicts); fewer only at the end (then `ended` or `failed` is set)."""
        cdef list rows = []
        cdef object received, values
        cdef Py_ssize_t size
        while len(rows) < limit and not (self.ended or self.failed):
            received = self._get_copy_data(1)
            size = received[0]
            if size == 0:  # nothing complete yet: wait for the socket (the lock released)
                self._readable()
                self._consume_input()
                continue
            if size < 0:
                self.failed = True
                break
            values = self._split(received[1])
            if values is None:
                self.ended = True
                break
            PyList_Append(rows, self._row(self._load_sequence(values)))
        return rows

    cdef dict _row(self, object loaded):
        if type(loaded) is not tuple:
            loaded = tuple(loaded)
        cdef dict row = {}
        cdef Py_ssize_t index
        for index in range(self._count):
            PyDict_SetItem(row, <object>PyTuple_GET_ITEM(self._columns, index),
                           <object>PyTuple_GET_ITEM(loaded, index))
        return row

    cdef object _split(self, object data):
        """The fields of one tuple (bytes, None for NULL); None for the trailer."""
        cdef Py_buffer view
        cdef const uint8_t* at
        cdef const uint8_t* end
        cdef Py_ssize_t index, fields
        cdef int32_t length
        cdef object value
        PyObject_GetBuffer(data, &view, PyBUF_SIMPLE)
        try:
            at = <const uint8_t*>view.buf
            end = at + view.len
            if not self._started:
                if view.len < _HEADER or memcmp(at, <const char*>_SIGNATURE, 11) != 0:
                    raise DataError("binary COPY data does not start with its signature")
                length = _int32(at + 15)
                if length < 0 or _HEADER + length > view.len:
                    raise DataError("binary COPY header is truncated")
                at += _HEADER + length
                self._started = True
            if end - at < 2:
                raise DataError("binary COPY tuple is truncated")
            fields = _int16(at)
            at += 2
            if fields == -1:
                return None
            if fields != self._count:
                raise DataError(f"binary COPY tuple has {fields} fields for {self._count} columns")
            values = PyTuple_New(fields)
            for index in range(fields):
                if end - at < 4:
                    raise DataError("binary COPY tuple is truncated")
                length = _int32(at)
                at += 4
                if length < 0:
                    value = None
                else:
                    if end - at < length:
                        raise DataError("binary COPY tuple is truncated")
                    value = PyBytes_FromStringAndSize(<const char*>at, length)
                    at += length
                Py_INCREF(value)
                PyTuple_SET_ITEM(values, index, value)
            return values
        finally:
            PyBuffer_Release(&view)


def copy_failure(conn, doing):
    """The error of the COPY whose data ended early on `conn` (`CopyRows.failed`), its message
    prefixed with what was being done."""
    pgconn = conn.pgconn
    result = pgconn.get_result()
    while pgconn.get_result() is not None:  # the command is over: the connection is idle again
        pass
    primary = result.error_field(DiagnosticField.MESSAGE_PRIMARY) if result is not None else None
    message = primary.decode(errors="replace") if primary else ""
    sqlstate = result.error_field(DiagnosticField.SQLSTATE) if result is not None else None
    try:
        error_class = psycopg.errors.lookup(sqlstate.decode()) if sqlstate else psycopg.OperationalError
    except KeyError:
        error_class = psycopg.OperationalError
    return error_class(f"{doing} failed: {message or 'the COPY ended early'}")
