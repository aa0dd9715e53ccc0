"""How the reference state writes a row to disk: its values as MessagePack (msgspec), typed by
the row's layout (its table, its columns in order and their SQL types), so that a row is
written or read in one C call: ~0.5 us for a customer, against ~3.5 us to pickle it (UUIDs and
timestamps go through Python-level reductions) and ~4 us to unpickle it.

A row is `[tag, value, ...]`, `tag` naming its layout in the state file's `row_layout` table;
the types are kept there with the columns, so a row reads back as it was written whatever the
schema says later. A row no layout fits is pickled: a column the schema does not know (added by
an ALTER TABLE while streaming), a value not of its column's canonical type (a timestamp
PostgreSQL printed as 'infinity', JSON null, a bool in an integer column), an integer past 64
bits, a string with a lone surrogate. Such rows are rare, and pickle is the standard library's
exact round trip for any of those values, which a typed MessagePack layout cannot describe. A
pickle starts with its PROTO opcode (0x80) and a MessagePack array never does, so both kinds read
back from the same column.

jsonb values are written as JSON types (dict, list, str, int, float, bool, None) and read back
as such: canonical jsonb values are parsed JSON (`mappers.sqltypes`), which holds nothing else.
"""

from __future__ import annotations

import pickle
import sqlite3
from collections.abc import Mapping
from typing import Any, Union

import msgspec

from mappers.entitywrite import encode_known
from mappers.sqltypes import CANONICAL_TYPES, SqlType

_PICKLE_START = 0x80  # pickle protocol 2 and later begin with PROTO
MAX_LAYOUTS = 1000  # past this many (columns that change all the time), rows are pickled
_NONE = type(None)
_JSON = frozenset({dict, list, str, int, float, bool, _NONE})


def _field(sql_type: SqlType) -> tuple[Any, frozenset[type]]:
    """The field type a column's values are read back as, and the exact Python types that read
    back as themselves: the canonical types (`sqltypes.CANONICAL_TYPES`) and None, subclasses
    excluded (a bool is an int, a datetime a date); for jsonb, parsed JSON."""
    if sql_type is SqlType.JSONB:
        return Any, _JSON
    types = CANONICAL_TYPES[sql_type]
    return Union[(*types, None)], frozenset((*types, _NONE))  # noqa: UP007


_FIELDS = {sql_type: _field(sql_type) for sql_type in CANONICAL_TYPES}
_asdict = msgspec.structs.asdict

_SCHEMA = """
CREATE TABLE IF NOT EXISTS row_layout (
    tag INTEGER PRIMARY KEY, kind TEXT NOT NULL, columns TEXT NOT NULL
)
"""


class RowCodec:
    """Encodes and decodes the state's rows. `column_types`: per table, its columns' SQL types (the schema's); rows of other tables, or
    with other columns, are pickled. Layouts are added
    to `row_layout` in the connection's open transaction: after a rollback, call `reload`."""

    def __init__(self, connection: sqlite3.Connection,
                 column_types: Mapping[str, Mapping[str, SqlType]] | None = None) -> None:
        self.connection = connection
        self.column_types = column_types or {}
        connection.execute(_SCHEMA)
        self._encode = msgspec.msgpack.Encoder(uuid_format="bytes").encode
        self.reload()

    def reload(self) -> None:
        """Forget every layout and read those the file holds."""
        # (table, columns) -> (tag, each column's accepted types), or None: the row is pickled
        self._layouts: dict[tuple[str, tuple[str, ...]], tuple[int, tuple[frozenset[type], ...]] | None] = {}
        self._structs: list[type] = []
        self._decode: Any = None
        self._last_tag = 0
        for tag, kind, columns in self.connection.execute("SELECT tag, kind, columns FROM row_layout ORDER BY tag"):
            typed = tuple((column, SqlType(sql_type)) for column, sql_type in msgspec.json.decode(columns))
            self._learn(tag, kind, typed)

    def encode(self, table: str, row: Mapping[str, Any]) -> bytes:
        row = row if type(row) is dict else dict(row)
        blob = encode_known(self._layouts, self._encode, table, row)
        if blob is None and (table, columns := tuple(row)) not in self._layouts:
            self._add_layout(table, columns)
            blob = encode_known(self._layouts, self._encode, table, row)
        return blob if blob is not None else pickle.dumps(row, protocol=pickle.HIGHEST_PROTOCOL)

    def fast_path(self) -> tuple[dict, Any]:
        """For the compiled write loop (mappers/entitywrite.pyx): the known layouts, by (table,
        columns), and the MessagePack encoder; a row they do not fit goes through `encode`.
        (The layouts' dict is replaced by `reload`: ask again after one.)"""
        return self._layouts, self._encode

    def decode(self, blob: bytes) -> dict[str, Any]:
        if blob[0] == _PICKLE_START:
            return pickle.loads(blob)
        return _asdict(self._decode(blob))

    def _add_layout(self, table: str, columns: tuple[str, ...]) -> tuple[int, tuple[frozenset[type], ...]] | None:
        types = self.column_types.get(table, {})
        fits = (len(self._structs) < MAX_LAYOUTS and all(column in types and types[column] in _FIELDS
                                                         and column.isidentifier() for column in columns))
        if not fits:
            self._layouts[(table, columns)] = None
            return None
        typed = tuple((column, types[column]) for column in columns)
        # The tag is given, not read back as the last insert's rowid: the state's writes run
        # statements of their own on this connection meanwhile (mappers/entitywrites.py).
        tag = self._last_tag + 1
        self.connection.execute(
            "INSERT INTO row_layout (tag, kind, columns) VALUES (?, ?, ?)",
            (tag, table, msgspec.json.encode([(column, sql_type.value) for column, sql_type in typed]).decode()))
        return self._learn(tag, table, typed)

    def _learn(self, tag: int, table: str, typed: tuple[tuple[str, SqlType], ...]) -> tuple[int, tuple[frozenset[type], ...]]:
        struct = msgspec.defstruct(f"Row{tag}", [(column, _FIELDS[sql_type][0]) for column, sql_type in typed],
                                   array_like=True, tag=tag, tag_field="-")  # no column is named "-"
        self._structs.append(struct)
        self._last_tag = max(self._last_tag, tag)
        self._decode = msgspec.msgpack.Decoder(Union[tuple(self._structs)]).decode  # noqa: UP007
        layout = self._layouts[(table, tuple(column for column, _ in typed))] = (
            tag, tuple(_FIELDS[sql_type][1] for _, sql_type in typed))
        return layout
