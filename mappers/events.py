"""What the mappers produce and the store records: customer events and the lookup rows
(tenants, customers) that the API needs to resolve names and source ids.
"""

from __future__ import annotations

import enum
import uuid
from collections.abc import Callable
from dataclasses import dataclass, fields
from datetime import datetime


class Category(enum.Enum):
    ACTION = "ACTION"
    EFFECT = "EFFECT"


class EventSource(enum.Enum):
    """`event_source.source` in the payload and the `source` column of the store."""

    WAL = "wal"
    SNAPSHOT = "snapshot"
    CUSTOMER_EVENT = "customer_event"


@dataclass(frozen=True, slots=True)
class CustomerEvent:
    """One row of the store's `customer_events` table (SPEC §5); `data` is serialized JSON text."""

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


def slot_constructor(cls: type) -> Callable[..., object]:
    """`cls(*values)` for a frozen slotted dataclass, made by filling the slots through their
    descriptors: the same object in ~55% of the time of the generated `__init__`, which goes
    through `object.__setattr__` for each field. The mapper makes one event per call."""
    names = [field.name for field in fields(cls)]
    namespace = {"_new": object.__new__, "_cls": cls,
                 **{f"_set_{name}": getattr(cls, name).__set__ for name in names}}
    lines = [f"def new_{cls.__name__}({', '.join(names)}):", "    made = _new(_cls)",
             *(f"    _set_{name}(made, {name})" for name in names), "    return made"]
    exec("\n".join(lines), namespace)  # noqa: S102 - source built from the field names above
    return namespace[f"new_{cls.__name__}"]


new_customer_event = slot_constructor(CustomerEvent)


@dataclass(frozen=True, slots=True)
class TenantRecord:
    """Tenant name by id, as of `version` (the source LSN, or 0 for the snapshot)."""

    id: uuid.UUID
    name: str
    version: int


@dataclass(frozen=True, slots=True)
class CustomerRecord:
    """Customer directory row: lets the API resolve a customer by id or source_id in a tenant.
    A deleted customer keeps its row with `deleted=True` (its history stays reachable by id)."""

    id: uuid.UUID
    tenant_id: uuid.UUID
    source_id: str | None
    deleted: bool
    version: int
