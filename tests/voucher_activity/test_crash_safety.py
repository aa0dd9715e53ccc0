"""Crash safety (SPEC §7): `voucher-activity run` is killed with SIGKILL at random moments while
an engine-like load commits thousands of small transactions, and restarted each time. Afterwards
the events visible through its API must equal, event for event, those of a reference pipeline
that read an identical slot without interruption: none missing, none twice, none different."""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import psycopg
from starlette.testclient import TestClient

from demo.embedded_pg import free_port
from demo.traffic import VoucherTraffic
from query.api.app import create_app
from query.store import Store
from tests.conftest import unique_name
from tests.pipeline_helpers import (
    PipelineThread,
    prepare_source,
    settings_for,
    wait_caught_up,
    wait_streaming,
)

KILLS = 4
LOAD_RATE = 200.0  # operations/s: a few thousand transactions over the run
LOAD_OPERATIONS = 3000
ADMIN = {"Authorization": "Bearer admin"}


def start_sidecar(dsn: str, root: Path, slot: str, publication: str, port: int) -> subprocess.Popen:
    log = open(root / "sidecar.log", "ab")
    return subprocess.Popen(
        [sys.executable, "-m", "voucher_activity.cli", "run", "--source", dsn,
         "--store", f"chdb://{root / 'clickhouse'}", "--data-dir", str(root / "data"),
         "--slot", slot, "--publication", publication, "--snapshot", "never",
         "--listen", f"127.0.0.1:{port}", "--tokens", "*=admin", "--log-format", "json",
         "--sql-listen", "off"],
        stdout=log, stderr=log, stdin=subprocess.DEVNULL,
    )


def walk_activity(get, tenant: str, customer_id: str) -> list[dict]:
    """Every event of a customer through the cursor API, oldest first."""
    events: list[dict] = []
    after = None
    while True:
        params = {"limit": 100, "order": "created_at"}
        if after:
            params["starting_after_id"] = after
        response = get(f"/v1/customers/{customer_id}/activity", params=params,
                       headers={**ADMIN, "tenant": tenant})
        assert response.status_code == 200, response.text
        page = response.json()
        events += page["data"]
        if not page["has_more"]:
            return events
        after = page["more_starting_after"]


def test_sigkill_at_random_moments_loses_nothing_and_duplicates_nothing(voucher_db, store_url, tmp_path):
    prepare_source(voucher_db.dsn)
    publication = unique_name("pub")
    reference_slot, crashing_slot = unique_name("ref"), unique_name("crash")
    randomness = random.Random(20261124)
    port = free_port()
    reference_settings = settings_for(
        voucher_db.dsn, store_url, tmp_path / "reference", reference_slot, snapshot="never",
        publication=publication,
    )
    with Store.open(store_url) as reference_store, PipelineThread(reference_settings, reference_store) as reference:
        reference.wait_streaming()
        with psycopg.connect(voucher_db.dsn, autocommit=True) as conn:
            conn.execute("SELECT pg_create_logical_replication_slot(%s, 'pgoutput')", (crashing_slot,))
        traffic = VoucherTraffic(voucher_db.dsn, seed=7)
        traffic.setup()
        stop_load = threading.Event()
        load = threading.Thread(target=traffic.run, args=(LOAD_RATE, stop_load, LOAD_OPERATIONS), daemon=True)
        sidecar = start_sidecar(voucher_db.dsn, tmp_path, crashing_slot, publication, port)
        load.start()
        kills = 0
        try:
            while kills < KILLS:
                wait_streaming(port)  # kill it mid-work, not during start-up
                time.sleep(randomness.uniform(0.1, 1.2))
                assert load.is_alive(), "every kill must land while the load is running"
                sidecar.send_signal(signal.SIGKILL)
                sidecar.wait(timeout=30)
                kills += 1
                sidecar = start_sidecar(voucher_db.dsn, tmp_path, crashing_slot, publication, port)
            load.join(timeout=120)
            assert not load.is_alive()
            wait_streaming(port)
            wait_caught_up(voucher_db.dsn, crashing_slot, timeout=120)
            wait_caught_up(voucher_db.dsn, reference_slot, timeout=120, running=reference)
            with psycopg.connect(voucher_db.dsn) as conn:
                customers = conn.execute(
                    "SELECT t.name, c.id::text FROM customer c JOIN tenant t ON t.id = c.tenant_id ORDER BY 1, 2"
                ).fetchall()
            compared = 0
            with TestClient(create_app(reference_store, tokens={"admin": "*"})) as expected_api, \
                    httpx.Client(base_url=f"http://127.0.0.1:{port}") as actual_api:
                for tenant, customer_id in customers:
                    expected = walk_activity(expected_api.get, tenant, customer_id)
                    actual = walk_activity(actual_api.get, tenant, customer_id)
                    assert actual == expected, (tenant, customer_id)
                    assert len({event["id"] for event in actual}) == len(actual)
                    compared += len(actual)
        finally:
            stop_load.set()
            sidecar.send_signal(signal.SIGTERM)
            code = sidecar.wait(timeout=60)
    assert code == 0, (tmp_path / "sidecar.log").read_text()[-3000:]
    assert kills == KILLS
    assert traffic.counts.total() >= LOAD_OPERATIONS
    assert compared > 1000



def test_a_snapshot_killed_halfway_restarts_cleanly(voucher_db, tmp_path):
    """SIGKILL during the initial snapshot: the next start must not treat half a snapshot as
    done; it recreates the slot, reads everything again, and each row's event exists once."""
    prepare_source(voucher_db.dsn)
    rows = 60_000
    voucher_db.execute("INSERT INTO tenant (id, name) VALUES (gen_random_uuid(), 'acme')")
    voucher_db.execute(
        "INSERT INTO customer (id, created_at, source_id, tenant_id) SELECT gen_random_uuid(), "
        "timestamp '2026-01-01', 'snap-' || i, (SELECT id FROM tenant) FROM generate_series(1, %s) i",
        (rows,),
    )
    port = free_port()
    store = f"chdb://{tmp_path / 'clickhouse'}"
    command = [sys.executable, "-m", "voucher_activity.cli", "run", "--source", voucher_db.dsn, "--store", store,
               "--data-dir", str(tmp_path / "data"), "--listen", f"127.0.0.1:{port}", "--tokens", "*=admin",
               "--log-format", "json", "--sql-listen", "off"]
    log = (tmp_path / "sidecar.log").open("ab")
    sidecar = subprocess.Popen(command, stdout=log, stderr=log, stdin=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while True:  # until /readyz reports the snapshot under way
        assert time.monotonic() < deadline, "the snapshot was never seen running"
        try:
            ready = httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1)
            if "snapshot" in ready.text:
                break
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    sidecar.send_signal(signal.SIGKILL)
    sidecar.wait(timeout=30)
    sidecar = subprocess.Popen(command, stdout=log, stderr=log, stdin=subprocess.DEVNULL)
    try:
        wait_streaming(port, timeout=300)
        voucher_db.execute(  # after the snapshot: must arrive once, through the stream
            "INSERT INTO customer (id, created_at, source_id, tenant_id) SELECT gen_random_uuid(), now(), "
            "'late', id FROM tenant")
        wait_caught_up(voucher_db.dsn, "voucher_activity", timeout=120)
    finally:
        sidecar.send_signal(signal.SIGTERM)
        code = sidecar.wait(timeout=60)
    assert code == 0
    counted = subprocess.run(
        [sys.executable, "-m", "voucher_activity.cli", "sql", "--store", store, "--format", "csv",
         "SELECT source, count() AS events, uniqExact(customer_id) AS customers FROM customer_events_dedup "
         "WHERE type = 'customer.created' GROUP BY source ORDER BY source"],
        capture_output=True, text=True, timeout=120,
    )
    assert counted.stdout.split() == ["source,events,customers", f"snapshot,{rows},{rows}", "wal,1,1"], counted.stderr
    assert b"previous initial snapshot did not complete" in (tmp_path / "sidecar.log").read_bytes()
