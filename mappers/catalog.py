"""The event catalog: declarative rules (SPEC §4) loaded from TOML and compiled once.

`load_catalog()` reads `catalog.toml` beside this module (or another file), converts it into
the typed documents below with msgspec (which names the field at fault), compiles every rule's
condition and references, and fails with `CatalogError` naming the rule and what is wrong. The mapper only consults the compiled values; it has no per-event-type code.
"""

from __future__ import annotations

import graphlib
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Literal, TypeVar

import msgspec

from cdc_reader.changes import Op
from mappers.conditions import Condition, ConditionError, compile_condition
from mappers.references import Reference, ReferenceSyntaxError, parse_reference
from mappers.schema import Schema, voucher_schema

OPS = {"insert": Op.INSERT, "update": Op.UPDATE, "delete": Op.DELETE}
STANDARD_OBJECTS = ("customer", "campaign", "voucher")
TENANT_TABLE = "tenant"
CUSTOMER_TABLE = "customer"


_Document = TypeVar("_Document")


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


class _ObjectDocument(msgspec.Struct, forbid_unknown_fields=True):
    table: str
    fields: list[str] = []  # "key" or "key = column"


class _StateDocument(msgspec.Struct, forbid_unknown_fields=True):
    columns: list[str] | Literal["*"] = "*"
    keep_deleted: bool = False


class _ChangedFieldsDocument(msgspec.Struct, forbid_unknown_fields=True):
    ignore: list[str] = []
    fixed: list[str] | None = None


class _CollectDocument(msgspec.Struct, forbid_unknown_fields=True):
    object: str
    field: str
    table: str
    key: str
    value: str


OpName = Literal["insert", "update", "delete"]


class _RuleDocument(msgspec.Struct, forbid_unknown_fields=True):
    type: str
    table: str
    on: list[OpName]
    customer: str
    category: Literal["ACTION", "EFFECT"]
    when: str | None = None
    campaign: str | None = None
    voucher: str | None = None
    tenant: str = "row.tenant_id"
    subject: str | None = None  # None: the row's primary key
    objects: dict[str, str] = {}
    changed_fields: _ChangedFieldsDocument | None = None
    collect: _CollectDocument | None = None
    unless_emitted: list[str] = []
    unless_changed: str | None = None
    once_per_transaction: bool = False
    snapshot_time: str = "row.created_at"


class _PassthroughDocument(msgspec.Struct, forbid_unknown_fields=True):
    table: str
    on: list[OpName]
    id: str
    type: str
    customer: str
    campaign: str
    category: str
    data: str
    tenant: str = "row.tenant_id"
    snapshot_time: str = "row.created_at"


class _CatalogDocument(msgspec.Struct, forbid_unknown_fields=True):
    # each entry converted alone, so that an error names its object, table or rule
    objects: dict[str, dict[str, Any]] = {}
    state: dict[str, dict[str, Any]] = {}
    rule: list[dict[str, Any]] = []
    passthrough: dict[str, Any] | None = None


# What an enumerated field takes, added to msgspec's "Invalid enum value" message.
_CHOICES = {"category": "ACTION or EFFECT", "on": "insert, update or delete",
            "columns": 'a list of columns, or "*"'}


def _convert(value: Any, document_type: type[_Document], where: str) -> _Document:
    """`value` (parsed TOML) as `document_type`; msgspec's message names the field at fault."""
    try:
        return msgspec.convert(value, document_type)
    except msgspec.ValidationError as error:
        message = str(error)
        field = message.rpartition("`$.")[2].split("[")[0].rstrip("`")
        if message.startswith("Invalid enum value") and field in _CHOICES:
            message += f" (one of: {_CHOICES[field]})"
        raise CatalogError(f"{where}: {message}") from None


def build_catalog(document: Mapping[str, Any], schema: Schema) -> Catalog:
    parsed = _convert(document, _CatalogDocument, "catalog")
    objects = {name: _object(name, _convert(spec, _ObjectDocument, f"[objects.{name}]"))
               for name, spec in parsed.objects.items()}
    for name in STANDARD_OBJECTS:
        if name not in objects:
            raise CatalogError(f"[objects.{name}] is missing: every event carries it")
    state = {}
    for table, raw in parsed.state.items():
        spec = _convert(raw, _StateDocument, f"[state.{table}]")
        state[table] = StateSpec(table, None if spec.columns == "*" else tuple(spec.columns), spec.keep_deleted)
    rules = tuple(_rule(raw, schema, objects) for raw in parsed.rule)
    passthrough = _passthrough(parsed.passthrough) if parsed.passthrough is not None else None
    for rule in rules:
        for table in _lookup_tables(rule, objects) | set(rule.collect.value.tables if rule.collect else ()):
            if table not in state:
                raise CatalogError(f"rule {rule.name}: looks up {table!r}, which [state] does not keep")
    dependencies = _dependencies(rules, passthrough, state, objects)
    order = tuple(graphlib.TopologicalSorter(dependencies).static_order())
    return Catalog(rules, passthrough, objects, state, schema, order, dependencies)


def _object(name: str, spec: _ObjectDocument) -> ObjectSpec:
    fields = []
    for field in spec.fields:
        key, _, column = field.partition("=")
        fields.append((key.strip(), (column or key).strip()))
    return ObjectSpec(name, spec.table, tuple(fields))


def _reference(name: str, key: str, text: str | None) -> Reference | None:
    if text is None:
        return None
    try:
        return parse_reference(text)
    except ReferenceSyntaxError as error:
        raise CatalogError(f"{name}: {key}: {error}") from None


def _rule(raw: Mapping[str, Any], schema: Schema, objects: Mapping[str, ObjectSpec]) -> Rule:
    raw_name = f"{raw.get('type', '?')} on {raw.get('table', '?')}"
    spec = _convert(raw, _RuleDocument, f"rule {raw_name}")
    name = f"{spec.type} on {spec.table}"
    where = f"rule {name}"
    condition = None
    if spec.when is not None:
        try:
            condition = compile_condition(spec.when, schema.table(spec.table).columns)
        except ConditionError as error:
            raise CatalogError(f"{where}: condition {spec.when!r}: {error}") from None
    for object_name in spec.objects:
        if object_name not in objects:
            raise CatalogError(f"{where}: no [objects.{object_name}] describes {object_name!r}")
    changed = spec.changed_fields
    collect = None
    if spec.collect is not None:
        raw_collect = spec.collect
        if raw_collect.object not in spec.objects:
            raise CatalogError(f"{where}: collect fills {raw_collect.object!r}, which the rule has not")
        collect = Collect(raw_collect.object, raw_collect.field, raw_collect.table, raw_collect.key,
                          _reference(where, "collect.value", raw_collect.value))
    if spec.once_per_transaction and spec.subject is None:
        raise CatalogError(f"{where}: once_per_transaction needs a subject")
    return Rule(
        name=name, type=spec.type, table=spec.table, ops=frozenset(OPS[op] for op in spec.on),
        condition=condition,
        customer=_reference(where, "customer", spec.customer),
        campaign=_reference(where, "campaign", spec.campaign),
        voucher=_reference(where, "voucher", spec.voucher),
        tenant=_reference(where, "tenant", spec.tenant),
        subject=_reference(where, "subject", spec.subject),
        category=spec.category,
        objects=tuple((object_name, _reference(where, f"objects.{object_name}", text))
                      for object_name, text in spec.objects.items()),
        changed_fields=None if changed is None else ChangedFields(
            frozenset(changed.ignore), tuple(changed.fixed) if changed.fixed is not None else None),
        collect=collect,
        unless_emitted=frozenset(spec.unless_emitted),
        unless_changed=spec.unless_changed,
        once_per_transaction=spec.once_per_transaction,
        snapshot_time=_reference(where, "snapshot_time", spec.snapshot_time),
    )


def _passthrough(raw: Mapping[str, Any]) -> Passthrough:
    where = f"passthrough on {raw.get('table', '?')}"
    spec = _convert(raw, _PassthroughDocument, where)
    references = {key: _reference(where, key, getattr(spec, key)) for key in
                  ("id", "type", "customer", "campaign", "category", "data", "tenant", "snapshot_time")}
    return Passthrough(table=spec.table, ops=frozenset(OPS[op] for op in spec.on), **references)


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
