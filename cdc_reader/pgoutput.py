"""Sans-I/O decoder for PostgreSQL's pgoutput logical replication messages (protocol 1-4).

`Decoder(protocol_version).decode(payload)` turns one message (the bytes after the XLogData
header, or one row of `pg_logical_slot_peek_binary_changes`) into a frozen message value. The
decoder holds one bit of state: whether it is between Stream Start and Stream Stop, because data
messages inside a stream carry an extra xid. Text column values are decoded as UTF-8, so the
replication connection must use client_encoding UTF8. Format reference: PostgreSQL's
"Logical Replication Message Formats" and src/backend/replication/logical/proto.c.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from functools import partial
from typing import TypeVar

POSTGRES_EPOCH = datetime(2000, 1, 1, tzinfo=timezone.utc)

_U32 = struct.Struct(">I")
_I16 = struct.Struct(">h")
_LSN = struct.Struct(">Q")
_BEGIN = struct.Struct(">QqI")  # final LSN, commit time, xid
_COMMIT = struct.Struct(">BQQq")  # flags, commit LSN, end LSN, commit time
_STREAM_START = struct.Struct(">IB")  # xid, first-segment flag
_STREAM_COMMIT = struct.Struct(">IBQQq")  # xid, flags, commit LSN, end LSN, commit time
_STREAM_ABORT = struct.Struct(">II")  # xid, subtransaction xid
_ABORT_INFO = struct.Struct(">Qq")  # abort LSN, abort time (v4, parallel streaming only)
_PREPARE_HEAD = struct.Struct(">QQqI")  # LSN, end LSN, time, xid (Begin Prepare)
_FLAGGED_PREPARE_HEAD = struct.Struct(">BQQqI")  # flags + the above (Prepare, Commit Prepared)
_ROLLBACK_PREPARED = struct.Struct(">BQQqqI")  # flags, 2 end LSNs, prepare/rollback time, xid
_MESSAGE_HEAD = struct.Struct(">BQ")  # flags, LSN
_COLUMN_TYPE = struct.Struct(">Ii")  # type OID, type modifier
_OID_AND_MARKER = struct.Struct(">IB")  # relation OID, then the 'N' before an Insert's tuple

_NULL, _UNCHANGED_TOAST, _TEXT, _BINARY, _NEW_TUPLE = b"nutbN"


class PgoutputDecodeError(Exception):
    """A pgoutput message could not be decoded; `offset` is where in the message it went wrong."""

    def __init__(self, reason: str, offset: int) -> None:
        super().__init__(
            f"malformed pgoutput message at byte {offset}: {reason}; check that the slot uses "
            "the pgoutput plugin and that Decoder(protocol_version) matches proto_version"
        )
        self.reason = reason
        self.offset = offset


def pg_timestamp(microseconds: int) -> datetime:
    """PostgreSQL's TimestampTz (microseconds since 2000-01-01 UTC) as an aware UTC datetime."""
    return POSTGRES_EPOCH + timedelta(microseconds=microseconds)


@dataclass(frozen=True, slots=True)
class TupleData:
    """One row image: `kinds` holds one byte per column (n null, u unchanged TOAST, t text,
    b binary); `values` holds str for t, bytes for b, None for n and u."""

    kinds: bytes
    values: tuple[str | bytes | None, ...]


@dataclass(frozen=True, slots=True)
class RelationColumn:
    is_key: bool
    name: str
    type_oid: int
    type_modifier: int


@dataclass(frozen=True, slots=True)
class Begin:
    final_lsn: int
    commit_time: datetime
    xid: int


@dataclass(frozen=True, slots=True)
class Commit:
    flags: int
    commit_lsn: int
    end_lsn: int
    commit_time: datetime


@dataclass(frozen=True, slots=True)
class Origin:
    commit_lsn: int
    name: str


# xid on data messages is set only inside a stream (protocol 2+), else None.
@dataclass(frozen=True, slots=True)
class Relation:
    xid: int | None
    oid: int
    namespace: str  # "" for pg_catalog, as the server sends it
    name: str
    replica_identity: str  # d default, n nothing, f full, i index
    columns: tuple[RelationColumn, ...]


@dataclass(frozen=True, slots=True)
class Type:
    xid: int | None
    oid: int
    namespace: str
    name: str


@dataclass(frozen=True, slots=True)
class Insert:
    xid: int | None
    relation_oid: int
    new: TupleData


@dataclass(frozen=True, slots=True)
class Update:
    xid: int | None
    relation_oid: int
    old_kind: str | None  # "K" key columns, "O" whole old row, None when not sent
    old: TupleData | None
    new: TupleData


@dataclass(frozen=True, slots=True)
class Delete:
    xid: int | None
    relation_oid: int
    old_kind: str  # "K" or "O"
    old: TupleData


@dataclass(frozen=True, slots=True)
class Truncate:
    xid: int | None
    options: int  # bit 1 CASCADE, bit 2 RESTART IDENTITY
    relation_oids: tuple[int, ...]

    @property
    def cascade(self) -> bool:
        return bool(self.options & 1)

    @property
    def restart_identity(self) -> bool:
        return bool(self.options & 2)


@dataclass(frozen=True, slots=True)
class Message:
    xid: int | None
    transactional: bool
    lsn: int
    prefix: str
    content: bytes


@dataclass(frozen=True, slots=True)
class StreamStart:
    xid: int
    first_segment: bool


@dataclass(frozen=True, slots=True)
class StreamStop:
    pass


@dataclass(frozen=True, slots=True)
class StreamCommit:
    xid: int
    flags: int
    commit_lsn: int
    end_lsn: int
    commit_time: datetime


@dataclass(frozen=True, slots=True)
class StreamAbort:
    xid: int
    subtransaction_xid: int
    abort_lsn: int | None = None  # protocol 4 with streaming = parallel only
    abort_time: datetime | None = None


@dataclass(frozen=True, slots=True)
class BeginPrepare:
    prepare_lsn: int
    end_lsn: int
    prepare_time: datetime
    xid: int
    gid: str


@dataclass(frozen=True, slots=True)
class Prepare:
    flags: int
    prepare_lsn: int
    end_lsn: int
    prepare_time: datetime
    xid: int
    gid: str


@dataclass(frozen=True, slots=True)
class CommitPrepared:
    flags: int
    commit_lsn: int
    end_lsn: int
    commit_time: datetime
    xid: int
    gid: str


@dataclass(frozen=True, slots=True)
class RollbackPrepared:
    flags: int
    prepare_end_lsn: int
    rollback_end_lsn: int
    prepare_time: datetime
    rollback_time: datetime
    xid: int
    gid: str


@dataclass(frozen=True, slots=True)
class StreamPrepare:
    flags: int
    prepare_lsn: int
    end_lsn: int
    prepare_time: datetime
    xid: int
    gid: str


PgoutputMessage = (
    Begin | Commit | Origin | Relation | Type | Insert | Update | Delete | Truncate | Message
    | StreamStart | StreamStop | StreamCommit | StreamAbort
    | BeginPrepare | Prepare | CommitPrepared | RollbackPrepared | StreamPrepare
)


class _Cursor:
    """Read position within one message; `pos` is the offset reported when reading fails."""

    __slots__ = ("data", "pos")

    def __init__(self, data: bytes, pos: int) -> None:
        self.data = data
        self.pos = pos

    def unpack(self, layout: struct.Struct) -> tuple:
        values = layout.unpack_from(self.data, self.pos)
        self.pos += layout.size
        return values

    def byte(self) -> int:
        value = self.data[self.pos]
        self.pos += 1
        return value

    def string(self) -> str:
        end = self.data.index(0, self.pos)
        text = self.data[self.pos:end].decode()
        self.pos = end + 1
        return text

    def tuple_data(self) -> TupleData:
        # The hot loop of the whole reader: locals only, one struct call per non-NULL column,
        # and nothing at all stored for a NULL (the lists start out all NULL).
        # On an error, `pos` is still the start of the column that failed.
        data = self.data
        size = len(data)
        (count,) = _I16.unpack_from(data, self.pos)
        pos = self.pos + 2
        kinds = bytearray((_NULL,)) * count
        values: list[str | bytes | None] = [None] * count
        length_at = _U32.unpack_from
        text, null, unchanged, binary = _TEXT, _NULL, _UNCHANGED_TOAST, _BINARY
        try:
            for index in range(count):
                kind = data[pos]
                if kind == text:
                    start = pos + 5
                    # unsigned, so a corrupt negative length overshoots and is caught
                    end = start + length_at(data, pos + 1)[0]
                    if end > size:
                        raise PgoutputDecodeError("column runs past the message end", pos)
                    values[index] = data[start:end].decode()
                    kinds[index] = text
                    pos = end
                elif kind == null:
                    pos += 1
                elif kind == unchanged:
                    kinds[index] = unchanged
                    pos += 1
                elif kind == binary:  # only with the binary option: kept apart from text
                    start = pos + 5
                    end = start + length_at(data, pos + 1)[0]
                    if end > size:
                        raise PgoutputDecodeError("column runs past the message end", pos)
                    values[index] = data[start:end]
                    kinds[index] = binary
                    pos = end
                else:
                    raise PgoutputDecodeError(f"unknown column kind {kind}", pos)
        except (struct.error, IndexError, UnicodeDecodeError):
            self.pos = pos
            raise
        self.pos = pos
        row = _new_object(TupleData)
        set_kinds, set_values = _TUPLE_DATA_FIELDS
        set_kinds(row, bytes(kinds))
        set_values(row, tuple(values))
        return row


def _field_setters(message_class: type, names: str) -> tuple[Callable[[object, object], None], ...]:
    return tuple(getattr(message_class, name).__set__ for name in names.split())


# One of each per row: built through their slots rather than the generated __init__ of a frozen
# dataclass, which sets each field through object.__setattr__ (twice as slow; same values).
_new_object = object.__new__
_TUPLE_DATA_FIELDS = _field_setters(TupleData, "kinds values")
_INSERT_FIELDS = _field_setters(Insert, "xid relation_oid new")
_UPDATE_FIELDS = _field_setters(Update, "xid relation_oid old_kind old new")

_Parser = Callable[[_Cursor], PgoutputMessage]
_Prepared = TypeVar("_Prepared", Prepare, CommitPrepared, StreamPrepare)  # alike on the wire


class Decoder:
    """Decodes the messages of one replication stream, in order.

    Data messages (Relation, Type, Insert, Update, Delete, Truncate, Message) carry the xid of
    their (sub)transaction only between Stream Start and Stream Stop, so one Decoder must see
    every message of its stream. Messages the protocol version cannot produce are rejected.
    """

    def __init__(self, protocol_version: int) -> None:
        if not 1 <= protocol_version <= 4:
            raise ValueError(f"pgoutput protocol version must be 1 to 4, not {protocol_version}")
        self.protocol_version = protocol_version
        self.in_stream = False
        parsers: dict[str, _Parser] = {
            "B": self._begin, "C": self._commit, "O": self._origin, "R": self._relation,
            "Y": self._type, "I": self._insert, "U": self._update, "D": self._delete,
            "T": self._truncate, "M": self._message,
        }
        if protocol_version >= 2:
            parsers |= {
                "S": self._stream_start, "E": self._stream_stop, "c": self._stream_commit,
                "A": self._stream_abort,
            }
        if protocol_version >= 3:
            parsers |= {
                "b": self._begin_prepare, "P": partial(self._prepared, Prepare),
                "K": partial(self._prepared, CommitPrepared), "r": self._rollback_prepared,
                "p": partial(self._prepared, StreamPrepare),
            }
        self._parsers = {ord(code): parser for code, parser in parsers.items()}
        self._cursor = _Cursor(b"", 0)  # one per decoder: no allocation per message

    def decode(self, payload: bytes | memoryview) -> PgoutputMessage:
        data = payload if type(payload) is bytes else bytes(payload)
        if not data:
            raise PgoutputDecodeError("empty message", 0)
        parser = self._parsers.get(data[0])
        if parser is None:
            raise PgoutputDecodeError(
                f"unknown message type {chr(data[0])!r} for protocol version "
                f"{self.protocol_version}", 0,
            )
        cursor = self._cursor
        cursor.data, cursor.pos = data, 1
        try:
            message = parser(cursor)
        except (struct.error, IndexError, ValueError) as error:
            # ValueError covers a missing string terminator and invalid UTF-8
            raise PgoutputDecodeError(f"truncated or invalid field ({error})", cursor.pos) from None
        if cursor.pos != len(data):
            raise PgoutputDecodeError(f"{len(data) - cursor.pos} unexpected trailing bytes", cursor.pos)
        return message

    def _stream_xid(self, cursor: _Cursor) -> int | None:
        return cursor.unpack(_U32)[0] if self.in_stream else None

    # -- transaction control ------------------------------------------------------------------
    def _begin(self, cursor: _Cursor) -> Begin:
        final_lsn, commit_time, xid = cursor.unpack(_BEGIN)
        return Begin(final_lsn, pg_timestamp(commit_time), xid)

    def _commit(self, cursor: _Cursor) -> Commit:
        flags, commit_lsn, end_lsn, commit_time = cursor.unpack(_COMMIT)
        return Commit(flags, commit_lsn, end_lsn, pg_timestamp(commit_time))

    def _origin(self, cursor: _Cursor) -> Origin:
        (commit_lsn,) = cursor.unpack(_LSN)
        return Origin(commit_lsn, cursor.string())

    # -- data ---------------------------------------------------------------------------------
    def _relation(self, cursor: _Cursor) -> Relation:
        xid = self._stream_xid(cursor)
        (oid,) = cursor.unpack(_U32)
        namespace, name = cursor.string(), cursor.string()
        replica_identity = chr(cursor.byte())
        (count,) = cursor.unpack(_I16)
        columns = []
        for _ in range(count):
            flags = cursor.byte()
            column_name = cursor.string()
            type_oid, type_modifier = cursor.unpack(_COLUMN_TYPE)
            columns.append(RelationColumn(bool(flags & 1), column_name, type_oid, type_modifier))
        return Relation(xid, oid, namespace, name, replica_identity, tuple(columns))

    def _type(self, cursor: _Cursor) -> Type:
        xid = self._stream_xid(cursor)
        (oid,) = cursor.unpack(_U32)
        return Type(xid, oid, cursor.string(), cursor.string())

    def _insert(self, cursor: _Cursor) -> Insert:
        xid = self._stream_xid(cursor)
        oid, marker = cursor.unpack(_OID_AND_MARKER)
        if marker != _NEW_TUPLE:
            raise _unexpected(marker, _NEW_TUPLE, cursor.pos - 1)
        insert = _new_object(Insert)
        set_xid, set_relation_oid, set_new = _INSERT_FIELDS
        set_xid(insert, xid)
        set_relation_oid(insert, oid)
        set_new(insert, cursor.tuple_data())
        return insert

    def _update(self, cursor: _Cursor) -> Update:
        xid = self._stream_xid(cursor)
        (oid,) = cursor.unpack(_U32)
        old_kind = old = None
        if cursor.data[cursor.pos] in b"KO":
            old_kind = chr(cursor.byte())
            old = cursor.tuple_data()
        _expect(cursor, _NEW_TUPLE)
        update = _new_object(Update)
        set_xid, set_relation_oid, set_old_kind, set_old, set_new = _UPDATE_FIELDS
        set_xid(update, xid)
        set_relation_oid(update, oid)
        set_old_kind(update, old_kind)
        set_old(update, old)
        set_new(update, cursor.tuple_data())
        return update

    def _delete(self, cursor: _Cursor) -> Delete:
        xid = self._stream_xid(cursor)
        (oid,) = cursor.unpack(_U32)
        old_kind = chr(cursor.data[cursor.pos])
        if old_kind not in "KO":
            raise PgoutputDecodeError(f"expected 'K' or 'O', got {old_kind!r}", cursor.pos)
        cursor.pos += 1
        return Delete(xid, oid, old_kind, cursor.tuple_data())

    def _truncate(self, cursor: _Cursor) -> Truncate:
        xid = self._stream_xid(cursor)
        (count,) = cursor.unpack(_U32)
        options = cursor.byte()
        oids = struct.unpack_from(f">{count}I", cursor.data, cursor.pos)
        cursor.pos += 4 * count
        return Truncate(xid, options, oids)

    def _message(self, cursor: _Cursor) -> Message:
        xid = self._stream_xid(cursor)
        flags, lsn = cursor.unpack(_MESSAGE_HEAD)
        prefix = cursor.string()
        (length,) = cursor.unpack(_U32)
        content = cursor.data[cursor.pos:cursor.pos + length]
        if len(content) != length:
            raise PgoutputDecodeError(f"content of {length} bytes runs past the message end", cursor.pos)
        cursor.pos += length
        return Message(xid, bool(flags & 1), lsn, prefix, content)

    # -- streamed transactions (protocol 2+) --------------------------------------------------
    def _stream_start(self, cursor: _Cursor) -> StreamStart:
        if self.in_stream:
            raise PgoutputDecodeError("Stream Start inside a stream (no Stream Stop before it)", 0)
        xid, first_segment = cursor.unpack(_STREAM_START)
        self.in_stream = True
        return StreamStart(xid, first_segment == 1)

    def _stream_stop(self, cursor: _Cursor) -> StreamStop:
        if not self.in_stream:
            raise PgoutputDecodeError("Stream Stop outside a stream", 0)
        self.in_stream = False
        return StreamStop()

    def _stream_commit(self, cursor: _Cursor) -> StreamCommit:
        xid, flags, commit_lsn, end_lsn, commit_time = cursor.unpack(_STREAM_COMMIT)
        return StreamCommit(xid, flags, commit_lsn, end_lsn, pg_timestamp(commit_time))

    def _stream_abort(self, cursor: _Cursor) -> StreamAbort:
        xid, subtransaction_xid = cursor.unpack(_STREAM_ABORT)
        # The abort LSN and time follow only when the slot streams in parallel mode, which the
        # message itself does not announce: its length tells.
        if self.protocol_version >= 4 and len(cursor.data) - cursor.pos == _ABORT_INFO.size:
            abort_lsn, abort_time = cursor.unpack(_ABORT_INFO)
            return StreamAbort(xid, subtransaction_xid, abort_lsn, pg_timestamp(abort_time))
        return StreamAbort(xid, subtransaction_xid)

    # -- two-phase commit (protocol 3+) -------------------------------------------------------
    def _begin_prepare(self, cursor: _Cursor) -> BeginPrepare:
        prepare_lsn, end_lsn, prepare_time, xid = cursor.unpack(_PREPARE_HEAD)
        return BeginPrepare(prepare_lsn, end_lsn, pg_timestamp(prepare_time), xid, cursor.string())

    def _prepared(self, kind: type[_Prepared], cursor: _Cursor) -> _Prepared:
        flags, lsn, end_lsn, time, xid = cursor.unpack(_FLAGGED_PREPARE_HEAD)
        return kind(flags, lsn, end_lsn, pg_timestamp(time), xid, cursor.string())

    def _rollback_prepared(self, cursor: _Cursor) -> RollbackPrepared:
        flags, prepare_end, rollback_end, prepare_time, rollback_time, xid = cursor.unpack(
            _ROLLBACK_PREPARED
        )
        return RollbackPrepared(
            flags, prepare_end, rollback_end, pg_timestamp(prepare_time),
            pg_timestamp(rollback_time), xid, cursor.string(),
        )


def _expect(cursor: _Cursor, marker: int) -> None:
    found = cursor.byte()
    if found != marker:
        raise _unexpected(found, marker, cursor.pos - 1)


def _unexpected(found: int, marker: int, offset: int) -> PgoutputDecodeError:
    return PgoutputDecodeError(f"expected {chr(marker)!r}, got {chr(found)!r}", offset)
