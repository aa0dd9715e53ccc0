"""Generated requests: random query strings never produce a server error, and schemathesis
finds no response that breaks /openapi.json (nor valid input rejected, nor invalid accepted)."""

from __future__ import annotations

from collections.abc import Iterator
from urllib.parse import quote, urlencode

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.testclient import TestClient

from query.api.activity import parse_activity_query
from query.api.app import create_app
from query.api.errors import InvalidParam
from query.api.openapi import build_document
from tests.query import factories as f
from tests.query.conftest import ACME_HEADERS, TOKENS, Dataset, write
from tests.query.served import served

NAMES = ["limit", "page", "order", "starting_after_id", "start_date", "end_date", "campaign_id",
         "campaign_type", "category", "type"]
VALUES = st.one_of(
    st.text(max_size=40),
    st.integers(min_value=-10**30, max_value=10**30).map(str),
    st.uuids().map(str),
    st.datetimes().map(lambda moment: moment.isoformat()),
    st.sampled_from(["created_at", "-created_at", "ACTION", "EFFECT", "", "Z", "1e3", "0x10", "NaN"]),
)
PAIRS = st.lists(st.tuples(st.one_of(st.sampled_from(NAMES), st.text(max_size=10)), VALUES), max_size=6)
RAW = st.text(max_size=60).map(lambda text: quote(text, safe="=&%+;,"))


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(pairs=PAIRS, raw=RAW, customer=st.sampled_from(["dave-src", "shared-src", "x", "%20", "..%2F"]))
def test_random_query_strings_never_fail_the_server(client: TestClient, pairs, raw: str, customer: str) -> None:
    query = urlencode(pairs) + ("&" + raw if raw else "")
    response = client.get(f"/v1/customers/{customer}/activity?{query}", headers=ACME_HEADERS)
    assert response.status_code in (200, 400, 404), response.text
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert body["object"] == "list" if response.status_code == 200 else set(body) >= {
        "code", "key", "message", "details", "request_id"}


# The served document is built by this function; loading it directly lets the cases be
# generated at collection time, while the server (which needs the store fixture) starts later.
schema = schemathesis.openapi.from_dict(build_document())


@schema.hook
def filter_query(_ctx, query: dict | None) -> bool:
    """Each date alone is what the document describes; a start after the end is a 400 that no
    schema of two separate parameters can express (tests/query/test_api_errors.py has it)."""
    bounds = [(query or {}).get(name) for name in ("start_date", "end_date")]
    if not all(isinstance(bound, str) for bound in bounds):
        return True
    try:
        start, end = (parse_activity_query([(name, bound)]) for name, bound in zip(("start_date", "end_date"), bounds))
    except InvalidParam:
        return True
    return start.start_date <= end.end_date


@pytest.fixture(scope="module")
def served_url(dataset: Dataset) -> Iterator[str]:
    """The app under uvicorn on a loopback port, as it runs in production."""
    # The document's example customer, so the explicit-example phase reaches a 200 page.
    example = f.customer(dataset.acme, "example", "cust_0001")
    write(dataset.store, [example, f.event(dataset.acme, example.id, 1, 900)], lsn=9)
    with served(create_app(dataset.store, tokens=TOKENS)) as url:
        yield url


def test_served_document_is_the_tested_one(client: TestClient) -> None:
    assert client.get("/openapi.json").json() == build_document()


@schema.parametrize()
@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
def test_api_matches_its_openapi_document(case, served_url: str) -> None:
    case.call_and_validate(base_url=served_url, headers=ACME_HEADERS)
