"""Per-transaction mapping: change envelopes (and initial snapshot rows) -> customer events and
the tenant/customer directory records the API resolves names and ids with.

The pipeline drives it: `begin`, `change` for each change, `commit`; or `snapshot_rows` for each
batch of rows of the initial snapshot (tables in `Catalog.tables` order: references first, the
`customer_event` table last) and `snapshot_finish`. Events are returned as soon as they are
decided; only those that depend on later changes of their transaction wait for the commit
(`mappers/scratch.py` keeps them, bounded in memory). The catalog is compiled into plans once
(`mappers/plans.py`), and the plans into a Python function per table and change kind
(`mappers/codegen.py`; `EventMapper.generated_source()` shows them); this module runs them and
keeps what they call back: the transaction's bookkeeping, tenant names, `customer_event` rows.
"""

from __future__ import annotations

import binascii
import logging
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime
from typing import Any
from uuid import UUID

import msgspec
import orjson

from cdc_reader.changes import Change, Op, TransactionBegin, TransactionCommit
from mappers.catalog import CUSTOMER_TABLE, TENANT_TABLE, Catalog, load_catalog
from mappers.codegen import change_function, change_function_names, passthrough_function
from mappers.codegen import reference_function, rule_functions
from mappers.directory import directory_record
from mappers.events import CustomerEvent, CustomerRecord, EventSource, TenantRecord
from mappers.payload import (JSON_OPTIONS, MEMO_BYTES, UUID5_CLEAR, UUID5_SET, SourceIdentity, as_uuid,
                             campaign_type_resolver, changed_columns, event_source, event_time, serialize,
                             snapshot_event_ids, snapshot_group_id, transaction_group_id,
                             transaction_id_prefix, uuid_int, wal_id_prefix)
from mappers.plans import RulePlan, TablePlan, object_resolvers, passthrough_plan, rule_plan, table_plans
from mappers.scratch import Scratch
from mappers.snapshot_matches import MEMORY_LIMIT as MATCHES_IN_MEMORY
from mappers.snapshot_matches import SnapshotMatches
from mappers.source import Source, compile_source
from mappers.sqltypes import json_default
from mappers.state import ReferenceState, uuid_from_int

log = logging.getLogger(__name__)

Record = CustomerEvent | TenantRecord | CustomerRecord
Row = Mapping[str, Any]
_EMPTY: Row = {}
_WAL = EventSource.WAL.value
_SNAPSHOT = EventSource.SNAPSHOT.value
_CUSTOMER_EVENT = EventSource.CUSTOMER_EVENT.value
TENANT_NAMES = 10_000  # tenant names kept in memory (all of them, in any deployment we know)
CAMPAIGN_TYPES = 100_000  # campaign types kept in memory (~100 bytes each)
# Scratch entries an initial snapshot keeps in memory: only what its rows feed later tables (a
# publication's voucher codes), ~300 bytes an entry with its key and value, so ~60 MB at most.
SNAPSHOT_SCRATCH_ROWS = 200_000
# Shared by every payload: serialized, never changed.
_EVENT_SOURCES = {source.value: orjson.Fragment(orjson.dumps(event_source(source.value), option=JSON_OPTIONS))
                  for source in EventSource}
_DELETE = Op.DELETE  # (reading an Enum member off its class costs ~80 ns in Python 3.11)
_NOT_DESCRIBED = object()  # a _Table's column_types before its first change


__all__ = ["EventMapper", "Record", "SnapshotOrderError", "SourceIdentity", "load_default_catalog"]


def load_default_catalog() -> Catalog:
    """The packaged catalog (`mappers/catalog.toml`)."""
    return load_catalog()


class SnapshotOrderError(RuntimeError):
    """Snapshot rows came in an order the mapping cannot follow."""


class _Context(msgspec.Struct, frozen=True):
    """Where the events being made come from: one source transaction, or the snapshot. (A
    msgspec Struct: one is made per transaction, in C; a slotted class's __init__ costs ~0.3 us
    more, a frozen dataclass's twice that.)"""

    snapshot: bool
    commit_lsn: int
    commit_time: datetime | None
    group_id: str
    source: str
    id_prefix: Any  # payload.transaction_id_prefix; None for the snapshot


class _Table:
    """A table's plan and generated functions, and what its changes' relation was last described
    as (`Change.column_types`: one tuple shared by that relation's changes until it is described
    anew) with whether its rows then come canonical from the reader
    (`TableSchema.decoded_canonical`), decided once per description."""

    __slots__ = ("plan", "handlers", "column_types", "canonical")

    def __init__(self, plan: TablePlan, handlers: dict[Op, Callable]) -> None:
        self.plan = plan
        self.handlers = handlers  # Op -> change_<table>_<op>
        self.column_types: Any = _NOT_DESCRIBED
        self.canonical = False

    def describe(self, column_types: tuple | None) -> None:
        self.column_types = column_types
        self.canonical = column_types is not None and self.plan.decoded_canonical(column_types)


def _no_records(new: Row, old: Row, unchanged_toast: Any, position: int, context: Any) -> list[Record]:
    return []  # TRUNCATE: the catalog has no rule for it


class EventMapper:
    def __init__(self, catalog: Catalog, state: ReferenceState, source: SourceIdentity,
                 slot: str, scratch_memory_limit: int = 100_000,
                 match_memory_limit: int = MATCHES_IN_MEMORY, memo_bytes: int = MEMO_BYTES,
                 snapshot_scratch_limit: int = SNAPSHOT_SCRATCH_ROWS) -> None:
        self.catalog = catalog
        self.state = state
        self.source = source
        self.slot = slot
        self._scratch = Scratch(state.connection, scratch_memory_limit)
        self._scratch_limit, self._snapshot_scratch_limit = scratch_memory_limit, snapshot_scratch_limit
        lookup = self._lookup = state.get
        objects = object_resolvers(catalog, state, memo_bytes)
        self._rules = tuple(rule_plan(index, rule, catalog, objects)
                            for index, rule in enumerate(catalog.rules))
        self._plans = table_plans(catalog, self._rules)
        self._passthrough_plan = (passthrough_plan(
            catalog.passthrough, lambda reference: reference_function(reference, lookup))
            if catalog.passthrough else None)
        self._customer_object = objects.shared["customer"]  # by id: customer references are ids
        self._campaign_object = objects.shared["campaign"]  # campaign references are ids
        self._campaign_type = campaign_type_resolver(catalog, lookup, state.row_memo, CAMPAIGN_TYPES)
        self._tenant_names = state.row_memo(TENANT_TABLE)  # tenant id's int -> name
        self._wal_id_prefix = wal_id_prefix(source)
        self._context: _Context | None = None
        self._snapshot_context = _Context(True, 0, None, snapshot_group_id(slot), _SNAPSHOT, None)
        self._snapshot_started: set[str] = set()  # tables whose snapshot rows have begun
        self._snapshot_matches = SnapshotMatches(state, match_memory_limit)
        self._source_text, self._tables, self._builds, self._passthrough_rows = self._compile()

    def _compile(self) -> tuple[str, dict[str, _Table], tuple[Callable | None, ...], Callable | None]:
        """The plans as Python functions (mappers/codegen.py): the source; per table, its plan and
        the function of each change kind; per rule, its event's builder when it defers it; the
        commit's function for pass-through rows (None without them)."""
        out = Source()
        passthrough = self._passthrough_plan is not None
        for plan in self._rules:
            rule_functions(out, plan, passthrough)
        if passthrough:
            passthrough_function(out, self.catalog.passthrough, "passthrough_rows")
        stems = change_function_names(self._plans)
        function_names = {(table, op): f"change_{stems[table]}_{op.name.lower()}"
                          for table in self._plans for op in (Op.INSERT, Op.UPDATE, Op.DELETE)}
        for (table, op), name in function_names.items():
            plan = self._plans[table]
            change_function(out, plan, op, plan.rules.get(op, ()), name, self.catalog.passthrough)
        state, scratch = self.state, self._scratch
        runtime = {
            "lookup": self._lookup, "scratch_add": scratch.add, "scratch_has": scratch.has,
            "scratch_values": scratch.values, "state_put": state.put, "state_add": state.add,
            "state_delete": state.delete,
            "count_snapshot_event": self._snapshot_matches.count, "customer_object": self._customer_object,
            "customer_memo": self._customer_object.memo, "campaign_object": self._campaign_object,
            "campaign_memo": self._campaign_object.memo, "campaign_type_of": self._campaign_type,
            "campaign_type_memo": self._campaign_type.memo,
            "tenant_names": self._tenant_names, "tenant_name": self._tenant_name,
            "passthrough": self._passthrough, "directory_record": directory_record,
            "changed_columns": changed_columns, "snapshot_event_id": snapshot_event_ids(self.source),
            "event_time": event_time, "CustomerEvent": CustomerEvent, "dumps": orjson.dumps,
            "json_default": json_default, "JSON_OPTIONS": JSON_OPTIONS,
            "as_uuid": as_uuid, "UUID": UUID, "log": log, "EVENT_SOURCES": _EVENT_SOURCES,
            "source": self.source, "uuid_from_int": uuid_from_int, "UUID5_CLEAR": UUID5_CLEAR,
            "UUID5_SET": UUID5_SET, "EMPTY_ROW": _EMPTY, "unhexlify": binascii.unhexlify,
            "int_from_bytes": int.from_bytes}
        names = compile_source(out, runtime, "<voucher-activity catalog>")
        tables = {}
        for table, plan in self._plans.items():
            handlers = {op: names[function_names[table, op]] for op in (Op.INSERT, Op.UPDATE, Op.DELETE)}
            handlers[Op.READ] = handlers[Op.INSERT]
            handlers[Op.TRUNCATE] = _no_records
            tables[table] = _Table(plan, handlers)
        builds = tuple(names.get(f"build_{plan.index}") for plan in self._rules)
        return out.text(), tables, builds, names.get("passthrough_rows")

    def generated_source(self) -> str:
        """The Python source the catalog was compiled into (what maps every change)."""
        return self._source_text

    # -- streaming -----------------------------------------------------------------------------
    def begin(self, begin: TransactionBegin) -> None:
        self._scratch.clear()
        commit_lsn = begin.commit_lsn
        self._context = _Context(False, commit_lsn, begin.commit_time, transaction_group_id(commit_lsn),
                                 _WAL, transaction_id_prefix(self._wal_id_prefix, commit_lsn))

    def change(self, change: Change) -> list[Record]:
        table = self._tables.get(change.table)
        if table is None:
            return []
        context = self._context
        if context is None or context.commit_lsn != change.commit_lsn:
            raise RuntimeError("change() outside its transaction: call begin() first")
        if table.column_types is not change.column_types:
            table.describe(change.column_types)
        if table.canonical:
            new, old = change.after or _EMPTY, change.before or _EMPTY
        else:
            canonical_row = table.plan.canonical_row
            after, before = change.after, change.before
            new = canonical_row(after) if after else _EMPTY
            old = canonical_row(before) if before else _EMPTY
        return table.handlers[change.op](new, old, change.unchanged_toast, change.position, context)

    def commit(self, commit: TransactionCommit) -> list[Record]:
        context = self._context
        if context is None:
            raise RuntimeError("commit() without begin()")
        records: list[Record] = []
        scratch = self._scratch
        # (both kinds are kept under one key, "": `values` gives them in the order added)
        waiting = scratch.values("pending", "")
        if waiting:
            # every event decided before any is made: making one records what it blocks
            decided = [pending for pending in waiting if self._wanted(pending)]
            builds = self._builds
            events = [(pending, builds[pending[0]](*pending[1:], context)) for pending in decided]
            for pending, event in events:
                if event is not None:
                    records.append(event)
                    self._remember_emitted(self._rules[pending[0]], event.customer_id, pending[3], False)
        if self._passthrough_plan is not None:
            rows = scratch.values("passthrough", "")
            if rows:
                records.extend(self._passthrough_rows(rows, context))
        # (the scratch is cleared by the next begin(), which must clear it anyway: a transaction
        # may end without its commit, when the stream restarts)
        self._context = None
        return records

    # -- initial snapshot ----------------------------------------------------------------------
    def snapshot_row(self, table: str, row: Row, column_types: tuple | None = None) -> list[Record]:
        """`row` as an insert into `table`; `column_types`: the reader's (column, type OID) pairs
        of the row (one tuple shared by the table's rows, as a change's `column_types`), which
        tell once per table whether its rows need bringing into canonical form."""
        return self.snapshot_rows(table, (row,), column_types)

    def snapshot_rows(self, table: str, rows: Iterable[Row], column_types: tuple | None = None) -> list[Record]:
        """`snapshot_row` for each of `rows` (all of `table`), their records in one list."""
        plan = self._plans.get(table)
        if plan is None:
            return []
        if table not in self._snapshot_started:
            early = sorted(plan.dependents & self._snapshot_started)
            if early:
                raise SnapshotOrderError(
                    f"snapshot rows of {table} arrived after those of {', '.join(early)}, whose "
                    f"events need them; read the tables in this order: {', '.join(self.catalog.tables)}")
            if not self._snapshot_started:
                self._scratch.memory_limit = self._snapshot_scratch_limit
            self._snapshot_started.add(table)
        entry = self._tables[table]
        if column_types is not None and entry.column_types is not column_types:
            entry.describe(column_types)
        canonical = column_types is not None and entry.canonical
        canonical_row, insert, context = plan.canonical_row, entry.handlers[Op.INSERT], self._snapshot_context
        rows = [_EMPTY if not row else row if canonical else canonical_row(row) for row in rows]
        self._prefetch(plan, rows)
        records: list[Record] = []
        extend = records.extend
        for new in rows:
            extend(insert(new, _EMPTY, (), 0, context))
        return records

    def _prefetch(self, plan: TablePlan, rows: list[Row]) -> None:
        """What the batch's rows will read from the snapshot's spilled bookkeeping, read at once:
        the values their events collect (e.g. a publication's voucher codes), and for
        `customer_event` rows the counts of the events they may be copies of."""
        # (Nothing to read while nothing spilled: the keys are not even worked out then.)
        kinds = {rule.collect[0] for rule in plan.rules.get(Op.INSERT, ()) if rule.collect is not None}
        if kinds and self._scratch.spilled:
            keys = [plan.key_of(row) for row in rows]
            for kind in kinds:
                self._scratch.prefetch(kind, keys)
        spec = self._passthrough_plan
        if spec is not None and Op.INSERT in plan.passthrough and self._snapshot_matches.spilled:
            pairs = []
            for row in rows:
                customer, event_type = uuid_int(spec.customer(row, _EMPTY)), spec.type(row, _EMPTY)
                if customer is not None and event_type:
                    pairs.append((customer, event_type))
            self._snapshot_matches.prefetch(pairs)

    def snapshot_pairing_column(self) -> tuple[str, str] | None:
        """(table, column) where the pass-through rows hold their event types, when the catalog's
        type reference is a column of the row: given the values found there before the snapshot
        (`snapshot_pairing_types`), it counts only events of those types for pairing."""
        spec = self.catalog.passthrough
        if spec is None or spec.type.hops or spec.type.column is None or spec.type.side == "old":
            return None
        return spec.table, spec.type.column

    def snapshot_pairing_types(self, types: Iterable[str]) -> None:
        self._snapshot_matches.count_only(types)

    def snapshot_finish(self) -> list[Record]:
        """End of the snapshot: its bookkeeping is dropped (every event was already returned)."""
        self._scratch.clear()
        self._snapshot_matches.clear()
        self._snapshot_started.clear()
        self._scratch.memory_limit = self._scratch_limit
        return []

    # -- what the generated code calls back ---------------------------------------------------
    def _tenant_name(self, tenant: UUID) -> str:
        """The tenant's name as the state holds it ("" when unknown), kept by the state's memo of
        tenant rows until the tenant row changes (every event names its tenant)."""
        names = self._tenant_names
        name = names.get(tenant.int)
        if name is None:
            if len(names) >= TENANT_NAMES:
                names.clear()
            name = names[tenant.int] = (self._lookup(TENANT_TABLE, tenant) or _EMPTY).get("name") or ""
        return name

    def _wanted(self, pending: tuple) -> bool:
        """Whether a waiting event survives what the rest of its transaction did."""
        rule, subject = self._rules[pending[0]], pending[3]
        has = self._scratch.has
        if rule.touched_kind is not None and has(rule.touched_kind, subject):
            return False
        for kind in rule.unless_emitted_kinds:
            if has(kind, subject):
                return False
        return True

    def _remember_emitted(self, rule: RulePlan, customer_id: UUID, subject: Any, snapshot: bool) -> None:
        if self._passthrough_plan is None:
            pass
        elif snapshot:
            self._snapshot_matches.count(customer_id, rule.type)
        else:
            # keyed by the UUID's int: C hashing (UUID.__hash__ is Python)
            self._scratch.add("emitted", (rule.type, customer_id.int))
        if rule.blocking_kind is not None:
            self._scratch.add(rule.blocking_kind, subject)

    # -- customer_event rows -------------------------------------------------------------------
    def _passthrough(self, row: Row, position: int, context: _Context) -> list[Record]:
        spec = self._passthrough_plan
        lookup = self._lookup
        # (At a commit, rows whose 36-character customer id names an event made were left out
        # already: mappers/codegen.py, passthrough_function.)
        customer_text = spec.customer(row, _EMPTY)
        customer_uuid = as_uuid(customer_text)
        event_type = spec.type(row, _EMPTY)
        if customer_uuid is None or not event_type:
            log.warning("%s row %s skipped: customer_id %r is not a UUID",
                        spec.table, row.get("id"), customer_text)
            return []
        customer = customer_uuid
        # Their own id is parsed only when they are kept (the snapshot's pairing consumes a
        # match, so it checks it first).
        if not context.snapshot and self._scratch.has("emitted", (event_type, customer.int)):
            return []
        event_id = as_uuid(spec.id(row, _EMPTY))
        if event_id is None:
            log.warning("%s row %r skipped: its id is not a UUID", spec.table, row.get("id"))
            return []
        if context.snapshot and self._snapshot_matches.take(customer, event_type):
            return []
        tenant_id = spec.tenant(row, _EMPTY) or (lookup(CUSTOMER_TABLE, customer) or _EMPTY).get("tenant_id")
        tenant_uuid = as_uuid(tenant_id)
        if tenant_uuid is None:
            log.warning("%s row %s skipped: tenant unknown", spec.table, row.get("id"))
            return []
        carried = spec.data(row, _EMPTY)
        data = dict(carried) if isinstance(carried, Mapping) else {}
        data["customer"] = self._customer_object(customer)
        campaign_text = spec.campaign(row, _EMPTY)
        campaign_uuid = as_uuid(campaign_text)
        if campaign_text is not None and campaign_uuid is None:
            log.warning("%s row %s: campaign_id %r is not a UUID; left out",
                        spec.table, row.get("id"), campaign_text)
        campaign_type = ""
        if campaign_uuid is not None:
            data["campaign"] = self._campaign_object(campaign_uuid)
            campaign_type = self._campaign_type(campaign_uuid)
        source = _SNAPSHOT if context.snapshot else _CUSTOMER_EVENT
        data["event_source"] = _EVENT_SOURCES[source]
        created_at = (event_time(spec.snapshot_time(row, _EMPTY), row.get("updated_at"))
                      if context.snapshot else context.commit_time)
        return [CustomerEvent(
            event_id, tenant_uuid, self._tenant_name(tenant_uuid), customer_uuid,
            created_at, event_type, spec.category(row, _EMPTY) or "", campaign_uuid, campaign_type,
            context.group_id, source, serialize(data), spec.table, context.commit_lsn)]
