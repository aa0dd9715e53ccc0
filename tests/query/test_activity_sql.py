"""Where a newest-first activity read looks first (pure: no store)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest

from mappers.events import Category
from query.activity_sql import ActivityQuery, HistoryShape, Order, Position, recent_months_start

# The warehouse benchmark's full scale: 100 events a customer over a year.
YEAR = HistoryShape(events=10_000_000, customers=100_000, first=datetime(2025, 1, 1, tzinfo=UTC),
                    last=datetime(2025, 12, 31, 23, 59, tzinfo=UTC))


def test_a_first_page_looks_at_the_months_that_hold_twice_its_rows_on_average() -> None:
    # 8.3 events a customer a month: 22 rows are in the last 3 months
    assert recent_months_start(YEAR, ActivityQuery(), None, 11) == datetime(2025, 10, 1, tzinfo=UTC)
    assert recent_months_start(YEAR, ActivityQuery(), None, 5) == datetime(2025, 11, 1, tzinfo=UTC)


def test_a_cursor_page_counts_the_months_back_from_its_cursor() -> None:
    cursor = Position(datetime(2025, 6, 15, 8, 30, tzinfo=UTC), uuid.UUID(int=1))
    assert recent_months_start(YEAR, ActivityQuery(), cursor, 11) == datetime(2025, 4, 1, tzinfo=UTC)
    january = Position(datetime(2025, 1, 20, tzinfo=UTC), uuid.UUID(int=1))
    assert recent_months_start(YEAR, ActivityQuery(), january, 11) == datetime(2024, 11, 1, tzinfo=UTC)


@pytest.mark.parametrize(("shape", "query", "wanted"), [
    (YEAR, ActivityQuery(order=Order.ASCENDING), 11),  # oldest first
    (YEAR, ActivityQuery(category=Category.ACTION), 11),  # filtered: the matching events are sparser
    (YEAR, ActivityQuery(types=("customer.created",)), 11),
    (YEAR, ActivityQuery(), 51),  # 102 rows are in 13 months: the whole history
    (HistoryShape(200_000, 5_000, YEAR.first, YEAR.last), ActivityQuery(), 11),  # 3.3 a month: 7 of 12 months
    (HistoryShape(5_000, 10, YEAR.first, datetime(2025, 1, 10, tzinfo=UTC)), ActivityQuery(), 11),  # 10 days
    (None, ActivityQuery(), 11),  # nothing stored
])
def test_reads_that_would_not_gain_are_not_split(shape: HistoryShape | None, query: ActivityQuery,
                                                 wanted: int) -> None:
    assert recent_months_start(shape, query, None, wanted) is None
