# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""Sans-I/O decoder for PostgreSQL's pgoutput logical replication messages (protocol 1-4),
compiled with Cython by the package's build (setup.py; `./dev` rebuilds it when this changes).

`Decoder(protocol_version).decode(payload)` turns one message (the bytes after the XLogData
header, or one row of `pg_logical_slot_peek_binary_changes`) into a frozen message value whose
column values are the bytes the server sent (the assembler loads them with psycopg's loaders).
The session never enables `streaming` or `two_phase`, so their messages raise
`UnsupportedMessageError`. Format: PostgreSQL's "Logical Replication Message Formats".
"""

from cpython.buffer cimport PyBUF_SIMPLE, PyBuffer_Release, PyObject_GetBuffer
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from cpython.ref cimport Py_INCREF
from cpython.tuple cimport PyTuple_New, PyTuple_SET_ITEM
from cython.dataclasses cimport dataclass
from libc.stdint cimport int16_t, int32_t, int64_t, uint8_t, uint32_t, uint64_t
from libc.string cimport memchr

from cdc_reader.pgtime cimport timestamp


# Message kinds of streamed (protocol 2+) and two-phase (protocol 3+) transactions.
_UNSUPPORTED = {
    ord("S"): "Stream Start", ord("E"): "Stream Stop", ord("c"): "Stream Commit",
    ord("A"): "Stream Abort", ord("p"): "Stream Prepare", ord("b"): "Begin Prepare",
    ord("P"): "Prepare", ord("K"): "Commit Prepared", ord("r"): "Rollback Prepared",
}


class PgoutputDecodeError(Exception):
    """A pgoutput message could not be decoded; `offset` is where in the message it went wrong."""

    def __init__(self, reason: str, offset: int) -> None:
        super().__init__(
            f"malformed pgoutput message at byte {offset}: {reason}; check that the slot uses "
            "the pgoutput plugin and that Decoder(protocol_version) matches proto_version"
        )
        self.reason = reason
        self.offset = offset


class UnsupportedMessageError(PgoutputDecodeError):
    """A message of a streamed or two-phase transaction: the session must not enable those."""

    def __init__(self, name: str) -> None:
        Exception.__init__(
            self, f"received a {name} message: streamed and two-phase transactions are not "
            "supported; start replication without the 'streaming' and 'two_phase' options so "
            "whole transactions arrive in commit order"
        )
        self.reason = f"{name} message"
        self.offset = 0


@dataclass(frozen=True)
cdef class TupleData:
    """One row image: `kinds` holds one byte per column (n null, u unchanged TOAST, t text,
    b binary); `values` holds the bytes sent for t and b, None for n and u."""

    kinds: bytes
    values: tuple


@dataclass(frozen=True)
cdef class RelationColumn:
    is_key: bool
    name: str
    type_oid: int
    type_modifier: int


@dataclass(frozen=True)
cdef class Begin:
    final_lsn: int
    commit_time: object
    xid: int


@dataclass(frozen=True)
cdef class Commit:
    flags: int
    commit_lsn: int
    end_lsn: int
    commit_time: object


@dataclass(frozen=True)
cdef class Origin:
    commit_lsn: int
    name: str


@dataclass(frozen=True)
cdef class Relation:
    oid: int
    namespace: str  # "" for pg_catalog, as the server sends it
    name: str
    replica_identity: str  # d default, n nothing, f full, i index
    columns: tuple  # of RelationColumn


@dataclass(frozen=True)
cdef class Type:
    oid: int
    namespace: str
    name: str


@dataclass(frozen=True)
cdef class Insert:
    relation_oid: int
    new: TupleData


@dataclass(frozen=True)
cdef class Update:
    relation_oid: int
    old_kind: object  # "K" key columns, "O" whole old row, None when not sent
    old: object  # TupleData or None
    new: TupleData


@dataclass(frozen=True)
cdef class Delete:
    relation_oid: int
    old_kind: str  # "K" or "O"
    old: TupleData


@dataclass(frozen=True)
cdef class Truncate:
    options: int  # bit 1 CASCADE, bit 2 RESTART IDENTITY
    relation_oids: tuple

    @property
    def cascade(self) -> bool:
        return bool(self.options & 1)

    @property
    def restart_identity(self) -> bool:
        return bool(self.options & 2)


@dataclass(frozen=True)
cdef class Message:
    transactional: bool
    lsn: int
    prefix: str
    content: bytes


cdef class _Reader:
    """Read position within one message; `pos` is the offset reported when reading fails.
    (Its fields and methods are declared in pgoutput.pxd.)"""

    cdef int need(self, Py_ssize_t count) except -1:
        if self.size - self.pos < count:
            left = self.size - self.pos
            raise PgoutputDecodeError(f"truncated or invalid field ({left} bytes left)", self.pos)
        return 0

    cdef uint8_t byte(self) except? 255:
        self.need(1)
        self.pos += 1
        return self.data[self.pos - 1]

    cdef uint32_t u32(self) except? 0xFFFFFFFF:
        self.need(4)
        cdef const uint8_t* p = self.data + self.pos
        self.pos += 4
        return (<uint32_t>p[0] << 24) | (<uint32_t>p[1] << 16) | (<uint32_t>p[2] << 8) | p[3]

    cdef uint64_t u64(self) except? 0xFFFFFFFFFFFFFFFF:
        cdef uint64_t high = self.u32()
        return (high << 32) | self.u32()

    cdef int16_t i16(self) except? -1:
        self.need(2)
        cdef const uint8_t* p = self.data + self.pos
        self.pos += 2
        return <int16_t>((<uint32_t>p[0] << 8) | p[1])

    cdef str string(self):
        cdef const uint8_t* start = self.data + self.pos
        cdef const uint8_t* end = <const uint8_t*>memchr(start, 0, self.size - self.pos)
        if end == NULL:
            raise PgoutputDecodeError("truncated or invalid field (no string terminator)", self.pos)
        try:
            text = (<const char*>start)[:end - start].decode("utf-8")
        except UnicodeDecodeError as error:
            raise PgoutputDecodeError(f"truncated or invalid field ({error})", self.pos) from None
        self.pos += end - start + 1
        return text

    cdef object timestamp(self):
        return timestamp(<int64_t>self.u64())

    cdef TupleData tuple_data(self):
        # The hot loop of the whole reader. On an error, `pos` is the start of the column that
        # failed. A NULL or unchanged TOAST value is None in `values`.
        cdef int16_t count = self.i16()
        if count < 0:
            raise PgoutputDecodeError(f"negative column count {count}", self.pos - 2)
        cdef bytes kinds = PyBytes_FromStringAndSize(NULL, count)
        cdef char* kind_at = PyBytes_AS_STRING(kinds)
        cdef tuple values = PyTuple_New(count)
        cdef Py_ssize_t index, start
        cdef uint32_t length
        cdef uint8_t kind
        cdef object value
        for index in range(count):
            if self.pos >= self.size:
                raise PgoutputDecodeError("truncated or invalid field (no column kind)", self.pos)
            kind = self.data[self.pos]
            if kind == ord('t') or kind == ord('b'):
                start = self.pos
                self.pos += 1
                length = self.u32()
                if length > <uint64_t>(self.size - self.pos):
                    self.pos = start
                    raise PgoutputDecodeError("column runs past the message end", start)
                value = PyBytes_FromStringAndSize(<const char*>self.data + self.pos, length)
                self.pos += length
            elif kind == ord('n') or kind == ord('u'):
                value = None
                self.pos += 1
            else:
                raise PgoutputDecodeError(f"unknown column kind {kind}", self.pos)
            kind_at[index] = <char>kind
            Py_INCREF(value)
            PyTuple_SET_ITEM(values, index, value)
        cdef TupleData row = TupleData.__new__(TupleData)
        row.kinds = kinds
        row.values = values
        return row

    cdef int expect(self, uint8_t marker) except -1:
        cdef uint8_t found = self.byte()
        if found != marker:
            raise PgoutputDecodeError(f"expected {chr(marker)!r}, got {chr(found)!r}", self.pos - 1)
        return 0


cdef class Decoder:
    """Decodes the messages of whole transactions (Begin, Commit, Origin, Relation, Type,
    Insert, Update, Delete, Truncate, Message); any other kind raises PgoutputDecodeError."""

    def __init__(self, int protocol_version):
        if not 1 <= protocol_version <= 4:
            raise ValueError(f"pgoutput protocol version must be 1 to 4, not {protocol_version}")
        self.protocol_version = protocol_version
        self.reader = _Reader()

    def decode(self, payload):
        """One message: bytes, or any object with the buffer protocol (memoryview, bytearray)."""
        return self.decode_at(payload, 0)

    cdef object decode_at(self, object payload, Py_ssize_t start):
        """The message in `payload` from byte `start` on (e.g. past an XLogData header), without
        slicing the buffer first; nothing there is an empty message."""
        cdef Py_buffer view
        cdef Py_ssize_t size
        if type(payload) is bytes:
            size = PyBytes_GET_SIZE(payload)
            start = min(start, size)
            return self._decode(<const uint8_t*>PyBytes_AS_STRING(payload) + start, size - start)
        PyObject_GetBuffer(payload, &view, PyBUF_SIMPLE)
        try:
            start = min(start, view.len)
            return self._decode(<const uint8_t*>view.buf + start, view.len - start)
        finally:
            PyBuffer_Release(&view)

    cdef object _decode(self, const uint8_t* data, Py_ssize_t size):
        cdef _Reader reader = self.reader
        if size == 0:
            raise PgoutputDecodeError("empty message", 0)
        reader.data, reader.size, reader.pos = data, size, 1
        cdef uint8_t kind = data[0]
        try:
            if kind == ord('I'):
                message = self._insert(reader)
            elif kind == ord('U'):
                message = self._update(reader)
            elif kind == ord('B'):
                message = self._begin(reader)
            elif kind == ord('C'):
                message = self._commit(reader)
            elif kind == ord('D'):
                message = self._delete(reader)
            elif kind == ord('R'):
                message = self._relation(reader)
            elif kind == ord('T'):
                message = self._truncate(reader)
            elif kind == ord('Y'):
                oid = reader.u32()
                namespace = reader.string()
                message = Type(oid, namespace, reader.string())
            elif kind == ord('O'):
                lsn = reader.u64()
                message = Origin(lsn, reader.string())
            elif kind == ord('M'):
                message = self._message(reader)
            elif kind in _UNSUPPORTED:
                raise UnsupportedMessageError(_UNSUPPORTED[kind])
            else:
                raise PgoutputDecodeError(
                    f"unknown message type {chr(kind)!r} for protocol version "
                    f"{self.protocol_version}", 0)
            if reader.pos != size:
                raise PgoutputDecodeError(f"{size - reader.pos} unexpected trailing bytes",
                                          reader.pos)
            return message
        finally:
            reader.data = NULL  # never read a released buffer

    cdef Begin _begin(self, _Reader reader):
        final_lsn = reader.u64()
        commit_time = reader.timestamp()
        return Begin(final_lsn, commit_time, reader.u32())

    cdef Commit _commit(self, _Reader reader):
        flags = reader.byte()
        commit_lsn = reader.u64()
        end_lsn = reader.u64()
        return Commit(flags, commit_lsn, end_lsn, reader.timestamp())

    cdef Relation _relation(self, _Reader reader):
        oid = reader.u32()
        namespace = reader.string()
        name = reader.string()
        replica_identity = chr(reader.byte())
        cdef int16_t count = reader.i16()
        columns = []
        for _ in range(count):
            flags = reader.byte()
            column_name = reader.string()
            type_oid = reader.u32()
            type_modifier = <int32_t>reader.u32()
            columns.append(RelationColumn(bool(flags & 1), column_name, type_oid, type_modifier))
        return Relation(oid, namespace, name, replica_identity, tuple(columns))

    cdef Insert _insert(self, _Reader reader):
        cdef Insert insert = Insert.__new__(Insert)
        insert.relation_oid = reader.u32()
        reader.expect(ord('N'))
        insert.new = reader.tuple_data()
        return insert

    cdef Update _update(self, _Reader reader):
        cdef Update update = Update.__new__(Update)
        update.relation_oid = reader.u32()
        reader.need(1)
        cdef uint8_t marker = reader.data[reader.pos]
        if marker == ord('K') or marker == ord('O'):
            reader.pos += 1
            update.old_kind = "K" if marker == ord('K') else "O"
            update.old = reader.tuple_data()
        else:
            update.old_kind = update.old = None
        reader.expect(ord('N'))
        update.new = reader.tuple_data()
        return update

    cdef Delete _delete(self, _Reader reader):
        cdef Delete delete = Delete.__new__(Delete)
        delete.relation_oid = reader.u32()
        reader.need(1)
        cdef uint8_t marker = reader.data[reader.pos]
        if marker != ord('K') and marker != ord('O'):
            raise PgoutputDecodeError(f"expected 'K' or 'O', got {chr(marker)!r}", reader.pos)
        reader.pos += 1
        delete.old_kind = "K" if marker == ord('K') else "O"
        delete.old = reader.tuple_data()
        return delete

    cdef Truncate _truncate(self, _Reader reader):
        cdef uint32_t count = reader.u32()
        options = reader.byte()
        reader.need(4 * <Py_ssize_t>count)
        return Truncate(options, tuple([reader.u32() for _ in range(count)]))

    cdef Message _message(self, _Reader reader):
        flags = reader.byte()
        lsn = reader.u64()
        prefix = reader.string()
        cdef uint32_t length = reader.u32()
        if length > <uint64_t>(reader.size - reader.pos):
            raise PgoutputDecodeError(
                f"content of {length} bytes runs past the message end", reader.pos)
        content = PyBytes_FromStringAndSize(<const char*>reader.data + reader.pos, length)
        reader.pos += length
        return Message(bool(flags & 1), lsn, prefix, content)
