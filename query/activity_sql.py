"""The activity page as parameterized SELECTs (pure: SQL text and parameters, no I/O).

Re-delivered copies of an event are rows with the same sort key, so ClickHouse can read the
customer's key range in order and stop after `window` rows; the store then keeps the first row
of each id and widens the window in the rare case copies left it short. Measured against
FINAL, `LIMIT 1 BY id`, DISTINCT and GROUP BY id in docs/store.md: those lose the early stop
and cost 2-4x on customers with long histories.

A newest-first read still opens every monthly part that holds some of the customer's events
(~0.25 ms each), so it first reads only the recent months that hold enough events for a typical
customer (`recent_months_start`), and the older months only when those fall short.
"""

from __future__ import annotations

import enum
import math
import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from mappers.events import Category
from query.schema import CUSTOMERS_TABLE, EVENTS_TABLE


class Order(enum.Enum):
    ASCENDING = "created_at"
    DESCENDING = "-created_at"


@dataclass(frozen=True, slots=True)
class ActivityQuery:
    limit: int = 10
    page: int = 1
    order: Order = Order.DESCENDING
    starting_after_id: uuid.UUID | None = None
    start_date: datetime | None = None
    end_date: datetime | None = None
    campaign_id: uuid.UUID | None = None
    campaign_type: str | None = None
    category: Category | None = None
    types: tuple[str, ...] = ()

    @property
    def offset(self) -> int:
        return (self.page - 1) * self.limit


def iso_utc(moment: datetime) -> str:
    """ISO 8601 in UTC with `Z`, microseconds kept so a client can filter on exactly it."""
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC).replace(tzinfo=None)
    return moment.isoformat(timespec="microseconds") + "Z"


PAGE_COLUMNS = "id, type, category, data, created_at, group_id"
KEY_COLUMNS = "id, created_at"

_CUSTOMER = "tenant_id = {tenant_id:UUID} AND customer_id = {customer_id:UUID}"


def _moment(name: str) -> str:
    """A point in time sent as microseconds since the epoch: no time zone can shift it, and the
    SQL has no quote, which makes clickhouse-connect tokenize the whole query before binding it
    (0.24 ms against 0.04 ms for a cursor page)."""
    return f"fromUnixTimestamp64Micro({{{name}:Int64}})"


# Same text for every optional filter, so the page query has few distinct shapes.
_FILTERS: tuple[tuple[str, str], ...] = (
    ("start_date", f"created_at >= {_moment('start_date')}"),
    ("end_date", f"created_at <= {_moment('end_date')}"),
    ("campaign_id", "campaign_id = {campaign_id:UUID}"),
    ("campaign_type", "campaign_type = {campaign_type:String}"),
    ("category", "category = {category:String}"),
    ("types", "type IN {types:Array(String)}"),
)


@dataclass(frozen=True, slots=True)
class Position:
    """An event's place in a customer's history: the order is (created_at, id)."""

    created_at: datetime
    id: uuid.UUID


@dataclass(frozen=True, slots=True)
class HistoryShape:
    """How many events the store holds, for how many customers, over which span of time."""

    events: int
    customers: int
    first: datetime
    last: datetime


# One cheap query: counts and the time span come from the parts' metadata, not from the rows.
HISTORY_SHAPE_SQL = (
    f"SELECT count(), (SELECT count() FROM {CUSTOMERS_TABLE}), min(created_at), max(created_at) "
    f"FROM {EVENTS_TABLE}"
)
AVERAGE_MONTH = timedelta(days=365.25 / 12)


def recent_months_start(shape: HistoryShape | None, query: ActivityQuery, before: Position | None,
                        wanted: int) -> datetime | None:
    """Where a newest-first read of `wanted` rows (before `before`) first looks from: the start
    of the month from which the average customer holds twice `wanted` events, so most reads
    open those months' parts only. None when the read should not split: oldest first, filtered
    (the matching events are sparser), no history, or when it would span half the history anyway."""
    if shape is None or shape.events == 0 or query.order is not Order.DESCENDING or filter_conditions(query)[0]:
        return None
    months = max((shape.last - shape.first) / AVERAGE_MONTH, 1.0)
    per_customer_month = shape.events / max(shape.customers, 1) / months
    needed = math.ceil(2 * wanted / per_customer_month)
    if needed > months / 2:
        return None
    top = min(shape.last, before.created_at) if before is not None else shape.last
    month = top.year * 12 + top.month - 1 - (needed - 1)
    return datetime(month // 12, month % 12 + 1, 1, tzinfo=UTC)


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


def _micros(moment: datetime) -> int:
    """Microseconds since the epoch; a naive time is taken as UTC (the column's zone)."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return (moment - _EPOCH) // _MICROSECOND


def filter_conditions(query: ActivityQuery) -> tuple[list[str], dict[str, Any]]:
    """The conditions and parameters of `query`'s optional filters (dates, campaign, category,
    types): one definition, so a filter means the same on the activity and analytics reads."""
    parameters: dict[str, Any] = {
        "start_date": query.start_date and _micros(query.start_date),
        "end_date": query.end_date and _micros(query.end_date),
        "campaign_id": query.campaign_id,
        "campaign_type": query.campaign_type,
        "category": query.category and query.category.value,
        "types": list(query.types) or None,
    }
    conditions = [condition for name, condition in _FILTERS if parameters[name] is not None]
    return conditions, {name: value for name, value in parameters.items() if value is not None}


def position_sql(
    tenant_id: uuid.UUID, customer_id: uuid.UUID, event_id: uuid.UUID
) -> tuple[str, dict[str, Any]]:
    sql = f"SELECT created_at FROM {EVENTS_TABLE} WHERE {_CUSTOMER} AND id = {{event_id:UUID}} LIMIT 1"
    return sql, {"tenant_id": tenant_id, "customer_id": customer_id, "event_id": event_id}


def positions_sql(events: Sequence[tuple[uuid.UUID, uuid.UUID, uuid.UUID]]) -> tuple[str, dict[str, Any]]:
    """`position_sql` of several (tenant, customer, event) at once: rows (tenant_id,
    customer_id, id, created_at) of those found (copies of one event included)."""
    sql = (
        f"SELECT tenant_id, customer_id, id, created_at FROM {EVENTS_TABLE} "
        "WHERE (tenant_id, customer_id) IN {customers:Array(Tuple(UUID, UUID))} AND id IN {ids:Array(UUID)}"
    )
    customers = sorted({(tenant_id, customer_id) for tenant_id, customer_id, _ in events})
    return sql, {"customers": customers, "ids": sorted({event_id for _, _, event_id in events})}


def window_sql(
    tenant_id: uuid.UUID, customer_id: uuid.UUID, query: ActivityQuery, after: Position | None,
    window: int, columns: str = PAGE_COLUMNS, since: datetime | None = None, until: datetime | None = None,
) -> tuple[str, dict[str, Any]]:
    """The first `window` rows (copies included) after `after` in the requested order, with
    every filter of `query` applied and created_at in [`since`, `until`) when given; ties on
    created_at are broken by id in the same direction."""
    conditions, parameters = _window_conditions(query, after, since, until)
    parameters |= {"tenant_id": tenant_id, "customer_id": customer_id, "window": window}
    direction = _direction(query)
    sql = (
        f"SELECT {columns} FROM {EVENTS_TABLE} WHERE {' AND '.join([_CUSTOMER, *conditions])} "
        f"ORDER BY created_at {direction}, id {direction} LIMIT {{window:UInt32}}"
    )
    return sql, parameters


@dataclass(frozen=True, slots=True)
class WindowRead:
    """One `window_sql` read, as `batch_window_sql` batches it (hashable: equal reads are run once)."""

    tenant_id: uuid.UUID
    customer_id: uuid.UUID
    query: ActivityQuery
    after: Position | None
    window: int
    columns: str = PAGE_COLUMNS
    since: datetime | None = None
    until: datetime | None = None

    def sql(self) -> tuple[str, dict[str, Any]]:
        return window_sql(self.tenant_id, self.customer_id, self.query, self.after, self.window, self.columns,
                          self.since, self.until)


_PARAMETER = re.compile(r"\{(\w+):")


def batch_window_sql(reads: Sequence[WindowRead]) -> tuple[str, dict[str, Any]]:
    """Reads of one shape (`columns` and order) of different customers as one query, whose rows
    are each preceded by the number of the read they answer (its place in `reads`); each read's
    rows come in its order, up to the largest `window` (each caller keeps its own).

    The customers are one `IN` set, which the primary key's analysis takes at once (a query per
    customer would pay the query's fixed cost and its part openings each time); each read's
    other conditions (filters, cursor, time bounds) apply to its own rows. A row belongs to the
    read of its customer: no two reads may be of the same customer."""
    keys = [(read.tenant_id, read.customer_id) for read in reads]
    parameters: dict[str, Any] = {"keys": keys, "window": max(read.window for read in reads)}
    conditions = ["(tenant_id, customer_id) IN {keys:Array(Tuple(UUID, UUID))}"]
    # The reads sharing conditions (a first page's, mostly) test them once: (conditions,
    # parameters, the reads' numbers) by the conditions and the parameters' values.
    shared: dict[tuple, tuple[list[str], dict[str, Any], list[int]]] = {}
    for number, read in enumerate(reads):
        where, values = _window_conditions(read.query, read.after, read.since, read.until)
        shared.setdefault((tuple(where), repr(sorted(values.items()))), (where, values, []))[2].append(number)
    if len(shared) == 1:
        ((where, values, _numbers),) = shared.values()
        conditions += where
        parameters |= values
    else:
        # Bounds every read keeps to, so that the months no read wants are not opened.
        if all(read.since is not None for read in reads):
            conditions.append(f"created_at >= {_moment('since')}")
            parameters["since"] = _micros(min(read.since for read in reads))  # type: ignore[type-var]
        if all(read.until is not None for read in reads):
            conditions.append(f"created_at < {_moment('until')}")
            parameters["until"] = _micros(max(read.until for read in reads))  # type: ignore[type-var]
        branches = []
        for group, (where, values, numbers) in enumerate(shared.values()):
            text = " AND ".join(where) or "1"
            text = _PARAMETER.sub(lambda match, group=group: f"{{g{group}_{match[1]}:", text)
            branches.append(f"read IN ({', '.join(map(str, numbers))}), {text}")
            parameters |= {f"g{group}_{name}": value for name, value in values.items()}
        conditions.append(f"multiIf({', '.join(branches)}, 0)")
    direction = _direction(reads[0].query)
    sql = (
        f"SELECT indexOf({{keys:Array(Tuple(UUID, UUID))}}, (tenant_id, customer_id)) - 1 AS read, "
        f"{reads[0].columns} FROM {EVENTS_TABLE} WHERE {' AND '.join(conditions)} "
        f"ORDER BY read, created_at {direction}, id {direction} LIMIT {{window:UInt32}} BY read"
    )
    return sql, parameters


def _direction(query: ActivityQuery) -> str:
    return "DESC" if query.order is Order.DESCENDING else "ASC"


def _window_conditions(
    query: ActivityQuery, after: Position | None, since: datetime | None, until: datetime | None,
) -> tuple[list[str], dict[str, Any]]:
    """A window read's conditions besides its customer, and their parameters."""
    conditions, parameters = filter_conditions(query)
    if since is not None:
        conditions.append(f"created_at >= {_moment('since')}")
        parameters["since"] = _micros(since)
    if until is not None:
        conditions.append(f"created_at < {_moment('until')}")
        parameters["until"] = _micros(until)
    if after is not None:
        beyond = "<" if query.order is Order.DESCENDING else ">"
        conditions.append(
            f"(created_at {beyond} {_moment('after_at')} OR "
            f"(created_at = {_moment('after_at')} AND id {beyond} {{after_id:UUID}}))"
        )
        parameters["after_at"] = _micros(after.created_at)
        parameters["after_id"] = after.id
    return conditions, parameters
