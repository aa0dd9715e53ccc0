"""3b. The activity API under the skew real pages have: the same customers viewed again and again
(Zipf, s = 1.1, over the customers in a seeded random order) and a dashboard's live timeline
polling each of them for events after the newest one it shows. Meanwhile a writer in the API's
process stores new events for the same Zipf-chosen customers through `EventWriter`, as the
pipeline of `voucher-activity run` does, and after each flush reads one of them back over HTTP:
a page without the event just written counts as stale (the target is none).

The PostgreSQL reference runs the same pages as SQL (no writes: the reference never caches).
"""

from __future__ import annotations

import http.client
import itertools
import random
import threading
import uuid
from bisect import bisect
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from urllib.parse import urlencode

import orjson

from mappers.events import CustomerEvent
from query.store import Store
from query.writer import EventWriter
from tests.bench import history

ZIPF_EXPONENT = 1.1
POLL_SHARE = 0.3  # the rest: the newest page, as a client or the timeline's first load shows it
WRITES_PER_SECOND = 100  # new events for Zipf-chosen customers while the load runs
FLUSHES_PER_SECOND = 20
PAGE_COLUMNS = "id, event_type, category, data::text, created_at, group_id"


def zipf_sampler(count: int, rng: random.Random, exponent: float = ZIPF_EXPONENT):
    """Draws ranks 0..count-1 with P(rank k) proportional to (k + 1) ** -exponent."""
    cumulative = list(itertools.accumulate((rank + 1) ** -exponent for rank in range(count)))
    total = cumulative[-1]
    return lambda: min(bisect(cumulative, rng.random() * total), count - 1)


def newest_events(store: Store, customers: list[uuid.UUID]) -> dict[uuid.UUID, uuid.UUID]:
    """Each customer's newest event id, in the API's order (created_at, then id)."""
    rows = store.rows(
        "SELECT customer_id, id FROM customer_events WHERE customer_id IN {customers:Array(UUID)} "
        "ORDER BY customer_id, created_at DESC, id DESC LIMIT 1 BY customer_id", {"customers": customers})
    return dict(rows)


def plan(population: history.Population, store: Store, count: int, seed: int = 7) -> list[dict]:
    """`count` requests: the newest page (limit 10) or the timeline's poll (limit 100, oldest
    first, after the newest event it has), as HTTP and as the equivalent SQL."""
    rng = random.Random(seed)
    order = list(range(len(population.customers)))
    rng.shuffle(order)
    draw = zipf_sampler(len(order), rng)
    numbers = [order[draw()] for _ in range(count)]
    newest = newest_events(store, sorted({population.customers[number] for number in numbers}))
    requests = []
    for number in numbers:
        tenant, customer = population.tenant_of(number), population.customers[number]
        conditions = "tenant_id = %s::uuid AND customer_id = %s"
        parameters: list = [str(tenant.id), str(customer)]
        if rng.random() < POLL_SHARE and customer in newest:
            after = str(newest[customer])
            query = {"limit": 100, "order": "created_at", "starting_after_id": after}
            sql = (f"SELECT {PAGE_COLUMNS} FROM customer_event WHERE {conditions} AND created_at > "
                   "(SELECT created_at FROM customer_event WHERE id = %s::uuid) ORDER BY created_at, id LIMIT 101")
            parameters.append(after)
        else:
            query = {"limit": 10}
            sql = (f"SELECT {PAGE_COLUMNS} FROM customer_event WHERE {conditions} "
                   "ORDER BY created_at DESC, id DESC LIMIT 11")
        requests.append({
            "path": f"/v1/customers/{customer}/activity?{urlencode(query)}",
            "headers": {"Authorization": "Bearer admin", "tenant": tenant.name},
            "sql": sql, "params": parameters,
        })
    return requests


@dataclass
class LiveWrites:
    """Writes events for Zipf-chosen customers while the load runs and reads each flush's last
    event back over HTTP at once (`probes`, `stale`)."""

    population: history.Population
    store: Store
    target: str  # HOST:PORT of the API
    probes: int = 0
    stale: int = 0
    events: int = 0
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        rng = random.Random(13)
        order = list(range(len(self.population.customers)))
        rng.shuffle(order)
        draw = zipf_sampler(len(order), rng)
        writer = EventWriter(self.store)
        host, port = self.target.rsplit(":", 1)
        connection = http.client.HTTPConnection(host, int(port), timeout=10)
        per_flush = max(1, WRITES_PER_SECOND // FLUSHES_PER_SECOND)
        moment = datetime.now(UTC)
        while not self.stop.wait(1 / FLUSHES_PER_SECOND):
            events = []
            for _ in range(per_flush):
                number = order[draw()]
                moment += timedelta(milliseconds=1)
                events.append(self._event(number, moment, rng))
            writer.add(events)
            writer.flush()
            self.events += len(events)
            probe = events[-1]
            tenant = next(t for t in self.population.tenants if t.id == probe.tenant_id)
            connection.request("GET", f"/v1/customers/{probe.customer_id}/activity?limit=10",
                               headers={"Authorization": "Bearer admin", "tenant": tenant.name})
            body = orjson.loads(connection.getresponse().read())
            self.probes += 1
            if not body["data"] or body["data"][0]["id"] != str(probe.id):
                self.stale += 1
        connection.close()

    def _event(self, number: int, moment: datetime, rng: random.Random) -> CustomerEvent:
        tenant, customer = self.population.tenant_of(number), self.population.customers[number]
        return CustomerEvent(
            id=uuid.UUID(int=rng.getrandbits(128), version=4), tenant_id=tenant.id, tenant=tenant.name,
            customer_id=customer, created_at=moment, type="customer.updated", category="EFFECT",
            campaign_id=None, campaign_type="", group_id=f"live_{self.events:012X}", source="wal",
            data=orjson.dumps({"customer": {"id": str(customer), "object": "customer"},
                               "changed_fields": ["name"]}).decode(),
            source_table="customer", source_lsn=0,
        )
