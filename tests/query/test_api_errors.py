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
    ("campaign_type", "", "campaign_type: must not be empty"),
    ("campaign_type", "A" * 256, "campaign_type: longer than 255 characters"),
    ("campaign_type", "A\x00B", "campaign_type: contains control characters"),
    ("category", "action", "category: must be 'ACTION' or 'EFFECT'"),
    ("type", "customer.\x01", "type: contains control characters"),
    ("type", "x" * 256, "type: longer than 255 characters"),
]


@pytest.mark.parametrize(("param", "value", "details"), INVALID, ids=[f"{p}={v[:20]!r}" for p, v, _ in INVALID])
def test_malformed_parameter_is_400_naming_it(client: TestClient, dataset: Dataset, param: str, value: str,
                                              details: str) -> None:
    body = assert_error(activity(client, str(dataset.dave.id), ACME_HEADERS, {param: value}),
                        400, "invalid_param", details)
    assert body["param"] == param


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
