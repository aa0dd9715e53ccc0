"""Store and API fixtures on the session's chDB path, one database per test (or per module for
the read-only API data set)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from mappers.events import CustomerEvent, CustomerRecord, TenantRecord
from query.api.app import create_app
from query.store import Store
from query.writer import EventWriter
from tests.conftest import unique_name
from tests.query import factories as f

TOKENS = {"acme-token": "acme", "globex-token": "globex", "admin-token": "*"}
ACME_HEADERS = {"X-App-Id": "acme", "X-App-Token": "acme-token"}

CAMPAIGN_A = f.stable_id("campaign", "a")
CAMPAIGN_B = f.stable_id("campaign", "b")


def write(store: Store, records: list, lsn: int = 1) -> None:
    writer = EventWriter(store)
    writer.add(records)
    writer.mark(lsn)
    writer.flush()


@dataclass(frozen=True, slots=True)
class Dataset:
    """Two tenants that share a source_id; a customer with a rich history (ties on created_at
    included) whose every event was also re-delivered in a later batch; a deleted customer."""

    store: Store
    acme: TenantRecord
    globex: TenantRecord
    dave: CustomerRecord  # acme, the rich history
    alice: CustomerRecord  # acme, source_id shared with bob
    bob: CustomerRecord  # globex
    carol: CustomerRecord  # acme, deleted
    dave_events: list[CustomerEvent]
    alice_events: list[CustomerEvent]
    bob_events: list[CustomerEvent]
    carol_events: list[CustomerEvent]


def _dave_history(acme: TenantRecord, dave: CustomerRecord) -> list[CustomerEvent]:
    types = ("customer.redemption.succeeded", "customer.publication.succeeded", "customer.order.paid",
             "customer.updated", "customer.redemption.failed")
    events = []
    for number in range(40):
        event_type = types[number % len(types)]
        campaign = (CAMPAIGN_A, CAMPAIGN_B, None)[number % 3]
        events.append(f.event(
            acme, dave.id, seconds=(number // 4) * 60,  # four events per minute: ties on created_at
            number=number, type=event_type,
            category="ACTION" if "redemption" in event_type or "order" in event_type else "EFFECT",
            campaign_id=campaign,
            campaign_type={CAMPAIGN_A: "DISCOUNT_COUPONS", CAMPAIGN_B: "LOYALTY_PROGRAM"}.get(campaign, ""),
        ))
    return events


@pytest.fixture(scope="module")
def dataset(chdb_path: Path) -> Iterator[Dataset]:
    with Store.open(f"chdb://{chdb_path}?database={unique_name('api')}") as store:
        acme, globex = f.tenant("acme"), f.tenant("globex")
        dave = f.customer(acme, "dave", "dave-src")
        alice = f.customer(acme, "alice", "shared-src")
        bob = f.customer(globex, "bob", "shared-src")
        carol_live = f.customer(acme, "carol", "carol-src")
        carol = f.customer(acme, "carol", "carol-src", deleted=True, version=2)
        dave_events = _dave_history(acme, dave)
        alice_events = [f.event(acme, alice.id, 10 * n, 100 + n, type="customer.segment.entered") for n in range(3)]
        bob_events = [f.event(globex, bob.id, 10 * n, 200 + n, type="customer.order.created",
                              category="ACTION") for n in range(2)]
        carol_events = [f.event(acme, carol.id, 0, 300, type="customer.created"),
                        f.event(acme, carol.id, 5, 301, type="customer.deleted")]
        write(store, [acme, globex, dave, alice, bob, carol_live, *dave_events, *alice_events,
                      *bob_events, *carol_events[:1]], lsn=1)
        write(store, [carol, carol_events[1]], lsn=2)
        # Re-delivery after a crash: the same rows again, cut into other batches.
        write(store, dave_events[::-1][:25], lsn=3)
        write(store, dave_events[::-1][25:] + bob_events, lsn=4)
        yield Dataset(store, acme, globex, dave, alice, bob, carol, dave_events, alice_events,
                      bob_events, carol_events)


@pytest.fixture(scope="module")
def client(dataset: Dataset) -> Iterator[TestClient]:
    with TestClient(create_app(dataset.store, tokens=TOKENS)) as test_client:
        yield test_client
