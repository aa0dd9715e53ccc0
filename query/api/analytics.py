"""Tenant analytics for the dashboard, without I/O: query-string items in, a validated
`AnalyticsQuery` out; aggregated store rows in, the JSON bodies of `/v1/analytics/...` out.

The filters are the activity API's own (same names, same parser, same 400s), so a client that
filters a customer's timeline filters the tenant's charts the same way. Days and hours are UTC.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from datetime import date, datetime, timedelta
from typing import Any

from query.activity_sql import ActivityQuery, iso_utc
from query.analytics_sql import FUNNEL_STAGES
from query.api.activity import parse_activity_query

# What every analytics endpoint accepts; `limit` only where a list is ranked.
FILTER_PARAMS = frozenset({"start_date", "end_date", "campaign_id", "campaign_type", "category", "type"})
RANKED_PARAMS = FILTER_PARAMS | {"limit"}

WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")


def parse_analytics_query(items: Iterable[tuple[str, str]], *, ranked: bool = False) -> ActivityQuery:
    """Validate with the activity parser; parameters an endpoint does not take are ignored,
    as unknown ones are everywhere in the API. Only the filters and `limit` (the length of a
    ranked list) of the result mean anything here."""
    accepted = RANKED_PARAMS if ranked else FILTER_PARAMS
    return parse_activity_query((name, value) for name, value in items if name in accepted)


def events_per_day_body(rows: Sequence[tuple[date, str, int]]) -> dict[str, Any]:
    """Rows (day, type, count) ordered by day; every day from the first to the last with events
    is listed, zeros included, so a chart's x axis is the list itself."""
    counts: dict[date, dict[str, int]] = {}
    for day, event_type, count in rows:
        counts.setdefault(day, {})[event_type] = count
    days = []
    if counts:
        first, last = min(counts), max(counts)
        for offset in range((last - first).days + 1):
            day = first + timedelta(days=offset)
            day_counts = counts.get(day, {})
            days.append({"date": day.isoformat(), "total": sum(day_counts.values()), "counts": day_counts})
    return {
        "object": "events_per_day",
        "time_zone": "UTC",
        "types": sorted({event_type for _, event_type, _ in rows}),
        "days": days,
    }


def heatmap_body(rows: Sequence[tuple[int, int, int]]) -> dict[str, Any]:
    """Rows (ISO weekday 1..7, hour 0..23, count) into a 7 x 24 matrix, Monday first."""
    cells = [[0] * 24 for _ in WEEKDAYS]
    for weekday, hour, count in rows:
        cells[weekday - 1][hour] = count
    return {
        "object": "heatmap",
        "time_zone": "UTC",
        "weekdays": list(WEEKDAYS),
        "cells": cells,
        "max": max(max(row) for row in cells),
        "total": sum(map(sum, cells)),
    }


def funnel_body(
    rows: Sequence[tuple[uuid.UUID, str, int, int, int, int, int]], names: dict[uuid.UUID, str]
) -> dict[str, Any]:
    """Rows (campaign_id, campaign_type, published, redeemed, rolled_back,
    redeemed_of_published, rolled_back_of_redeemed), distinct customers each, ranked already.
    A campaign whose codes were redeemed without any publication is read as `generic_codes`:
    its redemptions have no publication stage to convert from."""
    return {
        "object": "funnel",
        "counts": "customers",
        "stages": list(FUNNEL_STAGES),
        "data": [
            {
                "campaign_id": str(campaign_id),
                "campaign_name": names.get(campaign_id) or None,
                "campaign_type": campaign_type or None,
                "published": published,
                "redeemed": redeemed,
                "rolled_back": rolled_back,
                "redeemed_of_published": redeemed_of_published,
                "rolled_back_of_redeemed": rolled_back_of_redeemed,
                "generic_codes": published == 0 and redeemed > 0,
            }
            for (campaign_id, campaign_type, published, redeemed, rolled_back, redeemed_of_published,
                 rolled_back_of_redeemed) in rows
        ],
    }


def top_customers_body(
    rows: Sequence[tuple[uuid.UUID, int, datetime]],
    directory: dict[uuid.UUID, tuple[str | None, bool]],
) -> dict[str, Any]:
    """Rows (customer_id, events, last event time), ranked; `directory`: id -> (source_id,
    deleted) for the customers the store knows."""
    data = []
    for customer_id, events, last_event_at in rows:
        source_id, deleted = directory.get(customer_id, (None, False))
        data.append({
            "customer_id": str(customer_id),
            "source_id": source_id,
            "deleted": deleted,
            "events": events,
            "last_event_at": iso_utc(last_event_at),
        })
    return {"object": "top_customers", "data": data}


def ingest_lag_body(row: tuple[int, datetime | None, datetime | None, Sequence[float], float | None]) -> dict[str, Any]:
    """One row: WAL events, last created_at, last ingested_at, [p50, p99] and max of
    ingested_at - created_at in seconds. Snapshot events are left out by the query: their
    created_at is the row's own time, not a commit, so their "lag" says nothing."""
    events, last_event_at, last_ingested_at, quantiles, slowest = row
    return {
        "object": "ingest_lag",
        "events": events,
        "last_event_at": iso_utc(last_event_at) if events else None,
        "last_ingested_at": iso_utc(last_ingested_at) if events else None,
        "lag_seconds": {
            "p50": round(quantiles[0], 3),
            "p99": round(quantiles[1], 3),
            "max": round(slowest, 3),
        } if events else None,
    }
