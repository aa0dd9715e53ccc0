"""The voucher engine's row writes as plain SQL statements (no I/O here).

Each business operation becomes one `Transaction`: the statements one engine API call commits,
in the order Hibernate flushes them (inserts, then updates, then deletes), with the values the
engine writes (app-generated UUIDs, UTC wall-clock `timestamp without time zone`).
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from psycopg.types.json import Jsonb

from demo.traffic.model import Campaign, Customer

Statement = tuple[str, tuple[Any, ...]]


@dataclass(frozen=True, slots=True)
class Transaction:
    """The statements of one committed engine transaction."""

    operation: str
    statements: tuple[Statement, ...]


@dataclass(frozen=True, slots=True)
class Context:
    """What planning an operation draws on: the seeded randomness and the transaction's clock."""

    rng: random.Random
    now: datetime  # naive UTC, like the engine's Instant written to `timestamp without time zone`

    def new_id(self) -> UUID:
        # Derived from the seeded generator (not uuid4) so that a seed replays the same ids.
        return UUID(int=self.rng.getrandbits(128), version=4)


def utc_now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def _value(value: Any) -> Any:
    return Jsonb(value) if isinstance(value, (dict, list)) else value


def insert(table: str, row: Mapping[str, Any]) -> Statement:
    columns = ", ".join(row)
    placeholders = ", ".join(["%s"] * len(row))
    return f"INSERT INTO {table} ({columns}) VALUES ({placeholders})", tuple(_value(v) for v in row.values())


def update(table: str, row_id: UUID, changes: Mapping[str, Any]) -> Statement:
    assignments = ", ".join(f"{column} = %s" for column in changes)
    return (f"UPDATE {table} SET {assignments} WHERE id = %s",
            (*(_value(v) for v in changes.values()), row_id))


def delete(table: str, where: str, *params: Any) -> Statement:
    """DELETE by a condition; the WAL holds one delete per row, as for Hibernate's per-entity deletes."""
    return f"DELETE FROM {table} WHERE {where}", params


def customer_event(tenant_id: UUID, customer: Customer, event_type: str, category: str, ctx: Context,
                   data: Mapping[str, Any], campaign: Campaign | None = None) -> Statement:
    """CustomerEventService.logEvent: the request's data plus customer (and campaign) snapshots."""
    enriched = {**data, "customer": customer.snapshot()}
    if campaign is not None:
        enriched["campaign"] = campaign.snapshot()
    return event_row(tenant_id, customer.id, event_type, category, ctx, enriched, campaign)


def event_row(tenant_id: UUID, customer_id: UUID, event_type: str, category: str, ctx: Context,
              data: Mapping[str, Any], campaign: Campaign | None = None) -> Statement:
    """A customer_event row; upstream group_id is always NULL and event_source always 'API'.
    logSegmentEntered/Left write this directly, without a customer snapshot."""
    return insert("customer_event", {
        "id": ctx.new_id(), "created_at": ctx.now, "updated_at": ctx.now, "event_type": event_type,
        "customer_id": str(customer_id), "campaign_id": str(campaign.id) if campaign else None,
        "category": category, "data": dict(data), "group_id": None, "event_source": "API",
        "tenant_id": tenant_id,
    })


class Writes:
    """Collects one transaction's statements in Hibernate's flush order (orphan removals,
    inserts, updates, deletes), whatever order the service code produced them in."""

    __slots__ = ("orphans", "inserts", "updates", "deletes")

    def __init__(self) -> None:
        self.orphans: list[Statement] = []
        self.inserts: list[Statement] = []
        self.updates: list[Statement] = []
        self.deletes: list[Statement] = []

    def transaction(self, operation: str) -> Transaction:
        return Transaction(operation, (*self.orphans, *self.inserts, *self.updates, *self.deletes))
