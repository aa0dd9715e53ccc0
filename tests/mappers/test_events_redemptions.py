"""Redemption and rollback events (SPEC §4) from rows streamed off real WAL."""

from __future__ import annotations

from tests.mappers.harness import at, insert, uid, update
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

REDEMPTION = uid(200)
TRACKING = "5c1d5a7e0f"


def redeem(conn, result="SUCCESS", status="SUCCEEDED", redemption=REDEMPTION):
    # POST /v1/redemptions -> VoucherService.redeemSingle (one tx per redeemable): INSERT
    # redemption, INSERT customer_event, UPDATE voucher.redemption_json
    insert(conn, "redemption", id=redemption, tenant_id=TENANT, tracking_id=TRACKING,
           metadata={"store": "berlin"}, amount=2500, result=result, status=status,
           voucher_id=VOUCHER, customer_id=CUSTOMER, created_at=at("2024-03-02 12:00:00"),
           updated_at=at("2024-03-02 12:00:00"))
    insert(conn, "customer_event", id=uid(201), tenant_id=TENANT,
           event_type=f"customer.redemption.{'succeeded' if result == 'SUCCESS' else 'failed'}",
           customer_id=CUSTOMER, campaign_id=CAMPAIGN, category="ACTION", event_source="API",
           data={"voucher_code": "SPRING-1"}, created_at=at("2024-03-02 12:00:00"))
    update(conn, "voucher", VOUCHER, redemption_json={"quantity": None, "redeemed_quantity": 1},
           updated_at=at("2024-03-02 12:00:00"))


def redemption_object(result="SUCCESS", status="SUCCEEDED"):
    return {"id": REDEMPTION, "result": result, "status": status, "amount": 2500,
            "tracking_id": TRACKING, "metadata": {"store": "berlin"}, "object": "redemption"}


def test_redemption_succeeded(engine):
    engine.transaction(write_world)
    engine.transaction(redeem)
    _, tx = engine.stream()
    (event,) = tx.records
    assert_event(event, tx, table="redemption", type="customer.redemption.succeeded",
                 category="ACTION", campaign=CAMPAIGN, data={
                     "customer": customer_object(), "campaign": campaign_object(),
                     "voucher": voucher_object(), "redemption": redemption_object(),
                     "event_source": wal_source()})


def test_redemption_failed_row(engine):
    # The engine never writes FAILURE rows today; the catalog still maps one if it appears.
    engine.transaction(write_world)
    engine.transaction(lambda conn: redeem(conn, result="FAILURE", status="FAILED"))
    _, tx = engine.stream()
    (event,) = tx.records
    assert_event(event, tx, table="redemption", type="customer.redemption.failed",
                 category="ACTION", campaign=CAMPAIGN, data={
                     "customer": customer_object(), "campaign": campaign_object(),
                     "voucher": voucher_object(),
                     "redemption": redemption_object(result="FAILURE", status="FAILED"),
                     "event_source": wal_source()})


def rollback(conn, result="SUCCESS"):
    # POST /v1/redemptions/{id}/rollback -> VoucherService.rollbackRedemption: one INSERT
    insert(conn, "redemption_rollback", id=uid(300), tenant_id=TENANT, date=at("2024-03-03 08:00:00"),
           tracking_id="wrong size", metadata={"desk": 4}, amount=2500, result=result,
           reason="wrong size", redemption_id=REDEMPTION, customer_id=CUSTOMER)


def rollback_object(result):
    return {"id": uid(300), "redemption_id": REDEMPTION, "result": result, "amount": 2500,
            "reason": "wrong size", "object": "redemption_rollback"}


def test_redemption_rollback_succeeded(engine):
    engine.transaction(write_world)
    engine.transaction(redeem)
    engine.transaction(rollback)
    *_, tx = engine.stream()
    (event,) = tx.records
    assert_event(event, tx, table="redemption_rollback", type="customer.redemption.rollback.succeeded",
                 category="ACTION", campaign=CAMPAIGN, data={
                     "customer": customer_object(), "campaign": campaign_object(),
                     "voucher": voucher_object(), "redemption_rollback": rollback_object("SUCCESS"),
                     "event_source": wal_source()})


def test_redemption_rollback_failed(engine):
    engine.transaction(write_world)
    engine.transaction(redeem)
    engine.transaction(lambda conn: rollback(conn, "FAILURE"))
    *_, tx = engine.stream()
    (event,) = tx.records
    assert_event(event, tx, table="redemption_rollback", type="customer.redemption.rollback.failed",
                 category="ACTION", campaign=CAMPAIGN, data={
                     "customer": customer_object(), "campaign": campaign_object(),
                     "voucher": voucher_object(), "redemption_rollback": rollback_object("FAILURE"),
                     "event_source": wal_source()})
