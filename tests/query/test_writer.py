"""EventWriter on chDB: batching by size and age, durable LSNs, failed flushes retried without
loss, and the same rows written twice never visible twice."""

from __future__ import annotations

import threading

import pytest
from clickhouse_connect.driver.exceptions import DatabaseError

from query.activity_sql import ActivityQuery
from query.metrics import Metrics
from query.clients import insert_settings
from query.store import Store, StoreError, connect
from query.writer import EventWriter
from tests.query import factories as f

ACME = f.tenant("acme")
DAVE = f.customer(ACME, "dave", "dave-src")


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def stored(store: Store) -> list[tuple]:
    return sorted(store.rows("SELECT id, count() FROM customer_events GROUP BY id", {}))


def test_flush_writes_everything_and_returns_the_marked_lsn(store: Store) -> None:
    metrics = Metrics()
    writer = EventWriter(store, metrics=metrics)
    events = [f.event(ACME, DAVE.id, n, n) for n in range(5)]
    writer.add([ACME, DAVE, *events[:3]])
    writer.mark(30)
    writer.add(events[3:])  # after the mark: written, but the mark stays the durable point
    assert (writer.pending, writer.marked_lsn, writer.durable_lsn) == (7, 30, None)
    assert writer.flush() == 30
    assert (writer.pending, writer.marked_lsn, writer.durable_lsn) == (0, None, 30)
    assert stored(store) == sorted((e.id, 1) for e in events)
    assert store.resolve_tenant("acme") == ACME.id
    assert store.resolve_customer(ACME.id, "dave-src") == DAVE.id
    row = store.rows("SELECT * EXCEPT ingested_at FROM customer_events WHERE id = {id:UUID}", {"id": events[0].id})
    e = events[0]
    assert row == [(e.id, e.tenant_id, e.tenant, e.customer_id, e.created_at, e.type, e.category, e.campaign_id,
                     e.campaign_type, e.group_id, e.source, e.data, e.source_table, e.source_lsn)]
    assert metrics.registry.get_sample_value("va_events_written_total") == 5
    assert metrics.registry.get_sample_value("va_store_batch_rows_sum") == 7


def test_flush_without_marks_returns_none_and_marks_only_rise(store: Store) -> None:
    writer = EventWriter(store)
    assert writer.flush() is None
    writer.mark(50)
    writer.mark(40)
    assert writer.marked_lsn == 50
    assert writer.flush() == 50
    writer.mark(50)
    assert writer.marked_lsn is None  # nothing new to make durable
    assert writer.flush() == 50


def test_due_by_size_or_age() -> None:
    clock = Clock()
    writer = EventWriter(store=None, max_rows=3, max_age=0.5, clock=clock)  # type: ignore[arg-type]
    assert not writer.due()
    assert writer.seconds_until_due() == 0.5
    writer.add([f.event(ACME, DAVE.id, 0, 0)])
    clock.now += 0.25
    assert not writer.due()
    assert writer.seconds_until_due() == 0.25
    clock.now += 0.25
    assert writer.due()
    sized = EventWriter(store=None, max_rows=3, max_age=10, clock=clock)  # type: ignore[arg-type]
    sized.add([f.event(ACME, DAVE.id, n, n) for n in range(3)])
    assert sized.due() and sized.seconds_until_due() == 0.0
    marked = EventWriter(store=None, max_age=0.5, clock=clock)  # type: ignore[arg-type]
    marked.mark(7)  # a transaction without events still wants confirming
    clock.now += 0.5
    assert marked.due()


def test_unknown_records_are_refused(store: Store) -> None:
    with pytest.raises(TypeError, match="EventWriter cannot store str"):
        EventWriter(store).add(["not a record"])


def test_failed_flush_keeps_rows_and_a_retry_writes_them_once(store: Store) -> None:
    writer = EventWriter(store)
    events = [f.event(ACME, DAVE.id, n, n) for n in range(4)]
    writer.add([ACME, DAVE, *events])
    writer.mark(10)
    outsider = connect(store.location)
    outsider.command(f"DROP TABLE {store.location.database}.customer_events")  # inserts now fail
    outsider.close()
    with pytest.raises(StoreError, match="insert into customer_events failed"):
        writer.flush()
    # The lookup rows' blocks went in before the events' failed: only the events are pending.
    assert (writer.pending, writer.marked_lsn, writer.durable_lsn) == (4, 10, None)
    store.ensure_schema()
    assert writer.flush() == 10
    assert stored(store) == sorted((e.id, 1) for e in events)
    assert store.rows("SELECT count() FROM tenants", {}) == [(1,)]


def test_write_behind_stores_without_making_anything_durable_and_flush_waits_for_it(store: Store) -> None:
    writer = EventWriter(store)
    events = [f.event(ACME, DAVE.id, n, n) for n in range(5)]
    writer.add([ACME, DAVE, *events[:3]])
    writer.mark(20)
    writer.write_behind()
    writer.add(events[3:])
    writer.mark(30)
    assert (writer.marked_lsn, writer.durable_lsn) == (30, None)  # only flush makes durable
    writer.write_behind()  # waits for the first batch, then sends the second
    writer.close()
    assert stored(store) == sorted((e.id, 1) for e in events)
    assert (writer.pending, writer.durable_lsn) == (0, None)
    assert writer.flush() == 30
    assert stored(store) == sorted((e.id, 1) for e in events)


def test_a_failed_write_behind_is_raised_by_the_next_call_and_its_rows_flushed_again(store: Store) -> None:
    writer = EventWriter(store)
    events = [f.event(ACME, DAVE.id, n, n) for n in range(3)]
    writer.add(events)
    writer.mark(5)
    outsider = connect(store.location)
    outsider.command(f"DROP TABLE {store.location.database}.customer_events")
    outsider.close()
    writer.write_behind()
    with pytest.raises(StoreError, match="insert into customer_events failed"):
        writer.flush()
    assert (writer.pending, writer.marked_lsn, writer.durable_lsn) == (3, 5, None)
    store.ensure_schema()
    assert writer.flush() == 5
    assert stored(store) == sorted((e.id, 1) for e in events)


def test_the_same_batch_sent_twice_is_dropped_by_its_token(store: Store) -> None:
    events = [f.event(ACME, DAVE.id, n, n) for n in range(3)]
    for lsn in (1, 2):
        writer = EventWriter(store)
        writer.add(events)
        writer.mark(lsn)
        writer.flush()
    assert stored(store) == sorted((e.id, 1) for e in events)


def test_copies_in_other_batches_are_stored_but_collapsed_by_the_view(store: Store) -> None:
    events = [f.event(ACME, DAVE.id, n, n) for n in range(4)]
    writer = EventWriter(store)
    writer.add(events)
    writer.flush()
    writer.add(events[1:3])  # another cut of the same rows: another token
    writer.flush()
    assert store.rows("SELECT count() FROM customer_events", {}) == [(6,)]
    assert store.rows("SELECT count(), uniqExact(id) FROM customer_events_dedup", {}) == [(4, 4)]
    assert [event.id for event in store.activity(ACME.id, DAVE.id, ActivityQuery(limit=10))] == [
        e.id for e in sorted(events, key=f.history_key, reverse=True)]


def test_on_a_cluster_inserts_wait_for_every_shard_and_its_quorum() -> None:
    assert insert_settings("customer_events-2-ab", None) == {"insert_deduplication_token": "customer_events-2-ab"}
    assert insert_settings("customer_events-2-ab", "events") == {
        "insert_deduplication_token": "customer_events-2-ab", "distributed_foreground_insert": 1,
        "insert_quorum": "auto", "insert_quorum_timeout": 60_000}


def test_the_engine_takes_the_cluster_insert_settings(store: Store, store_url: str) -> None:
    """The writer of a cluster store sends them with every insert; the embedded engine (the same
    ClickHouse) accepts them, so a misspelt or retired setting fails here, not in production."""
    with Store.open(store_url, create_schema=False, cluster="events") as clustered:
        writer = EventWriter(clustered)
        events = [f.event(ACME, DAVE.id, n, n) for n in range(3)]
        writer.add([ACME, DAVE, *events])
        writer.mark(9)
        assert writer.flush() == 9
    assert stored(store) == sorted((e.id, 1) for e in events)


def test_write_behind_calls_its_start_hook_on_the_thread_that_writes(store: Store) -> None:
    writer = EventWriter(store)
    threads = []
    writer.behind_started = lambda: threads.append(threading.current_thread().name)
    writer.add([ACME, DAVE, f.event(ACME, DAVE.id, 1, 1)])
    writer.write_behind().result()
    writer.behind_started = None
    writer.add([f.event(ACME, DAVE.id, 2, 2)])
    writer.write_behind().result()
    assert threads == ["store-writer"]
    assert len(stored(store)) == 2


def merge_all(store: Store) -> None:
    connect(store.location).command(f"OPTIMIZE TABLE {store.location.database}.customer_events FINAL")


def write_batches(writer: EventWriter, numbers: range) -> None:
    """One batch written behind per number, each stored before the next is sent."""
    for number in numbers:
        writer.add([ACME, DAVE, f.event(ACME, DAVE.id, number, number)])
        writer.write_behind().result()


def test_a_bulk_load_keeps_its_parts_unmerged_until_it_ends(store: Store) -> None:
    writer = EventWriter(store)
    with writer.merges_paused():
        write_batches(writer, range(3))
        assert store.most_parts_in_a_partition() == 3
        with pytest.raises(DatabaseError, match="Cancelled merging parts"):
            merge_all(store)
    merge_all(store)
    assert store.most_parts_in_a_partition() == 1
    assert stored(store) == sorted((f.event(ACME, DAVE.id, n, n).id, 1) for n in range(3))


def test_a_bulk_load_resumes_merges_once_a_partition_holds_the_parts_limit(store: Store) -> None:
    writer = EventWriter(store, paused_parts_limit=2)
    with writer.merges_paused():
        write_batches(writer, range(2))  # the second batch is sent before its part is counted
        with pytest.raises(DatabaseError, match="Cancelled merging parts"):
            merge_all(store)
        write_batches(writer, range(2, 3))  # sent once the second is stored: 2 parts counted
        merge_all(store)
        assert store.most_parts_in_a_partition() == 1
    assert len(stored(store)) == 3
