"""3-5. Reads on a stored history: the activity API, analytics queries and bytes on disk, each
against the design we replace (the same events in a PostgreSQL `customer_event` table with the
original plan's indexes; see history.py). One history serves all three:
`python -m tests.bench warehouse`; `api`, `analytics` and `storage` run one part each.

Both stores are compacted first (OPTIMIZE FINAL; VACUUM ANALYZE), as a long-running store is.
The reference PostgreSQL gets a tuned configuration for a 24 GiB machine (shared_buffers 2GB,
effective_cache_size 12GB, work_mem 64MB) and wal_level=minimal for the bulk load.
"""

from __future__ import annotations

import json
import random
import statistics
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlencode

import psycopg
import uvicorn

from demo.embedded_pg import free_port
from query.api.activity import parse_activity_query
from query.api.app import create_app
from query.activity_cache import ActivityCache
from query.store import Store
from tests.bench import history, source, zipf
from tests.bench.report import Figure, Outcome, entry_point, log
from tests.bench.scale import Scale

PARTS = ("api", "analytics", "storage")
TARGET_API_P99_MS = 50
TARGET_API_RPS = 400
TARGET_ZIPF_P99_MS = 20
TARGET_ZIPF_RPS = 2_000
ZIPF_REQUESTS_PER_API_REQUEST = 5  # the skewed run is mostly cache hits: more requests for a steady figure
TARGET_ANALYTICS_SPEEDUP = 20
TARGET_STORAGE_RATIO = 5
REFERENCE_SETTINGS = {
    "wal_level": "minimal", "max_wal_senders": "0", "shared_buffers": "2GB", "work_mem": "64MB",
    "maintenance_work_mem": "1GB", "effective_cache_size": "12GB", "max_wal_size": "'8GB'",
}
PAGE_COLUMNS = "id, event_type, category, data::text, created_at, group_id"


# -- 3. the activity API ------------------------------------------------------------------------
def request_plan(population: history.Population, count: int, seed: int = 5) -> list[dict]:
    """Random customers' first and later pages with mixed filters, as an HTTP request and as the
    equivalent SQL on the reference table."""
    rng = random.Random(seed)
    kinds = ("first", "later", "types", "category", "campaign", "window")
    plan = []
    for _ in range(count):
        number = rng.randrange(len(population.customers))
        tenant, customer = population.tenant_of(number), population.customers[number]
        kind = rng.choices(kinds, (40, 20, 15, 10, 10, 5))[0]
        limit, page, order = 10, 1, "-created_at"
        query: dict = {"limit": limit}
        conditions, parameters = ["tenant_id = %s::uuid", "customer_id = %s"], [str(tenant.id), str(customer)]
        if kind == "later":
            page = rng.randint(2, 5)
            query["page"] = page
        elif kind == "types":
            types = rng.sample(history.TYPE_NAMES, rng.randint(1, 2))
            query["type"] = ",".join(types)
            conditions.append("event_type = ANY(%s)")
            parameters.append(types)
        elif kind == "category":
            query["category"] = rng.choice(("ACTION", "EFFECT"))
            conditions.append("category = %s")
            parameters.append(query["category"])
        elif kind == "campaign":
            query["campaign_id"] = str(rng.choice(tenant.campaigns))
            conditions.append("campaign_id = %s")
            parameters.append(query["campaign_id"])
        elif kind == "window":
            start = history.START + timedelta(days=rng.randrange(330))
            query.update(start_date=start.isoformat(), end_date=(start + timedelta(days=30)).isoformat(),
                         order="created_at")
            order = "created_at"
            conditions.append("created_at >= %s::timestamp AND created_at <= %s::timestamp")
            parameters += [start.replace(tzinfo=None).isoformat(), (start + timedelta(days=30)).replace(tzinfo=None).isoformat()]
        direction = "DESC" if order.startswith("-") else "ASC"
        plan.append({
            "path": f"/v1/customers/{customer}/activity?{urlencode(query)}",
            "headers": {"Authorization": "Bearer admin", "tenant": tenant.name},
            "sql": (f"SELECT {PAGE_COLUMNS} FROM customer_event WHERE {' AND '.join(conditions)} "
                    f"ORDER BY created_at {direction}, id {direction} LIMIT %s OFFSET %s"),
            "params": [*parameters, limit + 1, (page - 1) * limit],
        })
    return plan


class _ThreadServer(uvicorn.Server):
    """uvicorn in a thread: signals stay with the main thread."""

    @contextmanager
    def capture_signals(self):
        yield


@contextmanager
def serve_api(store: Store):
    """The API as `voucher-activity run` serves it, on a free port; yields HOST:PORT."""
    port = free_port()
    app = create_app(store, tokens={"admin": "*"})
    server = _ThreadServer(uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None,
                                          access_log=False, lifespan="off"))
    thread = threading.Thread(target=server.run, name="api", daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    try:
        yield f"127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def run_loadgen(mode: str, target: str, plan_path: Path, clients: int, workdir: Path) -> dict:
    out = workdir / f"loadgen-{mode}-{plan_path.stem}.json"
    subprocess.run([sys.executable, "-m", "tests.bench.loadgen", mode, target, str(plan_path), str(out),
                    "--clients", str(clients)], check=True)
    result = json.loads(out.read_text())
    if result["errors"]:
        raise RuntimeError(f"{result['errors']} {mode} requests failed")
    latencies = sorted(result["latencies_ms"])
    return {"p50": statistics.median(latencies), "p99": latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))],
            "rps": len(latencies) / result["seconds"]}


def store_call_breakdown(population: history.Population, store: Store, requests: int = 200) -> str:
    """One client, in process, no HTTP: the median time of each store call an activity page
    makes (to tell the server's queueing from the queries' own cost)."""
    rng = random.Random(9)
    timings: dict[str, list[float]] = {"resolve_tenant": [], "resolve_customer": [], "activity": []}
    for _ in range(requests):
        number = rng.randrange(len(population.customers))
        tenant, customer = population.tenant_of(number), population.customers[number]
        for name, call in (("resolve_tenant", lambda: store.resolve_tenant(tenant.name)),
                           ("resolve_customer", lambda: store.resolve_customer(tenant.id, str(customer))),
                           ("activity", lambda: store.activity(tenant.id, customer, parse_activity_query([])))):
            started = time.perf_counter()
            call()
            timings[name].append((time.perf_counter() - started) * 1000)
    parts = ", ".join(f"`Store.{name}` {statistics.median(values):.1f} ms" for name, values in timings.items())
    return f"API, one client in process (no HTTP, no concurrency), median per store call: {parts}."


def _per_query(before: tuple[int, int], after: tuple[int, int]) -> str:
    reads, queries = after[0] - before[0], after[1] - before[1]
    return f"{reads / max(queries, 1):.1f} ({reads:,} reads in {queries:,} queries)"


def api_part(scale: Scale, population: history.Population, store: Store, reference_dsn: str,
             workdir: Path) -> tuple[list[Figure], str]:
    breakdown = store_call_breakdown(population, store)
    plan_path = workdir / "uniform.json"
    plan_path.write_text(json.dumps(request_plan(population, scale.api_requests)))
    zipf_requests = scale.api_requests * ZIPF_REQUESTS_PER_API_REQUEST
    zipf_path = workdir / "zipf.json"
    zipf_path.write_text(json.dumps(zipf.plan(population, store, zipf_requests)))
    with serve_api(store) as target:
        started = store.page_read_batching()
        ours = run_loadgen("http", target, plan_path, scale.api_clients, workdir)
        uniform = store.page_read_batching()
        live = zipf.LiveWrites(population, store, target)
        writing = threading.Thread(target=live.run, name="live-writes")
        writing.start()
        try:
            ours_zipf = run_loadgen("http", target, zipf_path, scale.api_clients, workdir)
        finally:
            live.stop.set()
            writing.join()
        skewed_end = store.page_read_batching()
    theirs = run_loadgen("sql", reference_dsn, plan_path, scale.api_clients, workdir)
    theirs_zipf = run_loadgen("sql", reference_dsn, zipf_path, scale.api_clients, workdir)
    workload = (f"activity pages, {scale.api_clients} clients, {scale.api_requests:,} requests "
                "(first/later pages, mixed filters); ours: HTTP API, reference: SQL only")
    skewed = (f"Zipf s={zipf.ZIPF_EXPONENT} over customers, {zipf_requests:,} requests, "
              f"{zipf.POLL_SHARE:.0%} timeline polls, {zipf.WRITES_PER_SECOND} new events/s")
    note = (f"{breakdown} Zipf run: {live.events:,} events written meanwhile, {live.probes:,} read back "
            f"over HTTP right after their flush, {live.stale} of them missing from the page. "
            f"Store reads per query (concurrent pages' reads batched): uniform {_per_query(started, uniform)}, "
            f"Zipf {_per_query(uniform, skewed_end)}.")
    return [
        Figure("3. API", f"{workload}: p50", "ms", ours["p50"], theirs["p50"], "PostgreSQL SQL",
               higher_is_better=False),
        Figure("3. API", f"{workload}: p99", "ms", ours["p99"], theirs["p99"], "PostgreSQL SQL",
               higher_is_better=False, target=f"<= {TARGET_API_P99_MS} ms",
               met=ours["p99"] <= TARGET_API_P99_MS),
        Figure("3. API", f"{workload}: throughput", "requests/s", ours["rps"], theirs["rps"], "PostgreSQL SQL",
               higher_is_better=True, target=f">= {TARGET_API_RPS}", met=ours["rps"] >= TARGET_API_RPS),
        Figure("3. API", f"{skewed}: p50", "ms", ours_zipf["p50"], theirs_zipf["p50"], "PostgreSQL SQL",
               higher_is_better=False),
        Figure("3. API", f"{skewed}: p99", "ms", ours_zipf["p99"], theirs_zipf["p99"], "PostgreSQL SQL",
               higher_is_better=False, target=f"<= {TARGET_ZIPF_P99_MS} ms",
               met=ours_zipf["p99"] <= TARGET_ZIPF_P99_MS),
        Figure("3. API", f"{skewed}: throughput", "requests/s", ours_zipf["rps"], theirs_zipf["rps"],
               "PostgreSQL SQL", higher_is_better=True, target=f">= {TARGET_ZIPF_RPS:,}",
               met=ours_zipf["rps"] >= TARGET_ZIPF_RPS),
        Figure("3. API", f"{skewed}: pages read right after a write that miss it", "pages", live.stale, None,
               "", higher_is_better=False, target="0", met=live.stale == 0),
    ], note


# -- 4. analytics ---------------------------------------------------------------------------------
PUBLISHED, REDEEMED = "customer.publication.succeeded", "customer.redemption.succeeded"
ANALYTICS = {
    "events per day by type, one tenant, all time": (
        "SELECT toDate(created_at) AS day, type, count() FROM customer_events_dedup "
        "WHERE tenant_id = {tenant:UUID} GROUP BY day, type ORDER BY day, type",
        "SELECT created_at::date AS day, event_type, count(*) FROM customer_event "
        "WHERE tenant_id = %(tenant)s GROUP BY 1, 2 ORDER BY 1, 2",
    ),
    # Ours reads the stages table the store keeps for the funnel (query/schema.py, STAGES): per
    # (campaign, customer) the first publication and the last redemption, merged in key order by
    # FINAL; min and max are the same with re-delivered copies, so it is exact.
    "publication -> redemption funnel per campaign": (
        "SELECT campaign_id, countIf(first_published_at IS NOT NULL) AS published,"
        " countIf(last_redeemed_at > first_published_at) AS redeemed_after"
        " FROM customer_campaign_stages FINAL WHERE tenant_id = {tenant:UUID}"
        " GROUP BY campaign_id HAVING published > 0 ORDER BY campaign_id",
        "SELECT campaign_id, count(*) AS published, count(*) FILTER (WHERE redeemed > published_at) FROM ("
        f" SELECT campaign_id, customer_id, min(created_at) FILTER (WHERE event_type = '{PUBLISHED}') AS published_at,"
        f" max(created_at) FILTER (WHERE event_type = '{REDEEMED}') AS redeemed FROM customer_event"
        f" WHERE tenant_id = %(tenant)s AND campaign_id IS NOT NULL AND event_type IN ('{PUBLISHED}', '{REDEEMED}')"
        " GROUP BY campaign_id, customer_id) AS per_customer WHERE published_at IS NOT NULL"
        " GROUP BY campaign_id ORDER BY campaign_id",
    ),
    "top 10 customers by redemptions": (
        f"SELECT customer_id, count() AS redemptions FROM customer_events_dedup WHERE tenant_id = {{tenant:UUID}} "
        f"AND type = '{REDEEMED}' GROUP BY customer_id ORDER BY redemptions DESC, customer_id LIMIT 10",
        f"SELECT customer_id, count(*) AS redemptions FROM customer_event WHERE tenant_id = %(tenant)s "
        f"AND event_type = '{REDEEMED}' GROUP BY customer_id ORDER BY redemptions DESC, customer_id LIMIT 10",
    ),
}


def best_seconds(action, repeats: int) -> tuple[float, object]:
    best, result = float("inf"), None
    for _ in range(repeats):
        started = time.perf_counter()
        result = action()
        best = min(best, time.perf_counter() - started)
    return best, result


def answer(sql: str, rows: list) -> list:
    """What both stores must agree on: every row, as a set (ClickHouse orders UUIDs by their
    halves, PostgreSQL by their text); of a ranked list only the ranked counts, since the
    stores break ties between equal counts by id in those different orders."""
    if "LIMIT" in sql:
        return [row[-1] for row in rows]
    return sorted(tuple(map(str, row)) for row in rows)


def analytics_part(scale: Scale, population: history.Population, store: Store, reference_dsn: str) -> list[Figure]:
    tenant = population.tenants[0].id
    figures = []
    with psycopg.connect(reference_dsn) as conn:
        for name, (ours_sql, their_sql) in ANALYTICS.items():
            ours, our_rows = best_seconds(lambda: store.rows(ours_sql, {"tenant": tenant}), scale.analytics_repeats)
            theirs, their_rows = best_seconds(
                lambda: conn.execute(their_sql, {"tenant": tenant}).fetchall(), scale.analytics_repeats)
            if answer(ours_sql, our_rows) != answer(ours_sql, their_rows):
                raise RuntimeError(f"{name}: ClickHouse and PostgreSQL answer differently")
            log(f"analytics: {name}: ClickHouse {ours * 1000:.0f} ms, PostgreSQL {theirs * 1000:.0f} ms")
            figures.append(Figure(
                "4. analytics", f"{name} ({scale.events:,} events)", "ms", ours * 1000, theirs * 1000,
                "PostgreSQL", higher_is_better=False, target=f">= {TARGET_ANALYTICS_SPEEDUP}x faster",
                met=theirs / ours >= TARGET_ANALYTICS_SPEEDUP))
    return figures


# -- 5. storage -----------------------------------------------------------------------------------
def storage_part(scale: Scale, store: Store, reference_dsn: str) -> tuple[list[Figure], str]:
    ours_bytes, rows = store.rows(
        "SELECT sum(bytes_on_disk), sum(rows) FROM system.parts "
        "WHERE database = currentDatabase() AND table = 'customer_events' AND active", {})[0]
    with psycopg.connect(reference_dsn) as conn:
        total, table, indexes = conn.execute(
            "SELECT pg_total_relation_size('customer_event'), pg_table_size('customer_event'), "
            "pg_indexes_size('customer_event')").fetchone()
    figure = Figure("5. storage", f"bytes per event on disk ({rows:,} events, after OPTIMIZE / VACUUM)",
                    "bytes/event", ours_bytes / rows, total / scale.events,
                    "PostgreSQL table + indexes", higher_is_better=False,
                    target=f"<= 1/{TARGET_STORAGE_RATIO}", met=total / scale.events >= TARGET_STORAGE_RATIO * ours_bytes / rows)
    note = (f"Storage: ClickHouse customer_events {ours_bytes / 2**20:,.1f} MiB; PostgreSQL customer_event "
            f"{total / 2**20:,.1f} MiB = table with TOAST {table / 2**20:,.1f} MiB + indexes {indexes / 2**20:,.1f} MiB.")
    return [figure], note


# -- the history and the runner -------------------------------------------------------------------
def run_parts(scale: Scale, workdir: Path, parts: tuple[str, ...]) -> Outcome:
    cluster = source.start_cluster(workdir / "pg", **REFERENCE_SETTINGS)
    # As `voucher-activity run` opens it: the API's pages cached, invalidated by this process's writer.
    store = Store.open(f"chdb://{workdir / 'clickhouse'}", activity_cache=ActivityCache())
    try:
        with psycopg.connect(cluster.dsn(), autocommit=True) as conn:
            conn.execute("CREATE DATABASE reference")
        reference_dsn = cluster.dsn("reference")
        population = history.make_population(scale.event_customers, scale.tenants)
        started = time.monotonic()
        history.load(population, scale.events, store, reference_dsn)
        loaded = time.monotonic() - started
        history.compact(store)
        log(f"history: {scale.events:,} events loaded into both stores in {loaded:.0f} s, compacted")
        figures, notes = [], [
            "### 3-5. Stored history",
            f"{scale.events:,} events, {scale.event_customers:,} customers, {scale.tenants} tenants, one year, "
            f"time-ordered; loaded into both stores in {loaded:.0f} s. Mean payload "
            f"{store.rows('SELECT avg(length(data)) FROM customer_events', {})[0][0]:.0f} bytes of JSON.",
        ]
        if "storage" in parts:
            storage_figures, note = storage_part(scale, store, reference_dsn)
            figures += storage_figures
            notes.append(note)
        if "analytics" in parts:
            figures += analytics_part(scale, population, store, reference_dsn)
        if "api" in parts:
            api_figures, note = api_part(scale, population, store, reference_dsn, workdir)
            figures += api_figures
            notes.append(note)
    finally:
        store.close()
        cluster.destroy()
    return Outcome(figures, "\n\n".join(notes))


def main(argv: list[str], part: str = "warehouse") -> int:
    parts = PARTS if part == "warehouse" else (part,)
    return entry_point(part, __doc__, lambda scale, workdir: run_parts(scale, workdir, parts))(argv)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
