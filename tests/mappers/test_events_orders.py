"""Order events: created, the status transitions, updates (with changed_fields) and item-only
changes, from rows streamed off real WAL."""

from __future__ import annotations

import pytest

from tests.mappers.harness import at, delete, insert, uid, update
from tests.mappers.world import (
    CUSTOMER,
    TENANT,
    assert_event,
    customer_object,
    wal_source,
    write_world,
)

ORDER = uid(500)
PLACED = at("2024-03-02 11:00:00")
LATER = at("2024-03-02 11:30:00")


def place_order(conn, status=None, customer=CUSTOMER):
    # POST /v1/orders -> OrderService: ensureCustomer, INSERT orders, INSERT its order_item rows
    insert(conn, "orders", id=ORDER, tenant_id=TENANT, source_id="ord-1", status=status, amount=5000,
           initial_amount=5000, discount_amount=0, metadata={"channel": "web"},
           customer_id=customer, created_at=PLACED, updated_at=PLACED)
    insert(conn, "order_item", id=uid(501), tenant_id=TENANT, order_id=ORDER, product_id="p-1",
           quantity=1, amount=5000, price=5000, created_at=PLACED, updated_at=PLACED)


def order_object(status=None, amount=5000, metadata=None):
    return {"id": ORDER, "source_id": "ord-1", "status": status, "amount": amount,
            "initial_amount": 5000, "discount_amount": 0,
            "metadata": metadata or {"channel": "web"}, "object": "order"}


def test_order_created(engine):
    engine.transaction(write_world)
    engine.transaction(place_order)
    _, tx = engine.stream()
    (event,) = tx.records
    assert_event(event, tx, table="orders", type="customer.order.created", category="ACTION",
                 data={"customer": customer_object(), "order": order_object(),
                       "event_source": wal_source()})


def test_order_created_paid_gives_both_events(engine):
    engine.transaction(write_world)
    engine.transaction(lambda conn: place_order(conn, "PAID"))
    _, tx = engine.stream()
    created, paid = tx.records
    expected = {"customer": customer_object(), "order": order_object("PAID"), "event_source": wal_source()}
    assert_event(created, tx, table="orders", type="customer.order.created", category="ACTION", data=expected)
    assert_event(paid, tx, table="orders", type="customer.order.paid", category="ACTION", data=expected)


@pytest.mark.parametrize("status, event_type", [
    ("paid", "customer.order.paid"), ("FULFILLED", "customer.order.fulfilled"),
    ("Canceled", "customer.order.canceled"), ("PROCESSING", "customer.order.processing"),
])
def test_order_status_change_suppresses_order_updated(engine, status, event_type):
    def change_status(conn):
        # PUT /v1/orders/{id} {status, amount}: one UPDATE of the dirty columns
        update(conn, "orders", ORDER, status=status, amount=4000, updated_at=LATER)

    def same_status_again(conn):
        # PUT /v1/orders/{id} {status in another case}: the status did not become anything new
        update(conn, "orders", ORDER, status=status.swapcase(), updated_at=at("2024-03-02 12:00:00"))

    engine.transaction(write_world)
    engine.transaction(lambda conn: place_order(conn, "CREATED"))
    engine.transaction(change_status)
    engine.transaction(same_status_again)
    *_, changed, again = engine.stream()
    (event,) = changed.records
    assert_event(event, changed, table="orders", type=event_type, category="ACTION", data={
        "customer": customer_object(), "order": order_object(status, amount=4000),
        "event_source": wal_source()})
    (updated,) = again.records
    assert_event(updated, again, table="orders", type="customer.order.updated", category="ACTION", data={
        "customer": customer_object(), "order": order_object(status.swapcase(), amount=4000),
        "changed_fields": ["status"], "event_source": wal_source()})


def test_order_updated_lists_changed_fields(engine):
    def change(conn):
        # PUT /v1/orders/{id} {amount, metadata}
        update(conn, "orders", ORDER, amount=4500, metadata={"channel": "app"}, updated_at=LATER)

    engine.transaction(write_world)
    engine.transaction(place_order)
    engine.transaction(change)
    *_, tx = engine.stream()
    (event,) = tx.records
    assert_event(event, tx, table="orders", type="customer.order.updated", category="ACTION", data={
        "customer": customer_object(),
        "order": order_object(amount=4500, metadata={"channel": "app"}),
        "changed_fields": ["amount", "metadata"], "event_source": wal_source()})


def test_item_only_change_gives_one_order_updated(engine):
    def replace_items(conn):
        # PUT /v1/orders/{id} {items} with nothing else new: orphanRemoval DELETEs the items and
        # INSERTs the new ones; the orders row itself is not dirty, so no UPDATE of it
        insert(conn, "order_item", id=uid(502), tenant_id=TENANT, order_id=ORDER, product_id="p-2",
               quantity=2, amount=5000, price=2500, created_at=LATER, updated_at=LATER)
        insert(conn, "order_item", id=uid(503), tenant_id=TENANT, order_id=ORDER, product_id="p-3",
               quantity=1, amount=0, price=0, created_at=LATER, updated_at=LATER)
        delete(conn, "order_item", id=uid(501))

    def items_and_status(conn):
        # PUT /v1/orders/{id} {items, status: PAID}: the status event stands for the change
        delete(conn, "order_item", id=uid(502))
        update(conn, "orders", ORDER, status="PAID", updated_at=at("2024-03-02 12:00:00"))

    engine.transaction(write_world)
    engine.transaction(place_order)
    engine.transaction(replace_items)
    engine.transaction(items_and_status)
    *_, items, paid = engine.stream()
    (event,) = items.records
    assert_event(event, items, table="order_item", type="customer.order.updated", category="ACTION",
                 data={"customer": customer_object(), "order": order_object(),
                       "changed_fields": ["items"], "event_source": wal_source()})
    assert [event.type for event in paid.records] == ["customer.order.paid"]


def test_order_without_customer_and_timestamp_only_update_give_nothing(engine):
    engine.transaction(write_world)
    # POST /v1/orders without a customer: customer_id NULL
    engine.transaction(lambda conn: place_order(conn, "PAID", customer=None))
    engine.transaction(lambda conn: update(conn, "orders", ORDER, updated_at=LATER))
    _, anonymous, touched = engine.stream()
    assert anonymous.records == [] and touched.records == []
