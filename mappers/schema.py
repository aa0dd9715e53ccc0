"""Column types and primary keys of the source tables, read from the voucher engine's schema.

The mappers need them to bring row values into canonical form (`sqltypes.canonical`), to type
literals in rule conditions, and to key the reference state. They are parsed once from the
packaged `voucher_schema.sql` with pglast. Columns the schema does not know (added later by
`ALTER TABLE`) pass through untouched; a table it does not know is keyed by `id`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from functools import cache
from importlib import resources
from itertools import repeat
from typing import Any

from pglast import ast, parse_sql

from mappers.eventids import key_text
from mappers.sqltypes import (
    CANONICAL,
    CANONICAL_TYPES,
    DECODED_CANONICAL,
    TYPE_NAMES,
    SqlType,
)


@dataclass(frozen=True, slots=True)
class TableSchema:
    name: str
    columns: Mapping[str, SqlType]
    primary_key: tuple[str, ...]
    # column -> canonical converter, built once so the hot loop does one lookup per column
    converters: Mapping[str, Callable[[Any], Any]]
    # column -> the Python types (None included) its canonical values have
    canonical_types: Mapping[str, tuple[type, ...]]

    def canonical_row(self, row: Mapping[str, Any]) -> Mapping[str, Any]:
        """`row` with every known column in canonical form: the row itself when it already is
        (what the reader and psycopg deliver: checked in one C-level pass), else a copy."""
        if all(map(isinstance, row.values(), map(self.canonical_types.get, row, repeat(object)))):
            return row
        converters = self.converters
        result = {}
        for column, value in row.items():
            converter = converters.get(column)
            result[column] = value if value is None or converter is None else converter(value)
        return result

    def decoded_canonical(self, column_types: Iterable[tuple[str, int]]) -> bool:
        """Whether every row the reader decodes for a relation with these (column, type OID)
        pairs is already canonical, so `canonical_row` would hand it back as it is: decided
        once per relation, not per row. Columns the schema does not know pass through as is."""
        columns = self.columns
        for column, type_oid in column_types:
            decoded = DECODED_CANONICAL.get(columns.get(column, SqlType.ANY))
            if decoded is not None and type_oid not in decoded:
                return False
        return True

    def key_of(self, row: Mapping[str, Any]) -> Any:
        """The primary key of `row`: its value, or for a composite key the values joined by '/'
        as text; None when part of it is missing."""
        if len(self.primary_key) == 1:
            return row.get(self.primary_key[0])
        values = [row.get(column) for column in self.primary_key]
        if any(value is None for value in values):
            return None
        return key_text(values)


def table_schema(name: str, columns: Mapping[str, SqlType], primary_key: tuple[str, ...]) -> TableSchema:
    converters = {column: CANONICAL[sql_type] for column, sql_type in columns.items()
                  if sql_type in CANONICAL}
    canonical_types = {column: (*CANONICAL_TYPES.get(sql_type, (object,)), type(None))
                       for column, sql_type in columns.items()}
    return TableSchema(name, dict(columns), primary_key, converters, canonical_types)


@dataclass(frozen=True, slots=True)
class Schema:
    tables: Mapping[str, TableSchema]

    def table(self, name: str) -> TableSchema:
        known = self.tables.get(name)
        return known if known is not None else table_schema(name, {}, ("id",))


def parse_schema(sql: str) -> Schema:
    """Tables, column types and primary keys of the CREATE TABLE statements in `sql`."""
    tables: dict[str, TableSchema] = {}
    for raw in parse_sql(sql):
        statement = raw.stmt
        if not isinstance(statement, ast.CreateStmt):
            continue
        columns: dict[str, SqlType] = {}
        primary_key: tuple[str, ...] = ()
        for element in statement.tableElts:
            if isinstance(element, ast.ColumnDef):
                type_name = element.typeName.names[-1].sval
                columns[element.colname] = TYPE_NAMES.get(type_name, SqlType.ANY)
                if any(constraint.contype.name == "CONSTR_PRIMARY" for constraint in element.constraints or ()):
                    primary_key = (element.colname,)  # `id uuid PRIMARY KEY`
            elif isinstance(element, ast.Constraint) and element.contype.name == "CONSTR_PRIMARY":
                primary_key = tuple(key.sval for key in element.keys)
        # Without a primary key (segment_customer) the whole row identifies it.
        tables[statement.relation.relname] = table_schema(
            statement.relation.relname, columns, primary_key or tuple(columns))
    return Schema(tables)


def voucher_schema_sql() -> str:
    """The voucher engine's DDL as packaged (`mappers/voucher_schema.sql`)."""
    return resources.files("mappers").joinpath("voucher_schema.sql").read_text()


@cache
def voucher_schema() -> Schema:
    """The voucher engine's schema, parsed once (~13 ms: the state and the catalog both read
    it; callers treat it as read-only)."""
    return parse_schema(voucher_schema_sql())
