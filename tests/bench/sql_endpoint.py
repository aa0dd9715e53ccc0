"""The SQL endpoint's cost to the rest of the process: API page latency and insert latency while
analysts run heavy queries through it, with the endpoint's limits (`QueryLimits`, one thread a
query) and without them (the engine's own thread count), against the same store with no analyst.

One process, as `run` holds it: an embedded store of `--events` synthetic events, the endpoint
under uvicorn on loopback, a writer inserting a 1,000-row block every 100 ms (ingest), and the
API's read of a first page (`Store.activity`, limit 10) for random customers, timed in process
(an HTTP round trip through the test server adds a constant ~40 ms on loopback here, the same
for /healthz, which would hide the store's share). Analysts are `--analysts` threads looping an
aggregate over every event through the endpoint.

Run: python -m tests.bench sql-endpoint [--events 2000000] [--seconds 20] [--analysts 2]
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import tempfile
import threading
import time
import uuid

import chdb
import httpx

from query.activity_sql import ActivityQuery
from query.sql_endpoint import QueryLimits, SqlEngine, create_sql_app
from query.store import Store
from tests.query.served import served

CUSTOMERS = 20_000
# Reads every event's `data` (decompressed, hashed) and groups by customer: seconds of work.
HEAVY = ("SELECT customer_id, count() AS events, uniqExact(cityHash64(data)) AS distinct_data, "
         "sum(JSONExtractUInt(data, 'number')) FROM customer_events GROUP BY customer_id "
         "ORDER BY distinct_data DESC LIMIT 10")
FILL = """
INSERT INTO customer_events (id, tenant_id, tenant, customer_id, created_at, type, category, campaign_id,
    campaign_type, group_id, source, data, source_table, source_lsn)
SELECT generateUUIDv4(), if(number % 2 = 0, {acme:UUID}, {globex:UUID}), if(number % 2 = 0, 'acme', 'globex'),
    reinterpretAsUUID(sipHash128(toString(number % {customers:UInt64}))),
    toDateTime64('2026-01-01', 6, 'UTC') + toIntervalSecond(number), ['customer.created', 'customer.updated',
    'customer.order.paid', 'customer.redemption.succeeded'][number % 4 + 1], 'EFFECT', NULL, '', '', 'wal',
    concat('{"number":', toString(number), ',"note":"', repeat('x', 200), '"}'), 'customer', number
FROM numbers({rows:UInt64})
"""


def percentiles(samples: list[float]) -> str:
    if len(samples) < 2:
        return "n/a"
    cuts = statistics.quantiles(samples, n=100)
    return f"p50 {cuts[49] * 1000:.1f} ms, p99 {cuts[98] * 1000:.1f} ms ({len(samples)})"


def fill(path: str, events: int) -> list[tuple[str, str]]:
    """Store `events` events; (customer id, tenant) of every customer."""
    tenants = {"acme": uuid.uuid4(), "globex": uuid.uuid4()}
    writer = chdb.connect(os.path.realpath(path))
    writer.query("USE voucher_activity")
    for name, tenant_id in tenants.items():
        writer.query(f"INSERT INTO tenants (id, name, version) VALUES ('{tenant_id}', '{name}', 1)")
    writer.query(FILL, "TabSeparated", params={
        "acme": str(tenants["acme"]), "globex": str(tenants["globex"]), "customers": str(CUSTOMERS),
        "rows": str(events)})
    writer.query("OPTIMIZE TABLE customer_events FINAL")
    customers = writer.query("SELECT DISTINCT customer_id, tenant FROM customer_events", "TabSeparatedRaw")
    writer.close()
    return [tuple(line.split("\t")) for line in customers.bytes().decode().splitlines()]


def phase(store: Store, endpoint: str | None, path: str, customers: list[tuple[str, str]], seconds: float,
          analysts: int) -> tuple[str, str, int]:
    stop = threading.Event()
    inserts: list[float] = []
    analyst_queries = [0]

    def ingest() -> None:
        writer = chdb.connect(os.path.realpath(path))
        writer.query("USE voucher_activity")
        number = 10**9
        while not stop.is_set():
            started = time.perf_counter()
            writer.query(FILL.replace("FROM numbers({rows:UInt64})", f"FROM numbers({number}, 1000)"), "TabSeparated",
                         params={"acme": str(uuid.uuid4()), "globex": str(uuid.uuid4()),
                                 "customers": str(CUSTOMERS), "rows": "1000"})
            inserts.append(time.perf_counter() - started)
            number += 1000
            stop.wait(0.1)
        writer.close()

    def analyst() -> None:
        with httpx.Client(timeout=120) as client:
            while not stop.is_set():
                client.post(endpoint, content=HEAVY, auth=("analyst", "admin"))
                analyst_queries[0] += 1

    threads = [threading.Thread(target=ingest, daemon=True)]
    if endpoint is not None:
        threads += [threading.Thread(target=analyst, daemon=True) for _ in range(analysts)]
    for thread in threads:
        thread.start()
    pages: list[float] = []
    rng = random.Random(7)
    tenants = {name: store.resolve_tenant(name) for name in ("acme", "globex")}
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        customer_id, tenant = rng.choice(customers)
        started = time.perf_counter()
        page = store.activity(tenants[tenant], uuid.UUID(customer_id), ActivityQuery(limit=10))
        pages.append(time.perf_counter() - started)
        assert len(page) == 11
    stop.set()
    for thread in threads:
        thread.join(180)
    return percentiles(pages), percentiles(inserts), analyst_queries[0]


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.bench sql-endpoint")
    parser.add_argument("--events", type=int, default=2_000_000)
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--analysts", type=int, default=2)
    args = parser.parse_args(argv)
    path = tempfile.mkdtemp(prefix="va-bench-sql-")
    with Store.open(f"chdb://{path}") as store:
        started = time.perf_counter()
        customers = fill(path, args.events)
        print(f"stored {args.events} events in {time.perf_counter() - started:.1f} s")
        rows = []
        for name, limits in (("no analyst", None), ("analysts, endpoint limits", QueryLimits()),
                             ("analysts, no thread limit", QueryLimits(max_threads=0))):
            if limits is None:
                rows.append((name, *phase(store, None, path, customers, args.seconds, args.analysts)))
                continue
            with served(create_sql_app(SqlEngine(store.location, limits), {"admin": "*"})) as endpoint:
                rows.append((name, *phase(store, endpoint, path, customers, args.seconds, args.analysts)))
    print(f"{'':28} {'API page read':42} {'insert of 1,000 rows':42} analyst queries")
    for name, pages, inserts, queries in rows:
        print(f"{name:28} {pages:42} {inserts:42} {queries}")
    return 0
