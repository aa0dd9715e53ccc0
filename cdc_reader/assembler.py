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
produce nothing. Column values are loaded into Python values by psycopg's loaders
(`cdc_reader.loaders`). The decoder refuses streamed and two-phase messages, so whole
transactions arrive in commit order.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from itertools import compress

from psycopg import DataError

from cdc_reader.changes import (
    Change,
    Envelope,
    Op,
    Row,
    TransactionBegin,
    TransactionCommit,
    new_change,
)
from cdc_reader.loaders import RowLoader
from cdc_reader.pgoutput import (
    Begin,
    Commit,
    Delete,
    Insert,
    Message,
    Origin,
    Relation,
    Truncate,
    TupleData,
    Type,
    Update,
)

_NO_ENVELOPES: tuple[Envelope, ...] = ()
_NO_COLUMNS: frozenset[str] = frozenset()
# Read once: an Enum member read off its class costs ~80 ns in Python 3.11, per change here.
_INSERT, _UPDATE, _DELETE = Op.INSERT, Op.UPDATE, Op.DELETE
_NULL, _UNCHANGED_TOAST, _BINARY = ord("n"), ord("u"), ord("b")
# Row layouts kept per relation; a table's rows use few NULL/TOAST patterns, this bounds the rest.
_MAX_LAYOUTS_PER_RELATION = 256


class AssemblerError(Exception):
    """The message stream does not fit the protocol (e.g. a change outside a transaction)."""


@dataclass(frozen=True, slots=True)
class _RowLayout:
    """How to build a row of one relation from column values sent with one pattern of kinds,
    worked out once per pattern: load the values (psycopg's loaders, one C call for the row),
    then pair the names of the columns in the row with their values."""

    loader: RowLoader
    names: tuple[str, ...]  # the columns in the row, in order
    selected: tuple[bool, ...] | None  # which values belong to them; None: all
    binary: tuple[bool, ...]  # the values sent in binary, kept as bytes; () when none
    unchanged_toast: frozenset[str]

    def row(self, values: tuple[bytes | None, ...]) -> Row:
        try:
            if self.binary:
                raise DataError  # psycopg's text loaders must not see binary values
            loaded = self.loader.load_sequence(values)
        except DataError:
            loaded = self.loader.load_each(values, self.binary)
        if self.selected is None:
            return dict(zip(self.names, loaded))
        return dict(zip(self.names, compress(loaded, self.selected)))


@dataclass(frozen=True, slots=True)
class _RelationShape:
    """What a Relation message tells us, with the row layouts worked out from it so far."""

    schema: str
    table: str
    names: tuple[str, ...]
    is_key: tuple[bool, ...]
    column_types: tuple[tuple[str, int], ...]  # (name, type OID): Change.column_types
    loader: RowLoader
    layouts: dict[bytes, _RowLayout] = field(default_factory=dict)
    key_layouts: dict[bytes, _RowLayout] = field(default_factory=dict)

    def layout(self, kinds: bytes, key_only: bool) -> _RowLayout:
        """The layout for rows with these column kinds (b n t u, one byte per column); with
        `key_only`, for the old key of an update or delete (other columns are sent as NULL)."""
        layouts = self.key_layouts if key_only else self.layouts
        layout = layouts.get(kinds)
        if layout is None:
            layout = self._new_layout(kinds, key_only)
            if len(layouts) < _MAX_LAYOUTS_PER_RELATION:
                layouts[kinds] = layout
        return layout

    def _new_layout(self, kinds: bytes, key_only: bool) -> _RowLayout:
        if len(kinds) != len(self.names):
            raise AssemblerError(
                f"{self.schema}.{self.table}: row has {len(kinds)} columns, the last Relation "
                f"message announced {len(self.names)}"
            )
        in_row = tuple(kind != _UNCHANGED_TOAST and (is_key or not key_only)
                       for kind, is_key in zip(kinds, self.is_key))
        binary = tuple(kind == _BINARY for kind in kinds)
        unchanged = frozenset(name for name, kind in zip(self.names, kinds)
                              if kind == _UNCHANGED_TOAST)
        return _RowLayout(
            self.loader,
            tuple(compress(self.names, in_row)),
            None if all(in_row) else in_row,
            binary if any(binary) else (),
            unchanged or _NO_COLUMNS,
        )


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

    def feed(self, message: object) -> tuple[Envelope, ...]:
        """The envelopes of one decoded message (`cdc_reader.pgoutput`), possibly none."""
        handler = self._handlers.get(type(message))
        if handler is None:
            raise AssemblerError(f"not a message of a whole transaction: {message!r}")
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
            tuple(column.is_key for column in columns),
            tuple((column.name, column.type_oid) for column in columns),
            RowLoader([column.type_oid for column in columns]),
        )
        return _NO_ENVELOPES

    def _shape(self, relation_oid: int) -> _RelationShape:
        shape = self._relations.get(relation_oid)
        if shape is None:
            raise AssemblerError(
                f"change for relation OID {relation_oid} before its Relation message; feed "
                "every message of the stream to one ChangeAssembler"
            )
        return shape

    # -- row changes --------------------------------------------------------------------------
    # Inserts and updates look their relation and row layout up inline: this runs per change.
    def _insert(self, message: Insert) -> tuple[Envelope, ...]:
        oid, new = message.relation_oid, message.new
        shape = self._relations.get(oid) or self._shape(oid)
        layout = shape.layouts.get(new.kinds) or shape.layout(new.kinds, False)
        return (self._change(_INSERT, shape, None, layout.row(new.values), layout.unchanged_toast),)

    def _update(self, message: Update) -> tuple[Envelope, ...]:
        oid, new = message.relation_oid, message.new
        shape = self._relations.get(oid) or self._shape(oid)
        before = None if message.old is None else _old_row(shape, message.old_kind, message.old)
        layout = shape.layouts.get(new.kinds) or shape.layout(new.kinds, False)
        return (self._change(_UPDATE, shape, before, layout.row(new.values), layout.unchanged_toast),)

    def _delete(self, message: Delete) -> tuple[Envelope, ...]:
        shape = self._shape(message.relation_oid)
        before = _old_row(shape, message.old_kind, message.old)
        return (self._change(_DELETE, shape, before, None, _NO_COLUMNS),)

    def _truncate(self, message: Truncate) -> tuple[Envelope, ...]:
        return tuple(
            self._change(Op.TRUNCATE, self._shape(oid), None, None, _NO_COLUMNS)
            for oid in message.relation_oids
        )

    def _change(self, op: Op, shape: _RelationShape, before: Row | None, after: Row | None,
                unchanged_toast: frozenset[str]) -> Change:
        transaction = self._transaction or self._open_transaction(op.name.title())
        position = transaction.change_count
        transaction.change_count = position + 1
        return new_change(op, shape.schema, shape.table, before, after, transaction.xid,
                          transaction.commit_lsn, transaction.commit_time, position,
                          unchanged_toast, shape.column_types)


def _ignore(message: object) -> tuple[Envelope, ...]:
    return _NO_ENVELOPES


def _old_row(shape: _RelationShape, old_kind: str | None, old: TupleData) -> Row:
    """The old row image: all columns for 'O', only the replica identity key columns for 'K'
    (the server sends the others as NULL)."""
    return shape.layout(old.kinds, old_kind == "K").row(old.values)
