"""GET /v1/analytics/... on real chDB: exact aggregates of a seeded history (re-delivered copies
included and never counted twice), the activity filters, tenant isolation, and every 400."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from datetime import date, datetime, timedelta
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from query.api.app import create_app
from query.store import Store
from tests.conftest import unique_name
from tests.query.analytics_dataset import (
    GIFT,
    LOYALTY,
    SPRING,
    Seeded,
    funnel_customers,
    per_day_by_type,
    seed,
)
from tests.query.conftest import TOKENS
from tests.query.test_api_errors import assert_error

ACME = {"Authorization": "Bearer acme-token"}
GLOBEX = {"X-App-Id": "globex", "X-App-Token": "globex-token"}
ENDPOINTS = ["events-per-day", "heatmap", "funnel", "top-customers", "ingest-lag"]


@pytest.fixture(scope="module")
def seeded(chdb_path: Path) -> Iterator[Seeded]:
    with Store.open(f"chdb://{chdb_path}?database={unique_name('analytics')}") as store:
        yield seed(store)


@pytest.fixture(scope="module")
def client(seeded: Seeded) -> Iterator[TestClient]:
    with TestClient(create_app(seeded.store, tokens=TOKENS)) as test_client:
        yield test_client


def get(client: TestClient, endpoint: str, headers: dict = ACME, **params) -> dict:
    response = client.get(f"/v1/analytics/{endpoint}", headers=headers, params=params)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/json"
    return response.json()


def expected_days(events) -> list[dict]:
    """Every day from the first event's to the last's, zeros included."""
    days = per_day_by_type(events)
    first, last = date.fromisoformat(min(days)), date.fromisoformat(max(days))
    every_day = [(first + timedelta(days=n)).isoformat() for n in range((last - first).days + 1)]
    return [{"date": day, "total": sum(days.get(day, {}).values()), "counts": dict(sorted(days.get(day, {}).items()))}
            for day in every_day]


def test_events_per_day_counts_each_event_once(client: TestClient, seeded: Seeded) -> None:
    acme_events = seeded.of(seeded.acme)
    assert get(client, "events-per-day") == {
        "object": "events_per_day",
        "time_zone": "UTC",
        "types": sorted({event.type for event in acme_events}),
        "days": expected_days(acme_events),
    }
    # 30 of dave's events (ten of them stored twice) over three days, erin's on Monday,
    # Wednesday and Friday, erin's and frank's three on Tuesday and on Wednesday evening.
    assert [day["total"] for day in get(client, "events-per-day")["days"]] == [11, 13, 14, 0, 1]


def test_days_without_events_are_listed_with_zeros(client: TestClient) -> None:
    body = get(client, "events-per-day", headers=GLOBEX, type="customer.order.paid,customer.created")
    assert body["days"] == [{"date": "2024-03-05", "total": 2, "counts": {"customer.order.paid": 2}}]
    body = get(client, "events-per-day", start_date="2024-03-05", type="customer.segment.left")
    assert body["days"] == [
        {"date": "2024-03-06", "total": 1, "counts": {"customer.segment.left": 1}},
        {"date": "2024-03-07", "total": 0, "counts": {}},
        {"date": "2024-03-08", "total": 1, "counts": {"customer.segment.left": 1}},
    ]


def test_heatmap_is_weekday_by_hour_in_utc(client: TestClient, seeded: Seeded) -> None:
    expected = [[0] * 24 for _ in range(7)]
    for event in seeded.of(seeded.acme):
        expected[event.created_at.weekday()][event.created_at.hour] += 1
    body = get(client, "heatmap")
    assert body == {"object": "heatmap", "time_zone": "UTC",
                    "weekdays": ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"],
                    "cells": expected, "max": 2, "total": 39}
    # Monday 2024-03-04: dave's ten events two an hour from 09:00, erin's one at 18:00.
    assert body["cells"][0] == [0] * 9 + [2] * 5 + [0] * 4 + [1] + [0] * 5


def test_funnel_counts_distinct_customers(client: TestClient, seeded: Seeded) -> None:
    stages = funnel_customers(seeded.of(seeded.acme))
    dave, erin, frank = seeded.dave.id, seeded.erin.id, seeded.frank.id
    # Dave: five Spring Sale publications, five redemptions, four rollbacks; one customer each.
    assert stages == {SPRING[0]: ({dave, erin}, {dave, frank}, {dave}), LOYALTY[0]: ({dave}, {dave}, set()),
                      GIFT[0]: (set(), {frank, erin}, {frank})}
    assert get(client, "funnel") == {
        "object": "funnel",
        "counts": "customers",
        "stages": ["customer.publication.succeeded", "customer.redemption.succeeded",
                   "customer.redemption.rollback.succeeded"],
        "data": [
            # Frank redeemed a Spring Sale code published to nobody: 2 redeemers, 1 of them published to.
            {"campaign_id": str(SPRING[0]), "campaign_name": "Spring Sale", "campaign_type": "DISCOUNT_COUPONS",
             "published": 2, "redeemed": 2, "rolled_back": 1, "redeemed_of_published": 1,
             "rolled_back_of_redeemed": 1, "generic_codes": False},
            {"campaign_id": str(LOYALTY[0]), "campaign_name": "Loyalty Club", "campaign_type": "LOYALTY_PROGRAM",
             "published": 1, "redeemed": 1, "rolled_back": 0, "redeemed_of_published": 1,
             "rolled_back_of_redeemed": 0, "generic_codes": False},
            # Four redemption events by two customers, never published: generic codes.
            {"campaign_id": str(GIFT[0]), "campaign_name": "Gift Cards", "campaign_type": "GIFT_VOUCHERS",
             "published": 0, "redeemed": 2, "rolled_back": 1, "redeemed_of_published": 0,
             "rolled_back_of_redeemed": 1, "generic_codes": True},
        ],
    }
    assert [row["campaign_id"] for row in get(client, "funnel", limit=1)["data"]] == [str(SPRING[0])]
    assert get(client, "funnel", headers=GLOBEX)["data"] == []
    # A range that holds the Spring Sale's redemption by frank but no publication reads as generic codes.
    tuesday_evening = get(client, "funnel", start_date="2024-03-05T20:15:00Z", end_date="2024-03-05")
    assert [(row["campaign_name"], row["published"], row["redeemed"], row["generic_codes"])
            for row in tuesday_evening["data"]] == [("Spring Sale", 0, 1, True), ("Gift Cards", 0, 1, True)]


def test_top_customers_with_their_source_ids(client: TestClient, seeded: Seeded) -> None:
    assert get(client, "top-customers") == {"object": "top_customers", "data": [
        {"customer_id": str(seeded.dave.id), "source_id": "dave-src", "deleted": False, "events": 30,
         "last_event_at": "2024-03-06T13:30:00.000000Z"},
        {"customer_id": str(seeded.erin.id), "source_id": "erin-src", "deleted": False, "events": 5,
         "last_event_at": "2024-03-08T18:00:00.000000Z"},
        {"customer_id": str(seeded.frank.id), "source_id": "frank-src", "deleted": False, "events": 4,
         "last_event_at": "2024-03-06T21:00:00.000000Z"},
    ]}
    assert [row["source_id"] for row in get(client, "top-customers", limit=1)["data"]] == ["dave-src"]


def _interpolated(values: list[float], level: float) -> float:
    ordered = sorted(values)
    position = level * (len(ordered) - 1)
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def test_ingest_lag_is_store_time_minus_commit_time(client: TestClient, seeded: Seeded) -> None:
    stored = seeded.store.rows(
        "SELECT created_at, ingested_at FROM customer_events_dedup WHERE tenant_id = {tenant:UUID}",
        {"tenant": seeded.acme.id})
    lags = [(ingested - created).total_seconds() for created, ingested in stored]
    assert len(lags) == 39
    assert get(client, "ingest-lag") == {
        "object": "ingest_lag",
        "events": 39,
        "last_event_at": "2024-03-08T18:00:00.000000Z",
        "last_ingested_at": max(ingested for _, ingested in stored).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        "lag_seconds": {"p50": round(_interpolated(lags, 0.5), 3), "p99": round(_interpolated(lags, 0.99), 3),
                        "max": round(max(lags), 3)},
    }


FILTERED = {
    "category": ({"category": "ACTION"}, lambda e: e.category == "ACTION"),
    "campaign_id": ({"campaign_id": str(LOYALTY[0])}, lambda e: e.campaign_id == LOYALTY[0]),
    "campaign_type": ({"campaign_type": "DISCOUNT_COUPONS"}, lambda e: e.campaign_id == SPRING[0]),
    "types": ({"type": ["customer.order.paid", "customer.segment.entered"]},
              lambda e: e.type in ("customer.order.paid", "customer.segment.entered")),
    "dates": ({"start_date": "2024-03-05T09:30:00Z", "end_date": "2024-03-05"},
              lambda e: datetime.fromisoformat("2024-03-05T09:30:00+00:00") <= e.created_at
              and e.created_at.date().isoformat() == "2024-03-05"),
}


@pytest.mark.parametrize("name", FILTERED)
def test_activity_filters_apply(client: TestClient, seeded: Seeded, name: str) -> None:
    params, keep = FILTERED[name]
    kept = [event for event in seeded.of(seeded.acme) if keep(event)]
    assert kept
    assert get(client, "events-per-day", **params)["days"] == expected_days(kept)
    assert get(client, "heatmap", **params)["total"] == len(kept)
    by_customer = Counter(str(event.customer_id) for event in kept)
    top = get(client, "top-customers", **params)["data"]
    assert {row["customer_id"]: row["events"] for row in top} == dict(by_customer)


def test_empty_range_has_empty_shapes(client: TestClient) -> None:
    params = {"start_date": "2030-01-01"}
    assert get(client, "events-per-day", **params)["days"] == []
    heatmap = get(client, "heatmap", **params)
    assert (heatmap["cells"], heatmap["max"], heatmap["total"]) == ([[0] * 24] * 7, 0, 0)
    assert get(client, "funnel", **params)["data"] == []
    assert get(client, "top-customers", **params)["data"] == []
    assert get(client, "ingest-lag", **params) == {"object": "ingest_lag", "events": 0, "last_event_at": None,
                                                    "last_ingested_at": None, "lag_seconds": None}


@pytest.mark.parametrize("endpoint", ENDPOINTS)
def test_each_tenant_sees_only_its_own_events(client: TestClient, endpoint: str) -> None:
    acme, globex = get(client, endpoint), get(client, endpoint, headers=GLOBEX)
    assert acme != globex
    admin_as_globex = get(client, endpoint, headers={"Authorization": "Bearer admin-token", "tenant": "globex"})
    assert admin_as_globex == globex


def test_globex_counts(client: TestClient) -> None:
    assert get(client, "heatmap", headers=GLOBEX)["total"] == 2
    assert [row["source_id"] for row in get(client, "top-customers", headers=GLOBEX)["data"]] == ["gina-src"]


@pytest.mark.parametrize("endpoint", ENDPOINTS)
def test_credentials_are_checked(client: TestClient, endpoint: str) -> None:
    path = f"/v1/analytics/{endpoint}"
    assert_error(client.get(path), 401, "unauthorized",
                 "send X-App-Id and X-App-Token, or Authorization: Bearer <token>")
    assert_error(client.get(path, headers={"Authorization": "Bearer nope"}), 401, "unauthorized",
                 "the token is not valid")
    assert_error(client.get(path, headers={"X-App-Id": "globex", "X-App-Token": "acme-token"}), 403,
                 "forbidden", "this token does not grant access to tenant 'globex'")
    assert_error(client.get(path, headers={"Authorization": "Bearer admin-token", "tenant": "initech"}), 404,
                 "not_found", "no tenant named 'initech'")
    # Credentials come first: a bad parameter from an unknown caller is still a 401.
    assert client.get(path, params={"category": "nope"}).status_code == 401


INVALID = [
    ("start_date", "yesterday", "start_date: must be an ISO 8601 date or date-time, e.g. 2024-05-01T12:00:00Z"),
    ("end_date", "2024-02-30", "end_date: must be an ISO 8601 date or date-time, e.g. 2024-05-01T12:00:00Z"),
    ("campaign_id", "spring", "campaign_id: must be a UUID (8-4-4-4-12 hex digits)"),
    ("campaign_type", "WHATEVER", "campaign_type: must be one of PROMOTION, GIFT_VOUCHERS, REFERRAL_PROGRAM, "
                                  "DISCOUNT_COUPONS, LOYALTY_PROGRAM, LUCKY_DRAW"),
    ("category", "action", "category: must be 'ACTION' or 'EFFECT'"),
    ("type", "customer.\x01", "type: contains control characters"),
    ("type", "customer.nope", "type: 'customer.nope' is not an event type (the list: /openapi.json)"),
]


@pytest.mark.parametrize("endpoint", ENDPOINTS)
@pytest.mark.parametrize(("param", "value", "details"), INVALID, ids=[p for p, _, _ in INVALID])
def test_malformed_filter_is_400_naming_it(client: TestClient, endpoint: str, param: str, value: str,
                                           details: str) -> None:
    response = client.get(f"/v1/analytics/{endpoint}", headers=ACME, params={param: value})
    assert assert_error(response, 400, "invalid_param", details)["param"] == param


@pytest.mark.parametrize("endpoint", ["funnel", "top-customers"])
@pytest.mark.parametrize("value", ["0", "101", "ten"])
def test_ranked_lists_check_limit(client: TestClient, endpoint: str, value: str) -> None:
    response = client.get(f"/v1/analytics/{endpoint}", headers=ACME, params={"limit": value})
    assert assert_error(response, 400, "invalid_param", "limit: must be an integer from 1 to 100")["param"] == "limit"


def test_parameters_an_endpoint_does_not_take_are_ignored(client: TestClient) -> None:
    assert get(client, "heatmap", limit="0", order="sideways", page="-1")["total"] == 39
    response = client.get("/v1/analytics/heatmap", headers=ACME, params=[("category", "ACTION"), ("category", "EFFECT")])
    assert assert_error(response, 400, "invalid_param", "category: given more than once")["param"] == "category"


@pytest.mark.parametrize("endpoint", ENDPOINTS)
def test_start_date_after_end_date_is_400(client: TestClient, endpoint: str) -> None:
    response = client.get(f"/v1/analytics/{endpoint}", headers=ACME,
                          params={"start_date": "2024-03-06", "end_date": "2024-03-04"})
    details = "start_date: 2024-03-06T00:00:00.000000Z is after end_date 2024-03-04T23:59:59.999999Z"
    assert assert_error(response, 400, "invalid_param", details)["param"] == "start_date"
