"""The pipeline end to end, in process, on real PostgreSQL and real chDB (SPEC §3, §7):
snapshot + stream with no gap and no overlap, restarts, a PostgreSQL restart, a store outage,
and an idle slot that keeps up with untracked writes."""

from __future__ import annotations

import collections
import contextlib
import functools
import gc
import os
import shutil
import tempfile
import threading
import time
import uuid
from pathlib import Path

import psutil
import psycopg
import pytest

from demo.embedded_pg import LocalPostgres, wheel_installation
from demo.traffic import VoucherTraffic
from query.metrics import Metrics
from query.store import Store, connect
from tests.conftest import unique_name
from tests.pipeline_helpers import (
    PipelineThread,
    assert_each_business_row_once,
    prepare_source,
    raw_duplicates,
    server_wal_lsn,
    settings_for,
    wait_caught_up,
)
from tests.replication_helpers import confirmed_lsn
from voucher_activity import pipeline as pipeline_module
from voucher_activity.memory import CATCH_UP_YOUNG_OBJECTS
from voucher_activity.priorities import BACKGROUND_NICE

BULK_CUSTOMERS = 20_000


def _bulk_customers(dsn: str, count: int) -> None:
    """Many pre-existing customers, so the initial snapshot takes long enough to write during it."""
    with psycopg.connect(dsn) as conn:
        tenant = conn.execute("SELECT id FROM tenant WHERE name = 'acme'").fetchone()[0]
        conn.execute(
            "INSERT INTO customer (id, created_at, updated_at, source_id, name, email, metadata, tenant_id) "
            "SELECT gen_random_uuid(), timestamp '2026-01-01' + i * interval '1 second', "
            "timestamp '2026-01-01', 'bulk-' || i, 'Bulk ' || i, 'bulk' || i || '@example.com', "
            "'{\"tier\": \"bronze\"}', %s FROM generate_series(1, %s) AS i",
            (tenant, count),
        )


def test_rows_before_and_during_the_snapshot_appear_exactly_once(voucher_db, store_url, tmp_path):
    prepare_source(voucher_db.dsn)
    traffic = VoucherTraffic(voucher_db.dsn, seed=1)
    traffic.setup()
    traffic.burst(150)
    _bulk_customers(voucher_db.dsn, BULK_CUSTOMERS)
    slot = unique_name("va")
    during_snapshot = 0
    with Store.open(store_url) as store, PipelineThread(
        settings_for(voucher_db.dsn, store_url, tmp_path, slot), store
    ) as running:
        # Write while the snapshot is being read: these rows must come through the stream.
        deadline = time.monotonic() + 60
        while not running.pipeline.progress.streaming and time.monotonic() < deadline:
            snapshotting = running.pipeline.progress.snapshot_running
            traffic.step()
            during_snapshot += snapshotting
        running.wait_streaming()
        # the events table's merges, paused for the snapshot, run again (else: "Cancelled merging parts")
        connect(store.location).command(f"OPTIMIZE TABLE {store.location.database}.customer_events FINAL")
        traffic.burst(150)
        wait_caught_up(voucher_db.dsn, slot, running=running)
        checked = assert_each_business_row_once(voucher_db.dsn, store)
        bulk = store.rows(
            "SELECT count(), uniqExact(JSONExtractString(data, 'customer', 'source_id')), any(source) "
            "FROM customer_events_dedup WHERE type = 'customer.created' "
            "AND startsWith(JSONExtractString(data, 'customer', 'source_id'), 'bulk-')", {},
        )[0]
        group = store.rows(
            "SELECT DISTINCT group_id FROM customer_events_dedup WHERE source = 'snapshot'", {}
        )
    assert during_snapshot > 0, "no write landed during the snapshot; make the snapshot longer"
    assert bulk == (BULK_CUSTOMERS, BULK_CUSTOMERS, "snapshot")
    assert group == [(f"snapshot_{slot}",)]
    assert checked["redemption"] > 10 and checked["orders"] > 10


def test_graceful_restart_resumes_where_it_stopped(voucher_db, store_url, tmp_path):
    prepare_source(voucher_db.dsn)
    traffic = VoucherTraffic(voucher_db.dsn, seed=2)
    traffic.setup()
    slot = unique_name("va")
    settings = settings_for(voucher_db.dsn, store_url, tmp_path, slot, snapshot="never")
    with Store.open(store_url) as store:
        with PipelineThread(settings, store) as running:
            running.wait_streaming()
            traffic.burst(100)
            wait_caught_up(voucher_db.dsn, slot, running=running)
        stopped_at = confirmed_lsn(voucher_db.dsn, slot)
        traffic.burst(100)  # written while the sidecar is down
        metrics = Metrics()
        with PipelineThread(settings, store, metrics) as running:
            running.wait_streaming()
            traffic.burst(50)
            wait_caught_up(voucher_db.dsn, slot, running=running)
            time.sleep(1.5)  # the gauges are refreshed on every pass of the loop
            sample = metrics.registry.get_sample_value
            assert sample("va_reader_lag_bytes") == 0.0
            assert sample("va_reader_lag_seconds") == 0.0
            assert sample("va_retained_wal_bytes") > 0
            written_this_run = sample("va_events_written_total")
        assert confirmed_lsn(voucher_db.dsn, slot) > stopped_at
        assert_each_business_row_once(voucher_db.dsn, store)
        assert raw_duplicates(store) == 0  # a graceful stop confirms everything it stored
        stored_since_restart = store.rows(
            "SELECT count() FROM customer_events WHERE source_lsn > {lsn:UInt64}", {"lsn": stopped_at})[0][0]
        assert written_this_run == stored_since_restart


def _behind_a_backlog(dsn: str, store: Store, store_url: str, data_dir: Path, customers: int):
    """A slot created (by a pipeline that stops at once), then new customers written, one
    transaction each, as the engine writes them, all older than CATCH_UP_LAG when this returns:
    the pipeline's settings, the slot's confirmed LSN, and the server's WAL position after it."""
    prepare_source(dsn)
    VoucherTraffic(dsn, seed=3).setup()
    settings = settings_for(dsn, store_url, data_dir, unique_name("va"), snapshot="never")
    with PipelineThread(settings, store) as running:
        running.wait_streaming()
    started = confirmed_lsn(dsn, settings.slot)
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(
            "DO $$ DECLARE tenant uuid := (SELECT id FROM tenant WHERE name = 'acme'); BEGIN "
            f"FOR i IN 1..{customers} LOOP "
            "INSERT INTO customer (id, created_at, updated_at, source_id, name, tenant_id) "
            "VALUES (gen_random_uuid(), now(), now(), 'backlog-' || i, 'Backlog ' || i, tenant); "
            "COMMIT; END LOOP; END $$")
    ended = server_wal_lsn(dsn)
    time.sleep(1.5)
    return settings, started, ended


def test_a_long_catch_up_commits_and_confirms_as_it_goes(voucher_db, store_url, tmp_path, monkeypatch, request):
    """Draining a backlog, the pipeline commits its state and confirms an LSN every
    CATCH_UP_COMMIT_INTERVAL, not only once caught up: the server drops WAL as it goes, and
    a crash replays at most that much."""
    request.addfinalizer(functools.partial(gc.set_threshold, *gc.get_threshold()))
    monkeypatch.setattr(pipeline_module, "CATCH_UP_COMMIT_INTERVAL", 0.25)
    customers = 40_000
    with Store.open(store_url) as store:
        settings, started, ended = _behind_a_backlog(voucher_db.dsn, store, store_url, tmp_path, customers)
        slot = settings.slot
        confirmed, young_thresholds, lowered = set(), set(), collections.defaultdict(set)
        with PipelineThread(settings, store) as running:
            deadline = time.monotonic() + 120
            while (lsn := confirmed_lsn(voucher_db.dsn, slot)) < ended:
                assert running.error is None and time.monotonic() < deadline, running.error
                confirmed.add(lsn)
                young_thresholds.add(gc.get_threshold()[0])
                for thread in threading.enumerate():
                    if thread.name.startswith(("state-writes", "store-writer")):
                        with contextlib.suppress(OSError, TypeError):  # it ended meanwhile
                            lowered[thread.name[:12]].add(os.getpriority(os.PRIO_PROCESS, thread.native_id))
                time.sleep(0.01)
        on_the_way = sorted(lsn for lsn in confirmed if started < lsn < ended)
        assert len(on_the_way) >= 3, [f"{lsn:X}" for lsn in on_the_way]
        # the collector's young generation was set for catching up (voucher_activity.memory)
        assert CATCH_UP_YOUNG_OBJECTS in young_thresholds, young_thresholds
        # the state's writes and, catching up, the inserts yield the CPU to the pipeline thread
        # (voucher_activity/priorities.py)
        assert BACKGROUND_NICE in lowered["state-writes"] and BACKGROUND_NICE in lowered["store-writer"], lowered
        created = store.rows(
            "SELECT count() FROM customer_events_dedup WHERE type = 'customer.created'", {})[0][0]
        assert created == customers


def test_survives_a_postgresql_restart_mid_stream(tmp_path, store_url):
    # Not under tmp_path: a concurrent pytest may reset its root to 0700, locking the server out.
    cluster = LocalPostgres(wheel_installation(), Path(tempfile.mkdtemp(prefix="va-restart-")) / "pg")
    cluster.init()
    cluster.start()
    try:
        with psycopg.connect(cluster.dsn(), autocommit=True) as conn:
            conn.execute("CREATE DATABASE voucher")
        dsn = cluster.dsn("voucher")
        from tests.conftest import voucher_schema_sql

        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(voucher_schema_sql())
        prepare_source(dsn)
        traffic = VoucherTraffic(dsn, seed=3)
        traffic.setup()
        stop_traffic = threading.Event()
        writer = threading.Thread(target=traffic.run, args=(80.0, stop_traffic), daemon=True)
        slot = "va_restart"
        with Store.open(store_url) as store, PipelineThread(
            settings_for(dsn, store_url, tmp_path / "data", slot), store
        ) as running:
            running.wait_streaming()
            writer.start()
            time.sleep(1.5)
            cluster.restart("immediate")  # a crash of the server, not a polite shutdown
            time.sleep(1.5)
            running.wait_streaming(timeout=90)
            time.sleep(1.0)
            stop_traffic.set()
            writer.join(timeout=30)
            wait_caught_up(dsn, slot, timeout=90, running=running)
            checked = assert_each_business_row_once(dsn, store)
        assert sum(checked.values()) > 20
        assert traffic.counts.total() > 100
    finally:
        cluster.destroy()
        shutil.rmtree(cluster.data_dir.parent, ignore_errors=True)


def test_store_outage_confirms_nothing_then_delivers_everything(voucher_db, store_url, tmp_path):
    prepare_source(voucher_db.dsn)
    traffic = VoucherTraffic(voucher_db.dsn, seed=4)
    traffic.setup()
    slot = unique_name("va")
    with Store.open(store_url) as store, PipelineThread(
        settings_for(voucher_db.dsn, store_url, tmp_path, slot), store
    ) as running:
        running.wait_streaming()
        traffic.burst(50)
        wait_caught_up(voucher_db.dsn, slot, running=running)
        admin = connect(store.location)
        table = f"{store.location.database}.customer_events"
        admin.command(f"DETACH TABLE {table}")  # every insert now fails
        try:
            before = confirmed_lsn(voucher_db.dsn, slot)
            process = psutil.Process()
            traffic.burst(200)
            time.sleep(2)
            rss_start = process.memory_info().rss
            traffic.burst(200)
            time.sleep(4)
            rss_end = process.memory_info().rss
            assert confirmed_lsn(voucher_db.dsn, slot) == before
            assert running.pipeline.readiness() is not None
            assert rss_end - rss_start < 64 * 2**20
        finally:
            admin.command(f"ATTACH TABLE {table}")
            admin.close()
        wait_caught_up(voucher_db.dsn, slot, timeout=90, running=running)
        checked = assert_each_business_row_once(voucher_db.dsn, store)
    assert checked["redemption"] > 20


def test_a_store_outage_while_catching_up_confirms_nothing_then_delivers_everything(
        voucher_db, store_url, tmp_path, monkeypatch):
    # catching up, a commit does not wait for its events' insert: it must not happen without it
    monkeypatch.setattr(pipeline_module, "CATCH_UP_COMMIT_INTERVAL", 0.2)
    customers = 20_000
    with Store.open(store_url) as store:
        settings, before, _ = _behind_a_backlog(voucher_db.dsn, store, store_url, tmp_path, customers)
        slot = settings.slot
        admin = connect(store.location)
        table = f"{store.location.database}.customer_events"
        admin.command(f"DETACH TABLE {table}")  # every insert of events now fails
        attached = False
        try:
            with PipelineThread(settings, store) as running:
                time.sleep(4)
                assert confirmed_lsn(voucher_db.dsn, slot) == before
                admin.command(f"ATTACH TABLE {table}")
                attached = True
                wait_caught_up(voucher_db.dsn, slot, timeout=90, running=running)
        finally:
            if not attached:
                admin.command(f"ATTACH TABLE {table}")
            admin.close()
        created = store.rows(
            "SELECT count() FROM customer_events_dedup WHERE type = 'customer.created'", {})[0][0]
        assert created == customers


def test_idle_slot_keeps_up_with_untracked_writes(voucher_db, store_url, tmp_path):
    prepare_source(voucher_db.dsn)
    slot = unique_name("va")
    with Store.open(store_url) as store, PipelineThread(
        settings_for(voucher_db.dsn, store_url, tmp_path, slot, snapshot="never"), store
    ):
        for _ in range(5):
            with psycopg.connect(voucher_db.dsn, autocommit=True) as conn:
                conn.execute(  # async_job is not tracked: nothing for the sidecar to store
                    "INSERT INTO async_job (id, type, status, tenant_id) SELECT %s, 'EXPORT', 'DONE', "
                    "(SELECT id FROM tenant LIMIT 1) WHERE EXISTS (SELECT 1 FROM tenant)", (uuid.uuid4(),),
                )
                conn.execute("INSERT INTO tenant (id, name) VALUES (%s, %s) ON CONFLICT DO NOTHING",
                             (uuid.uuid4(), unique_name("t")))
                conn.execute("INSERT INTO session_lock (id, session_key, redeemable_id, redeemable_object, tenant_id) "
                             "SELECT %s, 'k', 'CODE', 'voucher', id FROM tenant LIMIT 1", (uuid.uuid4(),))
            time.sleep(0.2)
        wait_caught_up(voucher_db.dsn, slot, timeout=8)


@pytest.mark.parametrize("statement", ["ALTER TABLE customer ADD COLUMN loyalty_tier text"])
def test_alter_table_mid_stream_keeps_streaming(voucher_db, store_url, tmp_path, statement):
    prepare_source(voucher_db.dsn)
    traffic = VoucherTraffic(voucher_db.dsn, seed=5)
    traffic.setup()
    slot = unique_name("va")
    with Store.open(store_url) as store, PipelineThread(
        settings_for(voucher_db.dsn, store_url, tmp_path, slot), store
    ) as running:
        running.wait_streaming()
        traffic.burst(40)
        voucher_db.execute(statement)
        traffic.burst(40)
        voucher_db.execute("UPDATE customer SET loyalty_tier = 'gold', name = 'Renamed' WHERE source_id = "
                           "(SELECT source_id FROM customer ORDER BY source_id LIMIT 1)")
        wait_caught_up(voucher_db.dsn, slot, running=running)
        assert_each_business_row_once(voucher_db.dsn, store)
        changed = store.rows(
            "SELECT JSONExtract(data, 'changed_fields', 'Array(String)') FROM customer_events_dedup "
            "WHERE type = 'customer.updated' AND JSONExtractString(data, 'customer', 'name') = 'Renamed'", {},
        )
    assert changed == [(["loyalty_tier", "name"],)]


def test_tune_collector_freezes_startup_objects_and_raises_the_young_threshold():
    import gc

    from voucher_activity.memory import COLLECTOR_YOUNG_OBJECTS, tune_collector

    before = gc.get_threshold()
    startup_object = ["made at startup"]  # a list: tracked by the collector
    assert any(referent is startup_object for referent in gc.get_objects())
    try:
        tune_collector()
        assert gc.get_threshold() == (100_000, before[1], before[2]) == (COLLECTOR_YOUNG_OBJECTS, *before[1:])
        assert gc.get_freeze_count() > 0
        assert not any(referent is startup_object for referent in gc.get_objects())  # frozen: not scanned
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)


def test_collector_paused_stops_automatic_collection_and_restores_the_collector():
    import gc

    from voucher_activity.memory import collector_paused

    assert gc.isenabled()
    with collector_paused():
        assert not gc.isenabled()
    assert gc.isenabled()
    with pytest.raises(RuntimeError, match="snapshot failed"), collector_paused():
        raise RuntimeError("snapshot failed")
    assert gc.isenabled()  # also after a failure
    gc.disable()
    try:
        with collector_paused():
            assert not gc.isenabled()
        assert not gc.isenabled()  # left as it was found
    finally:
        gc.enable()
