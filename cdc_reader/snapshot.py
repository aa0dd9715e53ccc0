"""Initial snapshot: reads the tracked tables inside the replication slot's exported snapshot,
in primary-key chunks, so existing rows become events with no gap and no overlap with the
stream that starts at the slot's consistent point.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import psycopg
from psycopg import sql
from psycopg.rows import dict_row

CHUNK_ROWS = 5000
PROGRESS_INTERVAL = 2.0


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


def read_snapshot(
    dsn: str,
    snapshot_name: str,
    tables: Sequence[str],
    *,
    schema: str = "public",
    chunk_rows: int = CHUNK_ROWS,
    on_progress: Callable[[Progress], None] | None = None,
) -> Iterator[tuple[str, dict]]:
    """Yield (table, row) for every row of `tables`, table by table in the given order (the
    mappers' dependency order: reference rows before the rows whose events need them), as of
    the exported snapshot."""
    report = on_progress or (lambda _progress: None)
    with psycopg.connect(dsn, row_factory=dict_row) as conn:
        conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
        conn.execute(sql.SQL("SET TRANSACTION SNAPSHOT {}").format(sql.Literal(snapshot_name)))
        for table in tables:
            total = _estimate_rows(conn, schema, table)
            started = time.monotonic()
            last_report = started
            done = 0
            for row in _rows_by_key(conn, schema, table, chunk_rows):
                done += 1
                yield table, row
                now = time.monotonic()
                if now - last_report >= PROGRESS_INTERVAL:
                    last_report = now
                    report(Progress(table, done, max(total, done), done / (now - started)))
            elapsed = max(time.monotonic() - started, 1e-9)
            report(Progress(table, done, done, done / elapsed))
        conn.rollback()


def _estimate_rows(conn: psycopg.Connection, schema: str, table: str) -> int:
    row = conn.execute(
        "SELECT c.reltuples::bigint AS estimate FROM pg_class c JOIN pg_namespace n "
        "ON n.oid = c.relnamespace WHERE n.nspname = %s AND c.relname = %s", (schema, table),
    ).fetchone()
    estimate = row["estimate"] if row else -1
    if estimate < 0:  # never analyzed: count exactly (small tables, in practice)
        count = conn.execute(
            sql.SQL("SELECT count(*) AS n FROM {}.{}").format(sql.Identifier(schema), sql.Identifier(table))
        ).fetchone()
        return count["n"]
    return estimate


def _primary_key(conn: psycopg.Connection, schema: str, table: str) -> list[str]:
    rows = conn.execute(
        "SELECT a.attname FROM pg_index i "
        "JOIN pg_class c ON c.oid = i.indrelid JOIN pg_namespace n ON n.oid = c.relnamespace "
        "JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, ord) ON true "
        "JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = k.attnum "
        "WHERE i.indisprimary AND n.nspname = %s AND c.relname = %s ORDER BY k.ord",
        (schema, table),
    ).fetchall()
    return [row["attname"] for row in rows]


def _rows_by_key(conn: psycopg.Connection, schema: str, table: str, chunk_rows: int) -> Iterator[dict]:
    """Keyset pagination on the primary key; tables without one (segment_customer) page by ctid,
    which is stable inside one snapshot."""
    key = _primary_key(conn, schema, table)
    by_ctid = not key
    key_columns = ["ctid"] if by_ctid else key
    relation = sql.SQL("{}.{}").format(sql.Identifier(schema), sql.Identifier(table))
    key_list = sql.SQL(", ").join(sql.Identifier(column) for column in key_columns)
    select = sql.SQL("SELECT ctid::text AS va_ctid, * FROM {}") if by_ctid else sql.SQL("SELECT * FROM {}")
    select = select.format(relation)
    order = sql.SQL(" ORDER BY {} LIMIT {}").format(key_list, sql.Literal(chunk_rows))
    last: tuple | None = None
    while True:
        if last is None:
            query = select + order
            params: tuple = ()
        else:
            placeholders = sql.SQL(", ").join(
                sql.SQL("%s::tid") if by_ctid else sql.Placeholder() for _ in key_columns
            )
            query = select + sql.SQL(" WHERE ({}) > ({})").format(key_list, placeholders) + order
            params = last
        rows = conn.execute(query, params).fetchall()
        if not rows:
            return
        tail = rows[-1]
        last = (tail["va_ctid"],) if by_ctid else tuple(tail[column] for column in key_columns)
        for row in rows:
            if by_ctid:
                del row["va_ctid"]
            yield row
        if len(rows) < chunk_rows:
            return
