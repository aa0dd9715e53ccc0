"""2. Freshness: how long after a commit its event is visible through the API, under a steady
background load of engine-like transactions (pgbench at a fixed rate, its own process).

The sidecar runs as deployed (`voucher-activity run`, its own process, embedded chDB). Each
probe commits a customer upsert as the engine does it (customer INSERT + customer.created
customer_event, one transaction) with a unique source_id, then polls
GET /v1/customers/{source_id}/activity over a keep-alive connection until the event is there.
Latency is from the commit's return to the first response holding the event. There is no
reference: the original plan wrote the event in the business transaction itself.

Run: python -m tests.bench freshness [--scale small|full]
"""

from __future__ import annotations

import random
import statistics
import time
import uuid
from pathlib import Path

import httpx
import psycopg
from psycopg.types.json import Jsonb

from tests.bench import engine_sql, source
from tests.bench.report import Figure, Outcome, entry_point, log
from tests.bench.scale import Scale

TARGET_P99_MS = 150
POLL_INTERVAL = 0.002
PROBE_TIMEOUT = 30.0
HEADERS = {"Authorization": "Bearer admin", "tenant": engine_sql.TENANTS[0]}
TENANT_ID = "md5('t' || 0)::uuid"


def probe(conn: psycopg.Connection, client: httpx.Client) -> float:
    """Commit one marker customer upsert; seconds until the API shows its event."""
    customer_id, source_id = uuid.uuid4(), f"probe-{uuid.uuid4().hex}"
    with conn.transaction():
        conn.execute(
            "INSERT INTO customer (id, created_at, updated_at, source_id, name, email, tenant_id) "
            f"VALUES (%s, localtimestamp, localtimestamp, %s, 'Probe', 'probe@example.com', {TENANT_ID})",
            (customer_id, source_id))
        conn.execute(
            "INSERT INTO customer_event (id, created_at, updated_at, event_type, customer_id, category, data, "
            f"event_source, tenant_id) VALUES (%s, localtimestamp, localtimestamp, 'customer.created', %s, "
            f"'EFFECT', %s, 'API', {TENANT_ID})",
            (uuid.uuid4(), str(customer_id), Jsonb({"source_id": source_id})))
    committed = time.perf_counter()
    deadline = committed + PROBE_TIMEOUT
    while time.perf_counter() < deadline:
        response = client.get(f"/v1/customers/{source_id}/activity", headers=HEADERS)
        if response.status_code == 200 and response.json()["data"]:
            return time.perf_counter() - committed
        time.sleep(POLL_INTERVAL)
    raise TimeoutError(f"probe {source_id} not visible after {PROBE_TIMEOUT:.0f} s")


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def committed_transactions(dsn: str) -> int:
    with psycopg.connect(dsn) as conn:
        return conn.execute("SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()").fetchone()[0]


def run(scale: Scale, workdir: Path) -> Outcome:
    cluster = source.start_cluster(workdir / "pg")
    sidecar = background = None
    try:
        dsn = source.create_voucher_database(cluster, "voucher")
        sidecar = source.Sidecar.start(dsn, workdir / "sidecar")
        source.seed(dsn, scale.source_customers, scale.source_vouchers)
        source.wait_confirmed(dsn, "voucher_activity", source.current_lsn(dsn), timeout=300)
        scripts = engine_sql.pgbench_scripts(workdir, scale.source_customers, scale.source_vouchers)
        budget = 10 + scale.freshness_probes * 0.3 + 2 * PROBE_TIMEOUT
        background = source.start_pgbench(cluster, "voucher", scripts, clients=2, rate=scale.freshness_rate,
                                          seconds=budget)
        time.sleep(2)  # reach the steady state before the first probe
        rng = random.Random(7)
        latencies = []
        started, transactions_before = time.monotonic(), committed_transactions(dsn)
        rss = []
        with psycopg.connect(dsn, autocommit=True) as conn, \
                httpx.Client(base_url=sidecar.base_url, timeout=5) as client:
            for _ in range(scale.freshness_probes):
                latencies.append(probe(conn, client))
                rss.append(sidecar.rss())
                time.sleep(rng.uniform(0.05, 0.15))
        background_rate = (committed_transactions(dsn) - transactions_before) / (time.monotonic() - started)
        log(f"freshness: {len(latencies)} probes at {background_rate:,.0f} background transactions/s")
    finally:
        if background is not None:
            background.terminate()
            background.wait()
        if sidecar is not None:
            sidecar.stop()
        cluster.destroy()
    milliseconds = [latency * 1000 for latency in latencies]
    workload = (f"commit -> visible in the API, {len(latencies)} probes, "
                f"background {background_rate:,.0f} engine transactions/s")
    figures = [
        Figure("2. freshness", f"{workload}: p50", "ms", percentile(milliseconds, 0.50), None, "",
               higher_is_better=False),
        Figure("2. freshness", f"{workload}: p95", "ms", percentile(milliseconds, 0.95), None, "",
               higher_is_better=False),
        Figure("2. freshness", f"{workload}: p99", "ms", percentile(milliseconds, 0.99), None, "",
               higher_is_better=False, target=f"<= {TARGET_P99_MS} ms",
               met=percentile(milliseconds, 0.99) <= TARGET_P99_MS),
    ]
    notes = "\n".join([
        "### 2. Freshness",
        f"Background: pgbench at {scale.freshness_rate:,} transactions/s requested "
        f"({background_rate:,.0f}/s committed), mix: {engine_sql.describe_mix()}. "
        f"Probe latency ms: min {min(milliseconds):.1f}, mean {statistics.fmean(milliseconds):.1f}, "
        f"max {max(milliseconds):.1f}. Sidecar RSS meanwhile: median {statistics.median(rss) / 2**20:.0f} MiB, "
        f"max {max(rss) / 2**20:.0f} MiB.",
    ])
    return Outcome(figures, notes)


main = entry_point("freshness", __doc__, run)
