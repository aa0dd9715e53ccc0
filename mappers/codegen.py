"""The compiled plans as Python functions: one per table and change kind, and one per rule.

`mappers/plans.py` works a catalog out into plans; running them through general code costs,
per change, a test of every feature a table or rule might have (state, directory, feeds, a
condition, changed fields, collected values...) and a closure call per reference. Here each
plan becomes the straight-line code of what it does, written as Python source and compiled
once when the mapper is built: a rule without a condition tests none, a reference
`new.customer_id` is `new.get('customer_id')` in place, a hop is one lookup. On the mapping
benchmark this is ~10% of the CPU time of a change (docs/benchmarks.md).

The generated source is the behaviour: `EventMapper.generated_source()` returns it all, to read.

Every value the code uses that is not a literal (closures, resolvers, constants) is bound by
name in the functions' globals; literals (table names, columns, kinds, types) are written with
repr(). A rule function `rule_<n>(new, old, key, position, context)` returns the event or None;
`build_<n>(position, key, subject, customer, changed, new, old, context)` builds the event of a
rule that defers it to the commit; `change_<table>_<op>(new, old,
unchanged_toast, position, context)` maps one change of that table and returns its records.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from cdc_reader.changes import Op
from mappers.plans import RulePlan, TablePlan, no_key
from mappers.catalog import Rule
from mappers.references import Reference

# The names the generated code reads besides its per-plan bindings (see EventMapper._compile).
RUNTIME_NAMES = (
    "lookup", "scratch_add", "scratch_has", "scratch_values", "state_put", "state_delete",
    "count_snapshot_event", "customer_object", "campaign_object", "campaign_type_of", "tenant_names",
    "tenant_name", "passthrough", "directory_record", "changed_columns", "snapshot_event_id",
    "event_time", "CustomerEvent", "serialize", "as_uuid", "UUID", "log", "EVENT_SOURCES",
    "source", "uuid_from_int", "UUID5_CLEAR", "UUID5_SET",
)


@dataclass
class Source:
    """Python source being written, with the values it refers to by name."""

    lines: list[str] = field(default_factory=list)
    bindings: dict[str, Any] = field(default_factory=dict)
    _level: int = 0

    def line(self, text: str) -> None:
        self.lines.append("    " * self._level + text)

    def indent(self) -> _Indent:
        return _Indent(self)

    def bind(self, prefix: str, value: Any) -> str:
        """A global name for `value` (the same name for the same object)."""
        for name, bound in self.bindings.items():
            if bound is value and name.startswith(prefix):
                return name
        name = f"{prefix}_{len(self.bindings)}"
        self.bindings[name] = value
        return name

    def text(self) -> str:
        return "\n".join(self.lines) + "\n"


class _Indent:
    def __init__(self, source: Source) -> None:
        self.source = source

    def __enter__(self) -> None:
        self.source._level += 1

    def __exit__(self, *exc: object) -> None:
        self.source._level -= 1


def _start(reference: Reference) -> str:
    """The expression of a reference's first step (a column of the changed row, or the row)."""
    row = {"new": "new", "old": "old", "row": "(new or old)"}[reference.side]
    if reference.column is None:
        return f"({row} or None)"
    return f"{row}.get({reference.column!r})"


def reference_code(out: Source, target: str, reference: Reference) -> None:
    """Statements that set `target` to the reference's value (Reference.resolve's semantics:
    None when any step is NULL or unknown; a hop without a column yields the row)."""
    out.line(f"{target} = {_start(reference)}")
    for hop in reference.hops:
        out.line(f"if {target} is not None:")
        with out.indent():
            out.line(f"{target} = lookup({hop.table!r}, {target})")
            if hop.column is not None:
                out.line(f"if {target} is not None:")
                with out.indent():
                    out.line(f"{target} = {target}.get({hop.column!r})")


def _remember_emitted(out: Source, rule: RulePlan, passthrough: bool) -> None:
    """EventMapper's bookkeeping of an event made (`event` and `customer_uuid`, its customer_id,
    are bound)."""
    if passthrough:
        out.line("if context.snapshot:")
        with out.indent():
            out.line(f"count_snapshot_event(str(customer_uuid), {rule.type!r})")
        out.line("else:")
        with out.indent():
            out.line(f"scratch_add('emitted', ({rule.type!r}, customer_uuid.int))")
    if rule.blocking_kind is not None:
        out.line(f"scratch_add({rule.blocking_kind!r}, subject)")


def _build_body(out: Source, plan: RulePlan, rule: Rule, made: Callable[[Source], None] | None) -> None:
    """The event of a decided rule, its payload as the state holds it now. Bound: position, key,
    subject, customer, changed, new, old, context. Returns the event; with `made`, binds it to
    `event`, writes `made`'s statements, and then returns it."""
    reference_code(out, "tenant_id", rule.tenant)
    out.line("if tenant_id is None:")
    with out.indent():
        out.line("customer_row = lookup('customer', customer)")
        out.line("if customer_row is not None:")
        with out.indent():
            out.line("tenant_id = customer_row.get('tenant_id')")
    out.line("customer_uuid = customer if type(customer) is UUID else as_uuid(customer)")
    out.line("tenant_uuid = tenant_id if type(tenant_id) is UUID else as_uuid(tenant_id)")
    out.line("if customer_uuid is None or tenant_uuid is None:")
    with out.indent():
        out.line(f"log.warning('no %s event for customer %r: tenant %r unknown', {plan.type!r}, customer, tenant_id)")
        out.line("return None")
    out.line("data = {'customer': customer_object(customer)}")
    out.line("campaign_type = ''")
    out.line("campaign_uuid = None")
    if rule.campaign is not None:
        reference_code(out, "campaign_id", rule.campaign)
        out.line("if campaign_id is not None:")
        with out.indent():
            out.line("data['campaign'] = campaign_object(campaign_id)")
            out.line("campaign_type = campaign_type_of(campaign_id)")
            out.line("campaign_uuid = campaign_id if type(campaign_id) is UUID else as_uuid(campaign_id)")
    if rule.voucher is not None:
        reference_code(out, "target", rule.voucher)
        out.line(f"made = {out.bind('voucher_object', plan.voucher_object)}(target)")
        out.line("if made is not None:")
        with out.indent():
            out.line("data['voucher'] = made")
    for (name, _, resolve), (_, reference) in zip(plan.objects, rule.objects, strict=True):
        reference_code(out, "target", reference)
        out.line(f"made = {out.bind('object', resolve)}(target)")
        out.line("if made is not None:")
        with out.indent():
            out.line(f"data[{name!r}] = made")
    if plan.collect is not None:
        kind, object_name, field_name = plan.collect
        out.line(f"if {object_name!r} in data:")  # built for this event (ObjectResolvers.pick): free to fill
        with out.indent():
            out.line(f"collected = scratch_values({kind!r}, key)")
            out.line(f"data[{object_name!r}][{field_name!r}] = "
                     "sorted(value for value in collected if value is not None)")
    if plan.changed_fixed is not None or plan.changed_ignore is not None:
        out.line("data['changed_fields'] = changed")
    out.line("data['event_source'] = EVENT_SOURCES[context.source]")
    out.line("if context.snapshot:")
    with out.indent():
        out.line(f"event_id = snapshot_event_id(source, {plan.table!r}, key, {plan.type!r})")
        reference_code(out, "created_at", rule.snapshot_time)
        out.line("created_at = event_time(created_at, new.get('updated_at'))")
    out.line("else:")
    with out.indent():
        # TransactionIds.event_id in place (tests/mappers/test_payload.py checks it against uuid5)
        out.line("hasher = context.ids.prefix.copy()")
        out.line(f"hasher.update(b'%d' % position + {plan.id_suffix!r})")
        out.line("event_id = uuid_from_int(int.from_bytes(hasher.digest()[:16]) & UUID5_CLEAR | UUID5_SET)")
        out.line("created_at = context.commit_time")
    out.line("tenant = tenant_names.get(tenant_uuid.int)")
    out.line("if tenant is None:")
    with out.indent():
        out.line("tenant = tenant_name(tenant_uuid)")
    event = (f"CustomerEvent(event_id, tenant_uuid, tenant, customer_uuid, created_at, "
             f"{plan.type!r}, {plan.category!r}, campaign_uuid, campaign_type, context.group_id, "
             f"context.source, serialize(data), {plan.table!r}, context.commit_lsn)")
    if made is None:
        out.line(f"return {event}")
    else:
        out.line(f"event = {event}")
        made(out)
        out.line("return event")


def rule_functions(out: Source, plan: RulePlan, rule: Rule, passthrough: bool) -> None:
    """`build_<n>` and `rule_<n>` (see the module's docstring). `passthrough`: the catalog has
    pass-through rows, which the events made are remembered for."""
    number = plan.index

    def made(out: Source) -> None:
        _remember_emitted(out, plan, passthrough)

    if plan.deferred:
        out.line(f"def build_{number}(position, key, subject, customer, changed, new, old, context):")
        with out.indent():
            out.line(f"# {rule.name}")
            _build_body(out, plan, rule, None)
        out.line("")
    out.line(f"def rule_{number}(new, old, key, position, context):")
    with out.indent():
        out.line(f"# {rule.name}")
        if plan.holds is not None:
            out.line(f"if {out.bind('condition', plan.holds)}(new, old) is not True:")
            with out.indent():
                out.line("return None")
        if plan.touched_kind is not None:
            out.line("if context.snapshot:")  # the snapshot reads every row of that table: it always changed
            with out.indent():
                out.line("return None")
        reference_code(out, "customer", rule.customer)
        out.line("if customer is None:")
        with out.indent():
            out.line("return None")
        if plan.changed_fixed is not None:
            out.line(f"changed = {list(plan.changed_fixed)!r}")
        elif plan.changed_ignore is not None:
            out.line(f"changed = changed_columns(new, old, {out.bind('ignore', plan.changed_ignore)})")
            out.line("if not changed:")
            with out.indent():
                out.line("return None")
        else:
            out.line("changed = None")
        if rule.subject is not None:
            reference_code(out, "subject", rule.subject)
        else:
            out.line("subject = key")
        if plan.once_kind is not None:
            out.line("if not context.snapshot:")
            with out.indent():
                out.line(f"if scratch_has({plan.once_kind!r}, subject):")
                with out.indent():
                    out.line("return None")
                out.line(f"scratch_add({plan.once_kind!r}, subject)")
        if plan.deferred:
            out.line("if not context.snapshot:")  # built at the commit, from the state as the transaction left it
            with out.indent():
                out.line(f"scratch_add('pending', '', ({number}, position, key, subject, customer, changed, new, old))")
                out.line("return None")
            out.line(f"event = build_{number}(position, key, subject, customer, changed, new, old, context)")
            out.line("if event is not None:")
            with out.indent():
                out.line("customer_uuid = event.customer_id")
                made(out)
            out.line("return event")
        else:
            _build_body(out, plan, rule, made)  # in place: one call less per event
    out.line("")


def change_function(out: Source, plan: TablePlan, op: Op, rule_numbers: tuple[int, ...], name: str) -> None:
    """`change_<table>_<op>`: EventMapper's mapping of one change (the rows canonical)."""
    table = plan.table
    out.line(f"def {name}(new, old, unchanged_toast, position, context):")
    with out.indent():
        row = {Op.INSERT: "new", Op.DELETE: "old"}.get(op, "(new or old)")
        key = (f"{row}.get({plan.key_column!r})" if plan.key_column is not None
               else f"{out.bind('key_of', plan.key_of)}({row.strip('()')})")
        if plan.wal_key_of is no_key:  # a composite key nothing reads: only snapshot event ids
            key = f"{key} if context.snapshot else None"
        out.line(f"key = {key}")
        state = plan.state
        previous = "None"
        if state is not None and op is not Op.INSERT:
            # an inserted row is new (the engine's ids are fresh UUIDs): no previous state
            out.line("previous = None")
            out.line("if key is not None:")
            with out.indent():
                out.line(f"previous = lookup({table!r}, key)")
                out.line("if previous is not None:")
                with out.indent():
                    out.line("old = {**previous, **old} if old else previous")
            if plan.state_equal_is_same:
                previous = "previous"
        out.line("if unchanged_toast:")
        with out.indent():
            out.line("new = dict(new)")  # the reader's row is read-only
            out.line("for column in unchanged_toast:")
            with out.indent():
                out.line("if column not in new and column in old:")
                with out.indent():
                    out.line("new[column] = old[column]")
        if state is not None and not (op is Op.DELETE and state.keep_deleted):
            # the row as the change leaves it; one the state already has as is is not put again
            # (an update of columns it does not keep, say a voucher's redemption counter)
            out.line("if key is not None:")
            with out.indent():
                if op is Op.DELETE:
                    out.line(f"state_delete({table!r}, key)")
                else:
                    out.line("merged = {**old, **new} if old else new")
                    if state.columns is not None:
                        out.line(f"merged = dict(zip({state.columns!r}, map(merged.get, {state.columns!r})))")
                    if previous == "None":
                        out.line(f"state_put({table!r}, key, merged)")
                    else:
                        out.line(f"if merged != {previous}:")
                        with out.indent():
                            out.line(f"state_put({table!r}, key, merged)")
        out.line("records = []")
        if plan.directory:
            out.line(f"records.extend(directory_record({table!r}, {out.bind('op', op)}, new, old, context.commit_lsn))")
        if plan.touched_kind is not None:
            out.line("if key is not None and not context.snapshot:")
            with out.indent():
                out.line(f"scratch_add({plan.touched_kind!r}, key)")
        if op is Op.INSERT:
            for kind, key_column, value in plan.feeds:
                out.line(f"scratch_add({kind!r}, new.get({key_column!r}), {out.bind('feed', value)}(new, old))")
        if op in plan.passthrough:
            out.line("if context.snapshot:")
            with out.indent():
                out.line("records.extend(passthrough(new, position, context))")
            out.line("else:")
            with out.indent():
                out.line("scratch_add('passthrough', '', (position, new))")
        for number in rule_numbers:
            out.line(f"event = rule_{number}(new, old, key, position, context)")
            out.line("if event is not None:")
            with out.indent():
                out.line("records.append(event)")
        out.line("return records")
    out.line("")


def compile_source(out: Source, runtime: dict[str, Any], filename: str) -> dict[str, Any]:
    """Executes the source with its bindings and `runtime` as globals; returns them."""
    names: dict[str, Any] = {**runtime, **out.bindings, "__builtins__": __builtins__}
    exec(compile(out.text(), filename, "exec"), names)  # noqa: S102 - our own generated source
    return names
