"""Initial snapshot: reads the tracked tables inside the replication slot's exported snapshot, so
existing rows become events with no gap and no overlap with the stream that starts at the slot's
consistent point.

Tables are split into ranges (PeerDB's way): by primary key, or by ctid pages for a table
without one (segment_customer). Several connections share the exported snapshot (`SET
TRANSACTION SNAPSHOT`) and read the ranges with binary COPY in background threads, each range
into a bounded queue of row batches; the caller gets the rows range by range in the planned
order: tables in the order given (the mappers' dependency order), each table's rows in primary
key order, as `SELECT * ... ORDER BY <key>` would give them. Values are loaded by psycopg's
binary loaders (the compiled `cdc_reader/copyrows.pyx` takes the rows off the connection), so
each row is the same dict of the same Python values that `SELECT *` returns, or, for a table
read for only some of its columns, that `SELECT *` returns of those columns.
Memory stays bounded for a table of any size: at most SNAPSHOT_CONNECTIONS ranges are in flight,
each holding at most QUEUE_BATCHES batches of BATCH_ROWS rows.
"""

from __future__ import annotations

import math
import queue
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql
from psycopg.pq import Format
from psycopg.types.json import set_json_loads

from cdc_reader.copyrows import CopyRows, copy_failure
from cdc_reader.loaders import json_loads

# Connections reading at once. The machine the sidecar shares with PostgreSQL may have two cores,
# and the mapping (one Python thread) is the slowest part: two readers keep it fed without
# taking PostgreSQL's core away (tests/bench/snapshot.py, docs/benchmarks.md).
SNAPSHOT_CONNECTIONS = 2
RANGE_ROWS = 50_000  # rows per range, as estimated from the table's statistics
BATCH_ROWS = 1_000  # rows handed over at once
QUEUE_BATCHES = 8  # batches a range may hold before its reader waits
SAMPLED_PER_RANGE = 50  # sampled keys per range when choosing the boundaries
PROGRESS_INTERVAL = 2.0
TEXT_OID = 25


@dataclass(frozen=True, slots=True)
class Progress:
    table: str
    rows_done: int
    rows_total: int
    rows_per_second: float

    @property
    def eta_seconds(self) -> float | None:
        if self.rows_per_second <= 0:
            return None
        return max(self.rows_total - self.rows_done, 0) / self.rows_per_second


@dataclass(frozen=True, slots=True)
class TableRange:
    """Part of a table: rows whose key (the primary key, or the ctid when there is none) is at
    least `lower` and below `upper` (None: unbounded)."""

    schema: str
    table: str
    columns: tuple[str, ...]
    selected: tuple[sql.Composable, ...]  # what the SELECT lists, one per column
    column_types: tuple[tuple[str, int], ...]  # (column, the type OID COPY sends it as)
    key: tuple[str, ...]  # the primary key; () pages by ctid
    lower: tuple | None
    upper: tuple | None
    estimate: int  # the table's estimated rows


def read_snapshot(dsn: str, snapshot_name: str, tables: Sequence[str], **options: Any) -> Iterator[tuple[str, dict]]:
    """Yield (table, row) for every row of `tables`, table by table in the given order (the
    mappers' dependency order: reference rows before the rows whose events need them), each
    table in primary key order, as of the exported snapshot; `options` as for
    `read_snapshot_batches`."""
    for table, _column_types, rows in read_snapshot_batches(dsn, snapshot_name, tables, **options):
        for row in rows:
            yield table, row


def read_snapshot_batches(
    dsn: str,
    snapshot_name: str,
    tables: Sequence[str],
    *,
    schema: str = "public",
    range_rows: int = RANGE_ROWS,
    connections: int = SNAPSHOT_CONNECTIONS,
    on_progress: Callable[[Progress], None] | None = None,
    prepare: Callable[[psycopg.Connection], None] | None = None,
    columns: Mapping[str, frozenset[str] | None] | None = None,
) -> Iterator[tuple[str, tuple[tuple[str, int], ...], list[dict]]]:
    """`read_snapshot`'s rows in batches: (table, column_types, rows), where `column_types` is
    the table's (column, type OID) pairs as read (one tuple per table, shared by its batches).
    `prepare` is called with a connection in the snapshot before the first batch (e.g. to read
    what mapping the rows needs to know, with `distinct_values`). `columns`: per table, the
    only columns to read (None or absent: all of them)."""
    report = on_progress or (lambda _progress: None)
    with psycopg.connect(dsn) as conn:
        _enter_snapshot(conn, snapshot_name)
        ranges = plan_ranges(conn, tables, schema=schema, range_rows=range_rows, columns=columns)
        if prepare is not None:
            prepare(conn)
        conn.rollback()
    readers = _Readers(dsn, snapshot_name, ranges, connections)
    try:
        table, done, started, last_report, total = None, 0, 0.0, 0.0, 0
        for part in ranges:
            if part.table != table:
                if table is not None:
                    report(Progress(table, done, done, done / max(time.monotonic() - started, 1e-9)))
                table, done, total = part.table, 0, part.estimate
                started = last_report = time.monotonic()
            name, column_types = part.table, part.column_types
            for batch in readers.batches(part):
                yield name, column_types, batch
                done += len(batch)
                now = time.monotonic()
                if now - last_report >= PROGRESS_INTERVAL:
                    last_report = now
                    report(Progress(name, done, max(total, done), done / (now - started)))
        if table is not None:
            report(Progress(table, done, done, done / max(time.monotonic() - started, 1e-9)))
        # (tables without rows still report: their one range ends at once)
    finally:
        readers.close()


def distinct_values(conn: psycopg.Connection, table: str, column: str, schema: str = "public") -> set[Any]:
    """The values of `column` in `table`, each once."""
    query = sql.SQL("SELECT DISTINCT {} FROM {}").format(sql.Identifier(column), sql.Identifier(schema, table))
    return {value for (value,) in conn.execute(query)}


def plan_ranges(conn: psycopg.Connection, tables: Sequence[str], *, schema: str = "public",
                range_rows: int = RANGE_ROWS, columns: Mapping[str, frozenset[str] | None] | None = None,
                ) -> list[TableRange]:
    """The ranges that cover every row of `tables` exactly once, in reading order; `conn` is in
    the snapshot (the boundaries are sampled there, so any boundaries are correct: every key
    falls in exactly one half-open range). `columns` as for `read_snapshot_batches`."""
    ranges: list[TableRange] = []
    wanted = columns or {}
    for table in tables:
        names, selected, column_types = _columns(conn, schema, table, wanted.get(table))
        key = _primary_key(conn, schema, table)
        estimate = _estimate_rows(conn, schema, table)
        if key:
            bounds = _key_boundaries(conn, schema, table, key, estimate, range_rows)
        else:
            bounds = _page_boundaries(conn, schema, table, estimate, range_rows)
        edges = [None, *bounds, None]
        for lower, upper in zip(edges, edges[1:]):
            ranges.append(TableRange(schema, table, names, selected, column_types, key, lower, upper, estimate))
    return ranges


def range_query(part: TableRange) -> sql.Composed:
    """SELECT of one range's rows, in key order (a ctid range in the order the pages are read)."""
    relation = sql.Identifier(part.schema, part.table)
    key = sql.SQL(", ").join(map(sql.Identifier, part.key)) if part.key else sql.SQL("ctid")
    conditions = []
    for operator, bound in ((">=", part.lower), ("<", part.upper)):
        if bound is None:
            continue
        if part.key:
            values = sql.SQL(", ").join(map(sql.Literal, bound))
        else:
            values = sql.SQL("{}::tid").format(sql.Literal(f"({bound[0]},0)"))
        conditions.append(sql.SQL("({}) {} ({})").format(key, sql.SQL(operator), values))
    query = sql.SQL("SELECT {} FROM {}").format(sql.SQL(", ").join(part.selected), relation)
    if conditions:
        query += sql.SQL(" WHERE ") + sql.SQL(" AND ").join(conditions)
    if part.key:
        query += sql.SQL(" ORDER BY {}").format(key)
    return query


def _enter_snapshot(conn: psycopg.Connection, snapshot_name: str) -> None:
    # json and jsonb parsed as the stream's are (cdc_reader/loaders.pyx), by orjson: the
    # standard library's parser took a fifth of the reader threads' time, which the mapping
    # thread waits for (they share the interpreter's lock).
    set_json_loads(json_loads, conn)
    conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
    conn.execute(sql.SQL("SET TRANSACTION SNAPSHOT {}").format(sql.Literal(snapshot_name)))


class _Stopped(Exception):
    """The consumer went away: the reader cancels its COPY and ends."""


class _Readers:
    """Background threads, one connection each in the exported snapshot, reading the ranges in
    order: each takes the next range nobody has taken and fills that range's bounded queue.
    The consumer drains the queues in the same order, so the range it waits for is always being
    read (or done), and a reader waiting on a full queue is freed as the consumer catches up."""

    _END = object()

    def __init__(self, dsn: str, snapshot_name: str, ranges: list[TableRange], connections: int) -> None:
        self._ranges = ranges
        self._queues: list[queue.Queue] = [queue.Queue(QUEUE_BATCHES) for _ in ranges]
        self._consumed = 0  # ranges the consumer has finished
        self._next = 0  # ranges the readers have taken
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._run, args=(dsn, snapshot_name), name=f"snapshot-reader-{number}",
                             daemon=True)
            for number in range(max(1, min(connections, len(ranges))))
        ]
        for thread in self._threads:
            thread.start()

    def batches(self, part: TableRange) -> Iterator[list[dict]]:
        """The rows of `part` (the next range in the planned order) in batches; a reader's
        error is raised here."""
        index = self._consumed
        if index >= len(self._ranges) or self._ranges[index] is not part:
            raise RuntimeError("snapshot ranges must be consumed in their planned order")
        pending = self._queues[index]
        while True:
            item = pending.get()
            if item is self._END:
                self._consumed += 1
                return
            if isinstance(item, BaseException):
                raise item
            yield item

    def close(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join()

    def _take(self) -> int | None:
        with self._lock:
            if self._next >= len(self._ranges) or self._stop.is_set():
                return None
            self._next += 1
            return self._next - 1

    def _put(self, index: int, item: object) -> None:
        """Hand `item` over, waiting while the range's queue is full."""
        pending = self._queues[index]
        while True:
            try:
                pending.put(item, timeout=0.1)
                return
            except queue.Full:
                if self._stop.is_set():
                    raise _Stopped from None

    def _run(self, dsn: str, snapshot_name: str) -> None:
        index = None
        try:
            with psycopg.connect(dsn) as conn:
                _enter_snapshot(conn, snapshot_name)
                while (index := self._take()) is not None:
                    self._read(conn, index)
                conn.rollback()
        except _Stopped:
            return
        except BaseException as error:  # handed to the consumer, which raises it
            if index is None:  # not connected: the consumer raises it at the range it waits for
                with self._lock:
                    index = min(self._consumed, len(self._ranges) - 1)
            try:
                self._put(index, error)
            except _Stopped:
                return

    def _read(self, conn: psycopg.Connection, index: int) -> None:
        part = self._ranges[index]
        columns = part.columns
        query = sql.SQL("COPY ({}) TO STDOUT (FORMAT binary)").format(range_query(part))
        with conn.cursor() as cursor, cursor.copy(query) as copy:
            rows = CopyRows(conn, columns, [type_oid for _, type_oid in part.column_types])
            while batch := rows.read(BATCH_ROWS):
                self._put(index, batch)
            if rows.failed:
                raise copy_failure(conn, f"reading {part.table}")
            copy.read()  # the command's end: its result is taken, the connection ready for the next
        self._put(index, self._END)


def _columns(conn: psycopg.Connection, schema: str, table: str, wanted: frozenset[str] | None = None,
             ) -> tuple[tuple[str, ...], tuple[sql.Composable, ...], tuple[tuple[str, int], ...]]:
    """The table's columns in `SELECT *` order (those of them in `wanted`, unless None), how each
    is selected, and the type COPY sends it as: its own, or text (cast) for a type psycopg has no
    binary loader for, so the value is the same str that `SELECT *` gives it."""
    rows = conn.execute(
        "SELECT a.attname, a.atttypid::int FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid "
        "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = %s AND c.relname = %s "
        "AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum", (schema, table),
    ).fetchall()
    if not rows:
        raise psycopg.errors.UndefinedTable(f"relation {schema}.{table} does not exist")
    loaders = conn.adapters
    columns, selected, type_oids = [], [], []
    for name, type_oid in rows:
        if wanted is not None and name not in wanted:
            continue
        columns.append(name)
        if loaders.get_loader(type_oid, Format.BINARY) is not None:
            selected.append(sql.Identifier(name))
            type_oids.append(type_oid)
        else:
            selected.append(sql.SQL("{}::text").format(sql.Identifier(name)))
            type_oids.append(TEXT_OID)
    return tuple(columns), tuple(selected), tuple(zip(columns, type_oids))


def _estimate_rows(conn: psycopg.Connection, schema: str, table: str) -> int:
    row = conn.execute(
        "SELECT c.reltuples::bigint FROM pg_class c JOIN pg_namespace n "
        "ON n.oid = c.relnamespace WHERE n.nspname = %s AND c.relname = %s", (schema, table),
    ).fetchone()
    estimate = row[0] if row else -1
    if estimate < 0:  # never analyzed: count exactly (small tables, in practice)
        return conn.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(schema, table))).fetchone()[0]
    return estimate


def _primary_key(conn: psycopg.Connection, schema: str, table: str) -> tuple[str, ...]:
    rows = conn.execute(
        "SELECT a.attname FROM pg_index i "
        "JOIN pg_class c ON c.oid = i.indrelid JOIN pg_namespace n ON n.oid = c.relnamespace "
        "JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, ord) ON true "
        "JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = k.attnum "
        "WHERE i.indisprimary AND n.nspname = %s AND c.relname = %s ORDER BY k.ord",
        (schema, table),
    ).fetchall()
    return tuple(row[0] for row in rows)


def _key_boundaries(conn: psycopg.Connection, schema: str, table: str, key: tuple[str, ...],
                    estimate: int, range_rows: int) -> list[tuple]:
    """Keys that split the table into ranges of about `range_rows` rows, from a sample of its
    pages (a fixed seed: the same plan for the same table)."""
    parts = math.ceil(estimate / range_rows) if estimate > 0 else 1
    if parts <= 1:
        return []
    percent = min(100.0, 100.0 * parts * SAMPLED_PER_RANGE / estimate)
    key_list = sql.SQL(", ").join(map(sql.Identifier, key))
    sample = conn.execute(
        sql.SQL("SELECT {} FROM {} TABLESAMPLE SYSTEM ({}) REPEATABLE (0) ORDER BY {}").format(
            key_list, sql.Identifier(schema, table), sql.Literal(percent), key_list),
    ).fetchall()
    if len(sample) < parts:
        return []
    step = len(sample) / parts
    bounds = [tuple(sample[int(step * number)]) for number in range(1, parts)]
    return [bound for previous, bound in zip([None, *bounds], bounds) if bound != previous]


def _page_boundaries(conn: psycopg.Connection, schema: str, table: str, estimate: int,
                     range_rows: int) -> list[tuple]:
    """First pages of ctid ranges of about `range_rows` rows; the last range is open, so rows on
    pages added since the statistics were taken are read too."""
    pages = conn.execute(
        "SELECT pg_relation_size(c.oid) / current_setting('block_size')::int FROM pg_class c "
        "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = %s AND c.relname = %s",
        (schema, table),
    ).fetchone()[0]
    parts = math.ceil(estimate / range_rows) if estimate > 0 else 1
    if parts <= 1 or pages <= 1:
        return []
    step = max(1, pages // parts)
    return [(page,) for page in range(step, pages, step)]
