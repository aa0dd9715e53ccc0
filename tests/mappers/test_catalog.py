"""The catalog as data: it covers SPEC §4, and a bad rule is refused at load naming the rule."""

from __future__ import annotations

import pickle
import tomllib
import uuid
from datetime import UTC, datetime
from importlib import resources

import orjson
import pytest

from cdc_reader.changes import Change, Op, TransactionBegin
from mappers import (
    CatalogError,
    EventMapper,
    ReferenceState,
    SourceIdentity,
    load_default_catalog,
    tracked_columns,
    tracked_tables,
)
from mappers.catalog import build_catalog
from mappers.codegen import condition_function
from mappers.payload import wal_event_id
from mappers.schema import voucher_schema

SPEC_TYPES = {
    "customer.created", "customer.updated", "customer.deleted", "customer.redemption.succeeded",
    "customer.redemption.failed", "customer.redemption.rollback.succeeded",
    "customer.redemption.rollback.failed", "customer.publication.succeeded",
    "customer.publication.failed", "customer.order.created", "customer.order.paid",
    "customer.order.fulfilled", "customer.order.canceled", "customer.order.processing",
    "customer.order.updated", "customer.segment.entered", "customer.segment.left",
    "customer.voucher.gift.balance_added", "customer.voucher.loyalty_card.points_added",
    "customer.voucher.loyalty_card.points_expired", "customer.holder.assignment.created",
    "customer.holder.assignment.deleted", "customer.voucher.deleted",
}


def packaged() -> dict:
    return tomllib.loads(resources.files("mappers").joinpath("catalog.toml").read_text())


def test_catalog_covers_every_row_of_the_spec():
    catalog = load_default_catalog()
    assert {rule.type for rule in catalog.rules} == SPEC_TYPES
    assert catalog.passthrough.table == "customer_event"
    assert {(rule.type, rule.table) for rule in catalog.rules if rule.type == "customer.order.updated"} == {
        ("customer.order.updated", "orders"), ("customer.order.updated", "order_item")}


def test_tracked_tables_put_references_first_and_customer_event_last():
    tables = tracked_tables()
    assert set(tables) == {
        "tenant", "customer", "campaign", "voucher", "segment", "redemption", "orders", "order_item",
        "redemption_rollback", "publication", "publication_vouchers", "segment_customer",
        "voucher_transaction", "customer_event"}
    assert tables[-1] == "customer_event"
    for later, earlier in (("redemption", "voucher"), ("publication", "publication_vouchers"),
                           ("redemption_rollback", "redemption"), ("segment_customer", "segment"),
                           ("order_item", "orders"), ("voucher", "customer")):
        assert tables.index(earlier) < tables.index(later)


def test_adding_an_event_type_is_adding_a_rule(tmp_path):
    document = packaged()
    document["rule"].append({
        "type": "customer.voucher.gift.balance_removed", "table": "voucher_transaction",
        "on": ["insert"], "when": "new.type = 'CREDITS_REMOVAL'",
        "customer": "new.voucher_id > voucher.holder_id", "campaign": "new.campaign_id",
        "voucher": "new.voucher_id", "category": "EFFECT", "objects": {"transaction": "new"}})
    catalog = build_catalog(document, voucher_schema())
    assert condition_function(catalog.rules[-1].condition)({"type": "CREDITS_REMOVAL"}, {}) is True
    # and the mapper built from it makes the new event (mappers/codegen.py compiles the rule)
    event = gift_transaction_event(catalog, tmp_path, 1)
    assert (event.type, event.customer_id, event.category) == (
        "customer.voucher.gift.balance_removed", HOLDER, "EFFECT")
    assert orjson.loads(event.data)["transaction"]["amount"] == -500


HOLDER = uuid.UUID(int=2)


def gift_transaction_event(catalog, tmp_path, position):
    """The one event of a gift voucher's CREDITS_REMOVAL transaction (at `position`, commit LSN
    10, source ("1", "db")), mapped with `catalog`."""
    state = ReferenceState.open(tmp_path, 100, 0)
    mapper = EventMapper(catalog, state, SourceIdentity("1", "db"), "va")
    moment = datetime(2024, 3, 1, tzinfo=UTC)
    voucher, tenant = uuid.UUID(int=1), uuid.UUID(int=3)
    mapper.begin(TransactionBegin(xid=1, commit_lsn=10, commit_time=moment))
    mapper.change(Change(Op.INSERT, "public", "voucher", None, {
        "id": voucher, "code": "G-1", "type": "GIFT_VOUCHER", "holder_id": HOLDER, "tenant_id": tenant}, 1, 10, moment, 0))
    (event,) = mapper.change(Change(Op.INSERT, "public", "voucher_transaction", None, {
        "id": uuid.UUID(int=4), "voucher_id": voucher, "type": "CREDITS_REMOVAL", "amount": -500,
        "tenant_id": tenant}, 1, 10, moment, position))
    state.close()
    return event


@pytest.mark.parametrize("event_type, position", [
    ("customer.voucher.50%_off%d", 7), ("custom.événement", 12345), ("customer.gift.removed", 0)])
def test_an_event_gets_the_uuid5_of_its_documented_name(tmp_path, event_type, position):
    # the generated code continues the transaction's SHA-1 prefix with b'%d/<type>' % position
    # (a '%' of the type doubled) and makes the UUID from its int without UUID()'s checks
    document = packaged()
    document["rule"].append({
        "type": event_type, "table": "voucher_transaction", "on": ["insert"],
        "customer": "new.voucher_id > voucher.holder_id", "category": "EFFECT"})
    event = gift_transaction_event(build_catalog(document, voucher_schema()), tmp_path, position)
    made, expected = event.id, wal_event_id(SourceIdentity("1", "db"), 10, position, event_type)
    assert event.type == event_type
    assert made == expected and hash(made) == hash(expected) and {made: 1}[expected] == 1
    assert (repr(made), str(made), made.version, made.variant, made.is_safe) == (
        repr(expected), str(expected), 5, uuid.RFC_4122, uuid.SafeUUID.unknown)
    assert pickle.loads(pickle.dumps(made)) == expected


@pytest.mark.parametrize("change, message", [
    ({"when": "new.result ~ 'SUCC'"}, r"rule customer.redemption.succeeded on redemption: condition .*unsupported SQL: operator '~'"),
    ({"when": "new.amount = 'lots'"}, r"rule customer.redemption.succeeded on redemption: .*invalid integer literal 'lots'"),
    ({"when": "new.result = 'SUCCESS' AND now() IS NULL"}, r"unsupported SQL: function now\(\)"),
    ({"category": "SIDE_EFFECT"}, r"rule customer.redemption.succeeded on redemption: Invalid enum value "
     r"'SIDE_EFFECT' - at `\$.category` \(one of: ACTION or EFFECT\)"),
    ({"on": ["upsert"]}, r"Invalid enum value 'upsert' - at `\$.on\[0\]` \(one of: insert, update or delete\)"),
    ({"customer": 5}, r"rule customer.redemption.succeeded on redemption: Expected `str`, got `int` - at `\$.customer`"),
    ({"wen": "new.result = 'SUCCESS'"}, r"rule customer.redemption.succeeded on redemption: Object contains "
     r"unknown field `wen`"),
    ({"collect": {"object": "voucher"}}, r"Object missing required field `field` - at `\$.collect`"),
    ({"campaign": "new.voucher_id > coupon.campaign_id"}, r"looks up 'coupon', which \[state\] does not keep"),
    ({"customer": "neu.customer_id"}, "must start with new, old or row"),
    ({"objects": {"receipt": "new"}}, r"no \[objects.receipt\]"),
])
def test_a_bad_rule_is_refused_naming_it(change, message):
    document = packaged()
    rule = next(rule for rule in document["rule"] if rule["type"] == "customer.redemption.succeeded")
    rule.update(change)
    with pytest.raises(CatalogError, match=message):
        build_catalog(document, voucher_schema())


@pytest.mark.parametrize("edit, message", [
    (lambda document: document["rule"][0].pop("customer"),
     r"^rule customer.created on customer: Object missing required field `customer`$"),
    (lambda document: document["objects"]["customer"].pop("table"),
     r"^\[objects.customer\]: Object missing required field `table`$"),
    (lambda document: document["objects"].pop("campaign"),
     r"^\[objects.campaign\] is missing: every event carries it$"),
    (lambda document: document["state"]["voucher"].update(columns="all"),
     r"^\[state.voucher\]: Invalid enum value 'all' - at `\$.columns` \(one of: a list of columns, or \"\*\"\)$"),
    (lambda document: document["passthrough"].pop("data"),
     r"^passthrough on customer_event: Object missing required field `data`$"),
    (lambda document: document.update(rules=[]), r"^catalog: Object contains unknown field `rules`$"),
])
def test_a_malformed_catalog_is_refused_naming_the_entry_and_field(edit, message):
    document = packaged()
    edit(document)
    with pytest.raises(CatalogError, match=message):
        build_catalog(document, voucher_schema())


def test_the_snapshot_looks_rows_up_only_in_the_tables_its_events_read():
    from mappers.plans import snapshot_lookups

    # orders only for item-derived order updates, which the snapshot does not make; order items never
    assert snapshot_lookups(load_default_catalog()) == {
        "campaign", "customer", "redemption", "segment", "tenant", "voucher"}


def test_rows_need_only_the_columns_the_catalog_reads():
    columns = tracked_columns()
    assert set(columns) == set(tracked_tables())
    # whole rows: the state keeps every column of customers and orders; order updates list the
    # changed columns
    assert columns["customer"] is None and columns["orders"] is None
    # an order item: its key, what the state keeps, its time (`updated_at`: a snapshot event's
    # time when the rule's is missing)
    assert columns["order_item"] == {"id", "order_id", "tenant_id", "created_at", "updated_at"}
    # a voucher: the kept columns; the holder rules' conditions read nothing else
    assert columns["voucher"] == {"id", "code", "type", "campaign_id", "holder_id", "tenant_id", "created_at",
                                  "updated_at"}
    # a redemption: its payload object's fields too; a pass-through row: its references
    assert columns["redemption"] == {"id", "voucher_id", "tenant_id", "customer_id", "created_at", "updated_at",
                                     "result", "status", "amount", "tracking_id", "metadata"}
    assert columns["customer_event"] == {"id", "event_type", "customer_id", "campaign_id", "category", "data",
                                         "tenant_id", "created_at", "updated_at"}


def test_a_rule_that_lists_changed_columns_or_reads_a_column_makes_rows_carry_it():
    document = packaged()
    document["rule"].append({
        "type": "customer.voucher.gift.balance_removed", "table": "voucher_transaction",
        "on": ["insert"], "when": "new.details IS NOT NULL",
        "customer": "new.voucher_id > voucher.holder_id", "category": "EFFECT"})
    assert "details" in tracked_columns(build_catalog(document, voucher_schema()))["voucher_transaction"]
    assert "details" not in tracked_columns()["voucher_transaction"]
    document["rule"][-1]["changed_fields"] = {"ignore": ["updated_at"]}
    assert tracked_columns(build_catalog(document, voucher_schema()))["voucher_transaction"] is None
