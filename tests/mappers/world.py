"""A small voucher-engine world shared by the catalog tests: one tenant, campaigns, a customer
and vouchers, written the way the engine writes them, plus the expected payload objects."""

from __future__ import annotations

import uuid
from typing import Any

import orjson
import psycopg

from mappers.payload import wal_event_id
from tests.mappers.harness import SOURCE, MappedTransaction, at, insert, uid

TENANT = uid(1)
CAMPAIGN = uid(2)
GIFT_CAMPAIGN = uid(3)
LOYALTY_CAMPAIGN = uid(4)
CUSTOMER = uid(10)
OTHER_CUSTOMER = uid(11)
VOUCHER = uid(20)
GIFT_VOUCHER = uid(21)
LOYALTY_CARD = uid(22)
CREATED = at("2024-03-01 09:00:00")


def write_world(conn: psycopg.Connection) -> None:
    """POST /v1/tenants, POST /v1/campaigns (x3), POST /v1/customers (x2), POST /v1/vouchers
    (x3): squeezed into one setup transaction, as only the resulting rows matter here."""
    insert(conn, "tenant", id=TENANT, name="acme", created_at=CREATED, updated_at=CREATED)
    for campaign, name, kind in ((CAMPAIGN, "Spring", "DISCOUNT_COUPONS"),
                                 (GIFT_CAMPAIGN, "Gift cards", "GIFT_VOUCHERS"),
                                 (LOYALTY_CAMPAIGN, "Club", "LOYALTY_PROGRAM")):
        insert(conn, "campaign", id=campaign, tenant_id=TENANT, name=name, type=kind, mode="STATIC",
               active=True, created_at=CREATED, updated_at=CREATED)
    for customer, source_id, name in ((CUSTOMER, "cust-1", "Ann"), (OTHER_CUSTOMER, "cust-2", "Bob")):
        insert(conn, "customer", id=customer, tenant_id=TENANT, source_id=source_id, name=name,
               email=f"{name.lower()}@example.com", metadata={"tier": "gold"},
               created_at=CREATED, updated_at=CREATED)
    for voucher, code, campaign, kind in ((VOUCHER, "SPRING-1", CAMPAIGN, "DISCOUNT_VOUCHER"),
                                          (GIFT_VOUCHER, "GIFT-1", GIFT_CAMPAIGN, "GIFT_VOUCHER"),
                                          (LOYALTY_CARD, "CLUB-1", LOYALTY_CAMPAIGN, "LOYALTY_CARD")):
        insert(conn, "voucher", id=voucher, tenant_id=TENANT, code=code, campaign_id=campaign,
               type=kind, active=True, redemption_json={"quantity": None, "redeemed_quantity": 0},
               qr_id=f"qr_{code}", qr_url=f"/v1/vouchers/{code}/qr", barcode_id=f"bc_{code}",
               barcode_url=f"/v1/vouchers/{code}/barcode", created_at=CREATED, updated_at=CREATED)


def customer_object(customer: str = CUSTOMER, **changes: Any) -> dict[str, Any]:
    name = "Ann" if customer == CUSTOMER else "Bob"
    base = {"id": customer, "source_id": "cust-1" if customer == CUSTOMER else "cust-2",
            "name": name, "email": f"{name.lower()}@example.com", "metadata": {"tier": "gold"},
            "object": "customer"}
    return {**base, **changes}


CAMPAIGNS = {CAMPAIGN: ("Spring", "DISCOUNT_COUPONS"), GIFT_CAMPAIGN: ("Gift cards", "GIFT_VOUCHERS"),
             LOYALTY_CAMPAIGN: ("Club", "LOYALTY_PROGRAM")}
VOUCHERS = {VOUCHER: ("SPRING-1", "DISCOUNT_VOUCHER", CAMPAIGN),
            GIFT_VOUCHER: ("GIFT-1", "GIFT_VOUCHER", GIFT_CAMPAIGN),
            LOYALTY_CARD: ("CLUB-1", "LOYALTY_CARD", LOYALTY_CAMPAIGN)}


def campaign_object(campaign: str = CAMPAIGN) -> dict[str, Any]:
    name, kind = CAMPAIGNS[campaign]
    return {"id": campaign, "name": name, "type": kind, "campaign_type": kind, "object": "campaign"}


def voucher_object(voucher: str = VOUCHER, holder: str | None = None) -> dict[str, Any]:
    code, kind, campaign = VOUCHERS[voucher]
    return {"id": voucher, "code": code, "type": kind, "campaign_id": campaign,
            "holder_id": holder, "object": "voucher"}


def wal_source() -> dict[str, str]:
    return {"channel": "INTERNAL", "source": "wal"}


def assert_event(event: Any, tx: MappedTransaction, *, table: str, type: str, category: str,
                 data: dict[str, Any], customer: str = CUSTOMER, campaign: str | None = None,
                 nth: int = 0) -> None:
    """`event` is exactly the one the catalog promises for the nth `table` change of `tx`."""
    position = tx.position(table, nth)
    expected_campaign_type = CAMPAIGNS[campaign][1] if campaign in CAMPAIGNS else ""
    assert (event.id, event.tenant_id, event.tenant, event.customer_id, event.created_at,
            event.type, event.category, event.campaign_id, event.campaign_type, event.group_id,
            event.source, event.source_table, event.source_lsn) == (
        wal_event_id(SOURCE, tx.commit.commit_lsn, position, type), uuid.UUID(TENANT), "acme",
        uuid.UUID(customer), tx.commit.commit_time, type, category,
        uuid.UUID(campaign) if campaign else None, expected_campaign_type, tx.group_id, "wal",
        table, tx.commit.commit_lsn)
    assert orjson.loads(event.data) == data
