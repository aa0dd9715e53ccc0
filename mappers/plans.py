"""Compiled plans: what the mapper does with one table's changes and with one matched rule,
worked out once when the mapper is built. mappers/codegen.py writes them as Python functions,
which never walk the catalog, parse a reference or format a bookkeeping key per change.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from cdc_reader.changes import Op
from mappers.catalog import (
    CUSTOMER_TABLE,
    TENANT_TABLE,
    Catalog,
    Collect,
    Passthrough,
    Rule,
    StateSpec,
)
from mappers.payload import MEMO_BYTES, MemoBudget, ObjectResolver, object_resolver
from mappers.references import Reference, Resolve
from mappers.sqltypes import SqlType

if TYPE_CHECKING:
    from mappers.state import ReferenceState

Row = Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class ObjectResolvers:
    """Per payload object kind: a resolver sharing serialized objects of reference-state rows
    (memoized per row), and one building each time (the changed row's own objects, objects the
    mapper adds to)."""

    shared: Mapping[str, ObjectResolver]
    fresh: Mapping[str, ObjectResolver]

    def pick(self, name: str, reference: Reference, filled: bool = False) -> ObjectResolver:
        from_state = bool(reference.hops) or reference.column is not None
        return (self.shared if from_state and not filled else self.fresh)[name]


def object_resolvers(catalog: Catalog, state: ReferenceState, memo_bytes: int = MEMO_BYTES) -> ObjectResolvers:
    """The shared resolvers keep a memo per kind (`ReferenceState.row_memo`, kept valid by the
    state; together they hold up to `memo_bytes`) and read what they keep with `peek`."""
    budget = MemoBudget(memo_bytes)
    return ObjectResolvers(
        {name: object_resolver(spec, state.peek, state.row_memo(spec.table), budget)
         for name, spec in catalog.objects.items()},
        {name: object_resolver(spec, state.get) for name, spec in catalog.objects.items()})


def collect_kind(collect: Collect) -> str:
    """The scratch kind under which rows fill a rule's `collect` field."""
    return f"collect:{collect.table}.{collect.key}:{collect.value.text}"


@dataclass(frozen=True, slots=True)
class RulePlan:
    """One rule, compiled: its condition, payload object resolvers and the scratch kinds it
    reads and writes. Its references stay as written (`rule`): mappers/codegen.py writes them
    into the rule's function in place."""

    index: int
    rule: Rule
    type: str
    table: str
    category: str
    voucher_object: ObjectResolver
    objects: tuple[tuple[str, ObjectResolver], ...]  # name, the object of its reference's target
    changed_ignore: frozenset[str] | None  # changed_fields computed, these columns not counted
    changed_fixed: tuple[str, ...] | None  # changed_fields given as is
    collect: tuple[str, str, str] | None  # (scratch kind, object, field)
    id_suffix: bytes  # "/<type>" in UTF-8: the end of the event id's uuid5 name
    deferred: bool  # decided at the commit
    once_kind: str | None  # once_per_transaction: the scratch kind of the subjects seen
    touched_kind: str | None  # unless_changed: the scratch kind of that table's touched rows
    unless_emitted_kinds: tuple[str, ...]
    blocking_kind: str | None  # some rule waits for this type: the kind its subjects go under


@dataclass(frozen=True, slots=True)
class TablePlan:
    """Everything the mapper does with one table's changes."""

    table: str
    canonical_row: Callable[[Row], Row]
    decoded_canonical: Callable[[tuple[tuple[str, int], ...]], bool]  # TableSchema's
    key_of: Callable[[Row], Any]
    key_column: str | None  # the primary key's column, when it has one
    # key_of for source changes; None for a composite key nothing reads (only snapshot event
    # ids do, and composing it costs a str() of each UUID)
    wal_key_of: Callable[[Row], Any]
    state: StateSpec | None
    # Rows the state keeps compare equal only when they are the same (no jsonb among the kept
    # columns, where 1 == true): an update that leaves an equal row need not put it.
    state_equal_is_same: bool
    rules: Mapping[Op, tuple[RulePlan, ...]]
    feeds: tuple[tuple[str, str, Reference], ...]  # (scratch kind, key column, value) filled by inserts
    touched_kind: str | None  # some rule's unless_changed names this table
    directory: bool  # tenant or customer: directory records
    passthrough: frozenset[Op]  # the changes whose rows are events themselves
    dependents: frozenset[str]  # tables whose events look this table's rows up
    snapshot_read: bool  # the initial snapshot's mapping may look its rows up (`snapshot_lookups`)


@dataclass(frozen=True, slots=True)
class PassthroughPlan:
    """The `[passthrough]` references, compiled."""

    table: str
    id: Resolve
    type: Resolve
    customer: Resolve
    campaign: Resolve
    category: Resolve
    data: Resolve
    tenant: Resolve
    snapshot_time: Resolve


def touched_kind(table: str) -> str:
    return f"touched:{table}"


def emitted_kind(event_type: str) -> str:
    return f"emitted:{event_type}"


def rule_plan(index: int, rule: Rule, catalog: Catalog, objects: ObjectResolvers) -> RulePlan:
    changed = rule.changed_fields
    return RulePlan(
        index=index, rule=rule, type=rule.type, table=rule.table, category=rule.category,
        voucher_object=objects.pick("voucher", rule.voucher) if rule.voucher else objects.fresh["voucher"],
        objects=tuple((name, objects.pick(name, reference,
                                          filled=rule.collect is not None and rule.collect.object == name))
                      for name, reference in rule.objects),
        changed_ignore=changed.ignore if changed is not None and changed.fixed is None else None,
        changed_fixed=changed.fixed if changed is not None else None,
        collect=((collect_kind(rule.collect), rule.collect.object, rule.collect.field)
                 if rule.collect is not None else None),
        id_suffix=f"/{rule.type}".encode(),
        deferred=rule.deferred,
        once_kind=f"once:{index}" if rule.once_per_transaction else None,
        touched_kind=touched_kind(rule.unless_changed) if rule.unless_changed else None,
        unless_emitted_kinds=tuple(emitted_kind(kind) for kind in sorted(rule.unless_emitted)),
        blocking_kind=emitted_kind(rule.type) if rule.type in catalog.blocking_types else None,
    )


def snapshot_lookups(catalog: Catalog) -> frozenset[str]:
    """The tables the initial snapshot's mapping may look rows up in: what rules applied to
    inserted rows read (one with `unless_changed` makes no snapshot event: every row it would
    look at is read anyway), what collected values read, and what pass-through rows read."""
    objects = catalog.objects
    tables = {TENANT_TABLE, objects["customer"].table}
    for rule in catalog.rules:
        if Op.INSERT not in rule.ops or rule.unless_changed:
            continue
        references = [rule.customer, rule.campaign, rule.voucher, rule.tenant, rule.subject,
                      rule.snapshot_time, *(reference for _, reference in rule.objects)]
        tables.update(table for reference in references if reference for table in reference.tables)
        tables.update(objects[name].table for name, reference in rule.objects if not reference.yields_row)
        if rule.campaign:
            tables.add(objects["campaign"].table)
        if rule.voucher and not rule.voucher.yields_row:
            tables.add(objects["voucher"].table)
        if rule.collect:
            tables.update(rule.collect.value.tables)
    spec = catalog.passthrough
    if spec is not None:
        tables.add(objects["campaign"].table)
        tables.update(table for reference in (spec.id, spec.type, spec.customer, spec.campaign, spec.category,
                                              spec.data, spec.tenant, spec.snapshot_time)
                      for table in reference.tables)
    return frozenset(tables)


# Columns the mapper reads by name whatever the catalog says: a snapshot event's time falls back
# to the row's `updated_at` (payload.event_time); the directory records read these of tenants
# and customers (mappers/directory.py).
_READ_ALWAYS = frozenset(["updated_at"])
_DIRECTORY_COLUMNS = {TENANT_TABLE: frozenset(["id", "name"]),
                      CUSTOMER_TABLE: frozenset(["id", "tenant_id", "source_id"])}


def columns_read(catalog: Catalog) -> dict[str, frozenset[str] | None]:
    """Per table the mapper reads, the columns its mapping of a change or snapshot row can read
    (None: every one): its key, the columns its state keeps, and those its rules, collected values
    and pass-through references name. A row needs no other column: the reader neither loads nor
    carries the rest. Every column when the state keeps the whole row or a rule lists the changed
    columns."""
    objects = catalog.objects
    read: dict[str, set[str] | None] = {}
    for table in catalog.tables:
        state = catalog.state.get(table)
        if state is not None and state.columns is None:
            read[table] = None
            continue
        columns = read[table] = set(catalog.schema.table(table).primary_key) | _READ_ALWAYS
        columns.update(_DIRECTORY_COLUMNS.get(table, ()))
        if state is not None:
            columns.update(state.columns)

    def add(table: str, reference: Reference | None, object_name: str | None = None) -> None:
        columns = read.get(table)
        if columns is None or reference is None:
            return
        if reference.column is not None:
            columns.add(reference.column)
        elif not reference.hops:  # the changed row itself: what its object reads of it
            if object_name is None:
                read[table] = None
            else:
                columns.update(column for _, column in objects[object_name].fields)

    for rule in catalog.rules:
        if rule.changed_fields is not None and rule.changed_fields.fixed is None:
            read[rule.table] = None
        if read.get(rule.table) is None:
            continue
        if rule.condition is not None:
            read[rule.table].update(rule.condition.columns)
        for reference in (rule.customer, rule.campaign, rule.tenant, rule.subject, rule.snapshot_time):
            add(rule.table, reference)
        add(rule.table, rule.voucher, "voucher")
        for name, reference in rule.objects:
            add(rule.table, reference, name)
        if rule.collect is not None and read.get(rule.collect.table) is not None:
            read[rule.collect.table].add(rule.collect.key)
            add(rule.collect.table, rule.collect.value)
    spec = catalog.passthrough
    if spec is not None and read.get(spec.table) is not None:
        read[spec.table].add("id")
        for reference in (spec.id, spec.type, spec.customer, spec.campaign, spec.category, spec.data,
                          spec.tenant, spec.snapshot_time):
            add(spec.table, reference)
    return {table: None if columns is None else frozenset(columns) for table, columns in read.items()}


def table_plans(catalog: Catalog, rules: tuple[RulePlan, ...]) -> dict[str, TablePlan]:
    plans = {}
    read_by_snapshot = snapshot_lookups(catalog)
    touch_tables = catalog.touch_tables
    passthrough = catalog.passthrough
    for table in catalog.tables:
        by_op: dict[Op, list[RulePlan]] = {}
        for plan in rules:
            if plan.table == table:
                for op in catalog.rules[plan.index].ops:
                    by_op.setdefault(op, []).append(plan)
        feeds = {collect_kind(rule.collect): (rule.collect.key, rule.collect.value)
                 for rule in catalog.rules if rule.collect and rule.collect.table == table}
        schema = catalog.schema.table(table)
        table_rules = [plan for plans_of_op in by_op.values() for plan in plans_of_op]
        key_read = (table in catalog.state or table in touch_tables or any(
            plan.collect or (plan.rule.subject is None and (plan.deferred or plan.blocking_kind))
            for plan in table_rules))
        key_of = _key_function(schema)
        state = catalog.state.get(table)
        plans[table] = TablePlan(
            table=table, canonical_row=schema.canonical_row,
            decoded_canonical=schema.decoded_canonical, key_of=key_of,
            key_column=schema.primary_key[0] if len(schema.primary_key) == 1 else None,
            wal_key_of=key_of if key_read or len(schema.primary_key) == 1 else no_key,
            state=state,
            state_equal_is_same=state is not None and state.columns is not None and all(
                schema.columns.get(column) not in (SqlType.JSONB, None) for column in state.columns),
            rules={op: tuple(entries) for op, entries in by_op.items()},
            feeds=tuple((kind, key, value) for kind, (key, value) in feeds.items()),
            touched_kind=touched_kind(table) if table in touch_tables else None,
            directory=table in (TENANT_TABLE, CUSTOMER_TABLE),
            passthrough=passthrough.ops if passthrough is not None and passthrough.table == table else frozenset(),
            dependents=frozenset(other for other, needs in catalog.dependencies.items() if table in needs),
            snapshot_read=table in read_by_snapshot)
    return plans


def passthrough_plan(spec: Passthrough, compile_reference: Callable[[Reference], Resolve]) -> PassthroughPlan:
    """`compile_reference`: mappers/codegen.py's reference_function over the state's lookup."""
    return PassthroughPlan(
        table=spec.table, id=compile_reference(spec.id), type=compile_reference(spec.type),
        customer=compile_reference(spec.customer), campaign=compile_reference(spec.campaign),
        category=compile_reference(spec.category), data=compile_reference(spec.data),
        tenant=compile_reference(spec.tenant), snapshot_time=compile_reference(spec.snapshot_time))


def no_key(row: Row) -> None:
    return None


def _key_function(schema: Any) -> Callable[[Row], Any]:
    if len(schema.primary_key) == 1:
        (column,) = schema.primary_key
        return lambda row: row.get(column)
    return schema.key_of
