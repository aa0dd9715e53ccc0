"""How big each benchmark runs: `tiny` for the smoke test, `small` for a look in a minute or two,
`full` for the README numbers (the issue's sizes)."""

from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType


@dataclass(frozen=True, slots=True)
class Scale:
    name: str
    # the voucher database every source-side benchmark starts from
    source_customers: int
    source_vouchers: int
    # 1. ingest: engine-like row changes written before the drain; drains per client
    ingest_changes: int
    ingest_rounds: int
    # 2. freshness: marker transactions, background engine transactions per second
    freshness_probes: int
    freshness_rate: int
    # 3-5. the stored history: events, customers, tenants; API requests per side
    events: int
    event_customers: int
    tenants: int
    api_requests: int
    api_clients: int
    analytics_repeats: int
    # 6. impact: seconds per pgbench run, rounds of (a)(b)(c), pgbench clients
    impact_seconds: int
    impact_rounds: int
    impact_clients: int
    # 7. memory: seconds of sustained ingest sampled, row changes in the one big transaction
    memory_seconds: int
    memory_transaction_changes: int
    # 8. snapshot: customers of the seeded history (about 11.6 rows of the tracked tables each)
    snapshot_customers: int


SCALES = MappingProxyType({
    "tiny": Scale(
        name="tiny", source_customers=200, source_vouchers=100,
        ingest_changes=2_000, ingest_rounds=1,
        freshness_probes=5, freshness_rate=100,
        events=5_000, event_customers=200, tenants=2, api_requests=100, api_clients=4,
        analytics_repeats=1,
        impact_seconds=2, impact_rounds=1, impact_clients=2,
        memory_seconds=2, memory_transaction_changes=2_000, snapshot_customers=300,
    ),
    "small": Scale(
        name="small", source_customers=5_000, source_vouchers=2_000,
        ingest_changes=60_000, ingest_rounds=2,
        freshness_probes=40, freshness_rate=1_000,
        events=200_000, event_customers=5_000, tenants=2, api_requests=2_000, api_clients=16,
        analytics_repeats=2,
        impact_seconds=5, impact_rounds=1, impact_clients=4,
        memory_seconds=5, memory_transaction_changes=50_000, snapshot_customers=25_000,
    ),
    "medium": Scale(  # the largest run that fits a shared two-core machine in minutes
        name="medium", source_customers=20_000, source_vouchers=5_000,
        ingest_changes=200_000, ingest_rounds=2,
        freshness_probes=150, freshness_rate=1_000,
        events=2_000_000, event_customers=40_000, tenants=2, api_requests=3_000, api_clients=16,
        analytics_repeats=3,
        impact_seconds=15, impact_rounds=2, impact_clients=4,
        memory_seconds=15, memory_transaction_changes=200_000, snapshot_customers=100_000,
    ),
    "full": Scale(
        name="full", source_customers=100_000, source_vouchers=20_000,
        ingest_changes=1_000_000, ingest_rounds=3,
        freshness_probes=300, freshness_rate=1_000,
        events=10_000_000, event_customers=100_000, tenants=2, api_requests=20_000, api_clients=16,
        analytics_repeats=3,
        impact_seconds=30, impact_rounds=3, impact_clients=4,
        memory_seconds=30, memory_transaction_changes=1_000_000, snapshot_customers=450_000,
    ),
})
