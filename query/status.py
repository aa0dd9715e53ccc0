"""What the store records about its readers (the phase a slot's reader is in, durably next to
the history it wrote) and reports about itself (`Store.status`)."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from query.activity_sql import iso_utc


class ReaderPhase(enum.Enum):
    """Where a reader's slot stands, as recorded in the store next to the history it wrote."""

    SNAPSHOT = "snapshot"  # the slot's initial snapshot is under way; nothing streamed yet
    STREAMING = "streaming"  # the snapshot (if any) is stored and streaming has begun


@dataclass(frozen=True, slots=True)
class ReaderProgress:
    phase: ReaderPhase
    lsn: int  # the LSN the phase began at


@dataclass(frozen=True, slots=True)
class TenantStatus:
    name: str
    events_stored: int
    last_event_at: datetime | None


@dataclass(frozen=True, slots=True)
class StoreStatus:
    events_stored: int
    last_event_at: datetime | None
    tenants: tuple[TenantStatus, ...]

    def to_dict(self) -> dict[str, Any]:
        def iso(moment: datetime | None) -> str | None:
            return None if moment is None else iso_utc(moment)

        return {
            "events_stored": self.events_stored,
            "last_event_at": iso(self.last_event_at),
            "tenants": [
                {"name": t.name, "events_stored": t.events_stored, "last_event_at": iso(t.last_event_at)}
                for t in self.tenants
            ],
        }
