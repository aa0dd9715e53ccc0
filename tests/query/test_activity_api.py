"""GET /v1/customers/{customerId}/activity on real chDB: every parameter and the combinations
that matter, walked to exhaustion in both orders; re-delivered copies never visible."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime

import msgspec
import pytest
from starlette.testclient import TestClient

from mappers.events import CustomerEvent, CustomerRecord
from query import activity_reads
from query.activity_sql import ActivityQuery, recent_months_start
from query.api.app import create_app
from tests.query import factories as f
from tests.query.conftest import (
    ACME_HEADERS,
    CAMPAIGN_A,
    CAMPAIGN_B,
    TOKENS,
    Dataset,
    write,
)

Filter = Callable[[CustomerEvent], bool]


def path(customer: str) -> str:
    return f"/v1/customers/{customer}/activity"


def expected_ids(events: list[CustomerEvent], keep: Filter = lambda event: True,
                 newest_first: bool = True) -> list[str]:
    return [str(e.id) for e in sorted(filter(keep, events), key=f.history_key, reverse=newest_first)]


def walk_with_cursor(client: TestClient, customer: str, params: dict, headers=ACME_HEADERS) -> list[str]:
    seen: list[str] = []
    cursor = None
    for _ in range(100):
        response = client.get(path(customer), params=params | ({"starting_after_id": cursor} if cursor else {}),
                              headers=headers)
        assert response.status_code == 200, response.text
        body = response.json()
        seen += [item["id"] for item in body["data"]]
        if not body["has_more"]:
            assert body["more_starting_after"] is None
            return seen
        assert body["more_starting_after"] == body["data"][-1]["id"]
        cursor = body["more_starting_after"]
    raise AssertionError("the cursor never ended")


def walk_with_pages(client: TestClient, customer: str, params: dict) -> list[str]:
    seen: list[str] = []
    for page in range(1, 100):
        body = client.get(path(customer), params=params | {"page": page}, headers=ACME_HEADERS).json()
        seen += [item["id"] for item in body["data"]]
        if not body["has_more"]:
            return seen
    raise AssertionError("pages never ended")


def test_first_page_has_the_voucherify_list_shape(client: TestClient, dataset: Dataset) -> None:
    response = client.get(path(str(dataset.dave.id)), headers=ACME_HEADERS)
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    newest = sorted(dataset.dave_events, key=f.history_key, reverse=True)[:10]
    assert body == {
        "object": "list",
        "data_ref": "data",
        "data": [
            {
                "id": str(event.id),
                "type": event.type,
                "category": event.category,
                "data": json.loads(event.data),
                "created_at": event.created_at.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
                "group_id": event.group_id,
            }
            for event in newest
        ],
        "has_more": True,
        "more_starting_after": str(newest[-1].id),
    }


@pytest.mark.parametrize("order", ["-created_at", "created_at"])
@pytest.mark.parametrize("limit", [1, 7, 40, 100])
def test_cursor_walks_every_event_exactly_once(client: TestClient, dataset: Dataset, order: str,
                                               limit: int) -> None:
    walked = walk_with_cursor(client, str(dataset.dave.id), {"order": order, "limit": limit})
    assert walked == expected_ids(dataset.dave_events, newest_first=order == "-created_at")


@pytest.mark.parametrize("order", ["-created_at", "created_at"])
def test_pages_walk_every_event_exactly_once(client: TestClient, dataset: Dataset, order: str) -> None:
    walked = walk_with_pages(client, str(dataset.dave.id), {"order": order, "limit": 6})
    assert walked == expected_ids(dataset.dave_events, newest_first=order == "-created_at")


def test_page_counts_after_the_cursor(client: TestClient, dataset: Dataset) -> None:
    ordered = expected_ids(dataset.dave_events)
    body = client.get(path(str(dataset.dave.id)), headers=ACME_HEADERS,
                      params={"starting_after_id": ordered[4], "limit": 5, "page": 2}).json()
    assert [item["id"] for item in body["data"]] == ordered[10:15]
    assert body["has_more"] is True


def test_page_past_the_end_is_empty(client: TestClient, dataset: Dataset) -> None:
    body = client.get(path(str(dataset.dave.id)), params={"page": 5, "limit": 10}, headers=ACME_HEADERS).json()
    assert body == {"object": "list", "data_ref": "data", "data": [], "has_more": False,
                    "more_starting_after": None}


MINUTE_2 = f.START.replace(minute=2)
MINUTE_5 = f.START.replace(minute=5)
FILTERS: dict[str, tuple[dict, Filter]] = {
    "start_date inclusive": ({"start_date": "2024-03-01T12:02:00Z"}, lambda e: e.created_at >= MINUTE_2),
    "end_date inclusive": ({"end_date": "2024-03-01T12:05:00Z"}, lambda e: e.created_at <= MINUTE_5),
    "end_date with offset": ({"end_date": "2024-03-01T13:05:00+01:00"}, lambda e: e.created_at <= MINUTE_5),
    "both dates": ({"start_date": "2024-03-01T12:02:00Z", "end_date": "2024-03-01T12:05:00.000000Z"},
                   lambda e: MINUTE_2 <= e.created_at <= MINUTE_5),
    "end_date as a whole day": ({"end_date": "2024-03-01"}, lambda e: True),
    "start_date after all": ({"start_date": "2024-03-02"}, lambda e: False),
    "campaign_id": ({"campaign_id": str(CAMPAIGN_A)}, lambda e: e.campaign_id == CAMPAIGN_A),
    "campaign_type": ({"campaign_type": "LOYALTY_PROGRAM"}, lambda e: e.campaign_id == CAMPAIGN_B),
    "category": ({"category": "ACTION"}, lambda e: e.category == "ACTION"),
    "one type": ({"type": "customer.order.paid"}, lambda e: e.type == "customer.order.paid"),
    "repeated type": ({"type": ["customer.order.paid", "customer.updated"]},
                      lambda e: e.type in ("customer.order.paid", "customer.updated")),
    "comma-separated type": ({"type": "customer.order.paid, customer.updated,"},
                             lambda e: e.type in ("customer.order.paid", "customer.updated")),
    "type and category": ({"type": "customer.order.paid,customer.updated", "category": "EFFECT"},
                          lambda e: e.type == "customer.updated"),
    "campaign, category and dates": (
        {"campaign_id": str(CAMPAIGN_B), "category": "ACTION", "start_date": "2024-03-01T12:02:00Z"},
        lambda e: e.campaign_id == CAMPAIGN_B and e.category == "ACTION" and e.created_at >= MINUTE_2),
    "campaign_type and type": ({"campaign_type": "DISCOUNT_COUPONS", "type": "customer.redemption.succeeded"},
                               lambda e: e.campaign_id == CAMPAIGN_A and e.type == "customer.redemption.succeeded"),
    "a type without events": ({"type": "customer.segment.left"}, lambda e: False),
    "unknown parameter ignored": ({"expand": "everything"}, lambda e: True),
}


@pytest.mark.parametrize("order", ["-created_at", "created_at"])
@pytest.mark.parametrize("name", list(FILTERS))
def test_filters_combine_with_and(client: TestClient, dataset: Dataset, name: str, order: str) -> None:
    params, keep = FILTERS[name]
    walked = walk_with_cursor(client, str(dataset.dave.id), params | {"order": order, "limit": 3})
    assert walked == expected_ids(dataset.dave_events, keep, newest_first=order == "-created_at")
    assert walked or name in ("start_date after all", "a type without events")


def test_source_id_resolves_within_the_tenant(client: TestClient, dataset: Dataset) -> None:
    acme = client.get(path("shared-src"), params={"limit": 100}, headers=ACME_HEADERS).json()
    globex = client.get(path("shared-src"), params={"limit": 100},
                        headers={"X-App-Id": "globex", "X-App-Token": "globex-token"}).json()
    assert [item["id"] for item in acme["data"]] == expected_ids(dataset.alice_events)
    assert [item["id"] for item in globex["data"]] == expected_ids(dataset.bob_events)


def test_deleted_customer_resolves_by_id_only(client: TestClient, dataset: Dataset) -> None:
    by_id = client.get(path(str(dataset.carol.id)), headers=ACME_HEADERS)
    assert [item["type"] for item in by_id.json()["data"]] == ["customer.deleted", "customer.created"]
    by_source = client.get(path("carol-src"), headers=ACME_HEADERS)
    assert by_source.status_code == 404
    assert by_source.json()["details"] == "no customer with id or source_id 'carol-src'"


def test_another_tenants_customer_is_not_found(client: TestClient, dataset: Dataset) -> None:
    response = client.get(path(str(dataset.bob.id)), headers=ACME_HEADERS)
    assert response.status_code == 404
    assert response.json()["key"] == "not_found"


def test_cursor_of_another_customer_is_not_found(client: TestClient, dataset: Dataset) -> None:
    response = client.get(path(str(dataset.dave.id)), headers=ACME_HEADERS,
                          params={"starting_after_id": str(dataset.alice_events[0].id)})
    assert response.status_code == 404
    assert response.json()["details"] == (
        f"starting_after_id: no event {dataset.alice_events[0].id} for this customer")


def test_redelivered_copies_are_stored_but_never_visible(client: TestClient, dataset: Dataset) -> None:
    rows = dataset.store.rows("SELECT count(), uniqExact(id) FROM customer_events WHERE customer_id = {c:UUID}",
                               {"c": dataset.dave.id})
    assert rows == [(80, 40)]  # the copies did land (unmerged parts): the read side must hide them
    dedup = dataset.store.rows("SELECT count() FROM customer_events_dedup WHERE customer_id = {c:UUID}",
                                {"c": dataset.dave.id})
    assert dedup == [(40,)]
    body = client.get(path(str(dataset.dave.id)), params={"limit": 100}, headers=ACME_HEADERS).json()
    assert [item["id"] for item in body["data"]] == expected_ids(dataset.dave_events)
    assert body["has_more"] is False


@pytest.mark.parametrize("one_query_rows", [0, 200])
@pytest.mark.parametrize("order", ["-created_at", "created_at"])
def test_near_and_far_pages_agree(client: TestClient, dataset: Dataset, monkeypatch, one_query_rows: int,
                                  order: str) -> None:
    # 0: every page skips on the key columns first; 200: dave's pages come from one query each
    monkeypatch.setattr(activity_reads, "ONE_QUERY_ROWS", one_query_rows)
    keep = FILTERS["campaign_id"][1]
    walked = walk_with_pages(client, str(dataset.dave.id), {"order": order, "limit": 3,
                                                            "campaign_id": str(CAMPAIGN_A)})
    assert walked == expected_ids(dataset.dave_events, keep, newest_first=order == "-created_at")
    assert len(walked) == 14


def test_a_source_id_shaped_like_a_uuid_resolves_and_an_empty_history_is_an_empty_page(store) -> None:
    acme = f.tenant("acme")
    erin = f.customer(acme, "erin", str(f.stable_id("not a customer id")))
    quiet = f.customer(acme, "quiet", "quiet-src")  # in the directory, no events yet
    events = [f.event(acme, erin.id, 10 * n, 400 + n) for n in range(2)]
    write(store, [acme, erin, quiet, *events])
    with TestClient(create_app(store, tokens=TOKENS)) as erin_client:
        by_source = erin_client.get(path(erin.source_id), headers=ACME_HEADERS)
        assert [item["id"] for item in by_source.json()["data"]] == expected_ids(events)
        empty = erin_client.get(path(str(quiet.id)), headers=ACME_HEADERS)
        assert empty.status_code == 200
        assert empty.json()["data"] == []
        cursor = erin_client.get(path(str(quiet.id)), headers=ACME_HEADERS,
                                 params={"starting_after_id": str(events[0].id)})
        assert cursor.status_code == 404
        assert cursor.json()["details"] == f"starting_after_id: no event {events[0].id} for this customer"


def test_reads_split_at_the_recent_months_walk_every_event_exactly_once(store) -> None:
    # Two years: busy has 6 events a month, quiet one a quarter (its reads go on past the split);
    # each has events exactly at a month's start, where a newest-first read splits. Busy's last 40
    # events are re-delivered, so unmerged copies lie on both sides of a split.
    acme = f.tenant("acme")
    busy, quiet = f.customer(acme, "busy", "busy-src"), f.customer(acme, "quiet", "quiet-src")

    def at(customer: CustomerRecord, number: int, month: int, day: int) -> CustomerEvent:
        moment = datetime(2024 + month // 12, month % 12 + 1, day, tzinfo=UTC)
        return msgspec.structs.replace(f.event(acme, customer.id, 0, number), created_at=moment)

    busy_events = [at(busy, 6 * month + k, month, 1 + 5 * k) for month in range(24) for k in range(6)]
    quiet_events = [at(quiet, 1000 + month, month, 1) for month in range(0, 24, 3)]
    write(store, [acme, busy, quiet, *busy_events, *quiet_events])
    write(store, busy_events[-40:], lsn=2)
    # 3.8 rows a customer a month: a first page of 10 (11 rows) reads from July 2025 first
    assert recent_months_start(store.history_shape(), ActivityQuery(), None, 11) == datetime(2025, 7, 1, tzinfo=UTC)
    with TestClient(create_app(store, tokens=TOKENS)) as split_client:
        for customer, events in ((busy, busy_events), (quiet, quiet_events)):
            for limit in (3, 10, 25):
                assert walk_with_cursor(split_client, str(customer.id), {"limit": limit}) == expected_ids(events)
                assert walk_with_pages(split_client, str(customer.id), {"limit": limit}) == expected_ids(events)
