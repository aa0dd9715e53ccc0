"""customer_event rows: passed through when their transaction gave no business event of the
same type for the same customer; skipped when their customer_id is not a UUID."""

from __future__ import annotations

import uuid

import orjson

from tests.mappers.harness import at, insert, uid
from tests.mappers.world import (
    CAMPAIGN,
    CUSTOMER,
    OTHER_CUSTOMER,
    TENANT,
    VOUCHER,
    campaign_object,
    customer_object,
    write_world,
)

NOW = at("2024-03-02 17:00:00")


def test_failed_redemption_exists_only_as_customer_event(engine):
    def fail(conn):
        # POST /v1/redemptions whose re-validation fails inside redeemSingle: ensureCustomer
        # (nothing dirty, no UPDATE), no redemption row, INSERT customer_event only
        insert(conn, "customer_event", id=uid(800), tenant_id=TENANT,
               event_type="customer.redemption.failed", customer_id=CUSTOMER, campaign_id=CAMPAIGN,
               category="ACTION", event_source="API", created_at=NOW, updated_at=NOW,
               data={"voucher_code": "SPRING-1", "reason": "voucher expired",
                     "customer": {"id": CUSTOMER, "source_id": "cust-1"}})

    def validation_beside_business_event(conn):
        # An engine version that logs validations writes them next to a redemption: the
        # redemption's own customer_event is a duplicate, the validation is not
        insert(conn, "redemption", id=uid(801), tenant_id=TENANT, tracking_id="t", amount=100,
               result="SUCCESS", status="SUCCEEDED", voucher_id=VOUCHER, customer_id=CUSTOMER,
               created_at=NOW, updated_at=NOW)
        for event_id, event_type in ((uid(802), "customer.validation.succeeded"),
                                     (uid(803), "customer.redemption.succeeded")):
            insert(conn, "customer_event", id=event_id, tenant_id=TENANT, event_type=event_type,
                   customer_id=CUSTOMER, campaign_id=None, category="ACTION", event_source="API",
                   data={"voucher_code": "SPRING-1"}, created_at=NOW)

    def not_a_uuid(conn):
        insert(conn, "customer_event", id=uid(804), tenant_id=TENANT, event_type="customer.updated",
               customer_id="cust-1", category="EFFECT", event_source="API", data={}, created_at=NOW)

    engine.transaction(write_world)
    engine.transaction(fail)
    engine.transaction(validation_beside_business_event)
    engine.transaction(not_a_uuid)
    _, failed, mixed, skipped = engine.stream()
    (event,) = failed.records
    assert (event.id, event.tenant_id, event.tenant, event.customer_id, event.created_at, event.type,
            event.category, event.campaign_id, event.campaign_type, event.group_id, event.source,
            event.source_table, event.source_lsn) == (
        uuid.UUID(uid(800)), uuid.UUID(TENANT), "acme", uuid.UUID(CUSTOMER), failed.commit.commit_time,
        "customer.redemption.failed", "ACTION", uuid.UUID(CAMPAIGN), "DISCOUNT_COUPONS",
        failed.group_id, "customer_event", "customer_event", failed.commit.commit_lsn)
    assert orjson.loads(event.data) == {
        "voucher_code": "SPRING-1", "reason": "voucher expired",
        "customer": customer_object(), "campaign": campaign_object(),
        "event_source": {"channel": "INTERNAL", "source": "customer_event"}}
    redeemed, validated = mixed.records
    assert (redeemed.type, redeemed.source) == ("customer.redemption.succeeded", "wal")
    assert (validated.id, validated.type, validated.source, validated.campaign_id) == (
        uuid.UUID(uid(802)), "customer.validation.succeeded", "customer_event", None)
    assert orjson.loads(validated.data) == {
        "voucher_code": "SPRING-1", "customer": customer_object(),
        "event_source": {"channel": "INTERNAL", "source": "customer_event"}}
    assert skipped.records == []


def test_a_duplicate_is_recognized_however_its_customer_id_is_spelled(engine):
    # customer_event.customer_id is varchar(36): an engine writing it in upper case, or another
    # spelling PostgreSQL's uuid input reads, still duplicates the business event
    other = uid(812)

    def redeem(conn):
        insert(conn, "redemption", id=uid(810), tenant_id=TENANT, tracking_id="t", amount=100,
               result="SUCCESS", status="SUCCEEDED", voucher_id=VOUCHER, customer_id=CUSTOMER,
               created_at=NOW, updated_at=NOW)
        for number, customer_id in ((813, CUSTOMER.upper()), (815, CUSTOMER.replace("-", "")),
                                    (816, other.upper())):
            insert(conn, "customer_event", id=uid(number), tenant_id=TENANT,
                   event_type="customer.redemption.succeeded", customer_id=customer_id,
                   campaign_id=None, category="ACTION", event_source="API", data={}, created_at=NOW)

    engine.transaction(write_world)
    engine.transaction(redeem)
    _, redeemed = engine.stream()
    business, passed = redeemed.records
    assert (business.type, business.source, business.customer_id) == (
        "customer.redemption.succeeded", "wal", uuid.UUID(CUSTOMER))
    assert (passed.id, passed.type, passed.source, passed.customer_id) == (
        uuid.UUID(uid(816)), "customer.redemption.succeeded", "customer_event", uuid.UUID(other))


def test_a_duplicate_is_left_out_whether_it_comes_before_or_after_its_event(engine):
    # A row after the business event is left out as it arrives (mappers/codegen.py); one before
    # it waits for the commit, which leaves it out too. A row of the same type for another
    # customer, and one of another type, are passed through, in their order.
    def redeem(conn):
        insert(conn, "customer_event", id=uid(820), tenant_id=TENANT, event_type="customer.redemption.succeeded",
               customer_id=CUSTOMER, campaign_id=None, category="ACTION", event_source="API", data={},
               created_at=NOW)
        insert(conn, "redemption", id=uid(821), tenant_id=TENANT, tracking_id="t", amount=100,
               result="SUCCESS", status="SUCCEEDED", voucher_id=VOUCHER, customer_id=CUSTOMER,
               created_at=NOW, updated_at=NOW)
        for number, event_type, customer_id in ((822, "customer.redemption.succeeded", CUSTOMER),
                                                (823, "customer.redemption.succeeded", OTHER_CUSTOMER),
                                                (824, "customer.validation.succeeded", CUSTOMER)):
            insert(conn, "customer_event", id=uid(number), tenant_id=TENANT, event_type=event_type,
                   customer_id=customer_id, campaign_id=None, category="ACTION", event_source="API",
                   data={}, created_at=NOW)

    engine.transaction(write_world)
    engine.transaction(redeem)
    _, redeemed = engine.stream()
    assert [(record.id, record.type, record.source, str(record.customer_id)) for record in redeemed.records] == [
        (redeemed.records[0].id, "customer.redemption.succeeded", "wal", CUSTOMER),
        (uuid.UUID(uid(823)), "customer.redemption.succeeded", "customer_event", OTHER_CUSTOMER),
        (uuid.UUID(uid(824)), "customer.validation.succeeded", "customer_event", CUSTOMER)]
