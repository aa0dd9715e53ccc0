"""The dashboard's /v1/analytics queries on a large store: `python -m
tests.bench.dashboard_queries [--events N]`. Fills a throwaway chDB store with N events (default 10M; one tenant holds 80%,
1% of rows stored twice as a crash would), then times each query as served (over
customer_events_dedup, i.e. FINAL) against counting distinct ids on the raw table instead.
Results: docs/dashboard.md."""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
import uuid

from query import analytics_sql
from query.activity_sql import ActivityQuery
from query.api.activity import parse_activity_query
from query.store import Store, connect

TENANTS = ("big", "medium", "small")


def _fill(store: Store, events: int) -> None:
    client = connect(store.location)
    client.database = store.location.database
    # Generated server-side: a Python loop would take longer than every query timed below.
    client.command(
        "INSERT INTO customer_events (id, tenant_id, tenant, customer_id, created_at, type, category, "
        "campaign_id, campaign_type, group_id, source, data, source_table, source_lsn) "
        "SELECT generateUUIDv4(), "
        "  toUUID(concat('00000000-0000-0000-0000-', leftPad(toString(t), 12, '0'))), "
        "  ['big','medium','small'][t + 1], "
        "  toUUID(concat('00000000-0000-0000-0001-', leftPad(toString(t * 100000 + rand(1) % 100000), 12, '0'))), "
        "  toDateTime64('2024-01-01 00:00:00', 6, 'UTC') + toIntervalSecond(rand(2) % (365 * 86400)), "
        "  ['customer.publication.succeeded','customer.redemption.succeeded',"
        "   'customer.redemption.rollback.succeeded','customer.order.paid','customer.updated'][rand(3) % 5 + 1] AS type, "
        "  if(type LIKE '%redemption%' OR type LIKE '%order%', 'ACTION', 'EFFECT'), "
        "  if(type LIKE '%order%' OR type = 'customer.updated', NULL, "
        "     toUUID(concat('00000000-0000-0000-0002-', leftPad(toString(rand(4) % 20), 12, '0')))) AS campaign, "
        "  if(campaign IS NULL, '', 'DISCOUNT_COUPONS'), concat('tx_', hex(number)), 'wal', "
        "  if(campaign IS NULL, '{}', concat('{\"campaign\":{\"name\":\"Campaign ', toString(campaign), '\"}}')), "
        "  'redemption', number "
        f"FROM (SELECT number, multiIf(number % 10 < 8, 0, number % 10 < 9, 1, 2) AS t FROM numbers({events}))"
    )
    # Re-delivered copies: 1% of the rows again, in their own parts.
    client.command(
        "INSERT INTO customer_events SELECT * FROM customer_events WHERE cityHash64(id) % 100 = 0"
    )
    client.close()


def _distinct_variant(sql: str) -> str:
    """The same aggregate with dedup by distinct ids over the raw table (the alternative)."""
    return sql.replace("FROM customer_events_dedup", "FROM customer_events").replace(
        "count()", "uniqExact(id)")


def _time(store: Store, sql: str, parameters: dict, rounds: int) -> float:
    timings = []
    for _ in range(rounds):
        started = time.perf_counter()
        store.rows(sql, parameters)
        timings.append(time.perf_counter() - started)
    return statistics.median(timings)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.bench.dashboard_queries")
    parser.add_argument("--events", type=int, default=10_000_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as directory, Store.open(f"chdb://{directory}") as store:
        started = time.perf_counter()
        _fill(store, args.events)
        print(f"filled {args.events} events (+1% copies) in {time.perf_counter() - started:.1f} s")
        big = uuid.UUID(int=0)
        month = parse_activity_query([("start_date", "2024-06-01"), ("end_date", "2024-06-30")])
        print(f"{'query':<16}{'range':<8}{'dedup view':>12}{'uniqExact(id)':>15}")
        for range_name, query in (("year", ActivityQuery()), ("month", month)):
            for name in ("events_per_day", "heatmap", "funnel", "top_customers", "ingest_lag"):
                sql, parameters = getattr(analytics_sql, f"{name}_sql")(big, query)
                served = _time(store, sql, parameters, args.rounds)
                distinct = _distinct_variant(sql)
                alternative = (f"{_time(store, distinct, parameters, args.rounds) * 1000:13.0f}ms"
                               if distinct != sql and "count()" in sql else f"{'-':>15}")
                print(f"{name:<16}{range_name:<8}{served * 1000:10.0f}ms{alternative}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
