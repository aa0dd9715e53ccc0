"""What the mappers produce and the store records: customer events and the lookup rows
(tenants, customers) that the API needs to resolve names and source ids.
"""

from __future__ import annotations

import enum
import uuid
from datetime import datetime

import msgspec


class Category(enum.Enum):
    """An event's `category` (SPEC §4): ACTION, something the customer did (an order, a
    redemption); EFFECT, a change to the customer or what they hold (their record, a segment, a
    publication, a voucher's balance or points)."""

    ACTION = "ACTION"
    EFFECT = "EFFECT"


class EventSource(enum.Enum):
    """`event_source.source` in the payload and the `source` column of the store."""

    WAL = "wal"
    SNAPSHOT = "snapshot"
    CUSTOMER_EVENT = "customer_event"


class CustomerEvent(msgspec.Struct, frozen=True, gc=False):
    """One row of the store's `customer_events` table (SPEC §5); `data` is serialized JSON text.
    A msgspec Struct, not a dataclass: the mapper makes one per event, and a Struct is made in
    C (~0.06 us against ~0.8 us for the slots of a frozen dataclass). Equality, hashing, repr and
    pickling are a frozen dataclass's. Left out of the cyclic garbage collector (gc=False): its
    fields (ids, text, times) never refer back to it, so it cannot be part of a cycle, and the
    hundreds of thousands a snapshot holds in its batches neither trigger nor lengthen
    collections. The lookup records below likewise."""

    id: uuid.UUID
    tenant_id: uuid.UUID
    tenant: str
    customer_id: uuid.UUID
    created_at: datetime  # UTC, aware
    type: str
    category: str  # "ACTION" | "EFFECT" (customer_event rows may carry other values verbatim)
    campaign_id: uuid.UUID | None
    campaign_type: str  # the campaign row's `type`, "" when unknown
    group_id: str
    source: str  # EventSource value
    data: str
    source_table: str
    source_lsn: int


class TenantRecord(msgspec.Struct, frozen=True, gc=False):
    """Tenant name by id, as of `version` (the source LSN, or 0 for the snapshot). A msgspec
    Struct, as CustomerEvent is."""

    id: uuid.UUID
    name: str
    version: int


class CustomerRecord(msgspec.Struct, frozen=True, gc=False):
    """Customer directory row: lets the API resolve a customer by id or source_id in a tenant.
    A deleted customer keeps its row with `deleted=True` (its history stays reachable by id).
    A msgspec Struct, as CustomerEvent is: one is made per customer change."""

    id: uuid.UUID
    tenant_id: uuid.UUID
    source_id: str | None
    deleted: bool
    version: int
