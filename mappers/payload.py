"""Event identity and payloads: deterministic ids, group ids, Voucherify-style data objects and
their serialization (SPEC §4). Pure functions: the same inputs give byte-identical output.
"""

from __future__ import annotations

import hashlib
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


# uuid5's version (5) and RFC 4122 variant bits, applied to the first 16 bytes of the SHA-1.
_UUID5_CLEAR = ~((0xC000 << 48) | (0xF000 << 64))
_UUID5_SET = (0x8000 << 48) | (5 << 76)
_SAFE_UNKNOWN = uuid.SafeUUID.unknown
_new_object = object.__new__
_set_slot = object.__setattr__


class TransactionIds:
    """`wal_event_id` for the events of one transaction: the SHA-1 of the namespace and the
    name's constant prefix is computed once, each id only hashes `<position>/<type>`."""

    __slots__ = ("_prefix",)

    def __init__(self, source_prefix: Any, commit_lsn: int) -> None:
        self._prefix = source_prefix.copy()
        self._prefix.update(b"%d/" % commit_lsn)

    def event_id(self, position: int, type_suffix: bytes) -> uuid.UUID:
        """The id of the event at `position`; `type_suffix` is `"/" + type` in UTF-8."""
        hasher = self._prefix.copy()
        hasher.update(b"%d" % position + type_suffix)
        # uuid.UUID(int=...) without its argument checks: the slots UUID.__setstate__ sets
        made = _new_object(uuid.UUID)
        _set_slot(made, "int", int.from_bytes(hasher.digest()[:16]) & _UUID5_CLEAR | _UUID5_SET)
        _set_slot(made, "is_safe", _SAFE_UNKNOWN)
        return made


def wal_id_prefix(source: SourceIdentity) -> Any:
    """The SHA-1 state after the namespace and `<system_id>/<database>/` (see TransactionIds)."""
    return hashlib.sha1(EVENT_NAMESPACE.bytes + f"{source.system_id}/{source.database}/".encode())


def snapshot_event_id(source: SourceIdentity, table: str, key: str, event_type: str) -> uuid.UUID:
    return uuid.uuid5(EVENT_NAMESPACE,
                      f"{source.system_id}/{source.database}/snapshot/{table}/{key}/{event_type}")


def transaction_group_id(commit_lsn: int) -> str:
    return f"tx_{commit_lsn:016X}"


def snapshot_group_id(slot: str) -> str:
    return f"snapshot_{slot}"


def event_source(source: str) -> dict[str, str]:
    return {"channel": "INTERNAL", "source": source}


ObjectBuilder = Callable[..., dict[str, Any]]  # (row or None, identifier=None) -> payload object


def object_builder(spec: ObjectSpec) -> ObjectBuilder:
    """`build_object` for one spec, its keys and columns unpacked once (a C-level zip per row
    instead of a comprehension)."""
    keys = tuple(key for key, _ in spec.fields)
    columns = tuple(column for _, column in spec.fields)
    name = spec.name

    def build(row: Row | None, identifier: Any = None) -> dict[str, Any]:
        if row is None:
            row = {"id": identifier}
        result = dict(zip(keys, map(row.get, columns)))
        result["object"] = name
        return result

    return build


def build_object(spec: ObjectSpec, row: Row | None, identifier: Any = None) -> dict[str, Any]:
    """The payload object `spec` of `row`; of an unknown row only its id is known."""
    return object_builder(spec)(row, identifier)


ObjectParts = tuple[Any, dict[str, Any]]  # (the value the payload carries, the object's fields)

# How many rows' objects a shared resolver keeps serialized (per object kind). Each entry pins
# its row and built object (~3.5 kB), so this stays small: hot rows (campaigns, the customers
# of the moment) are what repeat; 50,000 cost ~175 MB per kind on a 1M-row transaction.
SHARED_OBJECTS = 4_096


def shared_object_builder(spec: ObjectSpec, limit: int = SHARED_OBJECTS) -> Callable[..., ObjectParts]:
    """The object of a reference-state row, serialized once per row version. The state hands out
    the same row object until the row changes (a put stores a new one), so by identity a row's
    object is reused across events and goes into each payload as an `orjson.Fragment`: the
    bytes orjson would have written for it (same options, keys sorted)."""
    build = object_builder(spec)
    memo: dict[int, tuple[Row, ObjectParts]] = {}  # id(row) -> (row, parts); the row keeps its id

    def parts(row: Row | None, identifier: Any = None) -> ObjectParts:
        if row is None:
            built = build(None, identifier)
            return built, built
        entry = memo.get(id(row))
        if entry is not None and entry[0] is row:
            return entry[1]
        built = build(row)
        made = (orjson.Fragment(orjson.dumps(built, default=json_default, option=_JSON_OPTIONS)), built)
        if len(memo) >= limit:
            memo.clear()
        memo[id(row)] = (row, made)
        return made

    return parts


def object_resolver(spec: ObjectSpec, lookup: Lookup, shared: bool = False) -> Callable[[Any], ObjectParts | None]:
    """`resolve_object` for one spec and lookup, as (payload value, fields). `shared`: for
    targets that are reference-state rows or their ids (see `shared_object_builder`); objects
    of the changed row itself, or that the mapper adds fields to, are built each time."""
    if shared:
        parts = shared_object_builder(spec)
    else:
        build = object_builder(spec)

        def parts(row: Row | None, identifier: Any = None) -> ObjectParts:
            built = build(row, identifier)
            return built, built

    table = spec.table

    def resolve(target: Any) -> ObjectParts | None:
        if target is None:
            return None
        kind = type(target)  # the usual ids and rows are told apart without the ABC check
        if kind is dict or (kind is not uuid.UUID and isinstance(target, Mapping)):
            return parts(target)
        return parts(lookup(table, target), target)

    return resolve


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
