"""`voucher-activity sql "SELECT ..."`: one read-only statement against the store, printed as a
table, CSV or JSON. ClickHouse itself enforces read-only (`readonly=1`), so no statement text
is inspected here."""

from __future__ import annotations

import csv
import sys
import uuid
from datetime import date, datetime
from decimal import Decimal
from typing import Any, TextIO

import orjson
from clickhouse_connect.driver.exceptions import Error as ClickHouseError

from query.store import StoreError, connect, parse_store_url

FORMATS = ("table", "csv", "json")


def _cell(value: Any) -> Any:
    """JSON-friendly value; the table and CSV print its str()."""
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, (date, uuid.UUID, Decimal)):
        return str(value)
    if isinstance(value, bytes):
        return value.decode(errors="replace")
    if isinstance(value, (list, tuple)):
        return [_cell(item) for item in value]
    if isinstance(value, dict):
        return {str(key): _cell(item) for key, item in value.items()}
    return value


def _text(value: Any) -> str:
    value = _cell(value)
    if value is None:
        return "NULL"
    if isinstance(value, (list, dict)):
        return orjson.dumps(value).decode()
    return str(value)


def write_table(names: list[str], rows: list[tuple], out: TextIO) -> None:
    cells = [[_text(value) for value in row] for row in rows]
    widths = [max([len(name)] + [len(row[index]) for row in cells]) for index, name in enumerate(names)]
    print("  ".join(name.ljust(width) for name, width in zip(names, widths)).rstrip(), file=out)
    print("  ".join("-" * width for width in widths), file=out)
    for row in cells:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip(), file=out)
    print(f"({len(rows)} row{'' if len(rows) == 1 else 's'})", file=out)


def write_csv(names: list[str], rows: list[tuple], out: TextIO) -> None:
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(names)
    writer.writerows([["" if value is None else _text(value) for value in row] for row in rows])


def write_json(names: list[str], rows: list[tuple], out: TextIO) -> None:
    records = [{name: _cell(value) for name, value in zip(names, row)} for row in rows]
    out.write(orjson.dumps(records, option=orjson.OPT_INDENT_2).decode() + "\n")


WRITERS = {"table": write_table, "csv": write_csv, "json": write_json}


def run_sql(store_url: str, query: str, format: str = "table", *,
            out: TextIO = sys.stdout, err: TextIO = sys.stderr) -> int:
    """Exit status: 0 printed, 1 the store refused or failed, 2 bad arguments."""
    if format not in WRITERS:
        print(f"voucher-activity sql: --format must be one of {', '.join(FORMATS)}", file=err)
        return 2
    location = parse_store_url(store_url)
    try:
        client = connect(location)
    except StoreError as error:
        print(f"voucher-activity sql: {error}", file=err)
        return 1
    try:
        client.database = location.database
        result = client.query(query, settings={"readonly": 1})
    except (ClickHouseError, OSError) as error:
        print(f"voucher-activity sql: {error}", file=err)
        return 1
    finally:
        client.close()
    WRITERS[format](list(result.column_names), result.result_rows, out)
    return 0
