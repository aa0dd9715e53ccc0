"""Measures the store choices recorded in docs/store.md, on embedded chDB:

1. writer batch size: rows per second and time per insert (commit-to-queryable latency);
2. how re-delivered copies are hidden from the activity page: no dedup (the baseline, wrong
   results), the store's window read + dedup by id (the choice), `LIMIT 1 BY id`, `FINAL`,
   `DISTINCT` and `GROUP BY id`; for a heavy and a typical customer, both orders, with filters
   and a deep page;
3. the status query;
4. the events table's storage settings for point reads: granule rows and compressed block
   size, on the activity page (one customer's newest 10) and bytes on disk.

Run: python -m tests.bench.store_engine [--events N] [--customers N] [--repeat N] [--json]
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from mappers.events import CustomerEvent
from query.activity_reads import POINT_READ
from query.activity_sql import ActivityQuery, Order, window_sql
from query.schema import DEDUPLICATION_WINDOW, EVENTS, POINT_READ_STORAGE
from query.store import Store, connect
from query.writer import EventWriter

TYPES = (
    "customer.redemption.succeeded", "customer.redemption.failed", "customer.publication.succeeded",
    "customer.order.created", "customer.order.paid", "customer.updated", "customer.segment.entered",
    "customer.voucher.loyalty_card.points_added",
)
CAMPAIGN_TYPES = ("DISCOUNT_COUPONS", "GIFT_VOUCHERS", "LOYALTY_PROGRAM", "PROMOTION")
START = datetime(2024, 1, 1, tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class Population:
    tenant_id: uuid.UUID
    customers: list[uuid.UUID]
    heavy: uuid.UUID
    campaigns: list[uuid.UUID]


def make_events(count: int, customers: int, seed: int = 7) -> tuple[Population, list[CustomerEvent]]:
    """A tenant whose first customer holds 5% of all events; the rest spread evenly."""
    rng = random.Random(seed)
    tenant_id = uuid.UUID(int=rng.getrandbits(128))
    people = [uuid.UUID(int=rng.getrandbits(128)) for _ in range(customers)]
    campaigns = [uuid.UUID(int=rng.getrandbits(128)) for _ in range(20)]
    events = []
    for index in range(count):
        customer = people[0] if index % 20 == 0 else people[rng.randrange(1, customers)]
        campaign = rng.choice(campaigns) if index % 3 else None
        event_type = rng.choice(TYPES)
        events.append(CustomerEvent(
            id=uuid.UUID(int=rng.getrandbits(128)), tenant_id=tenant_id, tenant="bench",
            customer_id=customer,
            created_at=START + timedelta(seconds=index * 3, microseconds=rng.randrange(1000)),
            type=event_type, category="ACTION" if "redemption" in event_type else "EFFECT",
            campaign_id=campaign,
            campaign_type=CAMPAIGN_TYPES[campaigns.index(campaign) % 4] if campaign else "",
            group_id=f"tx_{index:016X}", source="wal",
            data=json.dumps({"customer": {"id": str(customer), "object": "customer"},
                             "event_source": {"channel": "INTERNAL", "source": "wal"},
                             "amount": rng.randrange(100_000)}),
            source_table="redemption", source_lsn=index,
        ))
    return Population(tenant_id, people, people[0], campaigns), events


def timings(action: Callable[[], object], repeat: int) -> dict[str, float]:
    seconds = []
    for _ in range(repeat):
        started = time.perf_counter()
        action()
        seconds.append(time.perf_counter() - started)
    seconds.sort()
    return {
        "p50_ms": round(statistics.median(seconds) * 1000, 2),
        "p99_ms": round(seconds[min(len(seconds) - 1, int(len(seconds) * 0.99))] * 1000, 2),
    }


def bench_batches(store: Store, events: list[CustomerEvent], sizes: tuple[int, ...]) -> dict:
    results = {}
    for size in sizes:
        writer = EventWriter(store, max_rows=size)
        sample = events[: size * max(1, 100_000 // size)]
        started = time.perf_counter()
        inserts = []
        for start in range(0, len(sample), size):
            writer.add(sample[start:start + size])
            writer.mark(start + size)
            began = time.perf_counter()
            writer.flush()
            inserts.append(time.perf_counter() - began)
        total = time.perf_counter() - started
        inserts.sort()
        results[size] = {
            "rows_per_second": round(len(sample) / total),
            "insert_p50_ms": round(statistics.median(inserts) * 1000, 2),
            "insert_max_ms": round(inserts[-1] * 1000, 2),
        }
    return results


# The strategies compared. The SQL ones start from the store's window query (limit + 1 rows)
# and let ClickHouse skip pages with OFFSET; the chosen one is the store's own method.
Strategy = Callable[[Store, Population, uuid.UUID, ActivityQuery], list]


def _sql_strategy(rewrite: Callable[[str], str]) -> Strategy:
    def run(store: Store, population: Population, customer: uuid.UUID, query: ActivityQuery) -> list:
        sql, parameters = window_sql(population.tenant_id, customer, query, None, query.limit + 1)
        return store.rows(rewrite(sql) + " OFFSET {offset:UInt64}", parameters | {"offset": query.offset})
    return run


def _final(sql: str) -> str:
    return sql.replace("FROM customer_events WHERE", "FROM customer_events FINAL WHERE")


def _group_by_id(sql: str) -> str:
    select, _, rest = sql.partition(" FROM customer_events WHERE ")
    where, _, order = rest.partition(" ORDER BY ")
    return (
        "SELECT id, any(type) AS any_type, any(category) AS any_category, any(data) AS any_data, "
        "any(created_at) AS any_created_at, any(group_id) AS any_group_id "
        f"FROM customer_events WHERE {where} GROUP BY id "
        f"ORDER BY {order.replace('created_at', 'any_created_at')}"
    )


def _chosen(store: Store, population: Population, customer: uuid.UUID, query: ActivityQuery) -> list:
    return store.activity(population.tenant_id, customer, query)


STRATEGIES: dict[str, Strategy] = {
    "no dedup (wrong)": _sql_strategy(lambda sql: sql),
    "window+dedup (chosen)": _chosen,
    "LIMIT 1 BY id": _sql_strategy(lambda sql: sql.replace(" LIMIT {window", " LIMIT 1 BY id LIMIT {window")),
    "FINAL": _sql_strategy(_final),
    "DISTINCT": _sql_strategy(lambda sql: sql.replace("SELECT id,", "SELECT DISTINCT id,")),
    "GROUP BY id": _sql_strategy(_group_by_id),
}


def bench_pages(store: Store, population: Population, repeat: int) -> dict:
    typical = population.customers[1]
    cases = {
        "heavy, newest 10": (population.heavy, ActivityQuery()),
        "heavy, oldest 10": (population.heavy, ActivityQuery(order=Order.ASCENDING)),
        "heavy, 100 of 2 types": (population.heavy, ActivityQuery(limit=100, types=TYPES[:2])),
        "heavy, page 50": (population.heavy, ActivityQuery(page=50)),
        "typical, newest 10": (typical, ActivityQuery()),
        "typical, campaign filter": (typical, ActivityQuery(campaign_id=population.campaigns[0])),
    }
    results = {}
    for case, (customer, query) in cases.items():
        results[case] = {}
        for name, strategy in STRATEGIES.items():
            ids = [row[0] if isinstance(row, tuple) else row.id
                   for row in strategy(store, population, customer, query)]
            results[case][name] = timings(lambda: strategy(store, population, customer, query), repeat) | {
                "duplicates_visible": len(ids) - len(set(ids)),
            }
    return results


def bench_status(store: Store, repeat: int) -> dict:
    queries = {
        "count()": "SELECT tenant, count(), max(created_at) FROM customer_events GROUP BY tenant",
        "count() FINAL": (
            "SELECT tenant, count(), max(created_at) FROM customer_events FINAL GROUP BY tenant "
            "SETTINGS do_not_merge_across_partitions_select_final = 1"),
        "uniqExact(id)": "SELECT tenant, uniqExact(id), max(created_at) FROM customer_events GROUP BY tenant",
    }
    return {name: timings(lambda: store.rows(sql, {}), repeat) for name, sql in queries.items()}


# Table settings compared for the page read; the last is the schema's.
STORAGE_VARIANTS = {
    "8192-row granules (default)": "",
    "1024-row granules": "index_granularity = 1024",
    "256-row granules": "index_granularity = 256",
    "256-row granules, 32 KiB blocks (chosen)": POINT_READ_STORAGE,
}


def bench_storage(store: Store, population: Population, repeat: int) -> dict:
    """Copies customer_events into one table per variant and reads the same pages from each."""
    admin = connect(store.location)
    admin.database = store.location.database
    results = {}
    try:
        for number, (name, settings) in enumerate(STORAGE_VARIANTS.items()):
            table = f"storage_variant_{number}"
            admin.command(f"DROP TABLE IF EXISTS {table}")
            admin.command(
                f"CREATE TABLE {table} ({EVENTS.columns}) ENGINE = ReplacingMergeTree "
                f"PARTITION BY {EVENTS.partition_by} ORDER BY {EVENTS.order_by} "
                f"SETTINGS {', '.join(filter(None, (DEDUPLICATION_WINDOW, settings)))}")
            admin.command(f"INSERT INTO {table} SELECT * FROM customer_events")
            admin.command(f"OPTIMIZE TABLE {table} FINAL")
            row = {"bytes_on_disk": store.rows(
                "SELECT sum(bytes_on_disk) FROM system.parts WHERE database = currentDatabase() "
                "AND table = {table:String} AND active", {"table": table})[0][0]}
            for case, customer in (("typical", population.customers[1]), ("heavy", population.heavy)):
                sql, parameters = window_sql(population.tenant_id, customer, ActivityQuery(), None, 11)
                sql = sql.replace("FROM customer_events ", f"FROM {table} ")
                row[case] = timings(lambda: store.rows(sql, parameters, POINT_READ), repeat)
            results[name] = row
            admin.command(f"DROP TABLE {table}")
    finally:
        admin.close()
    return results


def run(events_count: int, customers: int, repeat: int) -> dict:
    population, events = make_events(events_count, customers)
    with tempfile.TemporaryDirectory(prefix="va-bench-") as root:
        with Store.open(f"chdb://{Path(root) / 'ch'}?database=bench_batches") as store:
            batches = bench_batches(store, events, (100, 1_000, 10_000, 50_000))
        with Store.open(f"chdb://{Path(root) / 'ch'}?database=bench_pages") as store:
            writer = EventWriter(store, max_rows=10_000)
            for start in range(0, len(events), 10_000):
                writer.add(events[start:start + 10_000])
                writer.flush()
            # Re-deliver 5% of the events in differently cut batches, as after a crash: new
            # blocks, new tokens, so the copies land and only the read side can hide them.
            redelivered = events[::20]
            for start in range(0, len(redelivered), 7_000):
                writer.add(redelivered[start:start + 7_000])
                writer.flush()
            stored = store.rows("SELECT count() FROM customer_events", {})[0][0]
            pages = bench_pages(store, population, repeat)
            status = bench_status(store, max(3, repeat // 10))
            storage = bench_storage(store, population, repeat)
    return {
        "events": events_count, "customers": customers, "stored_rows_with_copies": stored,
        "heavy_customer_events": events_count // 20, "batches": batches, "pages": pages,
        "status": status, "storage": storage,
    }


def print_report(report: dict) -> None:
    print(f"{report['events']} events, {report['customers']} customers, "
          f"{report['stored_rows_with_copies']} rows stored including re-delivered copies")
    print("\nwriter batch size -> rows/s, insert p50, insert max")
    for size, row in report["batches"].items():
        print(f"  {size:>6}: {row['rows_per_second']:>9} rows/s  {row['insert_p50_ms']:>8} ms  {row['insert_max_ms']:>8} ms")
    print("\nactivity page p50 / p99 ms (duplicates visible)")
    for case, strategies in report["pages"].items():
        cells = "  ".join(
            f"{name}: {row['p50_ms']}/{row['p99_ms']} ({row['duplicates_visible']})"
            for name, row in strategies.items()
        )
        print(f"  {case:<26} {cells}")
    print("\nstatus query p50 / p99 ms")
    for name, row in report["status"].items():
        print(f"  {name:<16} {row['p50_ms']}/{row['p99_ms']}")
    print("\nevents table settings -> newest 10, typical / heavy customer, p50 / p99 ms; bytes on disk")
    for name, row in report["storage"].items():
        print(f"  {name:<42} {row['typical']['p50_ms']}/{row['typical']['p99_ms']}  "
              f"{row['heavy']['p50_ms']}/{row['heavy']['p99_ms']}  {row['bytes_on_disk']:,}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.bench.store_engine", description=__doc__)
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--customers", type=int, default=20_000)
    parser.add_argument("--repeat", type=int, default=50)
    parser.add_argument("--json", action="store_true", help="print the raw numbers as JSON")
    args = parser.parse_args(argv)
    report = run(args.events, args.customers, args.repeat)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print_report(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
