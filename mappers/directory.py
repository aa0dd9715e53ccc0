"""The store's directory of tenants and customers (what the API resolves names and source ids
by), as records made from tenant and customer row changes."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from cdc_reader.changes import Op
from mappers.catalog import TENANT_TABLE
from mappers.events import CustomerRecord, TenantRecord
from mappers.payload import as_uuid

log = logging.getLogger(__name__)

_DELETE = Op.DELETE  # (reading an Enum member off its class costs ~80 ns in Python 3.11)
Row = Mapping[str, Any]


def directory_record(table: str, op: Op, new: Row, old: Row, version: int) -> list[TenantRecord | CustomerRecord]:
    row = new or old
    identifier = as_uuid(row.get("id"))
    if identifier is None:
        return []
    if table == TENANT_TABLE:
        if op is _DELETE or row.get("name") is None:
            return []
        return [TenantRecord(identifier, row["name"], version)]
    tenant_id = as_uuid(row.get("tenant_id"))
    if tenant_id is None:
        log.warning("customer %s deleted before it was known: no directory record", identifier)
        return []
    return [CustomerRecord(identifier, tenant_id, row.get("source_id"), op is _DELETE, version)]
