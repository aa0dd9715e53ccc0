"""Reader throughput: our replication session (receive + decode + assemble + confirm) against
PostgreSQL's own C client `pg_recvlogical` (receive only, to /dev/null), on the same WAL.

A throwaway cluster gets identical pgoutput slots (two per round), then N customer/redemption-like
row changes (transactions of 2 inserts and 2 updates, as the engine's redemptions write them);
in each round one slot is drained to the end LSN by each client. The best round of each counts
(the machine may be shared). Target: ours >= 0.6x pg_recvlogical.

Run: python -m tests.bench reader [--changes N] [--rounds R]
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import psycopg

from cdc_reader.changes import Change, TransactionCommit, format_lsn, parse_lsn
from cdc_reader.replication import ReplicationSession, protocol_version
from cdc_reader.slot import create_slot, ensure_publication
from demo.embedded_pg import LocalPostgres, wheel_installation
from mappers.schema import voucher_schema_sql

TABLES = ["customer", "redemption"]
PUBLICATION = "bench"
CHANGES_PER_TRANSACTION = 4

WORKLOAD = """
DO $$
DECLARE
    new_tenant uuid := gen_random_uuid();
    new_customer uuid;
    new_redemption uuid;
BEGIN
    INSERT INTO tenant (id, created_at, name) VALUES (new_tenant, now(), 'bench');
    COMMIT;
    FOR i IN 1..%(transactions)s LOOP
        new_customer := gen_random_uuid();
        new_redemption := gen_random_uuid();
        INSERT INTO customer (id, created_at, updated_at, source_id, name, email, metadata, tenant_id)
        VALUES (new_customer, now(), now(), 'src-' || i, 'Customer ' || i, 'c' || i || '@example.com',
                jsonb_build_object('tier', 'gold', 'visits', i), new_tenant);
        INSERT INTO redemption (id, created_at, updated_at, tracking_id, metadata, amount, result,
                                status, customer_id, tenant_id)
        VALUES (new_redemption, now(), now(), md5(i::text), '{"channel": "api"}', i %% 5000, 'SUCCESS',
                'SUCCEEDED', new_customer, new_tenant);
        UPDATE customer SET name = 'Customer ' || i || ' (vip)', updated_at = now() WHERE id = new_customer;
        UPDATE redemption SET status = 'ROLLED_BACK', updated_at = now() WHERE id = new_redemption;
        COMMIT;
    END LOOP;
END $$
"""


def prepare_cluster(root: Path, transactions: int, rounds: int) -> tuple[LocalPostgres, str, int]:
    """Start a cluster, create the slots, write the workload; returns (cluster, dsn, end LSN)."""
    cluster = LocalPostgres(wheel_installation(), root / "pg")
    cluster.init()
    cluster.start()
    with psycopg.connect(cluster.dsn(), autocommit=True) as conn:
        conn.execute("CREATE DATABASE bench")
    dsn = cluster.dsn("bench")
    schema = voucher_schema_sql()
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(schema)
        ensure_publication(conn, PUBLICATION, TABLES)
        for round_number in range(rounds):
            create_slot(conn, f"recvlogical_{round_number}")
            create_slot(conn, f"session_{round_number}")
        conn.execute(WORKLOAD % {"transactions": transactions})
        end = parse_lsn(conn.execute("SELECT pg_current_wal_lsn()::text").fetchone()[0])
    return cluster, dsn, end


def drain_with_pg_recvlogical(
    cluster: LocalPostgres, dsn: str, slot: str, end: int, version: int
) -> float:
    command = [
        cluster.installation.tool("pg_recvlogical"), "-d", dsn, "--slot", slot, "--start",
        "--endpos", format_lsn(end), "--no-loop", "-F", "0", "-f", "/dev/null",
        "-o", f"proto_version={version}", "-o", f"publication_names={PUBLICATION}",
        "-o", "messages=true",
    ]
    started = time.perf_counter()
    subprocess.run(command, check=True)
    return time.perf_counter() - started


def drain_with_session(dsn: str, slot: str, end: int) -> tuple[float, int]:
    """Seconds from START_REPLICATION to the end LSN, and the changes received."""
    changes = 0
    with ReplicationSession(dsn, slot, PUBLICATION, TABLES) as session:
        session.prepare(export_snapshot=False)
        started = time.perf_counter()
        session.start()
        while session.server_wal_end < end:
            envelopes = session.read(1.0)
            last_commit = None
            for envelope in envelopes:
                if type(envelope) is Change:
                    changes += 1
                elif type(envelope) is TransactionCommit:
                    last_commit = envelope.end_lsn
            if last_commit is not None:
                session.confirm(last_commit)
        return time.perf_counter() - started, changes


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.bench reader", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--changes", type=int, default=200_000, help="row changes to stream")
    parser.add_argument("--rounds", type=int, default=3, help="drains per client; the best counts")
    args = parser.parse_args(argv)
    transactions = max(args.changes // CHANGES_PER_TRANSACTION, 1)
    changes = transactions * CHANGES_PER_TRANSACTION
    root = Path(tempfile.mkdtemp(prefix="va-bench-reader-"))
    cluster = None
    try:
        started = time.perf_counter()
        cluster, dsn, end = prepare_cluster(root, transactions, args.rounds)
        print(f"wrote {changes} changes in {transactions} transactions "
              f"({time.perf_counter() - started:.1f} s, end LSN {format_lsn(end)})")
        with psycopg.connect(dsn) as conn:
            version = protocol_version(conn.info.server_version)
        theirs, ours = [], []
        for round_number in range(args.rounds):
            theirs.append(drain_with_pg_recvlogical(
                cluster, dsn, f"recvlogical_{round_number}", end, version))
            seconds, received = drain_with_session(dsn, f"session_{round_number}", end)
            if received != changes:
                print(f"error: the session received {received} changes, expected {changes}")
                return 1
            ours.append(seconds)
        print(f"pg_recvlogical  {changes / min(theirs):>10,.0f} changes/s  "
              f"(best of {args.rounds}: {min(theirs):.2f} s; all: {_seconds(theirs)})")
        print(f"session         {changes / min(ours):>10,.0f} changes/s  "
              f"(best of {args.rounds}: {min(ours):.2f} s; all: {_seconds(ours)})")
        print(f"ratio           {min(theirs) / min(ours):>10.2f}x  (target >= 0.6x)")
        return 0
    finally:
        if cluster is not None:
            cluster.destroy()
        shutil.rmtree(root, ignore_errors=True)


def _seconds(values: list[float]) -> str:
    return ", ".join(f"{value:.2f}" for value in values)
