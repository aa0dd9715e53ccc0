"""The initial snapshot: rows read by the real snapshot reader from an exported snapshot become
events with the rows' own times; customer_event rows keep the history only they hold and are
matched one-to-one with the events business rows already give."""

from __future__ import annotations

import gc
import uuid
from collections import Counter

import orjson
import pytest

from cdc_reader.snapshot import distinct_values, read_snapshot, read_snapshot_batches
from mappers import SnapshotOrderError, tracked_columns, tracked_tables
from mappers.events import CustomerEvent, CustomerRecord, TenantRecord
from mappers.payload import snapshot_event_ids
from tests.conftest import utc
from tests.mappers.harness import SOURCE, at, insert, new_mapper, uid, update
from tests.mappers.world import (
    CAMPAIGN,
    CUSTOMER,
    LOYALTY_CARD,
    TENANT,
    VOUCHER,
    campaign_object,
    customer_object,
    voucher_object,
    write_world,
)


def history(conn):
    """What months of engine traffic leave behind in the tables."""
    def customer_event(number, event_type, when, category="EFFECT", campaign=None):
        insert(conn, "customer_event", id=uid(number), tenant_id=TENANT, event_type=event_type,
               customer_id=CUSTOMER, campaign_id=campaign, category=category, event_source="API",
               data={"note": event_type}, created_at=at(when), updated_at=at(when))

    write_world(conn)
    customer_event(900, "customer.created", "2024-03-01 09:00:00")
    customer_event(901, "customer.updated", "2024-03-01 10:00:00")
    customer_event(902, "customer.updated", "2024-03-01 11:00:00")
    # POST /v1/redemptions, once succeeded and once failed on re-validation
    insert(conn, "redemption", id=uid(200), tenant_id=TENANT, tracking_id="t", amount=2500,
           result="SUCCESS", status="SUCCEEDED", voucher_id=VOUCHER, customer_id=CUSTOMER,
           metadata=None, created_at=at("2024-03-02 12:00:00"), updated_at=at("2024-03-02 12:00:00"))
    customer_event(903, "customer.redemption.succeeded", "2024-03-02 12:00:00", "ACTION", CAMPAIGN)
    customer_event(904, "customer.redemption.failed", "2024-03-02 12:05:00", "ACTION", CAMPAIGN)
    # POST /v1/redemptions/{id}/rollback
    insert(conn, "redemption_rollback", id=uid(300), tenant_id=TENANT, date=at("2024-03-03 08:00:00"),
           amount=2500, result="SUCCESS", reason="r", redemption_id=uid(200), customer_id=CUSTOMER)
    # POST /v1/segments (static, with the customer), and an older segment since deleted
    insert(conn, "segment", id=uid(600), tenant_id=TENANT, name="VIPs", type="STATIC",
           created_at=at("2024-03-04 08:00:00"), updated_at=at("2024-03-04 08:00:00"))
    insert(conn, "segment_customer", segment_id=uid(600), customer_id=CUSTOMER)
    customer_event(905, "customer.segment.entered", "2024-03-04 08:00:00")
    customer_event(906, "customer.segment.left", "2024-02-20 08:00:00")
    # PUT /v1/vouchers/{code} {customer}, then POST /v1/vouchers/{code}/balance
    update(conn, "voucher", LOYALTY_CARD, holder_id=CUSTOMER, updated_at=at("2024-03-05 08:00:00"))
    insert(conn, "voucher_transaction", id=uid(700), tenant_id=TENANT, voucher_id=LOYALTY_CARD,
           campaign_id=uid(4), type="POINTS_ADDITION", amount=50, balance_after=50, source="API",
           created_at=at("2024-03-05 09:00:00"), updated_at=at("2024-03-05 09:00:00"))
    # POST /v1/orders {status: PAID}
    insert(conn, "orders", id=uid(500), tenant_id=TENANT, source_id="ord-1", status="PAID",
           amount=100, customer_id=CUSTOMER, created_at=at("2024-03-06 08:00:00"),
           updated_at=at("2024-03-06 08:30:00"))
    insert(conn, "order_item", id=uid(501), tenant_id=TENANT, order_id=uid(500), quantity=1,
           created_at=at("2024-03-06 08:00:00"), updated_at=at("2024-03-06 08:00:00"))


def snapshot_records(voucher_db, state_dir):
    mapper = new_mapper(state_dir)
    records = []
    with voucher_db.connect() as holder:
        holder.execute("BEGIN ISOLATION LEVEL REPEATABLE READ")
        name = holder.execute("SELECT pg_export_snapshot()").fetchone()[0]
        for table, row in read_snapshot(voucher_db.dsn, name, tracked_tables(), on_progress=lambda _: None,
                                        columns=tracked_columns()):
            records.extend(mapper.snapshot_row(table, row))
        records.extend(mapper.snapshot_finish())
    mapper.state.commit(1)
    mapper.state.close()
    return records


def test_snapshot_events_keep_history_once(voucher_db, tmp_path):
    with voucher_db.connect() as conn:
        history(conn)
    records = snapshot_records(voucher_db, tmp_path / "a")
    events = [record for record in records if isinstance(record, CustomerEvent)]
    assert Counter((event.type, event.source, event.created_at) for event in events
                   if event.customer_id == uuid.UUID(CUSTOMER)) == Counter({
        ("customer.created", "snapshot", utc("2024-03-01 09:00:00")): 1,
        ("customer.updated", "snapshot", utc("2024-03-01 10:00:00")): 1,
        ("customer.updated", "snapshot", utc("2024-03-01 11:00:00")): 1,
        ("customer.redemption.succeeded", "snapshot", utc("2024-03-02 12:00:00")): 1,
        ("customer.redemption.failed", "snapshot", utc("2024-03-02 12:05:00")): 1,
        ("customer.redemption.rollback.succeeded", "snapshot", utc("2024-03-03 08:00:00")): 1,
        ("customer.segment.entered", "snapshot", utc("2024-03-04 08:00:00")): 1,  # the segment's time
        ("customer.segment.left", "snapshot", utc("2024-02-20 08:00:00")): 1,
        ("customer.holder.assignment.created", "snapshot", utc("2024-03-01 09:00:00")): 1,
        ("customer.voucher.loyalty_card.points_added", "snapshot", utc("2024-03-05 09:00:00")): 1,
        ("customer.order.created", "snapshot", utc("2024-03-06 08:00:00")): 1,
        ("customer.order.paid", "snapshot", utc("2024-03-06 08:00:00")): 1,
    })
    assert all(event.group_id == "snapshot_voucher_activity" and event.source_lsn == 0 for event in events)
    assert TenantRecord(uuid.UUID(TENANT), "acme", 0) in records
    assert CustomerRecord(uuid.UUID(CUSTOMER), uuid.UUID(TENANT), "cust-1", False, 0) in records

    (redeemed,) = [event for event in events if event.type == "customer.redemption.succeeded"]
    assert (redeemed.id, redeemed.source_table, redeemed.campaign_id, redeemed.campaign_type) == (
        snapshot_event_ids(SOURCE)("redemption", uid(200), "customer.redemption.succeeded"),
        "redemption", uuid.UUID(CAMPAIGN), "DISCOUNT_COUPONS")
    assert orjson.loads(redeemed.data) == {
        "customer": customer_object(), "campaign": campaign_object(), "voucher": voucher_object(),
        "redemption": {"id": uid(200), "result": "SUCCESS", "status": "SUCCEEDED", "amount": 2500,
                       "tracking_id": "t", "metadata": None, "object": "redemption"},
        "event_source": {"channel": "INTERNAL", "source": "snapshot"}}
    (failed,) = [event for event in events if event.type == "customer.redemption.failed"]
    assert (failed.id, failed.source_table, failed.category) == (uuid.UUID(uid(904)), "customer_event", "ACTION")
    assert orjson.loads(failed.data) == {
        "note": "customer.redemption.failed", "customer": customer_object(),
        "campaign": campaign_object(), "event_source": {"channel": "INTERNAL", "source": "snapshot"}}

    assert snapshot_records(voucher_db, tmp_path / "b") == records  # deterministic


PUBLICATIONS = 40


def many_publications(conn):
    """Campaign-mode publications, each with its voucher, and the engine's customer_event copy of
    each; and customer_event rows only they record."""
    write_world(conn)
    for number in range(PUBLICATIONS):
        when = at("2024-03-02 15:00:00")
        voucher, publication = uid(10_000 + number), uid(20_000 + number)
        insert(conn, "voucher", id=voucher, tenant_id=TENANT, code=f"PUB-{number}", campaign_id=CAMPAIGN,
               type="DISCOUNT_VOUCHER", active=True, holder_id=CUSTOMER, created_at=when, updated_at=when)
        insert(conn, "publication", id=publication, tenant_id=TENANT, voucher_id=None,
               customer_id=CUSTOMER, campaign_id=CAMPAIGN, result="SUCCESS", source_id=f"pub-{number}",
               channel="API", created_at=when, updated_at=when)
        insert(conn, "publication_vouchers", publication_id=publication, voucher_id=voucher)
        for offset, event_type in ((30_000, "customer.publication.succeeded"), (40_000, "customer.updated")):
            insert(conn, "customer_event", id=uid(offset + number), tenant_id=TENANT, event_type=event_type,
                   customer_id=CUSTOMER, campaign_id=None, category="EFFECT", event_source="API",
                   data={"n": number}, created_at=when, updated_at=when)


def test_a_snapshot_read_in_batches_past_every_memory_limit_makes_the_same_events(voucher_db, tmp_path):
    with voucher_db.connect() as conn:
        many_publications(conn)
    records = snapshot_records(voucher_db, tmp_path / "unbounded")
    # Limits of 2: the collected voucher codes and the event counts go to SQLite at once, and
    # each batch's rows read them back from there.
    mapper = new_mapper(tmp_path / "bounded", scratch_memory_limit=2, match_memory_limit=2)
    batched = []
    with voucher_db.connect() as holder:
        holder.execute("BEGIN ISOLATION LEVEL REPEATABLE READ")
        name = holder.execute("SELECT pg_export_snapshot()").fetchone()[0]
        for table, column_types, rows in read_snapshot_batches(voucher_db.dsn, name, tracked_tables(),
                                                               range_rows=7, columns=tracked_columns()):
            batched.extend(mapper.snapshot_rows(table, rows, column_types))
        batched.extend(mapper.snapshot_finish())
    mapper.state.close()
    assert batched == records
    events = [record for record in records if isinstance(record, CustomerEvent)]
    published = sorted(orjson.loads(event.data)["publication"]["vouchers"] for event in events
                       if event.type == "customer.publication.succeeded")
    assert published == sorted([f"PUB-{number}"] for number in range(PUBLICATIONS))
    # each publication's customer_event copy is left out; the customer.updated rows stay
    assert Counter((event.type, event.source_table) for event in events
                   if event.type in ("customer.publication.succeeded", "customer.updated")) == Counter({
        ("customer.publication.succeeded", "publication"): PUBLICATIONS,
        ("customer.updated", "customer_event"): PUBLICATIONS,
    })


def test_mapping_a_snapshot_makes_no_reference_cycles(voucher_db, tmp_path):
    """The pipeline pauses the cyclic collector for the snapshot (voucher_activity/memory.py,
    `collector_paused`): what mapping its rows makes must be freed by reference counting alone,
    also where the bookkeeping spills to SQLite. (A state learns each table's row layout once,
    and msgspec's decoder for it leaves a cycle: the state is made and its layouts learned by
    a first snapshot, which is then taken again.)"""
    with voucher_db.connect() as conn:
        history(conn)
    with voucher_db.connect() as holder:
        holder.execute("BEGIN ISOLATION LEVEL REPEATABLE READ")
        name = holder.execute("SELECT pg_export_snapshot()").fetchone()[0]
        batches = list(read_snapshot_batches(voucher_db.dsn, name, tracked_tables(), range_rows=2,
                                             columns=tracked_columns()))

    def snapshot(mapper):
        records = [record for table, column_types, rows in batches
                   for record in mapper.snapshot_rows(table, rows, column_types)]
        return records + mapper.snapshot_finish()

    for limit in (100_000, 2):
        first = new_mapper(tmp_path / str(limit))
        expected = snapshot(first)
        first.state.commit(1)
        first.state.close()
        mapper = new_mapper(tmp_path / str(limit), scratch_memory_limit=limit, match_memory_limit=limit)
        gc.collect()
        gc.disable()
        try:
            records = snapshot(mapper)
            mapper.state.commit(2)
            assert gc.collect() == 0
        finally:
            gc.enable()
            mapper.state.close()
        assert records == expected
        assert sum(isinstance(record, CustomerEvent) for record in records) == 13


def test_only_the_types_customer_event_rows_hold_are_counted_for_pairing(voucher_db, tmp_path):
    with voucher_db.connect() as conn:
        many_publications(conn)
    records = snapshot_records(voucher_db, tmp_path / "every type")

    def limited(directory, types_of):
        mapper = new_mapper(directory, match_memory_limit=2)
        assert mapper.snapshot_pairing_column() == ("customer_event", "event_type")
        made = []
        with voucher_db.connect() as holder:
            holder.execute("BEGIN ISOLATION LEVEL REPEATABLE READ")
            name = holder.execute("SELECT pg_export_snapshot()").fetchone()[0]
            for table, column_types, rows in read_snapshot_batches(
                    voucher_db.dsn, name, tracked_tables(), range_rows=7, columns=tracked_columns(),
                    prepare=lambda conn: mapper.snapshot_pairing_types(types_of(conn))):
                made.extend(mapper.snapshot_rows(table, rows, column_types))
            made.extend(mapper.snapshot_finish())
        mapper.state.close()
        return made

    found = []
    assert limited(tmp_path / "found", lambda conn: found.append(
        distinct_values(conn, "customer_event", "event_type")) or found[0]) == records
    assert found == [{"customer.publication.succeeded", "customer.updated"}]
    # a type left out is not counted, so its customer_event copies are not paired: they stay
    events = limited(tmp_path / "wrong", lambda conn: {"customer.updated"})
    assert Counter(event.source_table for event in events if isinstance(event, CustomerEvent)
                   and event.type == "customer.publication.succeeded") == Counter(
        {"publication": PUBLICATIONS, "customer_event": PUBLICATIONS})


def test_snapshot_rows_out_of_dependency_order_are_refused(tmp_path):
    mapper = new_mapper(tmp_path)
    mapper.snapshot_row("redemption", {"id": uid(1), "tenant_id": TENANT, "result": "SUCCESS"})
    with pytest.raises(SnapshotOrderError, match="snapshot rows of voucher arrived after those of redemption"):
        mapper.snapshot_row("voucher", {"id": uid(2), "tenant_id": TENANT})
    mapper.state.close()
