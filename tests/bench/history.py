"""A stored customer-event history for the read-side benchmarks: the same events written into the
sidecar's store (through `query.writer.EventWriter`) and into the design we replace, a PostgreSQL
`customer_event` table with the original plan's indexes.

Events come in time order (as they are ingested), spread over a year; customers are skewed like
real traffic (the busiest 1% hold about 10% of the events, the busiest one tens of thousands at
full scale); types follow the event catalog with Voucherify-style payloads of the size the
mappers produce (customer, campaign, voucher and per-type objects, event_source).
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import orjson
import psycopg

from mappers.events import CustomerEvent, CustomerRecord, TenantRecord
from query.store import Store, connect
from query.writer import EventWriter
from tests.bench.report import log

START = datetime(2025, 1, 1, tzinfo=UTC)
SPAN = timedelta(days=365)
CHUNK = 50_000
TENANT_NAMES = ("acme", "globex", "initech", "umbrella")
CAMPAIGN_TYPES = ("DISCOUNT_COUPONS", "GIFT_VOUCHERS", "LOYALTY_PROGRAM", "PROMOTION", "REFERRAL_PROGRAM")
# type -> (share, category, object in the payload, has a campaign)
EVENT_TYPES = {
    "customer.redemption.succeeded": (20, "ACTION", "redemption", True),
    "customer.redemption.failed": (3, "ACTION", "redemption", True),
    "customer.redemption.rollback.succeeded": (2, "ACTION", "redemption_rollback", True),
    "customer.publication.succeeded": (15, "EFFECT", "publication", True),
    "customer.order.created": (10, "ACTION", "order", False),
    "customer.order.paid": (8, "ACTION", "order", False),
    "customer.order.updated": (5, "ACTION", "order", False),
    "customer.updated": (10, "EFFECT", None, False),
    "customer.created": (2, "EFFECT", None, False),
    "customer.holder.assignment.created": (10, "EFFECT", "voucher", True),
    "customer.voucher.loyalty_card.points_added": (8, "EFFECT", "transaction", True),
    "customer.voucher.gift.balance_added": (4, "EFFECT", "transaction", True),
    "customer.segment.entered": (3, "EFFECT", "segment", False),
}
TYPE_NAMES = tuple(EVENT_TYPES)
TYPE_WEIGHTS = tuple(share for share, *_ in EVENT_TYPES.values())

REFERENCE_DDL = """
CREATE TABLE customer_event (
    id uuid NOT NULL,
    created_at timestamp,
    updated_at timestamp,
    event_type varchar(100) NOT NULL,
    customer_id varchar(36),
    campaign_id varchar(36),
    category varchar(20),
    data jsonb,
    group_id varchar(50),
    event_source varchar(50),
    tenant_id uuid NOT NULL
)"""
# The original plan's indexes, built after the load (as a bulk load would).
REFERENCE_INDEXES = (
    "ALTER TABLE customer_event ADD PRIMARY KEY (id)",
    "CREATE INDEX customer_event_customer_created ON customer_event (customer_id, created_at)",
    "CREATE INDEX customer_event_event_type ON customer_event (event_type)",
    "CREATE INDEX customer_event_campaign ON customer_event (campaign_id)",
    "CREATE INDEX customer_event_group ON customer_event (group_id)",
    "CREATE INDEX customer_event_created ON customer_event (created_at)",
)
COPY = ("COPY customer_event (id, created_at, updated_at, event_type, customer_id, campaign_id, category, "
        "data, group_id, event_source, tenant_id) FROM STDIN")


@dataclass(frozen=True, slots=True)
class Tenant:
    id: uuid.UUID
    name: str
    campaigns: tuple[uuid.UUID, ...]


@dataclass(frozen=True, slots=True)
class Population:
    tenants: tuple[Tenant, ...]
    customers: tuple[uuid.UUID, ...]  # customer n belongs to tenants[n % len(tenants)]

    def tenant_of(self, number: int) -> Tenant:
        return self.tenants[number % len(self.tenants)]


def make_population(customers: int, tenants: int, seed: int = 11) -> Population:
    rng = random.Random(seed)
    made = tuple(
        Tenant(uuid.UUID(int=rng.getrandbits(128), version=4), TENANT_NAMES[number],
               tuple(uuid.UUID(int=rng.getrandbits(128), version=4) for _ in range(10)))
        for number in range(tenants))
    return Population(made, tuple(uuid.UUID(int=rng.getrandbits(128), version=4) for _ in range(customers)))


def customer_number(rng: random.Random, customers: int) -> int:
    """Skewed: density ~ 1/sqrt(x), so the busiest 1% of customers get about 10% of events."""
    return int(customers * rng.random() ** 2)


def _payload(rng: random.Random, event_type: str, kind: str | None, customer: uuid.UUID, number: int,
             campaign: uuid.UUID | None, campaign_type: str) -> dict:
    data: dict = {
        "customer": {"id": str(customer), "source_id": f"cust-{number:07d}", "name": f"Customer {number}",
                     "email": f"customer.{number}@example.com",
                     "metadata": {"tier": ("bronze", "silver", "gold")[number % 3], "newsletter": number % 2 == 0},
                     "object": "customer"},
        "event_source": {"channel": "INTERNAL", "source": "wal"},
    }
    if campaign is not None:
        data["campaign"] = {"id": str(campaign), "name": f"Campaign {campaign.hex[:6]}", "type": "AUTO_UPDATE",
                            "campaign_type": campaign_type, "object": "campaign"}
        data["voucher"] = {"id": str(uuid.UUID(int=rng.getrandbits(128))), "code": f"V-{rng.getrandbits(40):010X}",
                           "type": "DISCOUNT_VOUCHER", "campaign_id": str(campaign), "holder_id": str(customer),
                           "object": "voucher"}
    amount = rng.randrange(100, 50_000)
    if kind in ("redemption", "redemption_rollback"):
        data[kind] = {"id": str(uuid.UUID(int=rng.getrandbits(128))), "result": "SUCCESS", "status": "SUCCEEDED",
                      "amount": amount, "tracking_id": f"track-{number}", "metadata": {"store": "online"},
                      "object": kind}
    elif kind == "order":
        data["order"] = {"id": str(uuid.UUID(int=rng.getrandbits(128))), "source_id": f"ord-{rng.getrandbits(32)}",
                         "status": event_type.rsplit(".", 1)[-1].upper(), "amount": amount, "initial_amount": amount,
                         "discount_amount": 0, "metadata": {"channel": "web"}, "object": "order"}
    elif kind == "publication":
        data["publication"] = {"id": str(uuid.UUID(int=rng.getrandbits(128))), "result": "SUCCESS", "channel": "API",
                               "source_id": None, "failure_code": None, "failure_message": None,
                               "vouchers": [data["voucher"]["code"]], "object": "publication"}
    elif kind == "transaction":
        data["transaction"] = {"id": str(uuid.UUID(int=rng.getrandbits(128))), "type": "POINTS_ADDITION",
                               "amount": amount, "balance_after": amount * 3, "source_id": None, "reason": None,
                               "object": "transaction"}
    elif kind == "segment":
        data["segment"] = {"id": str(uuid.UUID(int=rng.getrandbits(128))), "name": "VIP customers",
                           "type": "STATIC", "object": "segment"}
    elif event_type == "customer.updated":
        data["changed_fields"] = ["name"]
    return data


def generate(population: Population, events: int, seed: int = 12) -> Iterator[list[CustomerEvent]]:
    """The history in time order, in chunks."""
    rng = random.Random(seed)
    step = SPAN / events
    customers = len(population.customers)
    chunk: list[CustomerEvent] = []
    for index in range(events):
        number = customer_number(rng, customers)
        tenant = population.tenant_of(number)
        event_type = rng.choices(TYPE_NAMES, TYPE_WEIGHTS)[0]
        _, category, kind, with_campaign = EVENT_TYPES[event_type]
        campaign = rng.choice(tenant.campaigns) if with_campaign else None
        campaign_type = CAMPAIGN_TYPES[tenant.campaigns.index(campaign) % len(CAMPAIGN_TYPES)] if campaign else ""
        customer = population.customers[number]
        data = _payload(rng, event_type, kind, customer, number, campaign, campaign_type)
        chunk.append(CustomerEvent(
            id=uuid.UUID(int=rng.getrandbits(128), version=4), tenant_id=tenant.id, tenant=tenant.name,
            customer_id=customer, created_at=START + step * index + timedelta(microseconds=rng.randrange(1000)),
            type=event_type, category=category, campaign_id=campaign, campaign_type=campaign_type,
            group_id=f"tx_{index:016X}", source="wal", data=orjson.dumps(data, option=orjson.OPT_SORT_KEYS).decode(),
            source_table=kind or "customer", source_lsn=index,
        ))
        if len(chunk) == CHUNK:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _copy_text(events: list[CustomerEvent]) -> bytes:
    lines = []
    for event in events:
        moment = event.created_at.strftime("%Y-%m-%d %H:%M:%S.%f")
        campaign = str(event.campaign_id) if event.campaign_id else "\\N"
        data = event.data.replace("\\", "\\\\")
        lines.append(f"{event.id}\t{moment}\t{moment}\t{event.type}\t{event.customer_id}\t{campaign}\t"
                     f"{event.category}\t{data}\t{event.group_id}\t{event.source}\t{event.tenant_id}\n")
    return "".join(lines).encode()


def write_store(population: Population, events: int, store: Store,
                each_chunk: Callable[[list[CustomerEvent]], None] = lambda chunk: None) -> None:
    """Writes the history into the store as the pipeline does (EventWriter); `each_chunk` gets
    every chunk once it is stored."""
    writer = EventWriter(store, max_rows=CHUNK + len(population.customers) + len(population.tenants))
    writer.add(TenantRecord(tenant.id, tenant.name, 0) for tenant in population.tenants)
    writer.add(CustomerRecord(customer, population.tenant_of(number).id, f"cust-{number:07d}", False, 0)
               for number, customer in enumerate(population.customers))
    written = 0
    for chunk in generate(population, events):
        writer.add(chunk)
        writer.mark(written + len(chunk))
        writer.flush()
        each_chunk(chunk)
        written += len(chunk)
        if written % 1_000_000 < CHUNK:
            log(f"history: {written:,} of {events:,} events written")


def load(population: Population, events: int, store: Store, reference_dsn: str) -> None:
    """Writes the history into both stores (one pass, the same events) and indexes the table."""
    with psycopg.connect(reference_dsn, autocommit=True) as conn:
        conn.execute(REFERENCE_DDL)
        with conn.cursor() as cursor, cursor.copy(COPY) as copy:
            write_store(population, events, store, lambda chunk: copy.write(_copy_text(chunk)))
        for statement in REFERENCE_INDEXES:
            conn.execute(statement)
        conn.execute("VACUUM ANALYZE customer_event")


def compact(store: Store) -> None:
    """Merges the store's parts (OPTIMIZE FINAL), as a long-running store's are."""
    admin = connect(store.location)
    try:
        for table in ("customer_events", "customer_campaign_stages"):
            admin.command(f"OPTIMIZE TABLE {store.location.database}.{table} FINAL")
    finally:
        admin.close()
