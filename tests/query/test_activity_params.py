"""Query-string parsing without I/O: defaults, every accepted form, and the ISO 8601 edges."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest

from mappers.events import Category
from query.activity_sql import ActivityQuery, Order, iso_utc
from query.api.activity import EARLIEST, LATEST, parse_activity_query
from query.api.errors import InvalidParam

ID = "12345678-1234-1234-1234-123456789ABC"


def test_defaults() -> None:
    assert parse_activity_query([]) == ActivityQuery(limit=10, page=1, order=Order.DESCENDING)
    assert ActivityQuery(limit=25, page=3).offset == 50


def test_every_parameter() -> None:
    query = parse_activity_query([
        ("limit", "100"), ("page", "1000"), ("order", "created_at"), ("starting_after_id", ID),
        ("start_date", "2024-01-01T00:00:00Z"), ("end_date", "2024-01-31"), ("campaign_id", ID.lower()),
        ("campaign_type", "GIFT_VOUCHERS"), ("category", "ACTION"),
        ("type", "customer.created,customer.updated"), ("type", "customer.updated"),
        ("type", " customer.loyalty.tier.joined ,"), ("other", "ignored"),
    ])
    assert query == ActivityQuery(
        limit=100, page=1000, order=Order.ASCENDING, starting_after_id=uuid.UUID(ID),
        start_date=datetime(2024, 1, 1, tzinfo=UTC), end_date=datetime(2024, 1, 31, 23, 59, 59, 999_999, tzinfo=UTC),
        campaign_id=uuid.UUID(ID), campaign_type="GIFT_VOUCHERS", category=Category.ACTION,
        types=("customer.created", "customer.updated", "customer.loyalty.tier.joined"),
    )


@pytest.mark.parametrize(("text", "moment"), [
    ("2024-05-01T12:00:00Z", datetime(2024, 5, 1, 12, tzinfo=UTC)),
    ("2024-05-01t12:00:00z", datetime(2024, 5, 1, 12, tzinfo=UTC)),
    ("2024-05-01 12:00:00+02:00", datetime(2024, 5, 1, 10, tzinfo=UTC)),
    ("2024-05-01T12:00:00.123456789-01:30", datetime(2024, 5, 1, 13, 30, 0, 123456, tzinfo=UTC)),
    ("2024-06-30T23:59:60Z", datetime(2024, 6, 30, 23, 59, 59, 999_999, tzinfo=UTC)),  # leap second
    ("2024-05-01T12:00", datetime(2024, 5, 1, 12, tzinfo=UTC)),  # ISO 8601 without seconds: UTC
    ("2024-05-01T12:00+05:00", datetime(2024, 5, 1, 7, tzinfo=UTC)),
    ("2024-05-01", datetime(2024, 5, 1, tzinfo=UTC)),
    ("0000-01-01T00:00:00Z", EARLIEST),
    ("0001-01-01T00:00:00+01:00", EARLIEST),
    ("0001-01-01T00:00+01:00", EARLIEST),
    ("1800-01-01T00:00:00Z", EARLIEST),
    ("9999-12-31T23:59:59-23:59", LATEST),
    ("9999-12-31T23:59-01:00", LATEST),
])
def test_start_date_forms(text: str, moment: datetime) -> None:
    assert parse_activity_query([("start_date", text)]).start_date == moment


@pytest.mark.parametrize("text", ["2024-13-01T00:00:00Z", "2024-02-30", "2024-05-01T24:00:00Z",
                                  "2024-05-01T12:00:00+24:00", "May 1st", "", "2024-05-01T12:00:00ZZ"])
def test_invalid_dates(text: str) -> None:
    with pytest.raises(InvalidParam) as raised:
        parse_activity_query([("end_date", text)])
    assert raised.value.param == "end_date"


def test_blank_types_are_no_filter() -> None:
    assert parse_activity_query([("type", ""), ("type", " , ,")]).types == ()


def test_iso_utc() -> None:
    assert iso_utc(datetime(2024, 5, 1, 12, 0, 0, 5)) == "2024-05-01T12:00:00.000005Z"
    assert iso_utc(datetime(2024, 5, 1, 14, tzinfo=datetime.fromisoformat("2024-01-01T00:00+02:00").tzinfo)) == (
        "2024-05-01T12:00:00.000000Z")
