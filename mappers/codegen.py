"""The compiled plans as Python functions: one per table and change kind, and one per rule.

`mappers/plans.py` works a catalog out into plans; running them through general code costs,
per change, a test of every feature a table or rule might have (state, directory, feeds, a
condition, changed fields, collected values...) and a closure call per reference. Here each
plan becomes the straight-line code of what it does, written as Python source and compiled
once when the mapper is built: a rule without a condition tests none, a reference
`new.customer_id` is `new.get('customer_id')` in place, a hop is one lookup. References,
conditions and payload objects exist only in this generated form (`reference_function` and
`condition_function` compile one alone).

The generated source is the behaviour: `EventMapper.generated_source()` returns it all, to read.

Every value the code uses that is not a literal (closures, resolvers, constants) is bound by
name in the functions' globals; literals (table names, columns, kinds, types) are written with
repr(). A rule function `rule_<n>(new, old, key, position, context)` returns the event or None (its
condition, if any, was tested by its caller);
`build_<n>(position, key, subject, customer, changed, new, old, context)` builds the event of a
rule that defers it to the commit; `change_<table>_<op>(new, old,
unchanged_toast, position, context)` maps one change of that table and returns its records.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from contextlib import nullcontext
from typing import Any

from cdc_reader.changes import Op
from mappers.catalog import ObjectSpec, Passthrough
from mappers.conditions import Condition
from mappers.payload import object_code
from mappers.plans import RulePlan, TablePlan, no_key
from mappers.references import Lookup, Reference
from mappers.source import Source, compile_source, python_name


def _start(reference: Reference) -> str:
    """The expression of a reference's first step (a column of the changed row, or the row)."""
    row = {"new": "new", "old": "old", "row": "(new or old)"}[reference.side]
    if reference.column is None:
        return f"({row} or None)"
    return f"{row}.get({reference.column!r})"


def _comment(text: str) -> str:
    """A one-line comment of catalog text (a condition may span lines in the TOML)."""
    return "# " + " ".join(text.split())


def reference_code(out: Source, target: str, reference: Reference) -> None:
    """Statements that set `target` to the reference's value: None when any step is NULL or
    unknown (`lookup`, bound by the caller, gives None); a hop without a column yields the row."""
    out.line(f"{target} = {_start(reference)}")
    for hop in reference.hops:
        out.line(f"if {target} is not None:")
        with out.indent():
            out.line(f"{target} = lookup({hop.table!r}, {target})")
            if hop.column is not None:
                out.when(f"{target} is not None", f"{target} = {target}.get({hop.column!r})")


def _remember_emitted(out: Source, plan: RulePlan, passthrough: bool) -> None:
    """EventMapper's bookkeeping of an event made (`event` and `customer_uuid`, its customer_id,
    are bound). What a transaction's commit reads (`EventMapper._wanted`, the pass-through rows)
    is remembered in the stream only: an initial snapshot has no commit, and its rows' events
    are paired by their counts instead."""
    streamed = []
    if passthrough:
        streamed.append(f"scratch_add('emitted', ({plan.type!r}, customer_uuid.int))")
    if plan.blocking_kind is not None:
        streamed.append(f"scratch_add({plan.blocking_kind!r}, subject)")
    if passthrough:
        out.when("context.snapshot", f"count_snapshot_event(customer_uuid, {plan.type!r})")
        out.line("else:")
        with out.indent():
            for statement in streamed:
                out.line(statement)
    elif streamed:
        out.when("not context.snapshot", *streamed)


def _object_code(out: Source, target: str, resolver: str, memo: str | None, spec: ObjectSpec | None = None,
                 result: str = "made") -> None:
    """`result = resolver(target)`; with the resolver's memo (payload.object_resolver,
    `payload.campaign_type_resolver`), a UUID's entry is read in place first (the memo keys a UUID by
    its int, as the resolver does). With `spec` (a reference that yields a row), the object of a
    row is built in place (payload.object_code, as the resolver builds it)."""
    if memo is not None:
        out.line(f"{result} = {memo}.get({target}.int) if type({target}) is UUID else None")
        out.when(f"{result} is None", f"{result} = {resolver}({target})")
    elif spec is not None:
        out.either(f"type({target}) is dict", f"{result} = {object_code(spec, target)}",
                   f"{result} = {resolver}({target})")
    else:
        out.line(f"{result} = {resolver}({target})")


def _build_body(out: Source, plan: RulePlan, made: Callable[[Source], None] | None) -> None:
    """The event of a decided rule, its payload as the state holds it now. Bound: position, key,
    subject, customer, changed, new, old, context. Returns the event; with `made`, binds it to
    `event`, writes `made`'s statements, and then returns it."""
    rule = plan.rule
    reference_code(out, "tenant_id", rule.tenant)
    out.line("if tenant_id is None:")
    with out.indent():
        out.line("customer_row = lookup('customer', customer)")
        out.when("customer_row is not None", "tenant_id = customer_row.get('tenant_id')")
    out.line("customer_uuid = customer if type(customer) is UUID else as_uuid(customer)")
    out.line("tenant_uuid = tenant_id if type(tenant_id) is UUID else as_uuid(tenant_id)")
    out.when("customer_uuid is None or tenant_uuid is None",
             f"log.warning('no %s event for customer %r: tenant %r unknown', {plan.type!r}, customer, tenant_id)",
             "return None")
    # the customer's object from its memo in place (customer_uuid spells the same id)
    out.line("made = customer_memo.get(customer_uuid.int)")
    out.when("made is None", "made = customer_object(customer)")
    out.line("data = {'customer': made}")
    out.line("campaign_type = ''")
    out.line("campaign_uuid = None")
    if rule.campaign is not None:
        reference_code(out, "campaign_id", rule.campaign)
        out.line("if campaign_id is not None:")
        with out.indent():
            _object_code(out, "campaign_id", "campaign_object", "campaign_memo")
            out.line("data['campaign'] = made")
            _object_code(out, "campaign_id", "campaign_type_of", "campaign_type_memo", result="campaign_type")
            out.line("campaign_uuid = campaign_id if type(campaign_id) is UUID else as_uuid(campaign_id)")
    objects = [(name, resolve, reference)
               for (name, resolve), (_, reference) in zip(plan.objects, rule.objects, strict=True)]
    if rule.voucher is not None:
        objects.insert(0, ("voucher", plan.voucher_object, rule.voucher))
    for name, resolve, reference in objects:
        reference_code(out, "target", reference)
        memo = getattr(resolve, "memo", None)
        _object_code(out, "target", out.bind(name + "_object", resolve),
                     out.bind(name + "_memo", memo) if memo is not None else None,
                     getattr(resolve, "spec", None) if reference.yields_row else None)
        out.when("made is not None", f"data[{name!r}] = made")
    if plan.collect is not None:
        kind, object_name, field_name = plan.collect
        # built for this event (ObjectResolvers.pick): free to fill
        out.when(f"{object_name!r} in data",
                 f"collected = scratch_values({kind!r}, key)",
                 f"data[{object_name!r}][{field_name!r}] = sorted(value for value in collected if value is not None)")
    if plan.changed_fixed is not None or plan.changed_ignore is not None:
        out.line("data['changed_fields'] = changed")
    out.line("data['event_source'] = EVENT_SOURCES[context.source]")
    out.line("if context.snapshot:")
    with out.indent():
        out.line(f"event_id = snapshot_event_id({plan.table!r}, key, {plan.type!r})")
        reference_code(out, "created_at", rule.snapshot_time)
        out.line("created_at = event_time(created_at, new.get('updated_at'))")
    out.line("else:")
    with out.indent():
        # payload.wal_event_id: the transaction's SHA-1 prefix (payload.transaction_id_prefix)
        # continued with "<position>/<type>" ('%' in the type doubled), made a version-5 UUID
        out.line("hasher = context.id_prefix.copy()")
        out.line(f"hasher.update({b'%d' + plan.id_suffix.replace(b'%', b'%%')!r} % position)")
        out.line("event_id = uuid_from_int(int_from_bytes(hasher.digest()[:16]) & UUID5_CLEAR | UUID5_SET)")
        out.line("created_at = context.commit_time")
    out.line("tenant = tenant_names.get(tenant_uuid.int)")
    out.when("tenant is None", "tenant = tenant_name(tenant_uuid)")
    # serialize(data) in place (mappers/payload.py)
    event = (f"CustomerEvent(event_id, tenant_uuid, tenant, customer_uuid, created_at, "
             f"{plan.type!r}, {plan.category!r}, campaign_uuid, campaign_type, context.group_id, "
             f"context.source, dumps(data, default=json_default, option=JSON_OPTIONS).decode(), "
             f"{plan.table!r}, context.commit_lsn)")
    if made is None:
        out.line(f"return {event}")
    else:
        out.line(f"event = {event}")
        made(out)
        out.line("return event")


def rule_functions(out: Source, plan: RulePlan, passthrough: bool) -> None:
    """`build_<n>` and `rule_<n>` (see the module's docstring). `passthrough`: the catalog has
    pass-through rows, which the events made are remembered for."""
    number, rule = plan.index, plan.rule

    def made(out: Source) -> None:
        _remember_emitted(out, plan, passthrough)

    if plan.deferred:
        out.line(f"def build_{number}(position, key, subject, customer, changed, new, old, context):")
        with out.indent():
            out.line(_comment(rule.name))
            _build_body(out, plan, None)
        out.line("")
    out.line(f"def rule_{number}(new, old, key, position, context):")
    with out.indent():
        out.line(_comment(rule.name))
        if plan.touched_kind is not None:
            # the snapshot reads every row of that table: it always changed
            out.when("context.snapshot", "return None")
        reference_code(out, "customer", rule.customer)
        out.when("customer is None", "return None")
        if plan.changed_fixed is not None:
            out.line(f"changed = {list(plan.changed_fixed)!r}")
        elif plan.changed_ignore is not None:
            out.line(f"changed = changed_columns(new, old, {out.bind('ignore', plan.changed_ignore)})")
            out.when("not changed", "return None")
        else:
            out.line("changed = None")
        if rule.subject is not None:
            reference_code(out, "subject", rule.subject)
        else:
            out.line("subject = key")
        if plan.once_kind is not None:
            out.line("if not context.snapshot:")
            with out.indent():
                out.when(f"scratch_has({plan.once_kind!r}, subject)", "return None")
                out.line(f"scratch_add({plan.once_kind!r}, subject)")
        if plan.deferred:
            # built at the commit, from the state as the transaction left it
            out.when("not context.snapshot",
                     f"scratch_add('pending', '', ({number}, position, key, subject, customer, changed, new, old))",
                     "return None")
            out.line(f"event = build_{number}(position, key, subject, customer, changed, new, old, context)")
            out.line("if event is not None:")
            with out.indent():
                out.line("customer_uuid = event.customer_id")
                made(out)
            out.line("return event")
        else:
            _build_body(out, plan, made)  # in place: one call less per event
    out.line("")


def change_function(out: Source, plan: TablePlan, op: Op, rules: tuple[RulePlan, ...], name: str,
                    passthrough: Passthrough | None = None) -> None:
    """`change_<table>_<op>`: EventMapper's mapping of one change (the rows canonical). A rule's
    condition is tested here, in place (`Condition.code`), and its function called only when
    the condition holds. `passthrough`: the catalog's, when this change's rows are events
    themselves."""
    table = plan.table
    out.line(f"def {name}(new, old, unchanged_toast, position, context):")
    with out.indent():
        row = {Op.INSERT: "new", Op.DELETE: "old"}.get(op)  # an update's row: new or old
        key = (f"{row or '(new or old)'}.get({plan.key_column!r})" if plan.key_column is not None
               else f"{out.bind('key_of', plan.key_of)}({row or 'new or old'})")
        if plan.wal_key_of is no_key:  # a composite key nothing reads: only snapshot event ids
            key = f"{key} if context.snapshot else None" if rules else "None"
        out.line(f"key = {key}")
        state = plan.state
        compared = False  # whether the state's previous row is compared with the new one
        if state is not None and op is not Op.INSERT:
            # an inserted row is new (the engine's ids are fresh UUIDs): no previous state
            out.line("previous = None")
            out.line("if key is not None:")
            with out.indent():
                out.line(f"previous = lookup({table!r}, key)")
                out.when("previous is not None", "old = {**previous, **old} if old else previous")
            compared = plan.state_equal_is_same
        out.line("if unchanged_toast:")
        with out.indent():
            out.line("new = dict(new)")  # the reader's row is read-only
            out.line("for column in unchanged_toast:")
            with out.indent():
                out.when("column not in new and column in old", "new[column] = old[column]")
        if state is not None and not (op is Op.DELETE and state.keep_deleted):
            # the row as the change leaves it; one the state already has as is is not put again
            # (an update of columns it does not keep, say a voucher's redemption counter)
            out.line("if key is not None:")
            with out.indent():
                if op is Op.DELETE:
                    out.line(f"state_delete({table!r}, key)")
                else:
                    if state.columns is None:
                        out.line("merged = {**old, **new} if old else new")
                    else:
                        # the kept columns of {**old, **new}, built in one dict display
                        out.either("old", "merged = {" + ", ".join(
                            f"{column!r}: new.get({column!r}, old.get({column!r}))" for column in state.columns) + "}",
                            "merged = {" + ", ".join(f"{column!r}: new.get({column!r})" for column in state.columns) + "}")
                    if compared:
                        out.when("merged != previous", f"state_put({table!r}, key, merged)")
                    elif op is Op.INSERT:
                        # a new row is read back, if at all, by the rest of its transaction or
                        # long after (`add`: not through the first level, where it would push out
                        # the rows lookups use); the encodings of a table the snapshot never
                        # looks up are not kept
                        out.either("context.snapshot", f"state_add({table!r}, key, merged, {plan.snapshot_read!r})",
                                   f"state_add({table!r}, key, merged)")
                    else:
                        out.line(f"state_put({table!r}, key, merged)")
        out.line("records = []")
        if plan.directory:
            out.line(f"records.extend(directory_record({table!r}, {out.bind('op', op)}, new, old, context.commit_lsn))")
        if plan.touched_kind is not None:
            out.when("key is not None and not context.snapshot", f"scratch_add({plan.touched_kind!r}, key)")
        if op is Op.INSERT:
            for kind, key_column, value in plan.feeds:
                reference_code(out, "value", value)
                out.line(f"scratch_add({kind!r}, new.get({key_column!r}), value)")
        if op in plan.passthrough:
            out.when("context.snapshot", "records.extend(passthrough(new, position, context))")
            out.line("else:")
            with out.indent():
                if passthrough is not None and _reads_new_only(passthrough):
                    # a row repeating an event made already is left out now (the engine writes
                    # its customer_event rows after the business rows, mostly): no scratch entry,
                    # no second look at the commit; the others wait for the commit
                    out.line("known = False")
                    _passthrough_known(out, passthrough, "known = True")
                    out.when("not known", "scratch_add('passthrough', '', (position, new))")
                else:
                    out.line("scratch_add('passthrough', '', (position, new))")
        for rule in rules:
            condition = rule.rule.condition
            if condition is not None:
                out.line(_comment(condition.text))
                out.line(f"if {condition.code(out)} is True:")
            with out.indent() if condition is not None else nullcontext():
                out.line(f"event = rule_{rule.index}(new, old, key, position, context)")
                out.when("event is not None", "records.append(event)")
        out.line("return records")
    out.line("")


def passthrough_function(out: Source, spec: Passthrough, name: str) -> None:
    """`<name>(rows, context)`: the records of a source transaction's pass-through rows, at its
    commit. Most rows repeat an event the transaction made: a row whose customer id is a UUID
    spelled in 36 characters (varchar(36), as the engine writes it) is checked against those from
    its hex digits, in place, without making a UUID of it (UUID() costs ~1 us); the others go to
    `passthrough` (EventMapper._passthrough)."""
    out.line(f"def {name}(rows, context):")
    with out.indent():
        out.line("records = []")
        out.line("for position, new in rows:")
        with out.indent():
            if not _reads_new_only(spec):
                out.line("old = EMPTY_ROW")  # the row is `new` (EventMapper._passthrough's references)
            _passthrough_known(out, spec, "continue")
            out.line("records.extend(passthrough(new, position, context))")
        out.line("return records")
    out.line("")


def _reads_new_only(spec: Passthrough) -> bool:
    """Whether a pass-through row's customer and type are read from `new` alone."""
    return not {spec.customer.side, spec.type.side} - {"new"}


def _passthrough_known(out: Source, spec: Passthrough, known: str) -> None:
    """`known` runs when the pass-through row `new` repeats an event the transaction made: its
    customer id is a UUID spelled in 36 characters (varchar(36), as the engine writes it), read
    from its hex digits in place, without making a UUID of it (UUID() costs ~1 us). Rows spelled
    otherwise are not known here (EventMapper._passthrough decides them)."""
    reference_code(out, "customer", spec.customer)
    # 36 characters, 32 of them hex digits: what uuid.UUID reads as their value
    # (unhexlify takes hex digits only, unlike int(text, 16): no sign, space or "_")
    out.line("if type(customer) is str and len(customer) == 36 "
             "and len(digits := customer.replace('-', '')) == 32:")
    with out.indent():
        out.line("try:")
        with out.indent():
            out.line("customer_int = int_from_bytes(unhexlify(digits))")
        out.line("except ValueError:")
        with out.indent():
            out.line("customer_int = None")
        out.line("if customer_int is not None:")
        with out.indent():
            reference_code(out, "event_type", spec.type)
            out.when("scratch_has('emitted', (event_type, customer_int))", known)


def change_function_names(tables: Iterable[str]) -> dict[str, str]:
    """Per table, the stem of its change functions' names (`change_<stem>_<op>`): the table's
    name made a Python name (`python_name`; a table may be any quoted SQL identifier), unique by
    appending "_"."""
    stems: dict[str, str] = {}
    for table in tables:
        stem = python_name(table)
        while stem in stems.values():
            stem += "_"
        stems[table] = stem
    return stems


def condition_function(condition: Condition) -> Callable[[Any, Any], Any]:
    """The condition's code (`Condition.code`, what the change functions test in place) alone,
    as a function `(new, old) -> its SQL value`."""
    out = Source()
    out.line("def condition(new, old):")
    with out.indent():
        out.line(f"return {condition.code(out)}")
    return compile_source(out, {}, f"<condition {condition.text}>")["condition"]


def reference_function(reference: Reference, lookup: Lookup) -> Callable[[Any, Any], Any]:
    """The reference's code (`reference_code`, what the generated functions run in place) alone,
    as a function `(new, old) -> the referenced value`."""
    out = Source()
    out.line("def resolve(new, old):")
    with out.indent():
        reference_code(out, "value", reference)
        out.line("return value")
    return compile_source(out, {"lookup": lookup}, f"<reference {reference.text}>")["resolve"]
