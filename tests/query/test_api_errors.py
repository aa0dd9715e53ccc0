"""Authentication, tenant isolation and the error shape: every 400, 401, 403 and 404."""

from __future__ import annotations

import re

import pytest
from starlette.testclient import TestClient

from query.api.app import create_app
from tests.query.conftest import ACME_HEADERS, Dataset

REQUEST_ID = re.compile(r"v-[0-9a-f]{32}")


def activity(client: TestClient, customer: str, headers: dict, params: dict | None = None):
    return client.get(f"/v1/customers/{customer}/activity", headers=headers, params=params)


def assert_error(response, status: int, key: str, details: str) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert REQUEST_ID.fullmatch(body["request_id"])
    assert response.headers["x-request-id"] == body["request_id"]
    assert {name: body[name] for name in ("code", "key", "details")} == {
        "code": status, "key": key, "details": details}
    assert isinstance(body["message"], str) and body["message"]
    return body


CAMPAIGN_TYPE_DOMAIN = ("campaign_type: must be one of PROMOTION, GIFT_VOUCHERS, REFERRAL_PROGRAM, "
                        "DISCOUNT_COUPONS, LOYALTY_PROGRAM, LUCKY_DRAW")
INVALID = [
    ("limit", "0", "limit: must be an integer from 1 to 100"),
    ("limit", "101", "limit: must be an integer from 1 to 100"),
    ("limit", "ten", "limit: must be an integer from 1 to 100"),
    ("limit", "-1", "limit: must be an integer from 1 to 100"),
    ("limit", "", "limit: must be an integer from 1 to 100"),
    ("limit", "1.5", "limit: must be an integer from 1 to 100"),
    ("limit", "٣", "limit: must be an integer from 1 to 100"),
    ("page", "0", "page: must be an integer from 1 to 1000"),
    ("page", "99999999999999999999999", "page: must be an integer from 1 to 1000"),
    ("order", "created", "order: must be 'created_at' or '-created_at'"),
    ("starting_after_id", "42", "starting_after_id: must be a UUID (8-4-4-4-12 hex digits)"),
    ("starting_after_id", "{12345678-1234-1234-1234-123456789abc}",
     "starting_after_id: must be a UUID (8-4-4-4-12 hex digits)"),
    ("start_date", "yesterday", "start_date: must be an ISO 8601 date or date-time, e.g. 2024-05-01T12:00:00Z"),
    ("end_date", "2024-02-30", "end_date: must be an ISO 8601 date or date-time, e.g. 2024-05-01T12:00:00Z"),
    ("end_date", "2024-01-01T10:00:00+24:00",
     "end_date: must be an ISO 8601 date or date-time, e.g. 2024-05-01T12:00:00Z"),
    ("campaign_id", "camp_1", "campaign_id: must be a UUID (8-4-4-4-12 hex digits)"),
    ("campaign_type", "WHATEVER", CAMPAIGN_TYPE_DOMAIN),
    ("campaign_type", "gift_vouchers", CAMPAIGN_TYPE_DOMAIN),
    ("campaign_type", "", CAMPAIGN_TYPE_DOMAIN),
    ("category", "action", "category: must be 'ACTION' or 'EFFECT'"),
    ("type", "customer.\x01", "type: contains control characters"),
    ("type", "x" * 256, "type: longer than 255 characters"),
    ("type", "customer.nope", "type: 'customer.nope' is not an event type (the list: /openapi.json)"),
    ("type", "customer.order.paid,Customer.Created",
     "type: 'Customer.Created' is not an event type (the list: /openapi.json)"),
]


@pytest.mark.parametrize(("param", "value", "details"), INVALID, ids=[f"{p}={v[:20]!r}" for p, v, _ in INVALID])
def test_malformed_parameter_is_400_naming_it(client: TestClient, dataset: Dataset, param: str, value: str,
                                              details: str) -> None:
    body = assert_error(activity(client, str(dataset.dave.id), ACME_HEADERS, {param: value}),
                        400, "invalid_param", details)
    assert body["param"] == param


@pytest.mark.parametrize(("start", "end", "details"), [
    ("2024-03-02", "2024-03-01", "start_date: 2024-03-02T00:00:00.000000Z is after end_date 2024-03-01T23:59:59.999999Z"),
    ("2024-03-01T12:00:00.000001Z", "2024-03-01T12:00:00Z",
     "start_date: 2024-03-01T12:00:00.000001Z is after end_date 2024-03-01T12:00:00.000000Z"),
])
def test_start_date_after_end_date_is_400(client: TestClient, dataset: Dataset, start: str, end: str,
                                          details: str) -> None:
    response = activity(client, str(dataset.dave.id), ACME_HEADERS, {"start_date": start, "end_date": end})
    assert assert_error(response, 400, "invalid_param", details)["param"] == "start_date"


def test_values_inside_the_domains_and_unknown_parameters_pass(client: TestClient, dataset: Dataset) -> None:
    # A Voucherify type no rule makes, a campaign type no event has, a one-day range, and
    # parameters this API does not know: 200, with what matches (nothing, or everything).
    for params, count in (({"type": "customer.loyalty.tier.upgraded"}, 0), ({"campaign_type": "LUCKY_DRAW"}, 0),
                          ({"start_date": "2024-03-01", "end_date": "2024-03-01", "limit": 100}, 40),
                          ({"expand": "everything", "type[]": "nope", "limit": 100}, 40)):
        response = activity(client, str(dataset.dave.id), ACME_HEADERS, params)
        assert response.status_code == 200, response.text
        assert len(response.json()["data"]) == count


def test_repeated_single_parameter_is_400(client: TestClient, dataset: Dataset) -> None:
    response = client.get(f"/v1/customers/{dataset.dave.id}/activity?limit=1&limit=2", headers=ACME_HEADERS)
    assert_error(response, 400, "invalid_param", "limit: given more than once")


def test_too_many_type_values_is_400(client: TestClient, dataset: Dataset) -> None:
    query = "&".join(f"type=t{n}" for n in range(101))
    response = client.get(f"/v1/customers/{dataset.dave.id}/activity?{query}", headers=ACME_HEADERS)
    assert_error(response, 400, "invalid_param", "type: at most 100 values")


def test_control_character_in_customer_id_is_400(client: TestClient) -> None:
    assert_error(activity(client, "a%01b", ACME_HEADERS), 400, "invalid_param",
                 "customerId: contains control characters")


UNAUTHORIZED = [
    ({}, "send X-App-Id and X-App-Token, or Authorization: Bearer <token>"),
    ({"X-App-Id": "acme"}, "send X-App-Id and X-App-Token, or Authorization: Bearer <token>"),
    ({"X-App-Id": "acme", "X-App-Token": "wrong"}, "the token is not valid"),
    ({"X-App-Token": "acme-token"}, "X-App-Token needs X-App-Id"),
    ({"Authorization": "Bearer wrong"}, "the token is not valid"),
    ({"Authorization": "Basic YWNtZTp4"}, "Authorization must be 'Bearer <token>'"),
    ({"Authorization": "Bearer "}, "Authorization must be 'Bearer <token>'"),
    ({"Authorization": "Bearer admin-token"}, "an admin token needs the tenant (or X-App-Id) header"),
]


@pytest.mark.parametrize(("headers", "details"), UNAUTHORIZED)
def test_missing_or_wrong_credentials_are_401(client: TestClient, dataset: Dataset, headers: dict,
                                              details: str) -> None:
    assert_error(activity(client, str(dataset.dave.id), headers), 401, "unauthorized", details)


FORBIDDEN = [
    ({"X-App-Id": "globex", "X-App-Token": "acme-token"}, "this token does not grant access to tenant 'globex'"),
    ({"Authorization": "Bearer acme-token", "tenant": "globex"},
     "this token does not grant access to tenant 'globex'"),
    ({"X-App-Id": "acme", "X-App-Token": "admin-token", "tenant": "globex"},
     "X-App-Id and tenant name different tenants"),
]


@pytest.mark.parametrize(("headers", "details"), FORBIDDEN)
def test_token_of_another_tenant_is_403(client: TestClient, dataset: Dataset, headers: dict, details: str) -> None:
    assert_error(activity(client, str(dataset.bob.id), headers), 403, "forbidden", details)


@pytest.mark.parametrize("headers", [
    {"Authorization": "Bearer globex-token"},
    {"Authorization": "bearer globex-token", "tenant": "globex"},
    {"Authorization": "Bearer admin-token", "tenant": "globex"},
    {"X-App-Id": "globex", "X-App-Token": "admin-token"},
    {"X-App-Id": "globex", "X-App-Token": "globex-token"},
])
def test_accepted_credentials(client: TestClient, dataset: Dataset, headers: dict) -> None:
    response = activity(client, str(dataset.bob.id), headers)
    assert response.status_code == 200
    assert [item["id"] for item in response.json()["data"]] == [str(e.id) for e in dataset.bob_events[::-1]]


def test_unknown_tenant_and_customer_are_404(client: TestClient, dataset: Dataset) -> None:
    assert_error(activity(client, str(dataset.dave.id), {"Authorization": "Bearer admin-token", "tenant": "nope"}),
                 404, "not_found", "no tenant named 'nope'")
    assert_error(activity(client, "nobody", ACME_HEADERS), 404, "not_found",
                 "no customer with id or source_id 'nobody'")
    assert_error(activity(client, "00000000-0000-0000-0000-000000000000", ACME_HEADERS), 404, "not_found",
                 "no customer with id or source_id '00000000-0000-0000-0000-000000000000'")


def test_credentials_are_checked_before_parameters(client: TestClient, dataset: Dataset) -> None:
    assert activity(client, str(dataset.dave.id), {}, {"limit": "0"}).status_code == 401


def test_without_tokens_the_tenant_comes_from_headers(dataset: Dataset) -> None:
    with TestClient(create_app(dataset.store, tokens={})) as open_client:
        for headers in ({"X-App-Id": "globex"}, {"tenant": "globex"}):
            response = activity(open_client, "shared-src", headers)
            assert [item["id"] for item in response.json()["data"]] == [str(e.id) for e in dataset.bob_events[::-1]]
        assert_error(activity(open_client, "shared-src", {}), 401, "unauthorized",
                     "name the tenant with the X-App-Id or tenant header")
        status = open_client.get("/v1/status")
        assert status.status_code == 200


def test_unknown_route_and_method_are_json(client: TestClient) -> None:
    assert_error(client.get("/v1/nothing"), 404, "not_found", "no endpoint at /v1/nothing")
    response = client.post("/healthz")
    assert_error(response, 405, "method_not_allowed", "POST is not supported here")
    assert set(response.headers["allow"].split(", ")) == {"GET", "HEAD"}
