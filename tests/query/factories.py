"""Events and lookup rows for store and API tests, and ClickHouse's order of UUIDs (needed to
predict how ties on created_at are broken)."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta

from mappers.events import CustomerEvent, CustomerRecord, TenantRecord

START = datetime(2024, 3, 1, 12, 0, tzinfo=UTC)
_LOW_64 = (1 << 64) - 1


def clickhouse_uuid_key(value: uuid.UUID) -> tuple[int, int]:
    """ClickHouse compares UUIDs by their second 8 bytes, then their first 8."""
    return value.int & _LOW_64, value.int >> 64


def history_key(event: CustomerEvent) -> tuple:
    return event.created_at, clickhouse_uuid_key(event.id)


def stable_id(*parts: object) -> uuid.UUID:
    return uuid.uuid5(uuid.NAMESPACE_URL, "/".join(str(part) for part in parts))


def tenant(name: str) -> TenantRecord:
    return TenantRecord(id=stable_id("tenant", name), name=name, version=1)


def customer(tenant_record: TenantRecord, name: str, source_id: str | None, *,
             deleted: bool = False, version: int = 1) -> CustomerRecord:
    return CustomerRecord(id=stable_id("customer", tenant_record.name, name),
                          tenant_id=tenant_record.id, source_id=source_id, deleted=deleted, version=version)


def event(
    tenant_record: TenantRecord, customer_id: uuid.UUID, seconds: float, number: int, *,
    type: str = "customer.updated", category: str = "EFFECT", campaign_id: uuid.UUID | None = None,
    campaign_type: str = "",
) -> CustomerEvent:
    event_id = stable_id("event", tenant_record.name, customer_id, number)
    return CustomerEvent(
        id=event_id, tenant_id=tenant_record.id, tenant=tenant_record.name, customer_id=customer_id,
        created_at=START + timedelta(seconds=seconds), type=type, category=category,
        campaign_id=campaign_id, campaign_type=campaign_type, group_id=f"tx_{number:016X}",
        source="wal",
        data=json.dumps({"customer": {"id": str(customer_id), "object": "customer"}, "number": number,
                         "event_source": {"channel": "INTERNAL", "source": "wal"}}),
        source_table="customer", source_lsn=1000 + number,
    )
