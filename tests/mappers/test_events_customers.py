"""customer.created / .updated / .deleted from customer rows streamed off real WAL."""

from __future__ import annotations

import uuid

from mappers.events import CustomerRecord
from tests.mappers.harness import at, delete, insert, uid, update
from tests.mappers.world import (
    CAMPAIGN,
    CUSTOMER,
    TENANT,
    VOUCHER,
    assert_event,
    campaign_object,
    customer_object,
    voucher_object,
    wal_source,
    write_world,
)

NEW_CUSTOMER = uid(12)


def test_customer_created_with_its_directory_record(engine):
    def create(conn):
        # POST /v1/customers -> CustomerService.upsert: INSERT customer + INSERT customer_event
        insert(conn, "customer", id=NEW_CUSTOMER, tenant_id=TENANT, source_id="cust-3", name="Cy",
               email="cy@example.com", phone="+100", metadata={"vip": True},
               created_at=at("2024-03-02 10:00:00"), updated_at=at("2024-03-02 10:00:00"))
        insert(conn, "customer_event", id=uid(100), tenant_id=TENANT, event_type="customer.created",
               customer_id=NEW_CUSTOMER, category="EFFECT", event_source="API",
               data={"source_id": "cust-3", "email": "cy@example.com", "name": "Cy"},
               created_at=at("2024-03-02 10:00:00"), updated_at=at("2024-03-02 10:00:00"))

    engine.transaction(write_world)
    engine.transaction(create)
    _, tx = engine.stream()
    record, event = tx.records  # the customer_event row duplicates the business event
    assert record == CustomerRecord(uuid.UUID(NEW_CUSTOMER), uuid.UUID(TENANT), "cust-3", False,
                                    tx.commit.commit_lsn)
    assert_event(event, tx, table="customer", type="customer.created", category="EFFECT",
                 customer=NEW_CUSTOMER, data={
                     "customer": {"id": NEW_CUSTOMER, "source_id": "cust-3", "name": "Cy",
                                  "email": "cy@example.com", "metadata": {"vip": True},
                                  "object": "customer"},
                     "event_source": wal_source()})


def test_customer_updated_lists_changed_fields(engine):
    def change(conn):
        # PUT /v1/customers/{id} -> CustomerService.upsert: INSERT customer_event, then the
        # dirty-checked UPDATE (Hibernate flushes inserts before updates)
        insert(conn, "customer_event", id=uid(101), tenant_id=TENANT, event_type="customer.updated",
               customer_id=CUSTOMER, category="EFFECT", event_source="API", data={"email": "new@example.com"},
               created_at=at("2024-03-03 10:00:00"))
        update(conn, "customer", CUSTOMER, email="new@example.com", phone="+200",
               metadata={"tier": "platinum"}, updated_at=at("2024-03-03 10:00:00"))

    def touch(conn):
        # a flush that only bumps @UpdateTimestamp: no customer.updated
        update(conn, "customer", CUSTOMER, updated_at=at("2024-03-04 10:00:00"))

    engine.transaction(write_world)
    engine.transaction(change)
    engine.transaction(touch)
    _, changed, touched = engine.stream()
    record, event = changed.records
    assert record == CustomerRecord(uuid.UUID(CUSTOMER), uuid.UUID(TENANT), "cust-1", False,
                                    changed.commit.commit_lsn)
    assert_event(event, changed, table="customer", type="customer.updated", category="EFFECT", data={
        "customer": customer_object(email="new@example.com", metadata={"tier": "platinum"}),
        "changed_fields": ["email", "metadata", "phone"],
        "event_source": wal_source()})
    assert touched.events == []


def test_customer_deleted_carries_last_known_values(engine):
    def hold(conn):
        # POST /v1/publications (voucher mode): the customer becomes the voucher's holder
        update(conn, "voucher", VOUCHER, holder_id=CUSTOMER, updated_at=at("2024-03-02 10:00:00"))

    def remove(conn):
        # DELETE /v1/customers/{id} -> CustomerService.delete: INSERT customer_event, UPDATE the
        # held vouchers' holder_id to NULL, DELETE customer (Hibernate: inserts, updates, deletes)
        insert(conn, "customer_event", id=uid(102), tenant_id=TENANT, event_type="customer.deleted",
               customer_id=CUSTOMER, category="EFFECT", event_source="API",
               data={"source_id": "cust-1"}, created_at=at("2024-03-05 10:00:00"))
        update(conn, "voucher", VOUCHER, holder_id=None, updated_at=at("2024-03-05 10:00:00"))
        delete(conn, "customer", id=CUSTOMER)

    engine.transaction(write_world)
    engine.transaction(hold)
    engine.transaction(remove)
    *_, tx = engine.stream()
    unassigned, record, deleted = tx.records
    assert_event(unassigned, tx, table="voucher", type="customer.holder.assignment.deleted",
                 category="EFFECT", campaign=CAMPAIGN, data={
                     "customer": customer_object(), "campaign": campaign_object(),
                     "voucher": voucher_object(VOUCHER, holder=None), "event_source": wal_source()})
    assert record == CustomerRecord(uuid.UUID(CUSTOMER), uuid.UUID(TENANT), "cust-1", True,
                                    tx.commit.commit_lsn)
    assert_event(deleted, tx, table="customer", type="customer.deleted", category="EFFECT",
                 data={"customer": customer_object(), "event_source": wal_source()})

