"""The event catalog: declarative rules (SPEC §4) loaded from TOML and compiled once.

`load_catalog()` reads `catalog.toml` beside this module (or another file), checks every rule,
compiles its condition and references, and fails with `CatalogError` naming the rule and what
is wrong. The mapper only consults the compiled values; it has no per-event-type code.
"""

from __future__ import annotations

import graphlib
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from cdc_reader.changes import Op
from mappers.conditions import Condition, ConditionError, compile_condition
from mappers.references import Reference, ReferenceSyntaxError, parse_reference
from mappers.schema import Schema, voucher_schema

CATEGORIES = ("ACTION", "EFFECT")
OPS = {"insert": Op.INSERT, "update": Op.UPDATE, "delete": Op.DELETE}
STANDARD_OBJECTS = ("customer", "campaign", "voucher")
TENANT_TABLE = "tenant"
CUSTOMER_TABLE = "customer"


class CatalogError(ValueError):
    """The catalog is invalid; the message names the rule and the problem."""


@dataclass(frozen=True, slots=True)
class ObjectSpec:
    """A payload object: `fields` are (key in the payload, column of the row)."""

    name: str
    table: str
    fields: tuple[tuple[str, str], ...]


@dataclass(frozen=True, slots=True)
class Collect:
    object: str
    field: str
    table: str
    key: str
    value: Reference


@dataclass(frozen=True, slots=True)
class ChangedFields:
    ignore: frozenset[str]
    fixed: tuple[str, ...] | None  # a fixed list instead of comparing columns


@dataclass(frozen=True, slots=True)
class Rule:
    name: str  # "<type> on <table>", for messages
    type: str
    table: str
    ops: frozenset[Op]
    condition: Condition | None
    customer: Reference
    campaign: Reference | None
    voucher: Reference | None
    tenant: Reference
    subject: Reference | None  # None: the row's primary key
    category: str
    objects: tuple[tuple[str, Reference], ...]
    changed_fields: ChangedFields | None
    collect: Collect | None
    unless_emitted: frozenset[str]
    unless_changed: str | None
    once_per_transaction: bool
    snapshot_time: Reference

    @property
    def deferred(self) -> bool:
        """Whether the event depends on later changes of its transaction (decided at commit)."""
        return bool(self.collect or self.unless_emitted or self.unless_changed
                    or self.once_per_transaction)


@dataclass(frozen=True, slots=True)
class Passthrough:
    """Rows that are themselves events (`customer_event`): each field is a reference."""

    table: str
    ops: frozenset[Op]
    id: Reference
    type: Reference
    customer: Reference
    campaign: Reference
    category: Reference
    data: Reference
    tenant: Reference
    snapshot_time: Reference


@dataclass(frozen=True, slots=True)
class StateSpec:
    table: str
    columns: tuple[str, ...] | None  # None: every column
    keep_deleted: bool


@dataclass(frozen=True, slots=True)
class Catalog:
    rules: tuple[Rule, ...]
    passthrough: Passthrough | None
    objects: Mapping[str, ObjectSpec]
    state: Mapping[str, StateSpec]
    schema: Schema
    tables: tuple[str, ...]  # every table the mapper reads, references before their users
    dependencies: Mapping[str, frozenset[str]]  # table -> tables its events look up

    @property
    def touch_tables(self) -> frozenset[str]:
        return frozenset(rule.unless_changed for rule in self.rules if rule.unless_changed)

    @property
    def blocking_types(self) -> frozenset[str]:
        return frozenset(kind for rule in self.rules for kind in rule.unless_emitted)


def load_catalog(path: Path | None = None, schema: Schema | None = None) -> Catalog:
    """The catalog at `path` (default: the packaged one), checked and compiled."""
    if path is None:
        text = resources.files("mappers").joinpath("catalog.toml").read_text()
    else:
        text = Path(path).read_text()
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise CatalogError(f"catalog is not valid TOML: {error}") from None
    return build_catalog(document, schema or voucher_schema())


def build_catalog(document: Mapping[str, Any], schema: Schema) -> Catalog:
    objects = {name: _object(name, spec) for name, spec in document.get("objects", {}).items()}
    for name in STANDARD_OBJECTS:
        if name not in objects:
            raise CatalogError(f"[objects.{name}] is missing: every event carries it")
    state = {table: _state(table, spec) for table, spec in document.get("state", {}).items()}
    rules = tuple(_rule(spec, schema, objects) for spec in document.get("rule", []))
    passthrough = _passthrough(document["passthrough"]) if "passthrough" in document else None
    for rule in rules:
        for table in _lookup_tables(rule, objects) | set(rule.collect.value.tables if rule.collect else ()):
            if table not in state:
                raise CatalogError(f"rule {rule.name}: looks up {table!r}, which [state] does not keep")
    dependencies = _dependencies(rules, passthrough, state, objects)
    order = tuple(graphlib.TopologicalSorter(dependencies).static_order())
    return Catalog(rules, passthrough, objects, state, schema, order, dependencies)


def _object(name: str, spec: Mapping[str, Any]) -> ObjectSpec:
    fields = []
    for field in spec.get("fields", []):
        key, _, column = field.partition("=")
        fields.append((key.strip(), (column or key).strip()))
    if "table" not in spec:
        raise CatalogError(f"[objects.{name}] needs the table its ids are looked up in")
    return ObjectSpec(name, spec["table"], tuple(fields))


def _state(table: str, spec: Mapping[str, Any]) -> StateSpec:
    columns = spec.get("columns", "*")
    return StateSpec(table, None if columns == "*" else tuple(columns), bool(spec.get("keep_deleted")))


def _ops(name: str, spec: Mapping[str, Any]) -> frozenset[Op]:
    try:
        return frozenset(OPS[op] for op in spec["on"])
    except KeyError as error:
        raise CatalogError(f"rule {name}: unknown change kind {error} (insert, update, delete)") from None


def _reference(name: str, spec: Mapping[str, Any], key: str, default: str | None = None) -> Reference | None:
    text = spec.get(key, default)
    if text is None:
        return None
    try:
        return parse_reference(text)
    except ReferenceSyntaxError as error:
        raise CatalogError(f"rule {name}: {key}: {error}") from None


def _rule(spec: Mapping[str, Any], schema: Schema, objects: Mapping[str, ObjectSpec]) -> Rule:
    for key in ("type", "table", "on", "customer", "category"):
        if key not in spec:
            raise CatalogError(f"rule {spec.get('type', '?')}: missing {key!r}")
    name = f"{spec['type']} on {spec['table']}"
    if spec["category"] not in CATEGORIES:
        raise CatalogError(f"rule {name}: category must be ACTION or EFFECT")
    condition = None
    if "when" in spec:
        try:
            condition = compile_condition(spec["when"], schema.table(spec["table"]).columns)
        except ConditionError as error:
            raise CatalogError(f"rule {name}: condition {spec['when']!r}: {error}") from None
    rule_objects = []
    for object_name, text in spec.get("objects", {}).items():
        if object_name not in objects:
            raise CatalogError(f"rule {name}: no [objects.{object_name}] describes {object_name!r}")
        rule_objects.append((object_name, _reference(name, {"ref": text}, "ref")))
    changed = spec.get("changed_fields")
    changed_fields = None if changed is None else ChangedFields(
        frozenset(changed.get("ignore", ())),
        tuple(changed["fixed"]) if "fixed" in changed else None)
    collect = None
    if "collect" in spec:
        raw = spec["collect"]
        collect = Collect(raw["object"], raw["field"], raw["table"], raw["key"],
                          _reference(name, raw, "value"))
        if raw["object"] not in spec.get("objects", {}):
            raise CatalogError(f"rule {name}: collect fills {raw['object']!r}, which the rule has not")
    if spec.get("once_per_transaction") and "subject" not in spec:
        raise CatalogError(f"rule {name}: once_per_transaction needs a subject")
    return Rule(
        name=name, type=spec["type"], table=spec["table"], ops=_ops(name, spec),
        condition=condition,
        customer=_reference(name, spec, "customer"),
        campaign=_reference(name, spec, "campaign"),
        voucher=_reference(name, spec, "voucher"),
        tenant=_reference(name, spec, "tenant", "row.tenant_id"),
        subject=_reference(name, spec, "subject"),
        category=spec["category"],
        objects=tuple(rule_objects),
        changed_fields=changed_fields,
        collect=collect,
        unless_emitted=frozenset(spec.get("unless_emitted", ())),
        unless_changed=spec.get("unless_changed"),
        once_per_transaction=bool(spec.get("once_per_transaction")),
        snapshot_time=_reference(name, spec, "snapshot_time", "row.created_at"),
    )


def _passthrough(spec: Mapping[str, Any]) -> Passthrough:
    name = f"passthrough on {spec.get('table', '?')}"
    fields = {key: _reference(name, spec, key) for key in
              ("id", "type", "customer", "campaign", "category", "data")}
    missing = [key for key, value in fields.items() if value is None]
    if missing or "table" not in spec:
        raise CatalogError(f"{name}: missing {', '.join(missing or ['table'])}")
    return Passthrough(
        table=spec["table"], ops=_ops(name, spec), **fields,
        tenant=_reference(name, spec, "tenant", "row.tenant_id"),
        snapshot_time=_reference(name, spec, "snapshot_time", "row.created_at"))


def _lookup_tables(rule: Rule, objects: Mapping[str, ObjectSpec]) -> set[str]:
    """The reference-state tables the rule's references and payload objects read."""
    references = [rule.customer, rule.campaign, rule.voucher, rule.tenant, rule.subject,
                  rule.snapshot_time, *(reference for _, reference in rule.objects)]
    tables = {table for reference in references if reference for table in reference.tables}
    for object_name, reference in rule.objects:
        if not reference.yields_row:
            tables.add(objects[object_name].table)
    return tables


def _dependencies(rules: tuple[Rule, ...], passthrough: Passthrough | None,
                  state: Mapping[str, StateSpec], objects: Mapping[str, ObjectSpec]
                  ) -> dict[str, frozenset[str]]:
    """Every table read -> the tables whose rows its events look up; the initial snapshot must
    deliver those first. The passthrough table depends on every rule table: its rows are kept
    only when no business row already gave the same event."""
    graph: dict[str, set[str]] = {table: set() for table in state}
    for rule in rules:
        needs = _lookup_tables(rule, objects) | {TENANT_TABLE, objects["customer"].table}
        if rule.campaign:
            needs.add(objects["campaign"].table)
        if rule.voucher:
            needs.add(objects["voucher"].table)
        needs &= set(state) | {rule.collect.table if rule.collect else ""}
        if rule.collect:
            needs.add(rule.collect.table)
        graph.setdefault(rule.table, set()).update(table for table in needs if table != rule.table)
        if rule.collect:
            graph.setdefault(rule.collect.table, set()).update(rule.collect.value.tables)
    if passthrough is not None:
        graph.setdefault(passthrough.table, set()).update(
            table for table in graph if table != passthrough.table)
    return {table: frozenset(needs) for table, needs in graph.items()}
