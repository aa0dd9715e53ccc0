"""Per-transaction mapping: change envelopes (and initial snapshot rows) -> customer events and
the tenant/customer directory records the API resolves names and ids with.

The pipeline drives it: `begin`, `change` for each change, `commit`; or `snapshot_row` for each
row of the initial snapshot (tables in `Catalog.tables` order: references first, the
`customer_event` table last) and `snapshot_finish`. Events are returned as soon as they are
decided; only those that depend on later changes of their transaction wait for the commit
(`mappers/scratch.py` keeps them, bounded in memory).
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from cdc_reader.changes import Change, Op, TransactionBegin, TransactionCommit
from mappers.catalog import (
    CUSTOMER_TABLE, TENANT_TABLE, Catalog, Passthrough, Rule, StateSpec, load_catalog,
)
from mappers.events import CustomerEvent, CustomerRecord, EventSource, TenantRecord
from mappers.payload import (
    SourceIdentity, as_uuid, build_object, changed_columns, event_source, event_time,
    resolve_object, serialize, snapshot_event_id, snapshot_group_id, transaction_group_id,
    wal_event_id,
)
from mappers.schema import TableSchema
from mappers.scratch import Scratch
from mappers.state import ReferenceState

log = logging.getLogger(__name__)

Record = CustomerEvent | TenantRecord | CustomerRecord
Row = Mapping[str, Any]
_EMPTY: Row = {}


__all__ = ["EventMapper", "Record", "SnapshotOrderError", "SourceIdentity", "load_default_catalog"]


def load_default_catalog() -> Catalog:
    """The packaged catalog (`mappers/catalog.toml`)."""
    return load_catalog()


class SnapshotOrderError(RuntimeError):
    """Snapshot rows came in an order the mapping cannot follow."""


@dataclass(frozen=True, slots=True)
class _Context:
    """Where the events being made come from: one source transaction, or the snapshot."""

    snapshot: bool
    commit_lsn: int
    commit_time: datetime | None
    group_id: str
    source: str


@dataclass(frozen=True, slots=True)
class _TablePlan:
    """Everything the mapper does with one table's changes, worked out once."""

    table: str
    schema: TableSchema
    state: StateSpec | None
    rules: Mapping[Op, tuple[tuple[int, Rule], ...]]
    feeds: tuple[tuple[str, Any], ...]  # (scratch kind, Collect) this table's rows fill
    touched: bool
    passthrough: Passthrough | None
    dependents: frozenset[str]  # tables whose events look this table's rows up


@dataclass(frozen=True, slots=True)
class _Pending:
    """A rule that matched a change, with what decides its event's fate and payload. Events
    that wait for the commit are built then, from the state at the commit (a publication's
    voucher already carries the holder its transaction assigned)."""

    rule_index: int
    position: int
    row_key: Any
    subject: Any
    customer: Any
    changed: list[str] | None
    new: Row
    old: Row


def collect_kind(collect: Any) -> str:
    return f"collect:{collect.table}.{collect.key}:{collect.value.text}"


class EventMapper:
    def __init__(self, catalog: Catalog, state: ReferenceState, source: SourceIdentity,
                 slot: str, scratch_memory_limit: int = 100_000) -> None:
        self.catalog = catalog
        self.state = state
        self.source = source
        self.slot = slot
        self._scratch = Scratch(state.connection, scratch_memory_limit)
        self._plans = _plans(catalog)
        self._blocking = catalog.blocking_types
        self._customer_object = catalog.objects["customer"]
        self._campaign_object = catalog.objects["campaign"]
        self._voucher_object = catalog.objects["voucher"]
        self._context: _Context | None = None
        self._snapshot_started: set[str] = set()  # tables whose snapshot rows have begun

    # -- streaming -----------------------------------------------------------------------------
    def begin(self, begin: TransactionBegin) -> None:
        self._scratch.clear()
        self._context = _Context(False, begin.commit_lsn, begin.commit_time,
                                 transaction_group_id(begin.commit_lsn), EventSource.WAL.value)

    def change(self, change: Change) -> list[Record]:
        plan = self._plans.get(change.table)
        if plan is None or change.op is Op.TRUNCATE:
            return []
        if self._context is None or self._context.commit_lsn != change.commit_lsn:
            raise RuntimeError("change() outside its transaction: call begin() first")
        op = Op.INSERT if change.op is Op.READ else change.op
        return self._map(plan, op, change.after, change.before, change.unchanged_toast,
                         change.position, self._context)

    def commit(self, commit: TransactionCommit) -> list[Record]:
        context = self._context
        if context is None:
            raise RuntimeError("commit() without begin()")
        records: list[Record] = []
        decided = [pending for _, pending in self._scratch.items("pending") if self._wanted(pending)]
        events = [(pending, self._event(pending, context)) for pending in decided]
        for pending, event in events:
            if event is not None:
                records.append(event)
                self._remember_emitted(event.type, event.customer_id, pending.subject)
        if self.catalog.passthrough is not None:
            rows = list(self._scratch.items("passthrough"))
            for _, (position, row) in rows:
                records.extend(self._passthrough(row, position, context))
        self._scratch.clear()
        self._context = None
        return records

    # -- initial snapshot ----------------------------------------------------------------------
    def snapshot_row(self, table: str, row: Row) -> list[Record]:
        plan = self._plans.get(table)
        if plan is None:
            return []
        if table not in self._snapshot_started:
            early = sorted(plan.dependents & self._snapshot_started)
            if early:
                raise SnapshotOrderError(
                    f"snapshot rows of {table} arrived after those of {', '.join(early)}, whose "
                    f"events need them; read the tables in this order: {', '.join(self.catalog.tables)}")
            self._snapshot_started.add(table)
        context = _Context(True, 0, None, snapshot_group_id(self.slot), EventSource.SNAPSHOT.value)
        return self._map(plan, Op.INSERT, row, None, frozenset(), 0, context)

    def snapshot_finish(self) -> list[Record]:
        """End of the snapshot: its bookkeeping is dropped (every event was already returned)."""
        self._scratch.clear()
        self.state.clear_snapshot_matches()
        self._snapshot_started.clear()
        return []

    # -- one row change ------------------------------------------------------------------------
    def _map(self, plan: _TablePlan, op: Op, after: Row | None, before: Row | None,
             unchanged_toast: Iterable[str], position: int, context: _Context) -> list[Record]:
        schema = plan.schema
        new = schema.canonical_row(after) if after else _EMPTY
        old = schema.canonical_row(before) if before else _EMPTY
        key = schema.key_of(new or old)
        # An inserted row is new (the engine's ids are fresh UUIDs): no previous state to read.
        if plan.state is not None and key is not None and op is not Op.INSERT:
            previous = self.state.get(plan.table, key)
            if previous is not None:
                old = {**previous, **old} if old else previous
        if unchanged_toast:
            new = dict(new)  # the reader's row is read-only
            for column in unchanged_toast:
                if column not in new and column in old:
                    new[column] = old[column]
        if plan.state is not None and key is not None:
            self._update_state(plan.state, op, key, new, old)
        records: list[Record] = []
        if plan.table in (TENANT_TABLE, CUSTOMER_TABLE):
            records.extend(_directory_record(plan.table, op, new, old, context.commit_lsn))
        if plan.touched and key is not None and not context.snapshot:
            self._scratch.add(f"touched:{plan.table}", key)
        if op is Op.INSERT:
            for kind, collect in plan.feeds:
                self._scratch.add(kind, new.get(collect.key),
                                  collect.value.resolve(new, old, self.state.get))
        if plan.passthrough is not None and op in plan.passthrough.ops:
            if context.snapshot:
                records.extend(self._passthrough(new, position, context))
            else:
                self._scratch.add("passthrough", "", (position, new))
        for rule_index, rule in plan.rules.get(op, ()):
            event = self._apply(rule_index, rule, new, old, key, position, context)
            if event is not None:
                records.append(event)
        return records

    def _update_state(self, spec: StateSpec, op: Op, key: Any, new: dict, old: Row) -> None:
        if op is Op.DELETE:
            if not spec.keep_deleted:
                self.state.delete(spec.table, key)
            return
        merged = {**old, **new} if old else new
        if spec.columns is not None:
            merged = {column: merged.get(column) for column in spec.columns}
        self.state.put(spec.table, key, merged)

    def _apply(self, rule_index: int, rule: Rule, new: Row, old: Row, key: Any, position: int,
               context: _Context) -> CustomerEvent | None:
        if rule.condition is not None and not rule.condition.holds(new, old):
            return None
        if context.snapshot and rule.unless_changed:
            return None  # the snapshot reads every row of that table: it always changed
        customer = rule.customer.resolve(new, old, self.state.get)
        if customer is None:
            return None
        changed = None
        if rule.changed_fields is not None:
            changed = (list(rule.changed_fields.fixed) if rule.changed_fields.fixed is not None
                       else changed_columns(new, old, rule.changed_fields.ignore))
            if not changed:
                return None
        subject = rule.subject.resolve(new, old, self.state.get) if rule.subject else key
        if rule.once_per_transaction and not context.snapshot:
            once_kind = f"once:{rule_index}"
            if self._scratch.has(once_kind, subject):
                return None
            self._scratch.add(once_kind, subject)
        pending = _Pending(rule_index, position, key, subject, customer, changed, new, old)
        if rule.deferred and not context.snapshot:
            self._scratch.add("pending", "", pending)
            return None
        event = self._event(pending, context)
        if event is not None:
            self._remember_emitted(rule.type, event.customer_id, subject, context)
        return event

    def _event(self, pending: _Pending, context: _Context) -> CustomerEvent | None:
        """The event of a matched rule, its payload as the state holds it now."""
        rule = self.catalog.rules[pending.rule_index]
        new, old, customer, key = pending.new, pending.old, pending.customer, pending.row_key
        lookup = self.state.get
        customer_row = lookup(CUSTOMER_TABLE, customer)
        tenant_id = rule.tenant.resolve(new, old, lookup)
        if tenant_id is None and customer_row is not None:
            tenant_id = customer_row.get("tenant_id")
        customer_uuid, tenant_uuid = as_uuid(customer), as_uuid(tenant_id)
        if customer_uuid is None or tenant_uuid is None:
            log.warning("no %s event for customer %r: tenant %r unknown", rule.type, customer, tenant_id)
            return None
        data: dict[str, Any] = {"customer": build_object(self._customer_object, customer_row, customer)}
        campaign_id = rule.campaign.resolve(new, old, lookup) if rule.campaign else None
        campaign_type = ""
        if campaign_id is not None:
            campaign = resolve_object(self._campaign_object, campaign_id, lookup)
            data["campaign"] = campaign
            campaign_type = campaign.get("campaign_type") or ""
        if rule.voucher is not None:
            voucher = resolve_object(self._voucher_object, rule.voucher.resolve(new, old, lookup), lookup)
            if voucher is not None:
                data["voucher"] = voucher
        for name, reference in rule.objects:
            payload_object = resolve_object(self.catalog.objects[name], reference.resolve(new, old, lookup), lookup)
            if payload_object is not None:
                data[name] = payload_object
        if rule.collect is not None and rule.collect.object in data:
            collected = self._scratch.values(collect_kind(rule.collect), key)
            data[rule.collect.object][rule.collect.field] = sorted(
                value for value in collected if value is not None)
        if pending.changed is not None:
            data["changed_fields"] = pending.changed
        data["event_source"] = event_source(context.source)
        if context.snapshot:
            event_id = snapshot_event_id(self.source, rule.table, key, rule.type)
            created_at = event_time(rule.snapshot_time.resolve(new, old, lookup), new.get("updated_at"))
        else:
            event_id = wal_event_id(self.source, context.commit_lsn, pending.position, rule.type)
            created_at = context.commit_time
        tenant_row = lookup(TENANT_TABLE, tenant_id)
        return CustomerEvent(
            id=event_id, tenant_id=tenant_uuid, tenant=(tenant_row or _EMPTY).get("name") or "",
            customer_id=customer_uuid, created_at=created_at, type=rule.type,
            category=rule.category, campaign_id=as_uuid(campaign_id), campaign_type=campaign_type,
            group_id=context.group_id, source=context.source, data=serialize(data),
            source_table=rule.table, source_lsn=context.commit_lsn)

    def _wanted(self, pending: _Pending) -> bool:
        """Whether a waiting event survives what the rest of its transaction did."""
        rule = self.catalog.rules[pending.rule_index]
        if rule.unless_changed and self._scratch.has(f"touched:{rule.unless_changed}", pending.subject):
            return False
        return not any(self._scratch.has(f"emitted:{kind}", pending.subject)
                       for kind in rule.unless_emitted)

    def _remember_emitted(self, event_type: str, customer_id: uuid.UUID, subject: Any,
                          context: _Context | None = None) -> None:
        if self.catalog.passthrough is None:
            pass
        elif context is not None and context.snapshot:
            self.state.count_snapshot_event(str(customer_id), event_type)
        else:
            self._scratch.add("emitted", (event_type, customer_id))
        if event_type in self._blocking:
            self._scratch.add(f"emitted:{event_type}", subject)

    # -- customer_event rows -------------------------------------------------------------------
    def _passthrough(self, row: Row, position: int, context: _Context) -> list[Record]:
        spec = self.catalog.passthrough
        lookup = self.state.get
        customer_text = spec.customer.resolve(row, _EMPTY, lookup)
        customer_uuid = as_uuid(customer_text)
        event_id = as_uuid(spec.id.resolve(row, _EMPTY, lookup))
        event_type = spec.type.resolve(row, _EMPTY, lookup)
        if customer_uuid is None or event_id is None or not event_type:
            log.warning("%s row %s skipped: customer_id %r is not a UUID",
                        spec.table, row.get("id"), customer_text)
            return []
        customer = customer_uuid
        if context.snapshot:
            if self.state.take_snapshot_match(str(customer), event_type):
                return []
        elif self._scratch.has("emitted", (event_type, customer)):
            return []
        customer_row = lookup(CUSTOMER_TABLE, customer)
        tenant_id = spec.tenant.resolve(row, _EMPTY, lookup) or (customer_row or _EMPTY).get("tenant_id")
        tenant_uuid = as_uuid(tenant_id)
        if tenant_uuid is None:
            log.warning("%s row %s skipped: tenant unknown", spec.table, row.get("id"))
            return []
        carried = spec.data.resolve(row, _EMPTY, lookup)
        data = dict(carried) if isinstance(carried, Mapping) else {}
        data["customer"] = build_object(self._customer_object, customer_row, customer)
        campaign_text = spec.campaign.resolve(row, _EMPTY, lookup)
        campaign_uuid = as_uuid(campaign_text)
        if campaign_text is not None and campaign_uuid is None:
            log.warning("%s row %s: campaign_id %r is not a UUID; left out",
                        spec.table, row.get("id"), campaign_text)
        campaign_type = ""
        if campaign_uuid is not None:
            data["campaign"] = resolve_object(self._campaign_object, campaign_uuid, lookup)
            campaign_type = data["campaign"].get("campaign_type") or ""
        source = EventSource.SNAPSHOT.value if context.snapshot else EventSource.CUSTOMER_EVENT.value
        data["event_source"] = event_source(source)
        created_at = (event_time(spec.snapshot_time.resolve(row, _EMPTY, lookup), row.get("updated_at"))
                      if context.snapshot else context.commit_time)
        tenant_row = lookup(TENANT_TABLE, tenant_uuid)
        return [CustomerEvent(
            id=event_id, tenant_id=tenant_uuid, tenant=(tenant_row or _EMPTY).get("name") or "",
            customer_id=customer_uuid, created_at=created_at, type=event_type,
            category=spec.category.resolve(row, _EMPTY, lookup) or "", campaign_id=campaign_uuid,
            campaign_type=campaign_type, group_id=context.group_id, source=source,
            data=serialize(data), source_table=spec.table, source_lsn=context.commit_lsn)]


def _directory_record(table: str, op: Op, new: Row, old: Row, version: int) -> list[Record]:
    row = new or old
    identifier = as_uuid(row.get("id"))
    if identifier is None:
        return []
    if table == TENANT_TABLE:
        if op is Op.DELETE or row.get("name") is None:
            return []
        return [TenantRecord(identifier, row["name"], version)]
    tenant_id = as_uuid(row.get("tenant_id"))
    if tenant_id is None:
        log.warning("customer %s deleted before it was known: no directory record", identifier)
        return []
    return [CustomerRecord(identifier, tenant_id, row.get("source_id"), op is Op.DELETE, version)]


def _plans(catalog: Catalog) -> dict[str, _TablePlan]:
    plans = {}
    for table in catalog.tables:
        rules: dict[Op, list[tuple[int, Rule]]] = {}
        for index, rule in enumerate(catalog.rules):
            if rule.table == table:
                for op in rule.ops:
                    rules.setdefault(op, []).append((index, rule))
        feeds = {collect_kind(rule.collect): rule.collect for rule in catalog.rules
                 if rule.collect and rule.collect.table == table}
        passthrough = catalog.passthrough if catalog.passthrough and catalog.passthrough.table == table else None
        plans[table] = _TablePlan(
            table=table, schema=catalog.schema.table(table), state=catalog.state.get(table),
            rules={op: tuple(entries) for op, entries in rules.items()},
            feeds=tuple(feeds.items()), touched=table in catalog.touch_tables,
            passthrough=passthrough,
            dependents=frozenset(other for other, needs in catalog.dependencies.items() if table in needs))
    return plans
