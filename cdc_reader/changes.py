"""The change envelope: what the reader hands downstream (modelled on Debezium's envelope).

A stream of `TransactionBegin`, `Change` ... , `TransactionCommit` values, in commit order.
Everything downstream (mappers, pipeline) consumes these plain values and never the protocol.
Row images are dicts by column name; treat them as read-only. The values are frozen msgspec
Structs, like every record the pipeline makes (events, directory records): made in C, a
fraction of a frozen dataclass's `__init__`, with the same equality, hashing and pickling.
"""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

import msgspec


class Op(enum.Enum):
    """Debezium's op codes: create, update, delete, read (snapshot row), truncate."""

    INSERT = "c"
    UPDATE = "u"
    DELETE = "d"
    READ = "r"
    TRUNCATE = "t"

    # Members are singletons, so identity hashing is equivalent to Enum's, which runs Python
    # code on every dict or set lookup (the mappers look rules up by op per change).
    __hash__ = object.__hash__


Row = dict[str, Any]


# The envelopes are left out of the cyclic garbage collector (gc=False): their fields, rows of
# plain values included, never refer back to them, so they cannot be part of a cycle.
class TransactionBegin(msgspec.Struct, frozen=True, gc=False):
    xid: int
    commit_lsn: int  # LSN of the commit record (pgoutput's Begin "final LSN")
    commit_time: datetime  # UTC, aware, microseconds


class Change(msgspec.Struct, frozen=True, repr_omit_defaults=True, gc=False):
    """One row change.

    before: for UPDATE, the old row when the server sent one (REPLICA IDENTITY FULL or a changed
    key), else None; for DELETE, the old row (FULL) or only its key columns (DEFAULT).
    after: the new row for INSERT/UPDATE/READ (columns whose TOASTed value was unchanged and not
    sent are listed in `unchanged_toast` and absent from `after` unless the reader filled them in).
    position: 0-based index of the change within its transaction (stable across re-delivery).
    column_types: (column, type OID) of each column of the relation, as its Relation message
    gave them; one tuple shared by all changes of that relation, so consumers can decide things
    per relation instead of per row. None when unknown (changes not decoded from pgoutput).
    It takes part in equality like every field: compare a decoded change with one built by hand
    with the decoded `column_types` given.
    """

    op: Op
    schema: str
    table: str
    before: Row | None
    after: Row | None
    xid: int
    commit_lsn: int
    commit_time: datetime | None
    position: int
    unchanged_toast: frozenset[str] = frozenset()
    column_types: tuple[tuple[str, int], ...] | None = None


class TransactionCommit(msgspec.Struct, frozen=True, gc=False):
    xid: int
    commit_lsn: int
    end_lsn: int  # LSN just past the commit record: what the consumer confirms once stored
    commit_time: datetime
    change_count: int


Envelope = TransactionBegin | Change | TransactionCommit


def format_lsn(lsn: int) -> str:
    """PostgreSQL's textual LSN form, e.g. 0/16B3748."""
    return f"{lsn >> 32:X}/{lsn & 0xFFFFFFFF:X}"


def parse_lsn(text: str) -> int:
    high, low = text.split("/")
    return (int(high, 16) << 32) | int(low, 16)


# The assembler's name for Change's constructor.
new_change = Change
