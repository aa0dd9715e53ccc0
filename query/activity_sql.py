"""The activity page as one parameterized SELECT (pure: SQL text and parameters, no I/O).

Re-delivered copies of an event are identical rows with the same sort key, so in key order they
are adjacent and `LIMIT 1 BY id` keeps exactly one of each; unlike FINAL it lets ClickHouse read
the customer's key range in order and stop after the page (docs/store.md has the numbers).
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from query.activity import ActivityQuery, Order
from query.schema import EVENTS_TABLE

_CUSTOMER = "tenant_id = {tenant_id:UUID} AND customer_id = {customer_id:UUID}"
# Same text for every optional filter, so the page query has few distinct shapes.
_FILTERS: tuple[tuple[str, str], ...] = (
    ("start_date", "created_at >= {start_date:DateTime64(6, 'UTC')}"),
    ("end_date", "created_at <= {end_date:DateTime64(6, 'UTC')}"),
    ("campaign_id", "campaign_id = {campaign_id:UUID}"),
    ("campaign_type", "campaign_type = {campaign_type:String}"),
    ("category", "category = {category:String}"),
    ("types", "type IN {types:Array(String)}"),
)


def _utc_text(moment: datetime) -> str:
    # Sent as text in UTC so no client or server time zone can shift the bound.
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC)
    return moment.strftime("%Y-%m-%d %H:%M:%S.%f")


def position_sql(
    tenant_id: uuid.UUID, customer_id: uuid.UUID, event_id: uuid.UUID
) -> tuple[str, dict[str, Any]]:
    sql = f"SELECT created_at FROM {EVENTS_TABLE} WHERE {_CUSTOMER} AND id = {{event_id:UUID}} LIMIT 1"
    return sql, {"tenant_id": tenant_id, "customer_id": customer_id, "event_id": event_id}


def page_sql(
    tenant_id: uuid.UUID, customer_id: uuid.UUID, query: ActivityQuery, after: datetime | None
) -> tuple[str, dict[str, Any]]:
    """Rows `offset .. offset + limit` (one extra) after the cursor `(after, starting_after_id)`
    in the requested order; ties on created_at are broken by id in the same direction."""
    parameters: dict[str, Any] = {
        "tenant_id": tenant_id,
        "customer_id": customer_id,
        "start_date": query.start_date and _utc_text(query.start_date),
        "end_date": query.end_date and _utc_text(query.end_date),
        "campaign_id": query.campaign_id,
        "campaign_type": query.campaign_type,
        "category": query.category and query.category.value,
        "types": list(query.types) or None,
    }
    conditions = [_CUSTOMER]
    conditions += [condition for name, condition in _FILTERS if parameters[name] is not None]
    parameters = {name: value for name, value in parameters.items() if value is not None}
    descending = query.order is Order.DESCENDING
    if after is not None and query.starting_after_id is not None:
        beyond = "<" if descending else ">"
        conditions.append(
            f"(created_at {beyond} {{after_at:DateTime64(6, 'UTC')}} OR "
            f"(created_at = {{after_at:DateTime64(6, 'UTC')}} AND id {beyond} {{after_id:UUID}}))"
        )
        parameters["after_at"] = _utc_text(after)
        parameters["after_id"] = query.starting_after_id
    direction = "DESC" if descending else "ASC"
    parameters["limit"] = query.limit + 1
    parameters["offset"] = query.offset
    sql = (
        "SELECT id, type, category, data, created_at, group_id "
        f"FROM {EVENTS_TABLE} WHERE {' AND '.join(conditions)} "
        f"ORDER BY created_at {direction}, id {direction} "
        "LIMIT 1 BY id "
        "LIMIT {limit:UInt32} OFFSET {offset:UInt64}"
    )
    return sql, parameters
