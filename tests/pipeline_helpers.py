"""Helpers for end-to-end tests of the pipeline: run it in a thread, wait until it has caught
up with the source, and check that every business row produced its event exactly once."""

from __future__ import annotations

import threading
import time
from collections import Counter
from pathlib import Path

import httpx
import psycopg

from cdc_reader.changes import parse_lsn
from query.store import Store
from tests.replication_helpers import confirmed_lsn
from voucher_activity.config import Settings, build_settings
from voucher_activity.pipeline import Pipeline


def ready(port: int) -> bool:
    """Whether the process listening on `port` answers /readyz with 200 (a reader: streaming)."""
    try:
        return httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def wait_streaming(port: int, timeout: float = 60) -> None:
    """Until /readyz says the process is ready (a reader: the store answers and it streams)."""
    deadline = time.monotonic() + timeout
    while not ready(port):
        if time.monotonic() > deadline:
            raise AssertionError("sidecar did not come up")
        time.sleep(0.1)


def prepare_source(dsn: str) -> None:
    """What SPEC §3 asks of the operator before the sidecar may publish segment_customer."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("ALTER TABLE segment_customer REPLICA IDENTITY FULL")


def settings_for(dsn: str, store_url: str, data_dir: Path, slot: str, snapshot: str = "initial",
                 publication: str | None = None) -> Settings:
    return build_settings({
        "source": dsn, "store": store_url, "data-dir": str(data_dir), "slot": slot,
        "publication": publication or slot, "snapshot": snapshot, "log-format": "json",
    })


def server_wal_lsn(dsn: str) -> int:
    with psycopg.connect(dsn, autocommit=True) as conn:
        return parse_lsn(conn.execute("SELECT pg_current_wal_lsn()::text").fetchone()[0])


def wait_caught_up(dsn: str, slot: str, timeout: float = 60.0, running: PipelineThread | None = None) -> None:
    """Until the slot has confirmed everything written so far (events stored, then confirmed)."""
    target = server_wal_lsn(dsn)
    deadline = time.monotonic() + timeout
    while (confirmed_lsn(dsn, slot) or 0) < target:
        if running is not None and running.error is not None:
            raise AssertionError("the pipeline stopped with an error") from running.error
        if time.monotonic() > deadline:
            raise AssertionError(
                f"slot {slot} confirmed {confirmed_lsn(dsn, slot) or 0:X}, not {target:X}, after {timeout}s"
            )
        time.sleep(0.1)


class PipelineThread:
    """The real pipeline in a background thread, as `run` hosts it."""

    def __init__(self, settings: Settings, store: Store, metrics=None) -> None:
        self.stop = threading.Event()
        self.pipeline = Pipeline(settings, store, self.stop, metrics)
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        try:
            self.pipeline.run()
        except BaseException as error:
            self.error = error

    def __enter__(self) -> PipelineThread:
        self.thread.start()
        return self

    def wait_streaming(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while not self.pipeline.progress.streaming:
            if self.error is not None:
                raise self.error
            if time.monotonic() > deadline:
                raise AssertionError(f"pipeline not streaming after {timeout}s: {self.pipeline.readiness()}")
            time.sleep(0.05)

    def __exit__(self, *exc) -> None:
        self.stop.set()
        self.thread.join(timeout=60)
        assert not self.thread.is_alive(), "pipeline did not stop"
        if self.error is not None and exc[0] is None:
            raise self.error


# Business row -> the event type it must produce exactly once, and where its id sits in `data`.
# (Publications are deleted with their customer, so an event may outlive its row there.)
ROW_EVENTS = {
    "redemption": ("customer.redemption.succeeded", "redemption", "customer_id IS NOT NULL"),
    "redemption_rollback": ("customer.redemption.rollback.succeeded", "redemption_rollback", "customer_id IS NOT NULL"),
    "publication": ("customer.publication.%", "publication", "customer_id IS NOT NULL"),
    "orders": ("customer.order.created", "order", "customer_id IS NOT NULL"),
}


def stored_event_counts(store: Store, event_type: str, object_name: str) -> Counter:
    """How many visible events of `event_type` name each source row id (duplicates collapsed
    as the API and the _dedup view do)."""
    rows = store.rows(
        "SELECT JSONExtractString(data, {object:String}, 'id') AS row_id, count() "
        "FROM customer_events_dedup WHERE type LIKE {type:String} GROUP BY row_id",
        {"object": object_name, "type": event_type},
    )
    return Counter({row_id: count for row_id, count in rows})


def assert_each_business_row_once(dsn: str, store: Store) -> dict[str, int]:
    """Every redemption, rollback, publication and order (with a customer) in the source has
    exactly one event, and no event names a row that never existed."""
    checked = {}
    with psycopg.connect(dsn) as conn:
        for table, (event_type, object_name, condition) in ROW_EVENTS.items():
            ids = {str(row[0]) for row in conn.execute(f"SELECT id FROM {table} WHERE {condition}")}
            counts = stored_event_counts(store, event_type, object_name)
            missing = ids - set(counts)
            extra = set(counts) - ids
            twice = {row_id: n for row_id, n in counts.items() if n != 1}
            if table == "publication":
                extra = set()
            assert not missing and not extra and not twice, (table, missing, extra, twice)
            checked[table] = len(ids)
    return checked


def raw_duplicates(store: Store) -> int:
    """Copies of an id stored more than once and not yet merged (visible without dedup)."""
    return store.rows("SELECT count() - uniqExact(id) FROM customer_events", {})[0][0]
