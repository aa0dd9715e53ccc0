"""Segment membership, balance transactions and voucher holder events from real WAL."""

from __future__ import annotations

from tests.mappers.harness import at, delete, insert, uid, update
from tests.mappers.world import (
    CAMPAIGN,
    CUSTOMER,
    GIFT_CAMPAIGN,
    GIFT_VOUCHER,
    LOYALTY_CAMPAIGN,
    LOYALTY_CARD,
    OTHER_CUSTOMER,
    TENANT,
    assert_event,
    campaign_object,
    customer_object,
    voucher_object,
    wal_source,
    write_world,
)

SEGMENT = uid(600)
NOW = at("2024-03-02 16:00:00")


def create_segment(conn):
    # POST /v1/segments {type: static, customers: [..]} (SegmentService, one tx): INSERT
    # segment, INSERT segment_customer + INSERT customer_event per member
    insert(conn, "segment", id=SEGMENT, tenant_id=TENANT, name="VIPs", type="STATIC",
           created_at=NOW, updated_at=NOW)
    insert(conn, "segment_customer", segment_id=SEGMENT, customer_id=CUSTOMER)
    insert(conn, "customer_event", id=uid(601), tenant_id=TENANT, event_type="customer.segment.entered",
           customer_id=CUSTOMER, category="EFFECT", event_source="API", data={"segment_id": SEGMENT},
           created_at=NOW)


def delete_segment(conn):
    # DELETE /v1/segments/{id} (one tx): INSERT customer_event per member, DELETE its
    # segment_customer rows, DELETE the segment
    insert(conn, "customer_event", id=uid(602), tenant_id=TENANT, event_type="customer.segment.left",
           customer_id=CUSTOMER, category="EFFECT", event_source="API", data={"segment_id": SEGMENT},
           created_at=NOW)
    delete(conn, "segment_customer", segment_id=SEGMENT)
    delete(conn, "segment", id=SEGMENT)


SEGMENT_OBJECT = {"id": SEGMENT, "name": "VIPs", "type": "STATIC", "object": "segment"}


def test_segment_entered_and_left(engine):
    engine.transaction(write_world)
    engine.transaction(create_segment)
    engine.transaction(delete_segment)
    _, entered, left = engine.stream()
    (event,) = entered.records
    assert_event(event, entered, table="segment_customer", type="customer.segment.entered",
                 category="EFFECT", data={"customer": customer_object(), "segment": SEGMENT_OBJECT,
                                          "event_source": wal_source()})
    (event,) = left.records
    assert_event(event, left, table="segment_customer", type="customer.segment.left",
                 category="EFFECT", data={"customer": customer_object(), "segment": SEGMENT_OBJECT,
                                          "event_source": wal_source()})


def adjust_balance(conn, voucher, campaign, kind, amount, balance_after, transaction):
    # POST /v1/vouchers/{code}/balance -> adjustVoucherBalance (one tx): INSERT
    # voucher_transaction, UPDATE the voucher's balance json
    insert(conn, "voucher_transaction", id=transaction, tenant_id=TENANT, source_id=f"src-{kind}",
           voucher_id=voucher, campaign_id=campaign, type=kind, source="API", reason="top up",
           amount=amount, balance_after=balance_after, created_at=NOW, updated_at=NOW)
    json_column = "gift_json" if voucher == GIFT_VOUCHER else "loyalty_card_json"
    update(conn, "voucher", voucher, **{json_column: {"balance": balance_after}}, updated_at=NOW)


def transaction_object(transaction, kind, amount, balance_after):
    return {"id": transaction, "type": kind, "amount": amount, "balance_after": balance_after,
            "source_id": f"src-{kind}", "reason": "top up", "object": "transaction"}


def test_balance_events_go_to_the_voucher_holder(engine):
    def hold(conn):
        # PUT /v1/vouchers/{code} {customer}: the holder is replaced
        update(conn, "voucher", GIFT_VOUCHER, holder_id=CUSTOMER, updated_at=NOW)
        update(conn, "voucher", LOYALTY_CARD, holder_id=CUSTOMER, updated_at=NOW)

    def expire(conn):
        # POINTS_EXPIRATION is never written by the engine today; the catalog maps it anyway
        insert(conn, "voucher_transaction", id=uid(703), tenant_id=TENANT, source_id="src-POINTS_EXPIRATION",
               voucher_id=LOYALTY_CARD, campaign_id=LOYALTY_CAMPAIGN, type="POINTS_EXPIRATION",
               source="API", reason="top up", amount=-10, balance_after=90, created_at=NOW, updated_at=NOW)

    engine.transaction(write_world)
    engine.transaction(hold)
    engine.transaction(lambda conn: adjust_balance(conn, GIFT_VOUCHER, GIFT_CAMPAIGN,
                                                   "CREDITS_ADDITION", 1000, 1000, uid(701)))
    engine.transaction(lambda conn: adjust_balance(conn, LOYALTY_CARD, LOYALTY_CAMPAIGN,
                                                   "POINTS_ADDITION", 100, 100, uid(702)))
    engine.transaction(expire)
    # a removal has no event
    engine.transaction(lambda conn: adjust_balance(conn, GIFT_VOUCHER, GIFT_CAMPAIGN,
                                                   "CREDITS_REMOVAL", -100, 900, uid(704)))
    _, _, gift, points, expired, removal = engine.stream()
    for tx, voucher, campaign, kind, amount, balance, transaction, event_type in (
        (gift, GIFT_VOUCHER, GIFT_CAMPAIGN, "CREDITS_ADDITION", 1000, 1000, uid(701),
         "customer.voucher.gift.balance_added"),
        (points, LOYALTY_CARD, LOYALTY_CAMPAIGN, "POINTS_ADDITION", 100, 100, uid(702),
         "customer.voucher.loyalty_card.points_added"),
        (expired, LOYALTY_CARD, LOYALTY_CAMPAIGN, "POINTS_EXPIRATION", -10, 90, uid(703),
         "customer.voucher.loyalty_card.points_expired"),
    ):
        (event,) = tx.records
        assert_event(event, tx, table="voucher_transaction", type=event_type, category="EFFECT",
                     campaign=campaign, data={
                         "customer": customer_object(), "campaign": campaign_object(campaign),
                         "voucher": voucher_object(voucher, holder=CUSTOMER),
                         "transaction": transaction_object(transaction, kind, amount, balance),
                         "event_source": wal_source()})
    assert removal.records == []


def test_holder_assignment_created_changed_and_voucher_deleted(engine):
    def create_held(conn):
        # POST /v1/vouchers {customer}: ensureCustomer, INSERT voucher with holder_id
        insert(conn, "voucher", id=uid(25), tenant_id=TENANT, code="SPRING-9", campaign_id=CAMPAIGN,
               type="DISCOUNT_VOUCHER", holder_id=CUSTOMER, active=True, created_at=NOW, updated_at=NOW)

    def reassign(conn):
        # PUT /v1/vouchers/{code} {customer: other}
        update(conn, "voucher", uid(25), holder_id=OTHER_CUSTOMER, updated_at=NOW)

    def remove(conn):
        # DELETE /v1/vouchers/{code}: DELETE voucher (no publications or redemptions here)
        delete(conn, "voucher", id=uid(25))

    engine.transaction(write_world)
    engine.transaction(create_held)
    engine.transaction(reassign)
    engine.transaction(remove)
    _, created, reassigned, removed = engine.stream()
    voucher = {"id": uid(25), "code": "SPRING-9", "type": "DISCOUNT_VOUCHER",
               "campaign_id": CAMPAIGN, "object": "voucher"}
    common = {"campaign": campaign_object(), "event_source": wal_source()}
    (event,) = created.records
    assert_event(event, created, table="voucher", type="customer.holder.assignment.created",
                 category="EFFECT", campaign=CAMPAIGN, data={
                     **common, "customer": customer_object(), "voucher": {**voucher, "holder_id": CUSTOMER}})
    assigned, unassigned = reassigned.records
    assert_event(assigned, reassigned, table="voucher", type="customer.holder.assignment.created",
                 category="EFFECT", campaign=CAMPAIGN, customer=OTHER_CUSTOMER, data={
                     **common, "customer": customer_object(OTHER_CUSTOMER),
                     "voucher": {**voucher, "holder_id": OTHER_CUSTOMER}})
    assert_event(unassigned, reassigned, table="voucher", type="customer.holder.assignment.deleted",
                 category="EFFECT", campaign=CAMPAIGN, data={
                     **common, "customer": customer_object(),
                     "voucher": {**voucher, "holder_id": OTHER_CUSTOMER}})
    unassigned, deleted = removed.records
    for event, event_type in ((unassigned, "customer.holder.assignment.deleted"),
                              (deleted, "customer.voucher.deleted")):
        assert_event(event, removed, table="voucher", type=event_type, category="EFFECT",
                     campaign=CAMPAIGN, customer=OTHER_CUSTOMER, data={
                         **common, "customer": customer_object(OTHER_CUSTOMER),
                         "voucher": {**voucher, "holder_id": OTHER_CUSTOMER}})
