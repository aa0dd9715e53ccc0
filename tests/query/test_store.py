"""Store URLs, tenant and customer resolution, status, and an unreachable server."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest

from mappers.events import TenantRecord
from query.location import StoreLocation, StoreUrlError, parse_store_url, redacted
from query.clients import ThreadReaders
from query.store import Store, StoreError
from tests.query import factories as f
from tests.query.conftest import write

ACME = f.tenant("acme")
GLOBEX = f.tenant("globex")


@pytest.mark.parametrize(("url", "location"), [
    ("chdb:///var/lib/va/clickhouse", StoreLocation(database="voucher_activity", path="/var/lib/va/clickhouse")),
    ("chdb:///tmp/ch?database=events_1", StoreLocation(database="events_1", path="/tmp/ch")),
    ("chdb://data/ch", StoreLocation(database="voucher_activity", path="data/ch")),
    ("http://default:s%40cret@ch.internal:8123/analytics",
     StoreLocation(database="analytics", host="ch.internal", port=8123, username="default", password="s@cret")),
    ("https://ch.internal", StoreLocation(database="voucher_activity", host="ch.internal", port=8443, secure=True)),
])
def test_store_urls(url: str, location: StoreLocation) -> None:
    assert parse_store_url(url) == location


@pytest.mark.parametrize(("url", "message"), [
    ("postgres://x/y", "must start with chdb:// (embedded) or http(s):// (a ClickHouse server)"),
    ("chdb://", "has no path"),
    ("http:///db", "has no host"),
    ("http://host:99999/db", "Port out of range"),
    ("chdb:///tmp/x?database=a-b", "store database 'a-b' is not a plain identifier"),
])
def test_bad_store_urls_say_what_is_accepted(url: str, message: str) -> None:
    with pytest.raises(StoreUrlError, match=message.replace("(", r"\(").replace(")", r"\)")):
        parse_store_url(url)


def test_unreachable_server_is_a_store_error() -> None:
    with pytest.raises(StoreError, match="cannot open the store"):
        Store.open("http://127.0.0.1:9/db")


def test_tenant_resolves_by_its_latest_name(store: Store) -> None:
    write(store, [ACME, GLOBEX, TenantRecord(ACME.id, "acme-renamed", 5)])
    assert store.resolve_tenant("acme-renamed") == ACME.id
    assert store.resolve_tenant("globex") == GLOBEX.id
    assert store.resolve_tenant("nope") is None


def test_a_new_tenant_resolves_as_soon_as_it_is_stored(store: Store) -> None:
    write(store, [ACME])
    assert store.resolve_tenant("acme") == ACME.id
    assert store.resolve_tenant("globex") is None
    write(store, [GLOBEX])
    assert store.resolve_tenant("globex") == GLOBEX.id


def test_a_renamed_tenant_loses_its_old_name_once_the_directory_is_reloaded(
    store: Store, monkeypatch: pytest.MonkeyPatch,
) -> None:
    write(store, [ACME])
    assert store.resolve_tenant("acme") == ACME.id
    write(store, [TenantRecord(ACME.id, "acme-renamed", 5)])
    monkeypatch.setattr("query.store.TENANT_DIRECTORY_SECONDS", 0.0)
    assert store.resolve_tenant("acme") is None
    assert store.resolve_tenant("acme-renamed") == ACME.id


class Client:
    """Stands in for a store client: what ThreadReaders does with one is make, hand out and close it."""

    def __init__(self) -> None:
        self.closed = False

    def close(self) -> None:
        self.closed = True


def test_each_thread_reads_on_a_client_of_its_own_until_the_readers_close() -> None:
    made: list[Client] = []
    readers = ThreadReaders(lambda: made.append(Client()) or made[-1])
    per_thread: dict[int, tuple[Client, Client]] = {}

    def read(number: int) -> None:
        per_thread[number] = (readers.client(), readers.client())

    threads = [threading.Thread(target=read, args=(number,)) for number in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    mine = readers.client()
    assert readers.client() is mine
    assert [first is second for first, second in per_thread.values()] == [True, True, True]
    assert len({id(client) for client in made}) == len(made) == 4
    assert not any(client.closed for client in made)
    readers.close()
    assert all(client.closed for client in made)


def test_concurrent_reads_each_run_on_their_threads_reader(store: Store) -> None:
    write(store, [ACME, GLOBEX])
    results: list[object] = []

    def resolve() -> None:
        results.extend(store.resolve_customer(ACME.id, f"missing-{n}") for n in range(5))

    threads = [threading.Thread(target=resolve) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == [None] * 40


def test_customer_resolution(store: Store) -> None:
    old = f.customer(ACME, "old", "same-src", version=1)
    new = f.customer(ACME, "new", "same-src", version=7)
    gone = f.customer(ACME, "gone", "gone-src", deleted=True, version=3)
    elsewhere = f.customer(GLOBEX, "elsewhere", "other-src")
    unrecorded = f.stable_id("customer", "acme", "only-events")
    write(store, [ACME, GLOBEX, old, new, gone, elsewhere, f.event(ACME, unrecorded, 0, 1)])
    assert store.resolve_customer(ACME.id, str(old.id)) == old.id
    assert store.resolve_customer(ACME.id, "same-src") == new.id  # the newest live one
    assert store.resolve_customer(ACME.id, str(gone.id)) == gone.id
    assert store.resolve_customer(ACME.id, "gone-src") is None
    assert store.resolve_customer(ACME.id, str(elsewhere.id)) is None
    assert store.resolve_customer(ACME.id, "other-src") is None
    assert store.resolve_customer(GLOBEX.id, "other-src") == elsewhere.id
    assert store.resolve_customer(ACME.id, str(unrecorded)) == unrecorded  # known from its events


def test_status_counts_events_and_last_time_per_tenant(store: Store) -> None:
    assert store.status().to_dict() == {"events_stored": 0, "last_event_at": None, "tenants": []}
    dave = f.customer(ACME, "dave", None)
    bob = f.customer(GLOBEX, "bob", None)
    write(store, [f.event(ACME, dave.id, n, n) for n in range(3)] + [f.event(GLOBEX, bob.id, 90, 9)])
    assert store.status().to_dict() == {
        "events_stored": 4,
        "last_event_at": "2024-03-01T12:01:30.000000Z",
        "tenants": [
            {"name": "acme", "events_stored": 3, "last_event_at": "2024-03-01T12:00:02.000000Z"},
            {"name": "globex", "events_stored": 1, "last_event_at": "2024-03-01T12:01:30.000000Z"},
        ],
    }
    assert store.status().last_event_at == f.START + timedelta(seconds=90)


@pytest.mark.parametrize(("url", "shown"), [
    ("http://va:s3cret@ch:8123/db", "http://va:***@ch:8123/db"),
    ("https://va:p%40ss@ch/db?x=1", "https://va:***@ch/db?x=1"),
    ("http://va@ch:8123/db", "http://va@ch:8123/db"),
    ("chdb:///var/lib/va/clickhouse", "chdb:///var/lib/va/clickhouse"),
])
def test_passwords_are_redacted_wherever_a_store_url_is_shown(url, shown):
    assert redacted(url) == shown


def test_a_bad_store_url_is_reported_without_its_password():
    with pytest.raises(StoreUrlError) as refused:
        parse_store_url("http://va:s3cret@ch:99999/db")
    assert "s3cret" not in str(refused.value)
    assert str(refused.value).startswith("store URL 'http://va:***@ch:99999/db': ")
