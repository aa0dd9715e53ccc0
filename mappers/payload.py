"""Event identity and payloads: deterministic ids, group ids, Voucherify-style data objects and
their serialization (SPEC §4). Pure functions: the same inputs give byte-identical output.
"""

from __future__ import annotations

import hashlib
import itertools
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson

from mappers.catalog import Catalog, ObjectSpec
from mappers.eventids import SnapshotEventIds
from mappers.source import Source, compile_source
from mappers.sqltypes import json_default
from mappers.state import normal_key

# Fixed namespace of voucher-activity's event ids (uuid5); changing it changes every id.
EVENT_NAMESPACE = uuid.UUID("5f0c8a52-7a3e-4c43-9a8e-2b1d3c0e6f71")
# How payloads are serialized (`serialize`; the mapper's generated code calls orjson with these
# in place)
JSON_OPTIONS = orjson.OPT_SORT_KEYS | orjson.OPT_UTC_Z | orjson.OPT_NAIVE_UTC
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# A naive UTC time made aware as `EPOCH + (moment - _NAIVE_EPOCH)`: two C operations, ~0.1 us,
# where `moment.replace(tzinfo=UTC)` parses its keyword arguments in ~1 us (one per snapshot event).
_NAIVE_EPOCH = datetime(1970, 1, 1)

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
UUID5_CLEAR = ~((0xC000 << 48) | (0xF000 << 64))
UUID5_SET = (0x8000 << 48) | (5 << 76)


def transaction_id_prefix(source_prefix: Any, commit_lsn: int) -> Any:
    """The SHA-1 state up to `<commit_lsn>/`, from `wal_id_prefix`'s: the mapper's generated
    code continues it with each event's `<position>/<type>` and makes the `wal_event_id` of
    it, hashing the name's constant part once per transaction (mappers/codegen.py)."""
    prefix = source_prefix.copy()
    prefix.update(b"%d/" % commit_lsn)
    return prefix


def wal_id_prefix(source: SourceIdentity) -> Any:
    """The SHA-1 state after the namespace and `<system_id>/<database>/`."""
    return hashlib.sha1(EVENT_NAMESPACE.bytes + f"{source.system_id}/{source.database}/".encode())


def snapshot_event_ids(source: SourceIdentity) -> Callable[[str, Any, str], uuid.UUID]:
    """(table, key, event_type) -> the snapshot event's id: uuid5(EVENT_NAMESPACE,
    `<system_id>/<database>/snapshot/<table>/<key>/<type>`), the key spelled as str(key) spells
    it (mappers/eventids.pyx)."""
    return SnapshotEventIds(EVENT_NAMESPACE, f"{source.system_id}/{source.database}/snapshot/").make


def transaction_group_id(commit_lsn: int) -> str:
    return f"tx_{commit_lsn:016X}"


def snapshot_group_id(slot: str) -> str:
    return f"snapshot_{slot}"


def event_source(source: str) -> dict[str, str]:
    return {"channel": "INTERNAL", "source": source}


ObjectBuilder = Callable[..., dict[str, Any]]  # (row or None, identifier=None) -> payload object


def object_code(spec: ObjectSpec, row: str) -> str:
    """The payload object `spec` of the row named `row`, as a Python expression: a dict display
    of its fields in the catalog's order, 'object' last. The mapper's generated code builds a
    changed row's object in place with it (mappers/codegen.py), `object_builder` every other."""
    fields = "".join(f"{key!r}: {row}.get({column!r}), " for key, column in spec.fields)
    return f"{{{fields}'object': {spec.name!r}}}"


def object_builder(spec: ObjectSpec) -> ObjectBuilder:
    """`build_object` for one spec: `object_code` compiled into a function."""
    out = Source()
    out.line("def build(row, identifier=None):")
    with out.indent():
        out.when("row is None", "row = {'id': identifier}")
        out.line(f"return {object_code(spec, 'row')}")
    return compile_source(out, {}, f"<payload object {spec.name}>")["build"]


def build_object(spec: ObjectSpec, row: Row | None, identifier: Any = None) -> dict[str, Any]:
    """The payload object `spec` of `row`; of an unknown row only its id is known."""
    return object_builder(spec)(row, identifier)


# What the memos of serialized objects hold together when not told (the pipeline gives them a
# share of --state-cache: voucher_activity/config.py, state_levels). Each object counts as its
# JSON bytes plus MEMO_ENTRY_OVERHEAD (its key, dict slots, Fragment and bytes headers, its cost;
# a customer with small metadata is ~340 bytes in all, measured with tracemalloc). Counted in
# bytes, not entries: customers' metadata can be large.
MEMO_BYTES = 32 * 2**20
MEMO_ENTRY_OVERHEAD = 160
# A full budget drops this share of the entries, the oldest first.
_DROP_SHARE = 8


class MemoBudget:
    """The bytes the memos of serialized objects (one per object kind) share. Entries are kept in
    the order they were made, whichever memo holds them; one that would pass the limit first drops
    the oldest eighth of them all (in chunks, so that the walk over the accounting dict's freed
    slots is not repeated per entry; a chunk of an eighth keeps the memos ~94% full on average,
    where halves kept them 75% full). The state drops a memo's entry when its row changes; such entries
    still count until they are the oldest and are dropped here too, so `held` only ever overstates
    what the memos hold, and keeping it costs nothing per entry beyond its own insertion."""

    __slots__ = ("limit", "held", "_memos", "_costs")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.held = 0
        self._memos: list[dict[Any, Any]] = []
        self._costs: dict[tuple[int, Any], int] = {}  # (memo number, key) -> cost, oldest first

    def add_memo(self, memo: dict[Any, Any]) -> int:
        """Count `memo`'s entries in this budget from now on; returns its number for `keep`."""
        self._memos.append(memo)
        return len(self._memos) - 1

    def keep(self, number: int, key: Any, made: Any, cost: int) -> None:
        """`made` into memo `number` under `key`, counted at `cost`; one bigger than the whole
        budget is not kept."""
        if cost > self.limit:
            return
        costs, entry = self._costs, (number, key)
        previous = costs.pop(entry, None)  # an entry the state dropped: counted anew
        if previous is not None:
            self.held -= previous
        if self.held + cost > self.limit:
            self._make_room(cost)
        self._memos[number][key] = made
        costs[entry] = cost
        self.held += cost

    def _make_room(self, cost: int) -> None:
        costs, memos = self._costs, self._memos
        while self.held + cost > self.limit and costs:
            for stale in list(itertools.islice(costs, max(len(costs) // _DROP_SHARE, 1))):
                self.held -= costs.pop(stale)
                memos[stale[0]].pop(stale[1], None)


ObjectResolver = Callable[[Any], Any]  # a reference's target -> the payload object, or None


def object_resolver(spec: ObjectSpec, lookup: Lookup, memo: dict[Any, Any] | None = None,
                    budget: MemoBudget | None = None) -> ObjectResolver:
    """The payload object of a resolved reference: of a row, or of the row of `spec.table` an id
    names (only its id is known of an unknown row). Objects are dicts built each time, except
    with a `memo` (`ReferenceState.row_memo(spec.table)`): then the object of an id is serialized
    once per version of its row and goes into each payload as an `orjson.Fragment`, the bytes
    orjson would have written for it in place (same options, keys sorted). The state drops a
    row's entry when the row changes, so a hit needs no lookup at all: an event of a customer
    whose row left the state's caches costs no decode. Objects the mapper adds fields to, or of
    the changed row itself, are resolved without a memo. The memo is the resolver's `memo`
    attribute: the generated code reads a UUID's entry in place and calls the resolver on a miss.
    `budget` bounds the memo together with the others it bounds (its own of MEMO_BYTES if none)."""
    build = object_builder(spec)
    table = spec.table
    if memo is None:
        def resolve(target: Any) -> Any:
            if target is None:
                return None
            kind = type(target)  # the usual ids and rows are told apart without the ABC check
            if kind is dict or (kind is not uuid.UUID and isinstance(target, Mapping)):
                return build(target)
            return build(lookup(table, target), target)

        resolve.spec = spec  # type: ignore[attr-defined]  # a row's object built in place: mappers/codegen.py
        return resolve

    memo_get = memo.get
    budget = MemoBudget(MEMO_BYTES) if budget is None else budget
    keep, number = budget.keep, budget.add_memo(memo)

    def resolve_shared(target: Any) -> Any:
        if target is None:
            return None
        kind = type(target)
        if kind is uuid.UUID:
            memo_key = target.int  # as the state keys it (ReferenceState.row_memo)
        elif kind is dict or isinstance(target, Mapping):
            return build(target)  # a whole row from the state: no key to keep it by
        else:
            target = normal_key(target)
            memo_key = target.int if type(target) is uuid.UUID else target
        made = memo_get(memo_key)
        if made is None:
            # copied: orjson's output keeps its whole write buffer (4 kB) allocated, 30x the
            # bytes of a customer object, for as long as it lives
            serialized = memoryview(orjson.dumps(
                build(lookup(table, target), target), default=json_default, option=JSON_OPTIONS)).tobytes()
            made = orjson.Fragment(serialized)
            keep(number, memo_key, made, len(serialized) + MEMO_ENTRY_OVERHEAD)
        return made

    resolve_shared.memo = memo  # type: ignore[attr-defined]  # read in place: mappers/codegen.py
    return resolve_shared


def changed_columns(new: Row, old: Row, ignore: frozenset[str]) -> list[str]:
    """The sorted columns whose value differs between the rows (unknown old values are NULL)."""
    return sorted(column for column, value in new.items()
                  if column not in ignore and old.get(column) != value)


def serialize(data: Mapping[str, Any]) -> str:
    return orjson.dumps(data, default=json_default, option=JSON_OPTIONS).decode()


def as_uuid(value: Any) -> uuid.UUID | None:
    """A UUID from a canonical uuid string (or any spelling PostgreSQL accepts); None if invalid."""
    if value is None or type(value) is uuid.UUID:
        return value
    try:
        return uuid.UUID(str(value))
    except ValueError:
        return None


def uuid_int(value: Any) -> int | None:
    """`as_uuid(value).int` (None when it is not a UUID), without making the UUID: the 32 hex
    digits of its text read as `uuid.UUID` reads them."""
    if type(value) is uuid.UUID:
        return value.int
    if type(value) is str and len(value) == 36:
        try:
            return int(value.replace("-", ""), 16)
        except ValueError:
            return None
    parsed = as_uuid(value)
    return None if parsed is None else parsed.int


def event_time(value: Any, *fallbacks: Any) -> datetime:
    """The first of the values that is a datetime, as aware UTC (snapshot events: the row's own
    time; the schema's naive timestamps hold UTC)."""
    if type(value) is datetime:  # the usual case, without building the candidates' tuple
        return EPOCH + (value - _NAIVE_EPOCH) if value.tzinfo is None else value
    for candidate in (value, *fallbacks):
        if isinstance(candidate, datetime):
            return EPOCH + (candidate - _NAIVE_EPOCH) if candidate.tzinfo is None else candidate
    return EPOCH


def campaign_type_resolver(catalog: Catalog, lookup: Lookup, row_memo: Callable[[str], dict[Any, Any]],
                           limit: int) -> Callable[[Any], str]:
    """campaign id -> the `campaign_type` field of its payload object ("" when unknown). A UUID's
    answer is kept in a memo of the state's (`ReferenceState.row_memo`: dropped when that
    campaign row changes), the resolver's `memo` attribute, which the generated code reads in
    place; up to `limit` entries, then it starts over."""
    spec = catalog.objects["campaign"]
    column = dict(spec.fields).get("campaign_type")
    memo = row_memo(spec.table)

    def campaign_type(campaign_id: Any) -> str:
        row = lookup(spec.table, campaign_id) if column is not None else None
        found = (row.get(column) if row is not None else None) or ""
        if type(campaign_id) is uuid.UUID:
            if len(memo) >= limit:
                memo.clear()
            memo[campaign_id.int] = found
        return found

    campaign_type.memo = memo  # type: ignore[attr-defined]
    return campaign_type
