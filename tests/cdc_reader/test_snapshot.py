"""The snapshot reader: every row exactly once, as of the exported snapshot, read in key or ctid
ranges by several connections with binary COPY, each row the same dict of the same Python values
that `SELECT *` returns, tables in the order given and each in primary key order."""

import os
import resource
import uuid
from collections import Counter
from datetime import datetime

import psycopg
import pytest
from psycopg import sql
from psycopg.rows import dict_row

from cdc_reader.copyrows import CopyRows, copy_failure
from cdc_reader.snapshot import (
    Progress,
    plan_ranges,
    read_snapshot,
    read_snapshot_batches,
)

TENANT = uuid.UUID("00000000-0000-0000-0000-0000000000a1")


def _seed(db, customers: int, memberships: int) -> tuple[list[uuid.UUID], uuid.UUID]:
    ids = [uuid.UUID(int=i + 1) for i in range(customers)]
    segment = uuid.UUID(int=10_000)
    with db.connect() as conn:
        conn.execute("INSERT INTO tenant (id, name) VALUES (%s, 'acme')", (TENANT,))
        with conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO customer (id, created_at, source_id, tenant_id) VALUES (%s, %s, %s, %s)",
                [(i, datetime(2026, 1, 1), f"src-{i.int}", TENANT) for i in ids],
            )
        conn.execute(
            "INSERT INTO segment (id, name, type, tenant_id) VALUES (%s, 'vip', 'STATIC', %s)", (segment, TENANT)
        )
        with conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO segment_customer (segment_id, customer_id) VALUES (%s, %s)",
                [(segment, ids[i % customers]) for i in range(memberships)],
            )
    return ids, segment


def _exported(conn: psycopg.Connection) -> str:
    conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ")
    return conn.execute("SELECT pg_export_snapshot()").fetchone()[0]


def test_reads_every_row_once_as_of_the_snapshot_in_small_ranges(voucher_db):
    ids, segment = _seed(voucher_db, customers=23, memberships=11)
    with voucher_db.connect() as exporter:
        snapshot = _exported(exporter)
        # Committed after the snapshot: must not be seen.
        voucher_db.execute(
            "INSERT INTO customer (id, source_id, tenant_id) VALUES (%s, 'late', %s)", (uuid.uuid4(), TENANT)
        )
        voucher_db.execute("DELETE FROM customer WHERE id = %s", (ids[0],))
        reports: list[Progress] = []
        rows = list(read_snapshot(
            voucher_db.dsn, snapshot, ["tenant", "segment", "customer", "segment_customer"],
            range_rows=5, connections=2, on_progress=reports.append,
        ))
        exporter.rollback()

    tables = [table for table, _ in rows]
    assert tables == ["tenant"] + ["segment"] + ["customer"] * 23 + ["segment_customer"] * 11
    assert [row["id"] for table, row in rows if table == "customer"] == ids
    assert rows[2][1]["source_id"] == "src-1"
    assert rows[2][1]["created_at"] == datetime(2026, 1, 1)
    members = [row for table, row in rows if table == "segment_customer"]
    assert members[0] == {"segment_id": segment, "customer_id": ids[0]}
    assert sorted(row["customer_id"].int for row in members) == list(range(1, 12))
    final = {report.table: report for report in reports if report.rows_done == report.rows_total}
    assert final["customer"].rows_done == 23
    assert final["segment_customer"].rows_done == 11


def test_key_and_ctid_ranges_cover_every_row_exactly_once(voucher_db):
    """Thousands of rows in many ranges: customers by key (sampled boundaries), segment
    memberships (no primary key) by ctid pages, duplicates included, one table empty."""
    with voucher_db.connect(autocommit=True) as conn:
        conn.execute("INSERT INTO tenant (id, name) VALUES (%s, 'acme')", (TENANT,))
        conn.execute("INSERT INTO segment (id, name, type, tenant_id) VALUES (%s, 's', 'STATIC', %s)",
                     (uuid.UUID(int=7), TENANT))
        conn.execute("INSERT INTO customer (id, source_id, tenant_id) SELECT gen_random_uuid(), 'c' || i, %s "
                     "FROM generate_series(1, 4000) i", (TENANT,))
        conn.execute("INSERT INTO segment_customer (segment_id, customer_id) SELECT %s, c.id FROM customer c, "
                     "generate_series(1, 2) copies", (uuid.UUID(int=7),))
        conn.execute("ANALYZE customer, segment_customer")
        exporter = voucher_db.connect()
        snapshot = _exported(exporter)
        ranges = plan_ranges(exporter, ["customer", "segment_customer", "orders"], range_rows=300)
        expected_customers = [row[0] for row in conn.execute("SELECT id FROM customer ORDER BY id")]
        expected_members = Counter(conn.execute("SELECT segment_id, customer_id FROM segment_customer").fetchall())
    try:
        per_table = Counter(part.table for part in ranges)
        assert per_table["customer"] > 5 and per_table["segment_customer"] > 5 and per_table["orders"] == 1
        batches = list(read_snapshot_batches(
            voucher_db.dsn, snapshot, ["customer", "segment_customer", "orders"], range_rows=300, connections=2))
    finally:
        exporter.close()
    customers = [row["id"] for table, _, rows in batches if table == "customer" for row in rows]
    members = Counter((row["segment_id"], row["customer_id"])
                      for table, _, rows in batches if table == "segment_customer" for row in rows)
    assert customers == expected_customers  # each once, in key order
    assert members == expected_members and sum(members.values()) == 8000
    assert [table for table, _, rows in batches if table == "orders"] == []


def _fill_every_table(conn: psycopg.Connection, rows: int) -> None:
    """Rows in every table of the schema, a value of every column's type in each row, and NULL
    in every nullable column of every third row (foreign keys not enforced)."""
    conn.execute("SET session_replication_role = replica")
    tables = [name for (name,) in conn.execute(
        "SELECT relname FROM pg_class WHERE relkind = 'r' AND relnamespace = 'public'::regnamespace "
        "ORDER BY relname")]
    for table in tables:
        columns = conn.execute(
            "SELECT attname, format_type(atttypid, atttypmod), attnotnull FROM pg_attribute "
            "WHERE attrelid = %s::regclass AND attnum > 0 AND NOT attisdropped ORDER BY attnum", (table,),
        ).fetchall()
        values = []
        for name, type_name, not_null in columns:
            value = {
                "uuid": "md5(%(table)s || i)::uuid",
                "timestamp without time zone": "timestamp '2024-02-29 13:14:15.123456' + i * interval '1 day'",
                "date": "date '1999-12-31' + i",
                "integer": "(i * 7 - 20)::integer",
                "bigint": "i * 10000000000",
                "boolean": "i % 2 = 0",
                "jsonb": "jsonb_build_object('n', i, 'big', 123456789012345678901234 * i, 'small', 0.1 + i, "
                         "'nested', jsonb_build_array(1.5, 'x', null, true))",
                "text": "'text ' || i || ' é'",
            }.get(type_name, f"('v' || i)::{type_name}")
            if not not_null:
                value = f"CASE WHEN i % 3 = 0 THEN NULL ELSE {value} END"
            values.append(sql.SQL(value.replace("%(table)s", "{table}")).format(table=sql.Literal(table)))
        conn.execute(sql.SQL("INSERT INTO {} SELECT {} FROM generate_series(1, {}) i").format(
            sql.Identifier(table), sql.SQL(", ").join(values), sql.Literal(rows)))


def test_rows_are_what_select_star_returns_for_every_table_and_column_type(voucher_db):
    with voucher_db.connect(autocommit=True) as conn:
        _fill_every_table(conn, 40)
        tables = [name for (name,) in conn.execute(
            "SELECT relname FROM pg_class WHERE relkind = 'r' AND relnamespace = 'public'::regnamespace "
            "ORDER BY relname")]
        keyed = {name for (name,) in conn.execute(
            "SELECT c.relname FROM pg_index i JOIN pg_class c ON c.oid = i.indrelid WHERE i.indisprimary")}
        expected = {}
        with conn.cursor(row_factory=dict_row) as cursor:
            for table in tables:
                order = "1" if table not in keyed else "id" if table not in (
                    "publication_vouchers", "voucher_categories") else "1, 2"
                expected[table] = cursor.execute(
                    sql.SQL("SELECT * FROM {} ORDER BY " + order).format(sql.Identifier(table))).fetchall()
    assert len(tables) >= 20 and all(len(rows) == 40 for rows in expected.values())
    with voucher_db.connect() as exporter:
        snapshot = _exported(exporter)
        got: dict[str, list] = {table: [] for table in tables}
        for table, row in read_snapshot(voucher_db.dsn, snapshot, tables, range_rows=15, connections=2):
            got[table].append(row)
    for table in tables:
        rows = got[table]
        if table not in keyed:  # ctid order: compare as a multiset
            rows = sorted(rows, key=repr)
            expected[table] = sorted(expected[table], key=repr)
        assert [list(row.items()) for row in rows] == [list(row.items()) for row in expected[table]], table
        assert [[type(value) for value in row.values()] for row in rows] == [
            [type(value) for value in row.values()] for row in expected[table]], table


def test_a_column_of_a_type_without_a_binary_loader_reads_as_select_star_text(voucher_db):
    with voucher_db.connect(autocommit=True) as conn:
        conn.execute("CREATE TYPE mood AS ENUM ('happy', 'sad')")
        conn.execute("ALTER TABLE tenant ADD COLUMN mood mood, ADD COLUMN place point")
        conn.execute("INSERT INTO tenant (id, name, mood, place) VALUES (%s, 'acme', 'sad', '(1,2)')", (TENANT,))
        expected = conn.cursor(row_factory=dict_row).execute("SELECT * FROM tenant").fetchall()
    with voucher_db.connect() as exporter:
        snapshot = _exported(exporter)
        rows = [row for _, row in read_snapshot(voucher_db.dsn, snapshot, ["tenant"])]
    assert rows == expected
    assert rows[0]["mood"] == "sad"


def test_a_consumer_that_stops_early_leaves_no_reader_behind(voucher_db):
    _seed(voucher_db, customers=3000, memberships=0)
    with voucher_db.connect() as exporter:
        snapshot = _exported(exporter)
        rows = read_snapshot(voucher_db.dsn, snapshot, ["customer"], range_rows=100, connections=2)
        assert next(rows)[0] == "customer"
        rows.close()  # the readers stop, cancel their COPY and disconnect
        exporter.rollback()
        active = exporter.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid() "
            "AND backend_type = 'client backend'").fetchone()[0]
    assert active == 0


def test_snapshot_of_an_unknown_snapshot_name_fails_clearly(voucher_db):
    with pytest.raises(psycopg.Error, match="(?i)snapshot"):
        list(read_snapshot(voucher_db.dsn, "00000003-00000002-1", ["customer"]))


def test_copy_rows_come_in_batches_and_a_failing_copy_gives_its_error(voucher_db):
    good = "SELECT i AS n, 'row ' || i AS label FROM generate_series(1, 2500) i"
    failing = "SELECT CASE WHEN i <= 2000 THEN i ELSE 1 / (i - i) END AS n FROM generate_series(1, 3000) i"
    with voucher_db.connect() as conn:
        with conn.cursor() as cursor, cursor.copy(f"COPY ({good}) TO STDOUT (FORMAT binary)") as copy:
            rows = CopyRows(conn, ("n", "label"), [23, 25])
            batches = []
            while batch := rows.read(1000):
                batches.append(batch)
            assert (rows.ended, rows.failed) == (True, False)
            copy.read()
        assert [len(batch) for batch in batches] == [1000, 1000, 500]
        assert batches[2][-1] == {"n": 2500, "label": "row 2500"}
        assert conn.execute("SELECT 1").fetchone() == (1,)  # the connection is ready again
        with pytest.raises(psycopg.errors.DivisionByZero, match="^counting failed: division by zero$"):
            with conn.cursor() as cursor, cursor.copy(f"COPY ({failing}) TO STDOUT (FORMAT binary)"):
                rows = CopyRows(conn, ("n",), [23])
                read = []
                while batch := rows.read(1000):
                    read.extend(batch)
                assert rows.failed and not rows.ended
                assert read == [{"n": number} for number in range(1, 2001)]
                raise copy_failure(conn, "counting")
        conn.rollback()  # the failed command left the connection idle, in a failed transaction
        assert conn.execute("SELECT 2").fetchone() == (2,)


def test_copy_rows_read_from_a_socket_numbered_past_select_s_limit(voucher_db):
    # select() cannot watch a descriptor past 1023; a sidecar holding the store's files and many
    # connections gets such numbers. Fill the numbers below 1100, then connect.
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < 2048:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(2048, hard), hard))
    placeholders = []
    try:
        while (fd := os.open(os.devnull, os.O_RDONLY)) < 1100:
            placeholders.append(fd)
        os.close(fd)
        with voucher_db.connect() as conn:
            assert conn.pgconn.socket > 1023
            query = "SELECT i AS n FROM generate_series(1, 200000) i"
            with conn.cursor() as cursor, cursor.copy(f"COPY ({query}) TO STDOUT (FORMAT binary)") as copy:
                rows = CopyRows(conn, ("n",), [23])
                count, last = 0, None
                while batch := rows.read(10_000):
                    count, last = count + len(batch), batch[-1]
                assert (rows.ended, rows.failed) == (True, False)
                copy.read()
            assert (count, last) == (200_000, {"n": 200_000})
    finally:
        for fd in placeholders:
            os.close(fd)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
