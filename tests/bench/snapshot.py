"""8. Initial snapshot: the sidecar (the real Pipeline into embedded chDB, in this process) taking
the initial snapshot of a voucher database that already holds a realistic history, against
PostgreSQL reading the same tables with `COPY (SELECT ...) TO STDOUT (FORMAT binary)` to nowhere.

The seed is server-side SQL (generate_series): per customer (with metadata) about one voucher
(60% held), 1.2 orders with two items each, 1.2 redemptions (10% failed, a tenth rolled back),
0.8 publications with their publication_vouchers row, 0.8 segment memberships, 0.8 balance
transactions (points added, credits added, points expired) and 1.2 customer_event rows; every
column type of the schema occurs. The sidecar is timed from its start (the slot is created then)
until every snapshot event is stored and streaming has begun (`PipelineProgress.streaming`).
The reference reads the same key or ctid ranges (`cdc_reader.snapshot.plan_ranges`) of the same
columns (those the mapping reads, `mappers.tracked_columns`) through the same number of
connections the reader uses (`SNAPSHOT_CONNECTIONS`), in one exported snapshot.
One more snapshot runs under cProfile for the profile summary.

Run: python -m tests.bench snapshot [--scale small|full]
"""

from __future__ import annotations

import cProfile
import pstats
import queue
import threading
import time
from pathlib import Path

import psycopg
from psycopg import sql

from cdc_reader.slot import ensure_publication
from cdc_reader.snapshot import SNAPSHOT_CONNECTIONS, plan_ranges, range_query
from mappers import tracked_columns, tracked_tables
from query.store import Store
from tests.bench import engine_sql, source
from tests.bench.profile import summarize
from tests.bench.report import Figure, Outcome, entry_point, log
from tests.bench.scale import Scale
from voucher_activity.memory import tune_collector
from voucher_activity.pipeline import Pipeline

TARGET_RATE = 100_000
SNAPSHOT_TIMEOUT = 3600
ROUNDS = 2


def _id(kind: str, expression: str) -> str:
    return f"md5('{kind}' || ({expression}))::uuid"


def seed_statements(customers: int) -> list[str]:
    """The history, one statement per table (each one transaction). Customer c belongs to tenant
    c % 2; voucher v to tenant v % 2 and campaign (v % 2) * 4 + (v / 2) % 4 (engine_sql's ids);
    everything a customer did uses a voucher of its own tenant."""
    n = customers
    vouchers = n
    orders = n * 6 // 5
    redemptions = n * 6 // 5
    half = vouchers // 2
    own_voucher = f"((({{x}})::bigint * 7919) % {half}) * 2 + ({{c}}) % 2"  # bigint: x * 7919 passes 2^31
    campaign = _id("k", "((v) % 2) * 4 + ((v) / 2) % 4")
    when = "timestamp '2024-01-01' + ({}) * interval '37 seconds'"
    return [
        *engine_sql.seed_statements(0, 0),  # tenants and their campaigns
        "INSERT INTO segment (id, created_at, updated_at, name, type, filter, tenant_id) "
        f"SELECT {_id('g', 's')}, {when.format('s')}, {when.format('s')}, 'Segment ' || s, "
        "(ARRAY['STATIC', 'AUTO_UPDATE'])[s % 2 + 1], '{\"junction\": \"and\"}', "
        f"{_id('t', 's % 2')} FROM generate_series(0, 19) s",
        "INSERT INTO customer (id, created_at, updated_at, source_id, name, description, email, phone, "
        "birthdate, metadata, tenant_id, city, country, postal_code) "
        f"SELECT {_id('c', 'c')}, {when.format('c')}, {when.format('c')}, 'cust-' || c, 'Customer ' || c, "
        "CASE WHEN c % 5 = 0 THEN NULL ELSE 'A customer since ' || c END, 'c' || c || '@example.com', "
        "CASE WHEN c % 3 = 0 THEN NULL ELSE '+49 30 ' || c END, "
        "CASE WHEN c % 4 = 0 THEN NULL ELSE date '1960-01-01' + (c % 15000) END, "
        "jsonb_build_object('tier', (ARRAY['bronze', 'silver', 'gold'])[c % 3 + 1], 'visits', c % 97), "
        f"{_id('t', 'c % 2')}, 'Berlin', 'DE', (10000 + c % 90000)::text "
        f"FROM generate_series(0, {n - 1}) c",
        "INSERT INTO voucher (id, created_at, updated_at, code, campaign_id, type, loyalty_card_json, "
        "start_date, active, metadata, holder_id, tenant_id, redemption_json) "
        f"SELECT {_id('v', 'v')}, {when.format('v')}, {when.format('v')}, 'V-' || v, {campaign}, "
        "(ARRAY['DISCOUNT_VOUCHER', 'GIFT_VOUCHER', 'LOYALTY_CARD', 'DISCOUNT_VOUCHER'])[(v / 2) % 4 + 1], "
        "CASE WHEN (v / 2) % 4 = 2 THEN jsonb_build_object('points', v % 1000) END, "
        f"{when.format('v')}, v % 10 <> 0, '{{\"source\": \"bench\"}}', "
        f"CASE WHEN v % 5 < 3 THEN {_id('c', 'v')} END, {_id('t', 'v % 2')}, "
        f"jsonb_build_object('redeemed_quantity', v % 3) FROM generate_series(0, {vouchers - 1}) v",
        "INSERT INTO orders (id, created_at, updated_at, source_id, status, amount, initial_amount, "
        "discount_amount, metadata, customer_id, tenant_id) "
        f"SELECT {_id('o', 'o')}, {when.format('o')}, {when.format('o')}, 'ord-' || o, "
        "(ARRAY['PAID', 'PAID', 'FULFILLED', 'CREATED', 'CANCELED'])[o % 5 + 1], 100 + o % 20000, "
        f"100 + o % 20000, 0, '{{\"channel\": \"web\"}}', {_id('c', f'o % {n}')}, {_id('t', f'(o % {n}) % 2')} "
        f"FROM generate_series(0, {orders - 1}) o",
        "INSERT INTO order_item (id, created_at, updated_at, product_id, sku_id, related_object, quantity, "
        "amount, discount_amount, subtotal_amount, price, product_snapshot, order_id, tenant_id) "
        f"SELECT {_id('i', 'i')}, {when.format('i / 2')}, {when.format('i / 2')}, 'prod_' || i % 50, "
        "'sku_' || i % 200, 'sku', 1 + i % 3, 100 + i % 5000, 0, 100 + i % 5000, 100 + i % 5000, "
        f"jsonb_build_object('name', 'Product ' || i % 50), {_id('o', 'i / 2')}, {_id('t', f'((i / 2) % {n}) % 2')} "
        f"FROM generate_series(0, {2 * orders - 1}) i",
        "INSERT INTO segment_customer (segment_id, customer_id) "
        f"SELECT {_id('g', f'(m % 10) * 2 + (m % {n}) % 2')}, {_id('c', f'm % {n}')} "
        f"FROM generate_series(0, {n * 4 // 5 - 1}) m",
        "INSERT INTO redemption (id, created_at, updated_at, tracking_id, metadata, amount, result, status, "
        "reason, voucher_id, customer_id, order_id, tenant_id) "
        f"SELECT {_id('r', 'r')}, {when.format('r')}, {when.format('r')}, 'track-' || r, "
        "'{\"store\": \"online\"}', 100 + r % 20000, CASE WHEN r % 10 = 9 THEN 'FAILURE' ELSE 'SUCCESS' END, "
        "CASE WHEN r % 10 = 9 THEN 'FAILED' ELSE 'SUCCEEDED' END, "
        "CASE WHEN r % 10 = 9 THEN 'voucher expired' END, "
        f"{_id('v', own_voucher.format(x='r', c=f'r % {n}'))}, {_id('c', f'r % {n}')}, "
        f"CASE WHEN r < {orders} THEN {_id('o', 'r')} END, {_id('t', f'(r % {n}) % 2')} "
        f"FROM generate_series(0, {redemptions - 1}) r",
        "INSERT INTO redemption_rollback (id, date, tracking_id, metadata, amount, result, reason, "
        "redemption_id, customer_id, tenant_id) "
        f"SELECT {_id('b', 'b')}, {when.format('b * 10 + 5')}, 'track-' || b * 10, NULL, 100 + (b * 10) % 20000, "
        "CASE WHEN b % 20 = 19 THEN 'FAILURE' ELSE 'SUCCESS' END, 'customer returned the goods', "
        f"{_id('r', 'b * 10')}, {_id('c', f'(b * 10) % {n}')}, {_id('t', f'((b * 10) % {n}) % 2')} "
        f"FROM generate_series(0, {redemptions // 10 - 1}) b",
        "INSERT INTO publication (id, created_at, updated_at, voucher_id, customer_id, campaign_id, result, "
        "failure_code, source_id, channel, metadata, tenant_id) "
        f"SELECT {_id('p', 'p')}, {when.format('p')}, {when.format('p')}, "
        f"{_id('v', own_voucher.format(x='p + 1', c=f'p % {n}'))}, {_id('c', f'p % {n}')}, "
        f"{_id('k', f'(p % {n} % 2) * 4')}, CASE WHEN p % 25 = 0 THEN 'FAILURE' ELSE 'SUCCESS' END, "
        "CASE WHEN p % 25 = 0 THEN 'voucher_not_found' END, 'pub-' || p, 'API', NULL, "
        f"{_id('t', f'(p % {n}) % 2')} FROM generate_series(0, {n * 4 // 5 - 1}) p",
        "INSERT INTO publication_vouchers (publication_id, voucher_id) "
        f"SELECT {_id('p', 'p')}, {_id('v', own_voucher.format(x='p + 1', c=f'p % {n}'))} "
        f"FROM generate_series(0, {n * 4 // 5 - 1}) p",
        "INSERT INTO voucher_transaction (id, created_at, updated_at, source_id, voucher_id, campaign_id, "
        "type, source, reason, amount, balance_after, details, tenant_id) "
        f"SELECT {_id('x', 'x')}, {when.format('x')}, {when.format('x')}, 'tx-' || x, "
        f"{_id('v', own_voucher.format(x='x + 2', c=f'x % {n}'))}, "
        f"{_id('k', f'(x % {n} % 2) * 4 + 2')}, "
        "(ARRAY['POINTS_ADDITION', 'POINTS_ADDITION', 'CREDITS_ADDITION', 'POINTS_EXPIRATION'])[x % 4 + 1], "
        "'API', NULL, 10 + x % 500, 10 + x % 5000, '{\"by\": \"bench\"}', "
        f"{_id('t', f'(x % {n}) % 2')} FROM generate_series(0, {n * 4 // 5 - 1}) x",
        "INSERT INTO customer_event (id, created_at, updated_at, event_type, customer_id, campaign_id, "
        "category, data, group_id, event_source, tenant_id) "
        f"SELECT {_id('e', 'e')}, {when.format('e')}, {when.format('e')}, "
        "(ARRAY['customer.created', 'customer.updated', 'customer.redemption.succeeded', "
        "'customer.redemption.failed', 'customer.segment.left', 'customer.updated'])[e % 6 + 1], "
        f"{_id('c', f'e % {n}')}::text, CASE WHEN e % 6 IN (2, 3) THEN {_id('k', f'(e % {n} % 2) * 4')}::text END, "
        "CASE WHEN e % 6 IN (2, 3) THEN 'ACTION' ELSE 'EFFECT' END, "
        "jsonb_build_object('note', 'event ' || e, 'amount', e % 1000), NULL, 'API', "
        f"{_id('t', f'(e % {n}) % 2')} FROM generate_series(0, {n * 6 // 5 - 1}) e",
        "ANALYZE",
    ]


def seed(dsn: str, customers: int) -> dict[str, int]:
    """Seeds the history; returns rows per tracked table."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        for statement in seed_statements(customers):
            conn.execute(statement)
        return {table: conn.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(table))).fetchone()[0]
                for table in tracked_tables()}


def snapshot_with_pipeline(dsn: str, slot: str, data_dir: Path, store: Store,
                           profiler: cProfile.Profile | None = None, cpu_seconds: list[float] | None = None) -> float:
    """Seconds from starting the pipeline (it creates the slot) until it streams: every snapshot
    event is stored and the reference state committed. `cpu_seconds` receives the pipeline
    thread's CPU time."""

    def streaming(pipeline: Pipeline, stop: threading.Event) -> float:
        deadline = time.monotonic() + SNAPSHOT_TIMEOUT
        while not pipeline.progress.streaming and not stop.is_set():
            if time.monotonic() > deadline:
                raise TimeoutError(f"the snapshot of {slot} did not finish within {SNAPSHOT_TIMEOUT} s")
            time.sleep(0.01)
        return time.monotonic()

    seconds = source.time_pipeline(dsn, slot, data_dir, store, "initial", streaming, profiler, cpu_seconds)
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("SELECT pg_drop_replication_slot(%s)", (slot,))
    return seconds


def copy_reference(dsn: str) -> float:
    """Seconds to read every tracked table with binary COPY in one exported snapshot, the same
    ranges and columns through the same number of connections as the reader, the bytes discarded."""
    with psycopg.connect(dsn) as exporter:
        exporter.execute("BEGIN ISOLATION LEVEL REPEATABLE READ")
        snapshot = exporter.execute("SELECT pg_export_snapshot()").fetchone()[0]
        started = time.monotonic()
        ranges = plan_ranges(exporter, tracked_tables(), columns=tracked_columns())
        work: queue.SimpleQueue = queue.SimpleQueue()
        for item in ranges:
            work.put(item)
        failure: list[BaseException] = []

        def reader() -> None:
            try:
                with psycopg.connect(dsn) as conn:
                    conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
                    conn.execute(sql.SQL("SET TRANSACTION SNAPSHOT {}").format(sql.Literal(snapshot)))
                    with conn.cursor() as cursor:
                        while True:
                            try:
                                item = work.get_nowait()
                            except queue.Empty:
                                return
                            query = sql.SQL("COPY ({}) TO STDOUT (FORMAT binary)").format(range_query(item))
                            with cursor.copy(query) as copy:
                                for _block in copy:
                                    pass
            except BaseException as error:  # re-raised below
                failure.append(error)

        threads = [threading.Thread(target=reader) for _ in range(SNAPSHOT_CONNECTIONS)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        seconds = time.monotonic() - started
        exporter.rollback()
    if failure:
        raise failure[0]
    return seconds


def run(scale: Scale, workdir: Path) -> Outcome:
    cluster = source.start_cluster(workdir / "pg")
    stores: list[Store] = []
    try:
        dsn = source.create_voucher_database(cluster, "voucher")
        with psycopg.connect(dsn, autocommit=True) as conn:
            ensure_publication(conn, source.PUBLICATION, tracked_tables())
        started = time.monotonic()
        counts = seed(dsn, scale.snapshot_customers)
        rows = sum(counts.values())
        log(f"snapshot: seeded {rows:,} rows in {time.monotonic() - started:.1f} s: "
            + ", ".join(f"{table} {count:,}" for table, count in counts.items()))
        tune_collector()  # as `voucher-activity run` does once started
        their_seconds, our_seconds, our_cpu = [], [], []
        for number in range(ROUNDS):
            their_seconds.append(copy_reference(dsn))
            slot = f"snapshot_{number}"
            stores.append(Store.open(f"chdb://{workdir / 'clickhouse'}?database={slot}"))
            our_seconds.append(snapshot_with_pipeline(dsn, slot, workdir / slot, stores[-1], cpu_seconds=our_cpu))
            log(f"snapshot round {number + 1}: binary COPY {their_seconds[-1]:.2f} s, "
                f"sidecar {our_seconds[-1]:.2f} s (pipeline thread CPU {our_cpu[-1]:.2f} s)")
        profiler = cProfile.Profile()
        stores.append(Store.open(f"chdb://{workdir / 'clickhouse'}?database=snapshot_profiled"))
        profiled_seconds = snapshot_with_pipeline(dsn, "snapshot_profiled", workdir / "profiled", stores[-1], profiler)
        profiler.dump_stats(workdir / "profile.pstats")  # read it with pstats (bench --keep keeps it)
        events = stores[0].rows("SELECT count() FROM customer_events", {})[0][0]
    finally:
        for store in stores:
            store.close()
        cluster.destroy()
    ours_rate, their_rate = rows / min(our_seconds), rows / min(their_seconds)
    figure = Figure(
        "8. snapshot", f"initial snapshot of {rows:,} rows over {len(counts)} tables, end to end",
        "rows/s", ours_rate, their_rate, f"binary COPY, {SNAPSHOT_CONNECTIONS} connections",
        higher_is_better=True, target=f">= {TARGET_RATE:,}/s", met=ours_rate >= TARGET_RATE,
    )
    notes = "\n".join([
        "### 8. Initial snapshot",
        "Rows: " + ", ".join(f"{table} {count:,}" for table, count in counts.items()) + f". They became "
        f"{events:,} events ({events / min(our_seconds):,.0f} events/s). Rounds (s): sidecar "
        f"{', '.join(f'{s:.2f}' for s in our_seconds)}; binary COPY {', '.join(f'{s:.2f}' for s in their_seconds)}. "
        "The sidecar's time runs from its start (slot creation) until it streams (every snapshot event "
        "stored, the reference state committed).",
        "",
        f"Profile of one more sidecar snapshot under cProfile ({profiled_seconds:.1f} s wall with profiling "
        "overhead; own time of the pipeline thread, built-ins charged to their callers):",
        "",
        summarize(pstats.Stats(profiler)),
    ])
    return Outcome([figure], notes)


main = entry_point("snapshot", __doc__, run)
