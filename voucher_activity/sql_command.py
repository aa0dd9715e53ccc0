"""`voucher-activity sql "SELECT ..."`: one read-only statement against the store, printed as a
table, CSV or JSON. ClickHouse itself enforces read-only (`readonly=1`), so no statement text
is inspected here.

Without --store it finds the embedded store under the data directory: `run`'s
(`<data-dir>/clickhouse`), else the demo's (`<data-dir>/demo/clickhouse`). It never opens a
directory that holds no store (chDB would create an empty one there), and says in one sentence
where it looked; a store held by a running process is reported as such, not as chDB's lock text.
"""

from __future__ import annotations

import csv
import fcntl
import os
import socket
import sys
import uuid
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any, TextIO
from urllib.parse import urlparse

import orjson
from clickhouse_connect.driver.exceptions import Error as ClickHouseError

from query.location import DEFAULT_DATABASE, StoreLocation
from query.store import StoreError, connect, parse_store_url

FORMATS = ("table", "csv", "json")


class StoreNotFoundError(Exception):
    """No store where `sql` looked; the message says where, and how to point it elsewhere."""


def embedded_stores(data_dir: Path) -> tuple[Path, Path]:
    """Where the embedded store lives under a data directory: `run`'s, then the demo's."""
    return data_dir / "clickhouse", data_dir / "demo" / "clickhouse"


def holds_database(path: Path, database: str = DEFAULT_DATABASE) -> bool:
    """Whether the ClickHouse data directory `path` holds `database` (its metadata file), read
    from disk: opening the path would create a store there."""
    return (path / "metadata" / f"{database}.sql").is_file()


def locate_store(data_dir: Path) -> str:
    """The URL of the embedded store under `data_dir` (see the module docstring)."""
    for path in embedded_stores(data_dir):
        if holds_database(path):
            return f"chdb://{path.resolve()}"
    places = " or ".join(str(path.resolve()) for path in embedded_stores(data_dir))
    raise StoreNotFoundError(
        f"no voucher-activity store in {places}: run it where `run` or `demo` ran, "
        "or point it at one with --data-dir DIR or --store URL"
    )


def _holder(path: Path) -> int | None:
    """The id of another process that holds the embedded store at `path` open, if one does.
    ClickHouse keeps an exclusive flock on `<path>/status` while it runs and writes its PID
    there; this process may hold it itself (a store it already opened), which is no obstacle."""
    try:
        descriptor = os.open(path / "status", os.O_RDONLY)
    except FileNotFoundError:
        return None
    with open(descriptor, "rb") as status:
        try:
            fcntl.flock(status, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            first = status.readline().decode(errors="replace")
            pid = int(first.partition(":")[2].strip() or 0) if first.startswith("PID:") else 0
            return None if pid == os.getpid() else pid
        fcntl.flock(status, fcntl.LOCK_UN)
    return None


def _listening(endpoint: str) -> bool:
    """Whether something accepts connections at the endpoint URL's host and port."""
    parsed = urlparse(endpoint)
    try:
        with socket.create_connection((parsed.hostname, parsed.port), timeout=1):
            return True
    except OSError:
        return False


def embedded_problem(location: StoreLocation) -> str | None:
    """Why `sql` cannot read the embedded store at `location`, in one sentence; None if it can."""
    path = Path(location.path or "")
    if not holds_database(path, location.database):
        return (f"no voucher-activity store at {path} (no database {location.database}); "
                "point it at one with --data-dir DIR or --store URL")
    holder = _holder(path)
    if holder is not None:
        return (f"the store at {path} is open in another process (pid {holder}, a running `run` or `demo`), "
                "and an embedded store opens in one process at a time: query it through that process's "
                "--sql-listen endpoint, or run `sql` once it has stopped")
    return None


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


def run_sql(store_url: str, query: str, format: str = "table", *, endpoint: str | None = None,
            out: TextIO = sys.stdout, err: TextIO = sys.stderr) -> int:
    """Exit status: 0 printed, 1 the store refused or failed, 2 bad arguments. `endpoint`: the
    URL of the SQL endpoint of the process that holds an embedded store (SPEC §5), used when
    another process holds it."""
    if format not in WRITERS:
        print(f"voucher-activity sql: --format must be one of {', '.join(FORMATS)}", file=err)
        return 2
    location = parse_store_url(store_url)
    if endpoint is not None and location.embedded and holds_database(Path(location.path), location.database) \
            and _holder(Path(location.path)) is not None and _listening(endpoint):
        location = parse_store_url(f"{endpoint}/{location.database}")
    problem = embedded_problem(location) if location.embedded else None
    if problem is not None:
        print(f"voucher-activity sql: {problem}", file=err)
        return 1
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
