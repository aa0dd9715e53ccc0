"""Event identity and payloads: deterministic ids, group ids, Voucherify-style data objects and
their serialization (SPEC §4). Pure functions: the same inputs give byte-identical output.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson

from mappers.catalog import ObjectSpec
from mappers.sqltypes import json_default

# Fixed namespace of voucher-activity's event ids (uuid5); changing it changes every id.
EVENT_NAMESPACE = uuid.UUID("5f0c8a52-7a3e-4c43-9a8e-2b1d3c0e6f71")
_JSON_OPTIONS = orjson.OPT_SORT_KEYS | orjson.OPT_UTC_Z | orjson.OPT_NAIVE_UTC
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

Row = Mapping[str, Any]
Lookup = Callable[[str, Any], Row | None]


@dataclass(frozen=True, slots=True)
class SourceIdentity:
    """The source database: its system identifier (IDENTIFY_SYSTEM) and its name."""

    system_id: str
    database: str


def wal_event_id(source: SourceIdentity, commit_lsn: int, position: int, event_type: str) -> uuid.UUID:
    return uuid.uuid5(EVENT_NAMESPACE,
                      f"{source.system_id}/{source.database}/{commit_lsn}/{position}/{event_type}")


def snapshot_event_id(source: SourceIdentity, table: str, key: str, event_type: str) -> uuid.UUID:
    return uuid.uuid5(EVENT_NAMESPACE,
                      f"{source.system_id}/{source.database}/snapshot/{table}/{key}/{event_type}")


def transaction_group_id(commit_lsn: int) -> str:
    return f"tx_{commit_lsn:016X}"


def snapshot_group_id(slot: str) -> str:
    return f"snapshot_{slot}"


def event_source(source: str) -> dict[str, str]:
    return {"channel": "INTERNAL", "source": source}


def build_object(spec: ObjectSpec, row: Row | None, identifier: Any = None) -> dict[str, Any]:
    """The payload object `spec` of `row`; of an unknown row only its id is known."""
    if row is None:
        row = {"id": identifier}
    result = {key: row.get(column) for key, column in spec.fields}
    result["object"] = spec.name
    return result


def resolve_object(spec: ObjectSpec, target: Any, lookup: Lookup) -> dict[str, Any] | None:
    """The object for a resolved reference: a row as is, an id looked up, None for NULL."""
    if target is None:
        return None
    if isinstance(target, Mapping):
        return build_object(spec, target)
    return build_object(spec, lookup(spec.table, target), target)


def changed_columns(new: Row, old: Row, ignore: frozenset[str]) -> list[str]:
    """The sorted columns whose value differs between the rows (unknown old values are NULL)."""
    return sorted(column for column, value in new.items()
                  if column not in ignore and old.get(column) != value)


def serialize(data: Mapping[str, Any]) -> str:
    return orjson.dumps(data, default=json_default, option=_JSON_OPTIONS).decode()


def as_uuid(value: Any) -> uuid.UUID | None:
    """A UUID from a canonical uuid string (or any spelling PostgreSQL accepts); None if invalid."""
    if value is None or type(value) is uuid.UUID:
        return value
    try:
        return uuid.UUID(str(value))
    except ValueError:
        return None


def event_time(value: Any, *fallbacks: Any) -> datetime:
    """The first of the values that is a datetime, as aware UTC (snapshot events: the row's own
    time; the schema's naive timestamps hold UTC)."""
    for candidate in (value, *fallbacks):
        if isinstance(candidate, datetime):
            return candidate.replace(tzinfo=UTC) if candidate.tzinfo is None else candidate
    return EPOCH
