"""7. Memory: the sidecar's resident set (`voucher-activity run`, its own process, sampled with
psutil every 100 ms) idle, during sustained ingest (pgbench at full speed, engine-like mix), and
at its peak while one transaction of N row changes (a bulk import of N customers) is decoded,
mapped, stored and confirmed, and at its peak while a second sidecar takes the initial snapshot
of `bench snapshot`'s history (5.09M rows at full scale), from its start until it streams. No
reference: pg_recvlogical keeps nothing.

Run: python -m tests.bench memory [--scale small|full]
"""

from __future__ import annotations

import statistics
import threading
import time
from pathlib import Path

import psycopg

from cdc_reader.slot import ensure_publication
from mappers import tracked_tables
from tests.bench import engine_sql, source
from tests.bench.report import Figure, Outcome, entry_point, log
from tests.bench.scale import Scale
from tests.bench.snapshot import SNAPSHOT_TIMEOUT
from tests.bench.snapshot import seed as seed_history

SAMPLE_INTERVAL = 0.1
MiB = 2**20


class Sampler:
    """Samples a sidecar's RSS in a thread until stopped."""

    def __init__(self, sidecar: source.Sidecar) -> None:
        self.sidecar = sidecar
        self.samples: list[int] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(SAMPLE_INTERVAL):
            self.samples.append(self.sidecar.rss())

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join()
        if self.sidecar.process.poll() is None:  # (one that exited raised its own error)
            self.samples.append(self.sidecar.rss())


def run(scale: Scale, workdir: Path) -> Outcome:
    cluster = source.start_cluster(workdir / "pg")
    sidecar = None
    try:
        dsn = source.create_voucher_database(cluster, "voucher")
        sidecar = source.Sidecar.start(dsn, workdir / "sidecar")
        source.seed(dsn, scale.source_customers, scale.source_vouchers)
        source.wait_confirmed(dsn, "voucher_activity", source.current_lsn(dsn), timeout=600)
        idle = sidecar.rss()
        scripts = engine_sql.pgbench_scripts(workdir, scale.source_customers, scale.source_vouchers)
        with Sampler(sidecar) as sustained:
            tps = source.pgbench(cluster, "voucher", scripts, scale.memory_seconds, clients=2)
        changes = scale.memory_transaction_changes
        with Sampler(sidecar) as big:
            started = time.monotonic()
            with psycopg.connect(dsn, autocommit=True) as conn:
                conn.execute(
                    "INSERT INTO customer (id, created_at, updated_at, source_id, name, email, metadata, tenant_id) "
                    "SELECT gen_random_uuid(), localtimestamp, localtimestamp, 'import-' || n, 'Imported ' || n, "
                    "'import' || n || '@example.com', '{\"tier\": \"silver\"}', md5('t' || (n % 2))::uuid "
                    f"FROM generate_series(1, {changes}) n")
            source.wait_confirmed(dsn, "voucher_activity", source.current_lsn(dsn), timeout=3600)
            seconds = time.monotonic() - started
        log(f"memory: {changes:,}-change transaction stored and confirmed in {seconds:.1f} s")
        sidecar.stop()
        history_dsn = source.create_voucher_database(cluster, "history")
        with psycopg.connect(history_dsn, autocommit=True) as conn:
            ensure_publication(conn, source.PUBLICATION, tracked_tables())
        rows = sum(seed_history(history_dsn, scale.snapshot_customers).values())
        sidecar = source.Sidecar.start(history_dsn, workdir / "history", slot="history", snapshot="initial", ready=False)
        with Sampler(sidecar) as snapshot:
            started = time.monotonic()
            sidecar.wait_ready(SNAPSHOT_TIMEOUT)
            snapshot_seconds = time.monotonic() - started
        log(f"memory: initial snapshot of {rows:,} rows taken in {snapshot_seconds:.1f} s")
    finally:
        if sidecar is not None:
            sidecar.stop()
        cluster.destroy()
    figures = [
        Figure("7. memory", f"sidecar RSS during sustained ingest (pgbench {tps:,.0f} transactions/s, median)",
               "MiB", statistics.median(sustained.samples) / MiB, None, "", higher_is_better=False),
        Figure("7. memory", f"sidecar RSS peak, one {changes:,}-change transaction", "MiB",
               max(big.samples) / MiB, None, "", higher_is_better=False),
        Figure("7. memory", f"sidecar RSS peak, initial snapshot of {rows:,} rows", "MiB",
               max(snapshot.samples) / MiB, None, "", higher_is_better=False),
    ]
    notes = (f"### 7. Memory\nIdle RSS after the seed: {idle / MiB:.0f} MiB. Sustained: max "
             f"{max(sustained.samples) / MiB:.0f} MiB over {len(sustained.samples)} samples. The "
             f"{changes:,}-change transaction took {seconds:.1f} s from COMMIT to confirmed "
             f"({changes / seconds:,.0f} changes/s). The snapshot of {rows:,} rows took "
             f"{snapshot_seconds:.1f} s from the sidecar's start until it was ready (streaming).")
    return Outcome(figures, notes)


main = entry_point("memory", __doc__, run)
