"""The API's page cache (query/activity_cache.py): a page written for a cached customer is in the
next response at once, the bodies are byte for byte the store's, and the cache stays within its
budget."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from starlette.testclient import TestClient

from query.activity_cache import PAGE_OVERHEAD, RECENT_INVALIDATIONS, ActivityCache, customer_tag, source_tag
from query.api.app import create_app
from query.store import Store
from query.writer import EventWriter
from tests.conftest import unique_name
from tests.query import factories as f
from tests.query.conftest import ACME_HEADERS, CAMPAIGN_A, TOKENS, Dataset, write


def path(customer: str) -> str:
    return f"/v1/customers/{customer}/activity"


@pytest.fixture
def cached_store(chdb_path) -> Iterator[Store]:
    url = f"chdb://{chdb_path}?database={unique_name('cache')}"
    with Store.open(url, activity_cache=ActivityCache()) as store:
        yield store


def ids(response) -> list[str]:
    assert response.status_code == 200, response.text
    return [item["id"] for item in response.json()["data"]]


def test_an_event_written_for_a_cached_customer_is_in_the_next_page(cached_store: Store) -> None:
    acme = f.tenant("acme")
    dave = f.customer(acme, "dave", "dave-src")
    first = [f.event(acme, dave.id, n, n) for n in range(3)]
    write(cached_store, [acme, dave, *first])
    with TestClient(create_app(cached_store, tokens=TOKENS)) as client:
        for key in (str(dave.id), "dave-src"):
            assert ids(client.get(path(key), headers=ACME_HEADERS)) == [str(e.id) for e in first[::-1]]
        # The dashboard's poll: events after the newest one shown, oldest first; none yet.
        poll = {"limit": 100, "order": "created_at", "starting_after_id": str(first[-1].id)}
        assert ids(client.get(path(str(dave.id)), params=poll, headers=ACME_HEADERS)) == []
        assert len(cached_store.activity_cache) == 3
        for number in range(3, 6):
            new = f.event(acme, dave.id, number, number)
            write(cached_store, [new], lsn=number)
            for key in (str(dave.id), "dave-src"):
                assert ids(client.get(path(key), headers=ACME_HEADERS))[0] == str(new.id)
            polled = ids(client.get(path(str(dave.id)), params=poll, headers=ACME_HEADERS))
            assert polled == [str(f.event(acme, dave.id, n, n).id) for n in range(3, number + 1)]


def test_a_source_id_that_changes_hands_is_seen_at_once(cached_store: Store) -> None:
    acme = f.tenant("acme")
    old = f.customer(acme, "old", "shared-src")
    old_events = [f.event(acme, old.id, 0, 1)]
    write(cached_store, [acme, old, *old_events])
    with TestClient(create_app(cached_store, tokens=TOKENS)) as client:
        assert ids(client.get(path("shared-src"), headers=ACME_HEADERS)) == [str(old_events[0].id)]
        write(cached_store, [f.customer(acme, "old", "shared-src", deleted=True, version=2)], lsn=2)
        assert client.get(path("shared-src"), headers=ACME_HEADERS).status_code == 404
        new = f.customer(acme, "new", "shared-src")
        new_events = [f.event(acme, new.id, 5, 2)]
        write(cached_store, [new, *new_events], lsn=3)
        assert ids(client.get(path("shared-src"), headers=ACME_HEADERS)) == [str(new_events[0].id)]



def test_a_page_is_dropped_once_a_write_behind_stores_its_customers_events(cached_store: Store) -> None:
    acme = f.tenant("acme")
    dave = f.customer(acme, "dave", "dave-src")
    first = f.event(acme, dave.id, 0, 0)
    write(cached_store, [acme, dave, first])
    writer = EventWriter(cached_store)
    with TestClient(create_app(cached_store, tokens=TOKENS)) as client:
        assert ids(client.get(path("dave-src"), headers=ACME_HEADERS)) == [str(first.id)]
        later = f.event(acme, dave.id, 1, 1)
        writer.add([later])
        writer.write_behind()
        writer.close()  # the block is acknowledged: no flush, no durability point
        assert writer.pending == 0
        assert ids(client.get(path("dave-src"), headers=ACME_HEADERS)) == [str(later.id), str(first.id)]


QUERIES = (
    "", "limit=3", "limit=3&page=2", "order=created_at&limit=7", f"campaign_id={CAMPAIGN_A}",
    "type=customer.updated,customer.order.paid", "category=ACTION&limit=100", "start_date=2024-03-01T12:03:00Z",
)


def test_cached_bodies_are_the_stores_byte_for_byte(dataset: Dataset, chdb_path) -> None:
    url = f"chdb://{chdb_path}?database={dataset.store.location.database}"
    with Store.open(url, create_schema=False, activity_cache=ActivityCache()) as cached, \
            TestClient(create_app(dataset.store, tokens=TOKENS)) as plain_client, \
            TestClient(create_app(cached, tokens=TOKENS)) as cached_client:
        for key in (str(dataset.dave.id), "dave-src", str(dataset.carol.id)):
            for query in QUERIES:
                expected = plain_client.get(f"{path(key)}?{query}", headers=ACME_HEADERS)
                for _ in range(2):  # a miss, then a hit
                    response = cached_client.get(f"{path(key)}?{query}", headers=ACME_HEADERS)
                    assert response.status_code == expected.status_code == 200
                    assert response.content == expected.content
                    assert response.headers["content-type"] == expected.headers["content-type"]
        assert len(cached.activity_cache) == 3 * len(QUERIES)
        # Errors are never kept: a wrong tenant's customer stays a 404, a bad parameter a 400.
        for _ in range(2):
            assert cached_client.get(path(str(dataset.bob.id)), headers=ACME_HEADERS).status_code == 404
            assert cached_client.get(f"{path('dave-src')}?limit=0", headers=ACME_HEADERS).status_code == 400
        assert len(cached.activity_cache) == 3 * len(QUERIES)


# -- the cache alone ----------------------------------------------------------------------------
TENANT = uuid.UUID(int=1)


def test_the_cache_stays_within_its_budget_dropping_the_least_recently_used() -> None:
    body = b"x" * 3000
    cache = ActivityCache(max_bytes=10 * (len(body) + PAGE_OVERHEAD))
    for number in range(100):
        cache.put(("page", number), body, (customer_tag(TENANT, uuid.UUID(int=number)),), cache.ticket())
        if number == 50:
            assert cache.get(("page", 45)) == body  # used: kept past the older ones
        assert cache.bytes <= cache.max_bytes
    assert len(cache) == 10
    assert cache.get(("page", 45)) is None  # used at 50, then ten newer pages came
    assert [number for number in range(100) if cache.get(("page", number))] == list(range(90, 100))
    cache.put(("page", "huge"), b"x" * cache.max_bytes, (), cache.ticket())
    assert cache.get(("page", "huge")) is None
    assert len(cache) == 10
    cache.invalidate(customer_tag(TENANT, uuid.UUID(int=number)) for number in range(95, 100))
    assert len(cache) == 5
    assert cache.bytes == 5 * (len(body) + PAGE_OVERHEAD)


def test_a_page_read_across_a_flush_of_its_customer_is_not_kept() -> None:
    cache = ActivityCache()
    dave, erin = customer_tag(TENANT, uuid.UUID(int=2)), customer_tag(TENANT, uuid.UUID(int=3))
    ticket = cache.ticket()
    cache.invalidate([erin])  # another customer's flush: dave's read stays good
    cache.put("dave page", b"dave", (dave,), ticket)
    assert cache.get("dave page") == b"dave"
    ticket = cache.ticket()
    cache.invalidate([dave, erin])  # dave's rows changed while his page was read
    cache.put("dave page 2", b"old", (dave,), ticket)
    assert cache.get("dave page 2") is None
    assert cache.get("dave page") is None
    ticket = cache.ticket()
    cache.clear()  # a tenant changed: nothing read before it is kept
    cache.put("erin page", b"erin", (source_tag(TENANT, "erin-src"),), ticket)
    assert cache.get("erin page") is None
    ticket = cache.ticket()
    for _ in range(RECENT_INVALIDATIONS + 1):  # too many flushes to judge the read: dropped
        cache.invalidate([erin])
    cache.put("dave page 3", b"dave", (dave,), ticket)
    assert cache.get("dave page 3") is None
    ticket = cache.ticket()
    for _ in range(RECENT_INVALIDATIONS - 1):
        cache.invalidate([erin])
    cache.put("dave page 4", b"dave", (dave,), ticket)
    assert cache.get("dave page 4") == b"dave"
