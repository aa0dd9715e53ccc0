"""The snapshot reader: every row exactly once, as of the exported snapshot, in key chunks."""

import uuid
from datetime import datetime

import psycopg

from cdc_reader.snapshot import Progress, read_snapshot

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


def test_reads_every_row_once_as_of_the_snapshot_in_small_chunks(voucher_db):
    ids, segment = _seed(voucher_db, customers=23, memberships=11)
    with voucher_db.connect() as exporter:
        exporter.execute("BEGIN ISOLATION LEVEL REPEATABLE READ")
        snapshot = exporter.execute("SELECT pg_export_snapshot()").fetchone()[0]
        # Committed after the snapshot: must not be seen.
        voucher_db.execute(
            "INSERT INTO customer (id, source_id, tenant_id) VALUES (%s, 'late', %s)", (uuid.uuid4(), TENANT)
        )
        voucher_db.execute("DELETE FROM customer WHERE id = %s", (ids[0],))
        reports: list[Progress] = []
        rows = list(read_snapshot(
            voucher_db.dsn, snapshot, ["tenant", "segment", "customer", "segment_customer"],
            chunk_rows=5, on_progress=reports.append,
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


def test_snapshot_of_an_unknown_snapshot_name_fails_clearly(voucher_db):
    try:
        list(read_snapshot(voucher_db.dsn, "00000003-00000002-1", ["customer"]))
    except psycopg.Error as error:
        assert "snapshot" in str(error).lower()
    else:
        raise AssertionError("an invalid snapshot name must fail")
