"""Turns decoded pgoutput messages into the change envelopes of `cdc_reader.changes`.

Usage (the replication session's loop)::

    decoder, assembler = Decoder(protocol_version), ChangeAssembler()
    for payload in xlog_data_payloads:
        for envelope in assembler.feed(decoder.decode(payload)):
            ...  # TransactionBegin, Change ..., TransactionCommit, in commit order

`ChangeAssembler.feed(message)` returns a (possibly empty) tuple of envelopes: Begin gives a
`TransactionBegin`, each Insert/Update/Delete one `Change`, a Truncate one `Change` per table,
Commit a `TransactionCommit`. Relation messages keep the relation cache current, so a column
added, dropped or retyped mid-stream takes effect from the next change; Origin, Type and Message
produce nothing. The assembler expects whole transactions in commit order: it raises
`UnsupportedMessageError` on streamed or two-phase messages, so start replication without the
`streaming` and `two_phase` options.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from cdc_reader.changes import Change, Envelope, Op, Row, TransactionBegin, TransactionCommit
from cdc_reader.pgoutput import (
    Begin, Commit, Delete, Insert, Message, Origin, PgoutputMessage, Relation, Truncate,
    TupleData, Type, Update,
)
from cdc_reader.values import Converter, converter_for

_NO_ENVELOPES: tuple[Envelope, ...] = ()
_TEXT, _BINARY, _UNCHANGED_TOAST = ord("t"), ord("b"), ord("u")


class AssemblerError(Exception):
    """The message stream does not fit the protocol (e.g. a change outside a transaction)."""


class UnsupportedMessageError(AssemblerError):
    """A streamed or two-phase message arrived; the session must not enable those options."""


@dataclass(frozen=True, slots=True)
class _RelationShape:
    """What a Relation message tells us, prepared once for building rows quickly."""

    schema: str
    table: str
    names: tuple[str, ...]
    converters: tuple[Converter, ...]
    key_indexes: tuple[int, ...]


@dataclass(slots=True)
class _OpenTransaction:
    xid: int
    commit_lsn: int
    commit_time: datetime
    change_count: int = 0


class ChangeAssembler:
    """Feed it every decoded message of one stream, in order; see the module docstring."""

    def __init__(self) -> None:
        self._relations: dict[int, _RelationShape] = {}
        self._transaction: _OpenTransaction | None = None
        self._handlers = {
            Begin: self._begin, Commit: self._commit, Relation: self._relation,
            Insert: self._insert, Update: self._update, Delete: self._delete,
            Truncate: self._truncate, Origin: _ignore, Type: _ignore, Message: _ignore,
        }

    def feed(self, message: PgoutputMessage) -> tuple[Envelope, ...]:
        handler = self._handlers.get(type(message))
        if handler is None:
            raise UnsupportedMessageError(
                f"received a {type(message).__name__} message: streamed and two-phase "
                "transactions are not supported; start replication without the 'streaming' "
                "and 'two_phase' options so whole transactions arrive in commit order"
            )
        return handler(message)

    # -- transaction boundaries ---------------------------------------------------------------
    def _begin(self, message: Begin) -> tuple[Envelope, ...]:
        if self._transaction is not None:
            raise AssemblerError(f"Begin of xid {message.xid} inside xid {self._transaction.xid}")
        self._transaction = _OpenTransaction(message.xid, message.final_lsn, message.commit_time)
        return (TransactionBegin(message.xid, message.final_lsn, message.commit_time),)

    def _commit(self, message: Commit) -> tuple[Envelope, ...]:
        transaction = self._open_transaction("Commit")
        if message.commit_lsn != transaction.commit_lsn:
            raise AssemblerError(
                f"Commit LSN {message.commit_lsn} differs from its Begin's {transaction.commit_lsn}"
            )
        self._transaction = None
        return (TransactionCommit(
            transaction.xid, message.commit_lsn, message.end_lsn, message.commit_time,
            transaction.change_count,
        ),)

    def _open_transaction(self, what: str) -> _OpenTransaction:
        if self._transaction is None:
            raise AssemblerError(f"{what} message outside a transaction (no Begin before it)")
        return self._transaction

    # -- relations ----------------------------------------------------------------------------
    def _relation(self, message: Relation) -> tuple[Envelope, ...]:
        columns = message.columns
        self._relations[message.oid] = _RelationShape(
            message.namespace or "pg_catalog",
            message.name,
            tuple(column.name for column in columns),
            tuple(converter_for(column.type_oid) for column in columns),
            tuple(index for index, column in enumerate(columns) if column.is_key),
        )
        return _NO_ENVELOPES

    def _shape(self, relation_oid: int) -> _RelationShape:
        try:
            return self._relations[relation_oid]
        except KeyError:
            raise AssemblerError(
                f"change for relation OID {relation_oid} before its Relation message; feed "
                "every message of the stream to one ChangeAssembler"
            ) from None

    # -- row changes --------------------------------------------------------------------------
    def _insert(self, message: Insert) -> tuple[Envelope, ...]:
        shape = self._shape(message.relation_oid)
        after, unchanged = _row(shape, message.new)
        return (self._change(Op.INSERT, shape, None, after, unchanged),)

    def _update(self, message: Update) -> tuple[Envelope, ...]:
        shape = self._shape(message.relation_oid)
        before = None
        if message.old is not None:
            before = _old_row(shape, message.old_kind, message.old)
        after, unchanged = _row(shape, message.new)
        return (self._change(Op.UPDATE, shape, before, after, unchanged),)

    def _delete(self, message: Delete) -> tuple[Envelope, ...]:
        shape = self._shape(message.relation_oid)
        before = _old_row(shape, message.old_kind, message.old)
        return (self._change(Op.DELETE, shape, before, None, frozenset()),)

    def _truncate(self, message: Truncate) -> tuple[Envelope, ...]:
        return tuple(
            self._change(Op.TRUNCATE, self._shape(oid), None, None, frozenset())
            for oid in message.relation_oids
        )

    def _change(self, op: Op, shape: _RelationShape, before: Row | None, after: Row | None,
                unchanged_toast: frozenset[str]) -> Change:
        transaction = self._open_transaction(op.name.title())
        position = transaction.change_count
        transaction.change_count = position + 1
        return Change(
            op, shape.schema, shape.table, before, after, transaction.xid,
            transaction.commit_lsn, transaction.commit_time, position, unchanged_toast,
        )


def _ignore(message: PgoutputMessage) -> tuple[Envelope, ...]:
    return _NO_ENVELOPES


def _row(shape: _RelationShape, tuple_data: TupleData) -> tuple[Row, frozenset[str]]:
    """The row by column name, and the names of unchanged TOASTed columns (left out of it)."""
    kinds, values = tuple_data.kinds, tuple_data.values
    if len(values) != len(shape.names):
        raise AssemblerError(
            f"{shape.schema}.{shape.table}: row has {len(values)} columns, the last Relation "
            f"message announced {len(shape.names)}"
        )
    if _UNCHANGED_TOAST not in kinds and _BINARY not in kinds:
        # the common case: every column is text or NULL
        return {
            name: None if value is None else convert(value)
            for name, convert, value in zip(shape.names, shape.converters, values)
        }, frozenset()
    row: Row = {}
    unchanged = []
    for name, convert, kind, value in zip(shape.names, shape.converters, kinds, values):
        if kind == _TEXT:
            row[name] = convert(value)
        elif kind == _UNCHANGED_TOAST:
            unchanged.append(name)
        else:
            row[name] = value  # NULL, or a binary value left as bytes
    return row, frozenset(unchanged)


def _old_row(shape: _RelationShape, old_kind: str | None, tuple_data: TupleData) -> Row:
    """The old row image: all columns for 'O', only the replica identity key columns for 'K'
    (the server sends the others as NULL)."""
    row, _ = _row(shape, tuple_data)
    if old_kind == "K":
        return {shape.names[index]: row[shape.names[index]] for index in shape.key_indexes}
    return row
