"""/healthz, /readyz, /metrics, /v1/session, /v1/status, /favicon.ico, /openapi.json and /docs."""

from __future__ import annotations

from pathlib import Path

from starlette.testclient import TestClient

from query.api.app import create_app
from query.metrics import Metrics
from query.store import Store
from tests.conftest import unique_name
from tests.query import factories as f
from tests.query.conftest import ACME_HEADERS, TOKENS, Dataset, write


def test_healthz(client: TestClient) -> None:
    response = client.get("/healthz")
    assert (response.status_code, response.json()) == (200, {"status": "ok"})


def test_readyz_follows_store_and_reader(dataset: Dataset) -> None:
    reasons: list[str | None] = [None]
    with TestClient(create_app(dataset.store, tokens=TOKENS, readiness=lambda: reasons[-1])) as client:
        assert (client.get("/readyz").status_code, client.get("/readyz").json()) == (200, {"status": "ready"})
        reasons.append("initial snapshot in progress")
        response = client.get("/readyz")
        assert response.status_code == 503
        assert {k: response.json()[k] for k in ("code", "key", "details")} == {
            "code": 503, "key": "not_ready", "details": "initial snapshot in progress"}


def test_readyz_is_503_when_the_store_has_no_tables(chdb_path: Path) -> None:
    store = Store.open(f"chdb://{chdb_path}?database={unique_name('bare')}", create_schema=False)
    with store, TestClient(create_app(store, tokens=TOKENS)) as client:
        response = client.get("/readyz")
        assert response.status_code == 503
        assert response.json()["key"] == "not_ready"
        assert response.json()["details"].startswith("store: store query failed:")


def test_store_failure_during_a_request_is_503(chdb_path: Path) -> None:
    store = Store.open(f"chdb://{chdb_path}?database={unique_name('bare')}", create_schema=False)
    with store, TestClient(create_app(store, tokens=TOKENS)) as client:
        response = client.get("/v1/customers/x/activity", headers=ACME_HEADERS)
        assert response.status_code == 503
        assert response.json()["key"] == "store_unavailable"


def test_metrics_count_requests_per_route_template(dataset: Dataset) -> None:
    metrics = Metrics()
    with TestClient(create_app(dataset.store, tokens=TOKENS, metrics=metrics)) as client:
        client.get(f"/v1/customers/{dataset.dave.id}/activity", headers=ACME_HEADERS)
        client.get("/v1/customers/nobody/activity", headers=ACME_HEADERS)
        client.get("/nothing")
        metrics.set_reader_lag(123, 0.5)
        text = client.get("/metrics").text
    route = "/v1/customers/{customerId}/activity"
    assert f'va_http_requests_total{{method="GET",route="{route}",status="200"}} 1.0' in text
    assert f'va_http_requests_total{{method="GET",route="{route}",status="404"}} 1.0' in text
    assert 'va_http_requests_total{method="GET",route="unmatched",status="404"} 1.0' in text
    assert f'va_http_request_duration_seconds_count{{route="{route}"}} 2.0' in text
    assert "va_reader_lag_bytes 123.0" in text
    assert "va_reader_lag_seconds 0.5" in text


def test_status_needs_an_admin_token(dataset: Dataset) -> None:
    with TestClient(create_app(dataset.store, tokens=TOKENS, status=lambda: {"slot": "voucher_activity"})) as client:
        assert client.get("/v1/status", headers=ACME_HEADERS).status_code == 403
        assert client.get("/v1/status").status_code == 401
        response = client.get("/v1/status", headers={"Authorization": "Bearer admin-token"})
        assert response.json() == {"slot": "voucher_activity"}


def test_session_names_the_tenant_and_whether_the_token_is_an_admin_token(client: TestClient) -> None:
    sessions = {
        "a tenant token alone": ({"Authorization": "Bearer acme-token"}, "acme", False),
        "a tenant token with its tenant": (ACME_HEADERS, "acme", False),
        "an admin token for a tenant": ({"Authorization": "Bearer admin-token", "tenant": "globex"}, "globex", True),
    }
    for headers, tenant, admin in sessions.values():
        response = client.get("/v1/session", headers=headers)
        assert response.json() == {"object": "session", "tenant": tenant, "admin": admin}
    assert client.get("/v1/session").status_code == 401
    assert client.get("/v1/session", headers={"Authorization": "Bearer nope"}).status_code == 401
    assert client.get("/v1/session", headers={"Authorization": "Bearer admin-token"}).json()["details"] == (
        "an admin token needs the tenant (or X-App-Id) header")
    assert client.get("/v1/session", headers={"X-App-Id": "globex", "X-App-Token": "acme-token"}).status_code == 403


def test_without_tokens_every_session_may_read_the_status(dataset: Dataset) -> None:
    with TestClient(create_app(dataset.store, tokens={})) as client:
        response = client.get("/v1/session", headers={"X-App-Id": "acme"})
        assert response.json() == {"object": "session", "tenant": "acme", "admin": True}


def test_favicon_is_served(client: TestClient) -> None:
    response = client.get("/favicon.ico")
    assert response.status_code == 200
    assert response.headers["content-type"] == "image/svg+xml"
    assert response.text.startswith("<svg xmlns=\"http://www.w3.org/2000/svg\"")


def test_status_defaults_to_the_store_status(client: TestClient, dataset: Dataset) -> None:
    body = client.get("/v1/status", headers={"Authorization": "Bearer admin-token"}).json()
    assert body == {"store": dataset.store.status().to_dict()}
    assert [tenant["name"] for tenant in body["store"]["tenants"]] == ["acme", "globex"]


def test_openapi_describes_every_route_and_parameter(client: TestClient) -> None:
    document = client.get("/openapi.json").json()
    assert document["openapi"] == "3.1.0"
    assert sorted(document["paths"]) == sorted(
        ["/v1/customers/{customerId}/activity", "/v1/status", "/healthz", "/readyz", "/metrics",
         "/openapi.json", "/docs", "/v1/analytics/events-per-day", "/v1/analytics/heatmap",
         "/v1/analytics/funnel", "/v1/analytics/top-customers", "/v1/analytics/ingest-lag", "/v1/session"])
    parameters = {p["name"]: p for p in document["paths"]["/v1/customers/{customerId}/activity"]["get"]["parameters"]}
    assert list(parameters) == ["customerId", "limit", "page", "order", "starting_after_id", "start_date", "end_date",
                                "campaign_id", "campaign_type", "category", "type", "tenant"]
    # The domains (SPEC §6): the analytics endpoints take the same parameter objects.
    assert parameters["campaign_type"]["schema"]["enum"] == [
        "PROMOTION", "GIFT_VOUCHERS", "REFERRAL_PROGRAM", "DISCOUNT_COUPONS", "LOYALTY_PROGRAM", "LUCKY_DRAW"]
    types = parameters["type"]["schema"]["items"]["enum"]
    assert {"customer.redemption.succeeded", "customer.loyalty.tier.upgraded", "customer.holder.assignment.created",
            "customer.voucher.loyalty_card.points_expired"} <= set(types)
    assert len(types) == 77 and types[:-1] == sorted(types[:-1]) and types[-1] == ""
    funnel = document["paths"]["/v1/analytics/funnel"]["get"]["parameters"]
    assert [p for p in funnel if p["name"] in ("type", "campaign_type")] == [
        parameters["campaign_type"], parameters["type"]]


def test_docs_page_is_self_contained(client: TestClient) -> None:
    response = client.get("/docs")
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    html = response.text
    for fragment in ("/v1/customers/{customerId}/activity", "starting_after_id", "X-App-Token", "/readyz"):
        assert fragment in html
    assert "<script" not in html and "http://" not in html and "https://" not in html


def test_probe_only_app_has_no_activity_route(dataset: Dataset) -> None:
    with TestClient(create_app(dataset.store, tokens=TOKENS, activity=False)) as client:
        assert client.get(f"/v1/customers/{dataset.dave.id}/activity", headers=ACME_HEADERS).status_code == 404
        assert client.get("/healthz").status_code == 200


def test_source_id_with_a_slash_resolves(dataset: Dataset) -> None:
    slashed = f.customer(dataset.acme, "slashed", "crm/42")
    write(dataset.store, [slashed, f.event(dataset.acme, slashed.id, 0, 700)], lsn=7)
    with TestClient(create_app(dataset.store, tokens=TOKENS)) as client:
        response = client.get("/v1/customers/crm%2F42/activity", headers=ACME_HEADERS)
        assert [item["id"] for item in response.json()["data"]] == [str(f.stable_id("event", "acme", slashed.id, 700))]
