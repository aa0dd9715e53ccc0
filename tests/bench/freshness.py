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
from dataclasses import dataclass
from pathlib import Path

import httpx
import psycopg
from prometheus_client.parser import text_string_to_metric_families
from psycopg.types.json import Jsonb

from query.store import Store

from tests.bench import engine_sql, source
from tests.bench.report import Figure, Outcome, entry_point, log
from tests.bench.scale import Scale

TARGET_P99_MS = 150
POLL_INTERVAL = 0.002
PROBE_TIMEOUT = 30.0
HEADERS = {"Authorization": "Bearer admin", "tenant": engine_sql.TENANTS[0]}
TENANT_ID = "md5('t' || 0)::uuid"


@dataclass(frozen=True, slots=True)
class Probe:
    customer_id: uuid.UUID
    committed_at: float  # unix time when the commit returned
    latency: float  # seconds from the commit's return to the first response holding the event
    polls: int  # requests it took


def probe(conn: psycopg.Connection, client: httpx.Client) -> Probe:
    """Commit one marker customer upsert; time until the API shows its event."""
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
    committed, committed_at = time.perf_counter(), time.time()
    deadline = committed + PROBE_TIMEOUT
    polls = 0
    while time.perf_counter() < deadline:
        response = client.get(f"/v1/customers/{source_id}/activity", headers=HEADERS)
        polls += 1
        if response.status_code == 200 and response.json()["data"]:
            return Probe(customer_id, committed_at, time.perf_counter() - committed, polls)
        time.sleep(POLL_INTERVAL)
    raise TimeoutError(f"probe {source_id} not visible after {PROBE_TIMEOUT:.0f} s")


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def committed_transactions(dsn: str) -> int:
    with psycopg.connect(dsn) as conn:
        return conn.execute("SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()").fetchone()[0]


def stored_at(store_path: Path, probes: list[Probe]) -> dict[uuid.UUID, float]:
    """customer id -> unix time its probe event's insert began (`ingested_at`, the server's
    clock when the block arrived), read from the sidecar's store once it has stopped."""
    with Store.open(f"chdb://{store_path}", create_schema=False) as store:
        rows = store.rows(
            "SELECT customer_id, toUnixTimestamp64Milli(min(ingested_at)) FROM customer_events "
            "WHERE customer_id IN {customers:Array(UUID)} GROUP BY customer_id",
            {"customers": [probe.customer_id for probe in probes]})
    return {customer_id: milliseconds / 1000 for customer_id, milliseconds in rows}


def sidecar_counters(base_url: str) -> dict[str, float]:
    """The sidecar's store-batch and request counters from /metrics (sums and counts)."""
    text = httpx.get(f"{base_url}/metrics", headers=HEADERS, timeout=5).text
    counters: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name.endswith(("_sum", "_count")) and family.name in (
                    "va_store_batch_rows", "va_store_batch_duration_seconds", "va_http_request_duration_seconds"):
                counters[sample.name] = counters.get(sample.name, 0.0) + sample.value
    return counters


@dataclass(frozen=True, slots=True)
class SteadyLoad:
    probes: list[Probe]
    background_rate: float  # engine transactions/s committed meanwhile
    counters: dict[str, float]  # the sidecar's /metrics sums and counts over the probes
    rss: list[int]  # sidecar RSS after each probe


def steady_load(scale: Scale, workdir: Path, cluster) -> SteadyLoad:
    """The sidecar streaming pgbench's steady load while the probes run."""
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
        probes, rss = [], []
        counters_before = sidecar_counters(sidecar.base_url)
        started, transactions_before = time.monotonic(), committed_transactions(dsn)
        with psycopg.connect(dsn, autocommit=True) as conn, \
                httpx.Client(base_url=sidecar.base_url, timeout=5) as client:
            for _ in range(scale.freshness_probes):
                probes.append(probe(conn, client))
                rss.append(sidecar.rss())
                time.sleep(rng.uniform(0.05, 0.15))
        background_rate = (committed_transactions(dsn) - transactions_before) / (time.monotonic() - started)
        counters = {name: value - counters_before.get(name, 0.0)
                    for name, value in sidecar_counters(sidecar.base_url).items()}
        log(f"freshness: {len(probes)} probes at {background_rate:,.0f} background transactions/s")
        return SteadyLoad(probes, background_rate, counters, rss)
    finally:
        if background is not None:
            background.terminate()
            background.wait()
        if sidecar is not None:
            sidecar.stop()


def run(scale: Scale, workdir: Path) -> Outcome:
    cluster = source.start_cluster(workdir / "pg")
    try:
        load = steady_load(scale, workdir, cluster)
    finally:
        cluster.destroy()
    stored = stored_at(workdir / "sidecar" / "clickhouse", load.probes)
    probes, counters, background_rate, rss = load.probes, load.counters, load.background_rate, load.rss
    milliseconds = [probe.latency * 1000 for probe in probes]
    # commit -> the insert holding the event began (delivery and the batch's wait), and from
    # there until the API showed it (the insert itself, then the next poll's request)
    waited = [(stored[probe.customer_id] - probe.committed_at) * 1000 for probe in probes]
    shown = [latency - wait for latency, wait in zip(milliseconds, waited)]
    batches = counters.get("va_store_batch_duration_seconds_count", 0.0)
    requests = counters.get("va_http_request_duration_seconds_count", 0.0)
    workload = (f"commit -> visible in the API, {len(probes)} probes, "
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
        f"max {max(milliseconds):.1f}. Of it, commit -> the insert holding the event began "
        f"(delivery and the batch's wait; the store's ingested_at, 1 ms resolution): p50 {percentile(waited, 0.5):.1f}, "
        f"p99 {percentile(waited, 0.99):.1f}; from there to the API's first response with it (the insert, "
        f"then a poll every {POLL_INTERVAL * 1000:.0f} ms): p50 {percentile(shown, 0.5):.1f}, p99 {percentile(shown, 0.99):.1f}; "
        f"{statistics.fmean(probe.polls for probe in probes):.1f} polls a probe. Meanwhile the sidecar wrote "
        f"{batches:,.0f} batches ({counters.get('va_store_batch_rows_sum', 0.0) / max(batches, 1):.1f} rows, "
        f"{counters.get('va_store_batch_duration_seconds_sum', 0.0) / max(batches, 1) * 1000:.1f} ms each on average) "
        f"and answered {requests:,.0f} requests "
        f"({counters.get('va_http_request_duration_seconds_sum', 0.0) / max(requests, 1) * 1000:.1f} ms each). "
        f"Sidecar RSS meanwhile: median {statistics.median(rss) / 2**20:.0f} MiB, "
        f"max {max(rss) / 2**20:.0f} MiB.",
    ])
    return Outcome(figures, notes)


main = entry_point("freshness", __doc__, run)
