"""6. Impact on the voucher database: how many engine-like transactions per second it commits
(pgbench with one script per engine operation, weighted like the traffic mix, at full speed)
(a) with no consumer, (b) while the sidecar streams from it (`voucher-activity run`, its own
process, slot created before the run and caught up), (c) with in-application logging as the
original plan had it: every business transaction also inserts its event row into an
`activity_log` table carrying the plan's five indexes. Rounds alternate a, b, c; the best run
of each counts. The sidecar shares the machine's cores with PostgreSQL and pgbench, as a sidecar
on the database host would.

Run: python -m tests.bench impact [--scale small|full]
"""

from __future__ import annotations

from pathlib import Path

import psycopg

from tests.bench import engine_sql, source
from tests.bench.report import Figure, Outcome, entry_point, log
from tests.bench.scale import Scale

TARGET_RATIO = 0.95


def with_sidecar(cluster, dsn: str, scripts: list[str], scale: Scale, workdir: Path, slot: str) -> tuple[float, int]:
    """(b): transactions/s while the sidecar streams; and its lag in bytes when pgbench ended."""
    sidecar = source.Sidecar.start(dsn, workdir / slot, slot=slot)
    try:
        source.wait_confirmed(dsn, slot, source.current_lsn(dsn), timeout=120)
        tps = source.pgbench(cluster, "voucher", scripts, scale.impact_seconds, scale.impact_clients)
        with psycopg.connect(dsn, autocommit=True) as conn:
            lag = source.current_lsn(dsn) - source.confirmed_lsn(conn, slot)
    finally:
        sidecar.stop()
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("SELECT pg_drop_replication_slot(%s)", (slot,))
    return tps, lag


def run(scale: Scale, workdir: Path) -> Outcome:
    cluster = source.start_cluster(workdir / "pg")
    alone, streaming, logging, lags = [], [], [], []
    try:
        dsn = source.create_voucher_database(cluster, "voucher")
        source.seed(dsn, scale.source_customers, scale.source_vouchers)
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(engine_sql.ACTIVITY_LOG_DDL)
        plain = engine_sql.pgbench_scripts(workdir, scale.source_customers, scale.source_vouchers)
        logged = engine_sql.pgbench_scripts(workdir, scale.source_customers, scale.source_vouchers, logged=True)
        for number in range(scale.impact_rounds):
            alone.append(source.pgbench(cluster, "voucher", plain, scale.impact_seconds, scale.impact_clients))
            tps, lag = with_sidecar(cluster, dsn, plain, scale, workdir, f"impact_{number}")
            streaming.append(tps)
            lags.append(lag)
            logging.append(source.pgbench(cluster, "voucher", logged, scale.impact_seconds, scale.impact_clients))
            log(f"impact round {number + 1}: (a) {alone[-1]:,.0f}  (b) {streaming[-1]:,.0f}  "
                f"(c) {logging[-1]:,.0f} transactions/s")
    finally:
        cluster.destroy()
    workload = f"engine transactions/s, pgbench {scale.impact_clients} clients, {scale.impact_seconds} s runs"
    figures = [
        Figure("6. impact", f"{workload}: (b) sidecar streaming vs (a) no consumer", "transactions/s",
               max(streaming), max(alone), "(a) no consumer", higher_is_better=True,
               target=f">= {TARGET_RATIO}x", met=max(streaming) / max(alone) >= TARGET_RATIO),
        Figure("6. impact", f"{workload}: (b) sidecar streaming vs (c) in-application logging", "transactions/s",
               max(streaming), max(logging), "(c) in-app logging", higher_is_better=True),
    ]
    notes = "\n".join([
        "### 6. Impact",
        f"Mix: {engine_sql.describe_mix()}. Runs (transactions/s): (a) {', '.join(f'{t:,.0f}' for t in alone)}; "
        f"(b) {', '.join(f'{t:,.0f}' for t in streaming)}; (c) {', '.join(f'{t:,.0f}' for t in logging)}. "
        f"Sidecar lag when a (b) run ended: {', '.join(f'{lag / 2**20:.1f} MiB' for lag in lags)} of WAL.",
    ])
    return Outcome(figures, notes)


main = entry_point("impact", __doc__, run)
