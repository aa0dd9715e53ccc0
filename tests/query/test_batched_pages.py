"""Window reads of several customers answered by one query (activity_sql.batch_window_sql) give
each read exactly the rows of its own query, and concurrent pages through `Store.activity`
equal the same pages read one at a time."""

from __future__ import annotations

import dataclasses
import itertools
import threading
from datetime import UTC, datetime, timedelta

import msgspec

from mappers.events import Category, CustomerEvent, CustomerRecord
from query.activity_sql import (
    KEY_COLUMNS,
    PAGE_COLUMNS,
    ActivityQuery,
    Order,
    Position,
    WindowRead,
    batch_window_sql,
    position_sql,
    positions_sql,
    window_sql,
)
from query.activity_reads import StoredEvent
from query.store import Store
from tests.query import factories as f
from tests.query.conftest import CAMPAIGN_A, write

ACME = f.tenant("acme")
TYPES = ("customer.redemption.succeeded", "customer.publication.succeeded", "customer.updated")


def history(customer: CustomerRecord, count: int, months: int) -> list[CustomerEvent]:
    """`count` events over `months` months, two at each moment (ties on created_at), some at
    a month's start, every third of campaign A."""
    events = []
    for number in range(count):
        moment = datetime(2024, 1, 1, tzinfo=UTC) + timedelta(days=(number // 2) * 30 * months / max(count // 2, 1))
        event = f.event(ACME, customer.id, 0, number, type=TYPES[number % 3],
                        category="ACTION" if number % 3 == 0 else "EFFECT",
                        campaign_id=CAMPAIGN_A if number % 3 == 1 else None)
        events.append(msgspec.structs.replace(event, created_at=moment))
    return events


def seeded(store: Store) -> dict[CustomerRecord, list[CustomerEvent]]:
    customers = {f.customer(ACME, f"c{number}", f"c{number}-src"): count
                 for number, count in enumerate((0, 1, 7, 30, 61))}
    histories = {customer: history(customer, count, months=14) for customer, count in customers.items()}
    everything = [event for events in histories.values() for event in events]
    write(store, [ACME, *customers, *everything])
    write(store, everything[::3], lsn=2)  # re-delivered copies, unmerged
    return histories


def reads_of(customer: CustomerRecord, events: list[CustomerEvent]) -> list[WindowRead]:
    """Window reads of every kind a page makes, for one customer."""
    middle = sorted(events, key=f.history_key)[len(events) // 2] if events else None
    cursor = Position(middle.created_at, middle.id) if middle else Position(datetime(2024, 6, 1, tzinfo=UTC),
                                                                          f.stable_id("none"))
    split = datetime(2024, 9, 1, tzinfo=UTC)
    queries = (ActivityQuery(), ActivityQuery(category=Category.ACTION), ActivityQuery(types=TYPES[1:]),
               ActivityQuery(campaign_id=CAMPAIGN_A), ActivityQuery(start_date=datetime(2024, 4, 1, tzinfo=UTC)))
    reads = []
    for query, order, after, (since, until), window, columns in itertools.product(
            queries, Order, (None, cursor), ((None, None), (split, None), (None, split)), (1, 4, 11),
            (PAGE_COLUMNS, KEY_COLUMNS)):
        reads.append(WindowRead(ACME.id, customer.id, dataclasses.replace(query, order=order), after, window,
                                columns, since, until))
    return reads


def on_threads(ask, threads: int = 16) -> None:
    """`ask(number)` on `threads` threads at once, each started when all are ready."""
    start = threading.Barrier(threads)

    def run(number: int) -> None:
        start.wait()
        ask(number)

    running = [threading.Thread(target=run, args=(number,)) for number in range(threads)]
    for thread in running:
        thread.start()
    for thread in running:
        thread.join()


def test_a_batch_gives_each_read_the_rows_of_its_own_query(store: Store) -> None:
    histories = seeded(store)
    per_customer = [reads_of(customer, events) for customer, events in histories.items()]
    batches = 0
    # Batches of one shape, one read per customer each: the same kind of read for every
    # customer (spread 0: conditions shared), or customer n's read i + 11n (each read meets
    # reads of other kinds).
    count = len(per_customer[0])
    for offset in range(0, count, 7):
        for columns, order, spread in itertools.product((PAGE_COLUMNS, KEY_COLUMNS), Order, (0, 11)):
            batch = []
            for number, reads in enumerate(per_customer):
                shaped = [read for read in reads if read.columns == columns and read.query.order is order]
                batch.append(shaped[(offset + spread * number) % len(shaped)])
            rows = store.rows(*batch_window_sql(batch))
            answers: list[list[tuple]] = [[] for _ in batch]
            for row in rows:
                answers[row[0]].append(tuple(row[1:]))
            for read, answer in zip(batch, answers, strict=True):
                alone = [tuple(row) for row in store.rows(*window_sql(
                    read.tenant_id, read.customer_id, read.query, read.after, read.window, read.columns,
                    read.since, read.until))]
                assert answer[:read.window] == alone, read
            batches += 1
    assert batches == 8 * len(range(0, count, 7))


def test_concurrent_pages_equal_the_pages_read_one_at_a_time(store: Store) -> None:
    histories = seeded(store)
    pages = [(customer, ActivityQuery(limit=limit, page=page, order=order, category=category))
             for customer in histories
             for limit, page, order, category in itertools.product((2, 10), (1, 3), Order, (None, Category.EFFECT))]
    alone = {index: store.activity(ACME.id, customer.id, query) for index, (customer, query) in enumerate(pages)}
    concurrent: dict[int, list[StoredEvent]] = {}
    def ask(thread: int) -> None:
        for index in range(thread, len(pages) * 4, 16):  # every page four times
            customer, query = pages[index % len(pages)]
            events = store.activity(ACME.id, customer.id, query)
            assert concurrent.setdefault(index % len(pages), events) == events

    on_threads(ask)
    assert concurrent == alone


def test_cursor_positions_read_together_equal_each_read_alone(store: Store) -> None:
    histories = seeded(store)
    customers = list(histories)
    asked = [(customer, event.id) for customer, events in histories.items() for event in events[::3]]
    # an event asked for as another customer's, and an id no customer has
    asked += [(customers[-1], histories[customers[-2]][0].id), (customers[-1], f.stable_id("missing"))]
    expected = {}
    for customer, event_id in asked:
        rows = store.rows(*position_sql(ACME.id, customer.id, event_id))
        expected[(customer.id, event_id)] = Position(rows[0][0], event_id) if rows else None
    assert sum(position is None for position in expected.values()) == 2
    rows = store.rows(*positions_sql([(ACME.id, customer.id, event_id) for customer, event_id in asked]))
    assert {(customer_id, event_id): Position(created_at, event_id)
            for _tenant, customer_id, event_id, created_at in rows} == {
        key: position for key, position in expected.items() if position is not None}
    found: dict[tuple, Position | None] = {}
    def ask(thread: int) -> None:
        for customer, event_id in asked[thread::16]:
            found[(customer.id, event_id)] = store.event_position(ACME.id, customer.id, event_id)

    on_threads(ask)
    assert found == expected
