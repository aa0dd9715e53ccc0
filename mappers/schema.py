"""Column types and primary keys of the source tables, read from the voucher engine's schema.

The mappers need them to bring row values into canonical form (`sqltypes.canonical`), to type
literals in rule conditions, and to key the reference state. They are parsed once from the
packaged `voucher_schema.sql` with pglast. Columns the schema does not know (added later by
`ALTER TABLE`) pass through untouched; a table it does not know is keyed by `id`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from importlib import resources
from typing import Any

from pglast import ast, parse_sql

from mappers.sqltypes import CANONICAL, SqlType, TYPE_NAMES


@dataclass(frozen=True, slots=True)
class TableSchema:
    name: str
    columns: Mapping[str, SqlType]
    primary_key: tuple[str, ...]
    # column -> canonical converter, built once so the hot loop does one lookup per column
    converters: Mapping[str, Callable[[Any], Any]]

    def canonical_row(self, row: Mapping[str, Any]) -> dict[str, Any]:
        """A copy of `row` with every known column in canonical form."""
        converters = self.converters
        result = {}
        for column, value in row.items():
            converter = converters.get(column)
            result[column] = value if value is None or converter is None else converter(value)
        return result

    def key_of(self, row: Mapping[str, Any]) -> str | None:
        """The primary key of `row` as one string (composite keys joined by '/')."""
        values = [row.get(column) for column in self.primary_key]
        if any(value is None for value in values):
            return None
        return "/".join(str(value) for value in values)


def table_schema(name: str, columns: Mapping[str, SqlType], primary_key: tuple[str, ...]) -> TableSchema:
    converters = {column: CANONICAL[sql_type] for column, sql_type in columns.items()
                  if sql_type in CANONICAL}
    return TableSchema(name, dict(columns), primary_key, converters)


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
            elif isinstance(element, ast.Constraint) and element.contype.name == "CONSTR_PRIMARY":
                primary_key = tuple(key.sval for key in element.keys)
        # Without a primary key (segment_customer) the whole row identifies it.
        tables[statement.relation.relname] = table_schema(
            statement.relation.relname, columns, primary_key or tuple(columns))
    return Schema(tables)


def voucher_schema() -> Schema:
    """The voucher engine's schema as packaged with the reader."""
    sql = resources.files("cdc_reader").joinpath("voucher_schema.sql").read_text()
    return parse_schema(sql)
