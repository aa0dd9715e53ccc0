"""A small tenant history with realistic payloads (campaign names, voucher codes, amounts) for the
analytics API and the dashboard tests, seeded through the real writer; every expected number
in those tests is computed here from the same events, never copied from the store."""

from __future__ import annotations

import json
import uuid
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from mappers.events import CustomerEvent, CustomerRecord, TenantRecord
from query.store import Store
from tests.query import factories as f
from tests.query.conftest import write

# A Monday, so weekday rows in the heatmap are easy to read in a failure.
MONDAY = datetime(2024, 3, 4, 0, 0, tzinfo=UTC)
SPRING = (f.stable_id("campaign", "spring"), "Spring Sale", "DISCOUNT_COUPONS")
LOYALTY = (f.stable_id("campaign", "loyalty"), "Loyalty Club", "LOYALTY_PROGRAM")
# Generic codes: redeemed, never published.
GIFT = (f.stable_id("campaign", "gift"), "Gift Cards", "GIFT_VOUCHERS")
FUNNEL_STAGES = ("customer.publication.succeeded", "customer.redemption.succeeded",
                 "customer.redemption.rollback.succeeded")

# (type, category, campaign) in the order dave's history cycles through them.
DAVE_CYCLE = (
    ("customer.publication.succeeded", "EFFECT", SPRING),
    ("customer.redemption.succeeded", "ACTION", SPRING),
    ("customer.order.paid", "ACTION", None),
    ("customer.publication.succeeded", "EFFECT", LOYALTY),
    ("customer.redemption.rollback.succeeded", "ACTION", SPRING),
    ("customer.segment.entered", "EFFECT", None),
    ("customer.redemption.succeeded", "ACTION", LOYALTY),
)


@dataclass(frozen=True, slots=True)
class Seeded:
    store: Store
    acme: TenantRecord
    globex: TenantRecord
    dave: CustomerRecord
    erin: CustomerRecord
    frank: CustomerRecord
    gina: CustomerRecord  # globex
    events: list[CustomerEvent]  # every event, both tenants, no copies

    def of(self, tenant: TenantRecord) -> list[CustomerEvent]:
        return [event for event in self.events if event.tenant_id == tenant.id]

    def newest_first(self, customer: CustomerRecord) -> list[CustomerEvent]:
        mine = [event for event in self.events if event.customer_id == customer.id]
        return sorted(mine, key=f.history_key, reverse=True)


def payload(customer: CustomerRecord, name: str, event_type: str, campaign, number: int) -> str:
    data: dict = {"customer": {"id": str(customer.id), "source_id": customer.source_id, "name": name,
                               "email": f"{name.lower()}@example.org", "metadata": {}, "object": "customer"}}
    if campaign is not None:
        campaign_id, campaign_name, campaign_type = campaign
        data["campaign"] = {"id": str(campaign_id), "name": campaign_name, "type": "AUTO_UPDATE",
                            "campaign_type": campaign_type, "object": "campaign"}
        data["voucher"] = {"id": str(f.stable_id("voucher", number)), "code": f"CODE-{number:03d}",
                           "type": "DISCOUNT_VOUCHER", "campaign_id": str(campaign_id),
                           "holder_id": str(customer.id), "object": "voucher"}
    if "redemption" in event_type:
        data["redemption"] = {"id": f"r_{number}", "result": "SUCCESS", "status": "SUCCEEDED",
                              "amount": 1000 + number, "object": "redemption"}
    if "order" in event_type:
        data["order"] = {"id": f"ord_{number}", "status": "PAID", "amount": 2500 + number, "object": "order"}
    data["event_source"] = {"channel": "INTERNAL", "source": "wal"}
    return json.dumps(data)


def make_event(tenant: TenantRecord, customer: CustomerRecord, name: str, number: int, at: datetime,
               event_type: str, category: str, campaign) -> CustomerEvent:
    return CustomerEvent(
        id=f.stable_id("event", tenant.name, customer.id, number), tenant_id=tenant.id, tenant=tenant.name,
        customer_id=customer.id, created_at=at, type=event_type, category=category,
        campaign_id=campaign[0] if campaign else None, campaign_type=campaign[2] if campaign else "",
        group_id=f"tx_{number:016X}", source="wal", data=payload(customer, name, event_type, campaign, number),
        source_table="redemption", source_lsn=5000 + number,
    )


def dave_event(seeded_tenant: TenantRecord, dave: CustomerRecord, number: int,
               at: datetime | None = None) -> CustomerEvent:
    """Dave's `number`th event; by default two an hour from Monday 09:00, across three days."""
    event_type, category, campaign = DAVE_CYCLE[number % len(DAVE_CYCLE)]
    if at is None:
        at = MONDAY + timedelta(days=number // 10, hours=9 + (number % 10) // 2, minutes=30 * (number % 2))
    return make_event(seeded_tenant, dave, "Dave", number, at, event_type, category, campaign)


def seed(store: Store, dave_events: int = 30) -> Seeded:
    acme, globex = f.tenant("acme"), f.tenant("globex")
    dave = f.customer(acme, "dave", "dave-src")
    erin = f.customer(acme, "erin", "erin-src")
    frank = f.customer(acme, "frank", "frank-src")
    gina = f.customer(globex, "gina", "gina-src")
    events = [dave_event(acme, dave, number) for number in range(dave_events)]
    # Monday, Wednesday and Friday: a week with days that have no events.
    events += [make_event(acme, erin, "Erin", 100 + n, MONDAY + timedelta(days=2 * n, hours=18),
                          "customer.segment.left", "EFFECT", None) for n in range(3)]
    # Tuesday and Wednesday evenings, two an hour: a Spring Sale code published to erin and
    # one redeemed by frank without a publication; Gift Cards redeemed (frank twice) with no
    # publication at all, and one of frank's rolled back.
    for number, (customer, name, event_type, category, campaign) in enumerate((
        (erin, "Erin", "customer.publication.succeeded", "EFFECT", SPRING),
        (frank, "Frank", "customer.redemption.succeeded", "ACTION", SPRING),
        (frank, "Frank", "customer.redemption.succeeded", "ACTION", GIFT),
        (frank, "Frank", "customer.redemption.succeeded", "ACTION", GIFT),
        (erin, "Erin", "customer.redemption.succeeded", "ACTION", GIFT),
        (frank, "Frank", "customer.redemption.rollback.succeeded", "ACTION", GIFT),
    )):
        at = MONDAY + timedelta(days=1 + number // 3, hours=20 + (number % 3) // 2, minutes=30 * (number % 3 % 2))
        events.append(make_event(acme, customer, name, 300 + number, at, event_type, category, campaign))
    events += [make_event(globex, gina, "Gina", 200 + n, MONDAY + timedelta(days=1, hours=7 + n),
                          "customer.order.paid", "ACTION", None) for n in range(2)]
    write(store, [acme, globex, dave, erin, frank, gina, *events], lsn=1)
    # Re-delivery after a crash: dave's first ten events again; no count may include them twice.
    write(store, events[:10], lsn=2)
    return Seeded(store, acme, globex, dave, erin, frank, gina, events)


def per_day_by_type(events: list[CustomerEvent]) -> dict[str, Counter]:
    days: dict[str, Counter] = {}
    for event in events:
        days.setdefault(event.created_at.date().isoformat(), Counter())[event.type] += 1
    return days


def funnel_customers(events: list[CustomerEvent]) -> dict[uuid.UUID, tuple[set, set, set]]:
    """Per campaign, the customers at each funnel stage (published, redeemed, rolled back)."""
    stages: dict[uuid.UUID, tuple[set, set, set]] = {}
    for event in events:
        if event.campaign_id is not None and event.type in FUNNEL_STAGES:
            stages.setdefault(event.campaign_id, (set(), set(), set()))[FUNNEL_STAGES.index(event.type)].add(
                event.customer_id)
    return stages
