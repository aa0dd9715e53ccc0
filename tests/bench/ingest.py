"""1. Ingest throughput: the sidecar's whole pipeline (receive, decode, map, serialize, insert into
embedded chDB, confirm) draining a backlog of engine-like transactions, against PostgreSQL's own
C client `pg_recvlogical` (receive only, to /dev/null) draining the same WAL.

All slots (one per drain) are created back to back before the seed, so each holds exactly the
same WAL. Every slot first drains the seed (not timed: the mappers learn the customers and
vouchers), then the backlog is written with a PL/pgSQL loop (one engine transaction per
iteration, see engine_sql.py), then each round times one drain per client from the seed's end
to the backlog's end: ours until the slot's confirmed_flush_lsn reaches it (events stored,
reference state committed, LSN confirmed), pg_recvlogical until it exits at --endpos. The best
round of each counts. One more drain runs under cProfile for the profile summary.

Run: python -m tests.bench ingest [--scale small|full]
"""

from __future__ import annotations

import cProfile
import pstats
import subprocess
import time
from pathlib import Path

import psycopg

from cdc_reader.changes import format_lsn
from cdc_reader.replication import protocol_version
from demo.embedded_pg import LocalPostgres
from query.store import Store
from tests.bench import engine_sql, source
from tests.bench.profile import summarize
from tests.bench.report import Figure, Outcome, entry_point, log
from tests.bench.scale import Scale
from voucher_activity.memory import tune_collector

TARGET_RATIO = 0.5  # against pg_recvlogical, at every scale
TARGET_RATE = 40_000  # changes/s, at full scale
DRAIN_TIMEOUT = 1800


def drain_with_pipeline(dsn: str, slot: str, end: int, data_dir: Path, store: Store,
                        profiler: cProfile.Profile | None = None, cpu_seconds: list[float] | None = None,
                        process_cpu_seconds: list[float] | None = None) -> float:
    """Seconds from starting the pipeline until the slot has confirmed `end`."""
    return source.time_pipeline(
        dsn, slot, data_dir, store, "never",
        lambda pipeline, stop: source.wait_confirmed(
            dsn, slot, end, DRAIN_TIMEOUT, stop=stop, local=lambda: pipeline.progress.confirmed_lsn),
        profiler, cpu_seconds,
        process_cpu_seconds)


def drain_with_pg_recvlogical(cluster: LocalPostgres, dsn: str, slot: str, end: int) -> float:
    with psycopg.connect(dsn) as conn:
        version = protocol_version(conn.info.server_version)
    command = [
        cluster.installation.tool("pg_recvlogical"), "-d", dsn, "--slot", slot, "--start",
        "--endpos", format_lsn(end), "--no-loop", "-F", "0", "-f", "/dev/null",
        "-o", f"proto_version={version}", "-o", f"publication_names={source.PUBLICATION}",
        "-o", "messages=true",
    ]
    started = time.monotonic()
    subprocess.run(command, check=True)
    return time.monotonic() - started


def run(scale: Scale, workdir: Path) -> Outcome:
    cluster = source.start_cluster(workdir / "pg")
    stores: list[Store] = []
    try:
        dsn = source.create_voucher_database(cluster, "voucher")
        rounds = range(scale.ingest_rounds)
        ours = [f"sidecar_{number}" for number in rounds] + ["sidecar_profiled"]
        theirs = [f"recvlogical_{number}" for number in rounds]
        source.create_slots(dsn, ours + theirs)
        source.seed(dsn, scale.source_customers, scale.source_vouchers)
        seed_end = source.current_lsn(dsn)
        log(f"ingest: seeded {scale.source_customers:,} customers, {scale.source_vouchers:,} vouchers; "
            "every slot drains the seed")
        for slot in ours:
            stores.append(Store.open(f"chdb://{workdir / 'clickhouse'}?database={slot}"))
            drain_with_pipeline(dsn, slot, seed_end, workdir / slot, stores[-1])
        for slot in theirs:
            drain_with_pg_recvlogical(cluster, dsn, slot, seed_end)
        tune_collector()  # as `voucher-activity run` does once started
        started = time.monotonic()
        transactions, changes, end = source.write_backlog(
            dsn, scale.ingest_changes, scale.source_customers, scale.source_vouchers)
        log(f"ingest: wrote {changes:,} changes in {transactions:,} transactions "
            f"({time.monotonic() - started:.1f} s)")
        their_seconds, our_seconds, our_cpu, our_process_cpu = [], [], [], []
        for number in rounds:
            their_seconds.append(drain_with_pg_recvlogical(cluster, dsn, theirs[number], end))
            our_seconds.append(drain_with_pipeline(dsn, ours[number], end, workdir / ours[number], stores[number],
                                                   cpu_seconds=our_cpu, process_cpu_seconds=our_process_cpu))
            log(f"ingest round {number + 1}: pg_recvlogical {their_seconds[-1]:.2f} s, "
                f"sidecar {our_seconds[-1]:.2f} s (CPU: pipeline thread {our_cpu[-1]:.2f} s, "
                f"process {our_process_cpu[-1]:.2f} s)")
        profiler = cProfile.Profile()
        profiled_seconds = drain_with_pipeline(dsn, ours[-1], end, workdir / ours[-1], stores[-1], profiler)
        profiler.dump_stats(workdir / "profile.pstats")  # read it with pstats (bench --keep keeps it)
        events = stores[0].rows("SELECT count() FROM customer_events", {})[0][0]
    finally:
        for store in stores:
            store.close()
        cluster.destroy()
    ours_rate, their_rate = changes / min(our_seconds), changes / min(their_seconds)
    figure = Figure(
        "1. ingest", f"drain {changes:,} engine-like row changes ({transactions:,} transactions) end to end",
        "changes/s", ours_rate, their_rate, "pg_recvlogical", higher_is_better=True,
        target=f">= {TARGET_RATIO}x" + (f" and >= {TARGET_RATE:,}/s" if scale.name == "full" else ""),
        met=ours_rate / their_rate >= TARGET_RATIO and (scale.name != "full" or ours_rate >= TARGET_RATE),
    )
    notes = "\n".join([
        "### 1. Ingest",
        f"Operation mix: {engine_sql.describe_mix()}. The backlog's {changes:,} changes became "
        f"{events:,} events ({events / min(our_seconds):,.0f} events/s). Rounds (s): sidecar "
        f"{', '.join(f'{s:.2f}' for s in our_seconds)} (CPU: pipeline thread {', '.join(f'{s:.2f}' for s in our_cpu)}; process {', '.join(f'{s:.2f}' for s in our_process_cpu)}); pg_recvlogical {', '.join(f'{s:.2f}' for s in their_seconds)}. "
        "The sidecar's figure ends when its confirmed LSN reaches the server: once the stream "
        "pauses, the pipeline flushes, commits and confirms at once and reports the position.",
        "",
        f"Profile of one more sidecar drain under cProfile ({profiled_seconds:.1f} s wall with profiling "
        "overhead; own time of the pipeline thread, built-ins charged to their callers):",
        "",
        summarize(pstats.Stats(profiler)),
    ])
    return Outcome([figure], notes)


main = entry_point("ingest", __doc__, run)
