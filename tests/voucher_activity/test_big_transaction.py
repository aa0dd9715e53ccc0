"""Memory stays bounded however large a transaction or a table is (SPEC §7): the process's peak
RSS stays under README's bound, 1 GiB (the embedded chDB engine, whose shared library's pages
count in RSS, its inserts and merges, the SQLite page cache, batches and the interpreter) plus --state-cache (the
reference state's working set), while one transaction of 1,000,000 row changes (a bulk customer
import) streams through `voucher-activity run`, and while an initial snapshot of 500,000 rows is
taken. Every event is stored in both."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import psutil
import pytest

from demo.embedded_pg import free_port
from tests.pipeline_helpers import confirmed_lsn, prepare_source, ready, server_wal_lsn

ROWS = 1_000_000
SNAPSHOT_ROWS = 500_000
STATE_CACHE = 2**30  # the default
PEAK_RSS_LIMIT = 2**30 + STATE_CACHE


class PeakRss:
    """The peak RSS of a process, sampled whenever `sample` is called."""

    def __init__(self, pid: int) -> None:
        self.process = psutil.Process(pid)
        self.peak = self.file_backed = 0

    def sample(self) -> None:
        memory = self.process.memory_info()
        if memory.rss > self.peak:
            self.peak, self.file_backed = memory.rss, memory.shared

    def __str__(self) -> str:
        return f"peak RSS {self.peak / 2**20:.0f} MiB, of which {self.file_backed / 2**20:.0f} MiB file-backed"


def start_run(voucher_db, tmp_path, snapshot: str, port: int = 0) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "voucher_activity.cli", "run", "--source", voucher_db.dsn,
         "--store", f"chdb://{tmp_path / 'clickhouse'}", "--data-dir", str(tmp_path / "data"),
         "--listen", f"127.0.0.1:{port or free_port()}", "--snapshot", snapshot, "--log-format", "json",
         "--state-cache", f"{STATE_CACHE // 2**20}MiB", "--sql-listen", "off"],
        stdout=subprocess.DEVNULL, stderr=(tmp_path / "sidecar.log").open("wb"), stdin=subprocess.DEVNULL,
    )


def wait_confirmed(voucher_db, sidecar, rss: PeakRss, tmp_path, target: int, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while (confirmed_lsn(voucher_db.dsn, "voucher_activity") or 0) < target:
        assert sidecar.poll() is None, (tmp_path / "sidecar.log").read_text()[-3000:]
        assert time.monotonic() < deadline, f"not confirmed in {seconds} s"
        rss.sample()
        time.sleep(0.2)


def stop(sidecar) -> None:
    sidecar.send_signal(signal.SIGTERM)
    assert sidecar.wait(timeout=120) == 0


def created_events(tmp_path) -> list[str]:
    counted = subprocess.run(
        [sys.executable, "-m", "voucher_activity.cli", "sql", "--store", f"chdb://{tmp_path / 'clickhouse'}",
         "--format", "csv", "SELECT count() AS events, uniqExact(customer_id) AS customers "
         "FROM customer_events_dedup WHERE type = 'customer.created'"],
        capture_output=True, text=True, timeout=120,
    )
    return counted.stdout.split()


@pytest.mark.slow
def test_a_million_row_transaction_streams_through_in_bounded_memory(voucher_db, tmp_path):
    prepare_source(voucher_db.dsn)
    voucher_db.execute("INSERT INTO tenant (id, name) VALUES (gen_random_uuid(), 'acme')")
    sidecar = start_run(voucher_db, tmp_path, "never")
    rss = PeakRss(sidecar.pid)
    try:
        wait_confirmed(voucher_db, sidecar, rss, tmp_path, 1, 60)  # from start-up on
        voucher_db.execute(
            "INSERT INTO customer (id, created_at, updated_at, source_id, name, email, metadata, tenant_id) "
            "SELECT gen_random_uuid(), now(), now(), 'bulk-' || i, 'Bulk ' || i, 'bulk' || i || '@example.com', "
            "'{\"tier\": \"gold\"}', (SELECT id FROM tenant) FROM generate_series(1, %s) AS i", (ROWS,),
        )
        wait_confirmed(voucher_db, sidecar, rss, tmp_path, server_wal_lsn(voucher_db.dsn), 900)
    finally:
        stop(sidecar)
    print(f"a {ROWS:,}-row transaction: {rss}")  # README's figure (pytest -s)
    assert created_events(tmp_path) == ["events,customers", f"{ROWS},{ROWS}"]
    assert rss.peak < PEAK_RSS_LIMIT, str(rss)


@pytest.mark.slow
def test_an_initial_snapshot_of_half_a_million_rows_stays_in_bounded_memory(voucher_db, tmp_path):
    prepare_source(voucher_db.dsn)
    voucher_db.execute("INSERT INTO tenant (id, name) VALUES (gen_random_uuid(), 'acme')")
    voucher_db.execute(
        "INSERT INTO customer (id, created_at, updated_at, source_id, name, email, metadata, tenant_id) "
        "SELECT gen_random_uuid(), now(), now(), 'old-' || i, 'Old ' || i, 'old' || i || '@example.com', "
        "'{\"tier\": \"silver\"}', (SELECT id FROM tenant) FROM generate_series(1, %s) AS i", (SNAPSHOT_ROWS,),
    )
    port = free_port()
    sidecar = start_run(voucher_db, tmp_path, "initial", port)
    rss = PeakRss(sidecar.pid)
    try:
        deadline = time.monotonic() + 900
        while not ready(port):  # streaming: the snapshot is stored
            assert sidecar.poll() is None, (tmp_path / "sidecar.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "the snapshot did not finish in 900 s"
            rss.sample()
            time.sleep(0.2)
        wait_confirmed(voucher_db, sidecar, rss, tmp_path, server_wal_lsn(voucher_db.dsn), 60)
    finally:
        stop(sidecar)
    print(f"a {SNAPSHOT_ROWS:,}-row snapshot: {rss}")  # README's figure (pytest -s)
    assert created_events(tmp_path) == ["events,customers", f"{SNAPSHOT_ROWS},{SNAPSHOT_ROWS}"]
    assert rss.peak < PEAK_RSS_LIMIT, str(rss)
