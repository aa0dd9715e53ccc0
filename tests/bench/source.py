"""The source side of the benchmarks: a throwaway PostgreSQL holding the voucher schema and a seed,
pgbench driving engine-like transactions, slots and their confirmed positions, and the sidecar
as operators run it (`voucher-activity run` in its own process)."""

from __future__ import annotations

import cProfile
import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx
import psutil
import psycopg

from cdc_reader.changes import parse_lsn
from cdc_reader.slot import create_slot, ensure_publication, slot_info
from demo.embedded_pg import LocalPostgres, free_port, wheel_installation
from mappers import tracked_tables
from mappers.schema import voucher_schema_sql
from query.store import Store
from tests.bench import engine_sql
from voucher_activity.config import build_settings
from voucher_activity.pipeline import Pipeline

PUBLICATION = "voucher_activity"
# Benchmarks compare steady states; autovacuum waking up mid-run would only add noise.
BENCH_SETTINGS = {"autovacuum": "off", "max_wal_size": "'4GB'", "checkpoint_timeout": "'30min'"}


def time_pipeline(dsn: str, slot: str, data_dir: Path, store: Store, snapshot: str,
                  finished: Callable[[Pipeline, threading.Event], float],
                  profiler: cProfile.Profile | None = None, cpu_seconds: list[float] | None = None,
                  process_cpu_seconds: list[float] | None = None) -> float:
    """Seconds from starting the real pipeline in a thread (as `run` hosts it) until the
    monotonic time `finished(pipeline, stop)` returns; the pipeline is stopped afterwards and
    its failure, if any, raised. `cpu_seconds` receives the pipeline thread's CPU time (until it
    stopped): a figure other processes on the machine do not inflate as they do wall time;
    `process_cpu_seconds` the whole process's (the store's insert and merge threads included)."""
    settings = build_settings({
        "source": dsn, "store": "chdb://unused", "data-dir": str(data_dir), "slot": slot,
        "publication": PUBLICATION, "snapshot": snapshot, "log-format": "json",
        "state-cache": os.environ.get("VA_STATE_CACHE"),  # as `voucher-activity run` reads it
    })
    stop = threading.Event()
    pipeline = Pipeline(settings, store, stop)
    failure: list[BaseException] = []

    def target() -> None:
        cpu_started = time.thread_time()
        try:
            if profiler is None:
                pipeline.run()
            else:
                profiler.runcall(pipeline.run)
        except BaseException as error:  # re-raised below
            failure.append(error)
            stop.set()
        if cpu_seconds is not None:
            cpu_seconds.append(time.thread_time() - cpu_started)

    thread = threading.Thread(target=target, name=f"pipeline-{slot}")
    process_started = time.process_time()
    started = time.monotonic()
    thread.start()
    try:
        end = finished(pipeline, stop)
    finally:
        stop.set()
        thread.join()
    if process_cpu_seconds is not None:
        process_cpu_seconds.append(time.process_time() - process_started)
    if failure:
        raise failure[0]
    return end - started


def start_cluster(root: Path, **settings: str) -> LocalPostgres:
    cluster = LocalPostgres(wheel_installation(), root, settings={**BENCH_SETTINGS, **settings})
    cluster.init()
    cluster.start()
    return cluster


def create_voucher_database(cluster: LocalPostgres, name: str) -> str:
    """A database with the engine's schema, prepared as SPEC §3 asks an operator to; its DSN."""
    with psycopg.connect(cluster.dsn(), autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    dsn = cluster.dsn(name)
    schema = voucher_schema_sql()
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(schema)
        conn.execute("ALTER TABLE segment_customer REPLICA IDENTITY FULL")
    return dsn


def seed(dsn: str, customers: int, vouchers: int) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        for statement in engine_sql.seed_statements(customers, vouchers):
            conn.execute(statement)


def create_slots(dsn: str, names: list[str]) -> None:
    """The sidecar's publication and pgoutput slots created back to back, so every slot sees
    exactly the same WAL from here on."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        ensure_publication(conn, PUBLICATION, tracked_tables())
        for name in names:
            create_slot(conn, name)


def write_backlog(dsn: str, changes: int, customers: int, vouchers: int, serial_offset: int = 0) -> tuple[int, int, int]:
    """Engine-like transactions as fast as the server commits them; returns (transactions,
    changes, the WAL insert position right after the last commit)."""
    notices: list[str] = []
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.add_notice_handler(lambda diagnostic: notices.append(diagnostic.message_primary or ""))
        conn.execute(engine_sql.plpgsql_workload(changes, customers, vouchers, serial_offset))
        end = parse_lsn(conn.execute("SELECT pg_current_wal_insert_lsn()::text").fetchone()[0])
    _, transactions, written = next(notice for notice in notices if notice.startswith("bench ")).split()
    return int(transactions), int(written), end


def current_lsn(dsn: str) -> int:
    with psycopg.connect(dsn, autocommit=True) as conn:
        return parse_lsn(conn.execute("SELECT pg_current_wal_insert_lsn()::text").fetchone()[0])


# A commit record ends where the next WAL insert starts, except across a page boundary, where
# the insert position also skips the next page's header (24 or 40 bytes). Any transaction
# takes more WAL than this, so a slot within it of an insert position has confirmed everything.
PAGE_HEADER_SLACK = 64


def confirmed_lsn(conn: psycopg.Connection, slot: str) -> int:
    """The slot's confirmed position (0 before any), on an open connection (the benchmarks poll it)."""
    info = slot_info(conn, slot)
    return info.confirmed_flush_lsn or 0 if info is not None else 0


def wait_confirmed(dsn: str, slot: str, end: int, timeout: float, poll: float = 0.02,
                   stop: threading.Event | None = None, local: Callable[[], int | None] | None = None) -> float:
    """Blocks until the slot has confirmed `end`; returns the monotonic time it was seen. A set
    `stop` (the pipeline failed: `time_pipeline` raises its error) ends the wait at once.
    `local`: for a pipeline in this process, its own confirmed LSN; the wait watches that first
    and queries the server only once the pipeline has confirmed `end`, since a query every
    `poll` would take the interpreter's lock from the pipeline being timed."""
    deadline, goal = time.monotonic() + timeout, end - PAGE_HEADER_SLACK
    with psycopg.connect(dsn, autocommit=True) as conn:
        while (local is not None and (local() or 0) < goal) or confirmed_lsn(conn, slot) < goal:
            if time.monotonic() > deadline:
                raise TimeoutError(f"slot {slot} did not confirm {end:#x} within {timeout:.0f} s")
            if stop is not None and stop.is_set():
                return time.monotonic()
            time.sleep(poll)
    return time.monotonic()


def pgbench(cluster: LocalPostgres, database: str, script_arguments: list[str], seconds: float,
            clients: int, rate: int | None = None) -> float:
    """Runs pgbench; returns the transactions per second it reports."""
    command = [cluster.installation.tool("pgbench"), "-n", "-h", "127.0.0.1", "-p", str(cluster.port),
               "-U", "postgres", "-c", str(clients), "-j", str(min(clients, 2)), "-T", str(int(seconds)),
               *(["-R", str(rate)] if rate else []), *script_arguments, database]
    return _pgbench_tps(subprocess.run(command, check=True, capture_output=True, text=True).stdout)


def start_pgbench(cluster: LocalPostgres, database: str, script_arguments: list[str], clients: int,
                  rate: int, seconds: float) -> subprocess.Popen:
    """pgbench in the background at a steady `rate` (the freshness and memory background load)."""
    command = [cluster.installation.tool("pgbench"), "-n", "-h", "127.0.0.1", "-p", str(cluster.port),
               "-U", "postgres", "-c", str(clients), "-j", str(min(clients, 2)), "-T", str(int(seconds)),
               "-R", str(rate), *script_arguments, database]
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finish_pgbench(process: subprocess.Popen) -> float:
    stdout, stderr = process.communicate()
    if process.returncode != 0:
        raise RuntimeError(f"pgbench failed: {stderr.strip()}")
    return _pgbench_tps(stdout)


def _pgbench_tps(output: str) -> float:
    match = re.search(r"tps = ([0-9.]+)", output)
    if match is None:
        raise RuntimeError(f"no tps in pgbench output: {output!r}")
    return float(match.group(1))


@dataclass
class Sidecar:
    """`voucher-activity run` in its own process: reader, embedded chDB and API, as deployed."""

    process: subprocess.Popen
    port: int
    log_path: Path

    @classmethod
    def start(cls, dsn: str, data_dir: Path, slot: str = "voucher_activity", timeout: float = 60,
              snapshot: str = "never", ready: bool = True) -> Sidecar:
        """Started; with `ready`, once it streams (an initial snapshot, if any, taken)."""
        data_dir.mkdir(parents=True, exist_ok=True)
        port = free_port()
        log_path = data_dir / "sidecar.log"
        command = [sys.executable, "-m", "voucher_activity.cli", "run", "--source", dsn, "--store",
                   f"chdb://{data_dir / 'clickhouse'}", "--data-dir", str(data_dir), "--listen",
                   f"127.0.0.1:{port}", "--tokens", "*=admin", "--slot", slot, "--snapshot", snapshot,
                   "--log-format", "json", "--sql-listen", "off"]
        with log_path.open("wb") as log_file:
            process = subprocess.Popen(command, stdout=log_file, stderr=subprocess.STDOUT)
        sidecar = cls(process, port, log_path)
        if ready:
            sidecar.wait_ready(timeout)
        return sidecar

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the sidecar exited: {self.log_path.read_text()[-2000:]}")
            try:
                if httpx.get(f"{self.base_url}/readyz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise TimeoutError(f"the sidecar was not ready within {timeout:.0f} s; log: {self.log_path}")

    def rss(self) -> int:
        """Resident memory of the sidecar process (bytes)."""
        return psutil.Process(self.process.pid).memory_info().rss

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
