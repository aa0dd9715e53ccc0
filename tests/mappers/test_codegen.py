"""The catalog compiled into Python source (mappers/codegen.py): references written in place
resolve to the value their path names, and each table and change kind gets the function of
what its plan does, nothing more. (Every event of the catalog is checked end to end by the
tests/mappers/test_events_*.py tests, which run through these functions.)"""

from __future__ import annotations

import re
import tomllib
import uuid
from datetime import UTC, datetime
from importlib import resources

import orjson
import pytest

from cdc_reader.changes import Change, Op, TransactionBegin, TransactionCommit
from mappers import EventMapper, ReferenceState, SourceIdentity, load_default_catalog
from mappers.catalog import build_catalog
from mappers.codegen import change_function_names, reference_code, reference_function
from mappers.references import parse_reference
from mappers.schema import parse_schema, voucher_schema, voucher_schema_sql
from mappers.source import Source, compile_source

VOUCHER = uuid.UUID(int=11)
REDEMPTION = uuid.UUID(int=12)
CAMPAIGN = uuid.UUID(int=13)
STATE = {
    ("voucher", VOUCHER): {"id": VOUCHER, "campaign_id": CAMPAIGN, "holder_id": None},
    ("redemption", REDEMPTION): {"id": REDEMPTION, "voucher_id": VOUCHER},
}


def lookup(table, key):
    return STATE.get((table, key))


def generated(reference_text):
    out = Source()
    out.line("def resolve(new, old):")
    with out.indent():
        reference_code(out, "value", parse_reference(reference_text))
        out.line("return value")
    return compile_source(out, {"lookup": lookup}, "<test>")["resolve"], out.text()


def test_a_reference_with_hops_is_one_lookup_per_hop_in_place():
    resolve, text = generated("new.redemption_id > redemption.voucher_id > voucher.campaign_id")
    assert text == (
        "def resolve(new, old):\n"
        "    value = new.get('redemption_id')\n"
        "    if value is not None:\n"
        "        value = lookup('redemption', value)\n"
        "        if value is not None:\n"
        "            value = value.get('voucher_id')\n"
        "    if value is not None:\n"
        "        value = lookup('voucher', value)\n"
        "        if value is not None:\n"
        "            value = value.get('campaign_id')\n"
        "    return value\n")
    assert resolve({"redemption_id": REDEMPTION}, {}) == CAMPAIGN


VOUCHER_ROW = STATE["voucher", VOUCHER]
MISSING = uuid.UUID(int=99)


@pytest.mark.parametrize("text, new, old, expected", [
    ("new", {}, {}, None),  # no row: NULL, not {}
    ("new", {"a": 1}, {"b": 2}, {"a": 1}),
    ("old", {"a": 1}, {"b": 2}, {"b": 2}),
    ("row", {}, {"b": 2}, {"b": 2}),  # the old row when the row goes
    ("row", {"a": 1}, {"b": 2}, {"a": 1}),
    ("row.voucher_id", {}, {"voucher_id": VOUCHER}, VOUCHER),
    ("row.voucher_id", {"voucher_id": None}, {"voucher_id": VOUCHER}, None),  # the new row's NULL
    ("new.customer_id", {}, {"customer_id": VOUCHER}, None),
    ("new.voucher_id > voucher", {"voucher_id": VOUCHER}, {}, VOUCHER_ROW),
    ("new.voucher_id > voucher", {"voucher_id": MISSING}, {}, None),
    ("new.voucher_id > voucher.campaign_id", {"voucher_id": VOUCHER}, {}, CAMPAIGN),
    ("old.voucher_id > voucher.holder_id", {}, {"voucher_id": VOUCHER}, None),  # a NULL column
    ("old.voucher_id > voucher.holder_id", {}, {"voucher_id": None}, None),
    ("row.redemption_id > redemption.voucher_id > voucher", {"redemption_id": REDEMPTION}, {}, VOUCHER_ROW),
    ("row.redemption_id > redemption.voucher_id > voucher", {"redemption_id": MISSING}, {}, None),
    ("new.redemption_id > redemption.voucher_id > voucher.campaign_id", {}, {"redemption_id": REDEMPTION}, None),
    ("old.redemption_id > redemption.voucher_id > voucher.campaign_id", {}, {"redemption_id": REDEMPTION},
     CAMPAIGN),
])
def test_references_resolve_to_the_value_their_path_names(text, new, old, expected):
    value = reference_function(parse_reference(text), lookup)(new, old)
    assert value == expected
    if expected is VOUCHER_ROW:
        assert value is expected  # the state's row itself, not a copy
    elif isinstance(expected, dict):
        assert value is new or value is old  # the changed row itself


def test_every_reference_of_the_catalog_compiles():
    for rule in load_default_catalog().rules:
        for reference in (rule.customer, rule.campaign, rule.voucher, rule.tenant, rule.subject,
                          rule.snapshot_time, *(reference for _, reference in rule.objects)):
            if reference is not None:
                assert reference_function(reference, lookup)({}, {}) is None, reference.text


def packaged():
    return tomllib.loads(resources.files("mappers").joinpath("catalog.toml").read_text())


@pytest.fixture
def mapper(tmp_path):
    state = ReferenceState.open(tmp_path)
    yield EventMapper(load_default_catalog(), state, SourceIdentity("1", "voucher"), "voucher_activity")
    state.close()


def function(source, name):
    """The text of one generated function."""
    start = source.index(f"def {name}(")
    end = source.find("\ndef ", start)
    return source[start:] if end < 0 else source[start:end + 1]


def test_a_table_without_state_or_rules_for_a_change_does_nothing_else(mapper):
    source = mapper.generated_source()
    # segment_customer: no state (its deletes carry the whole row), a composite key nothing
    # reads outside the snapshot (where an insert's event ids spell it), and no rule on update
    insert = re.sub(r"key_of_\d+", "key_of_N", function(source, "change_segment_customer_insert"))
    assert insert.splitlines()[1] == "    key = key_of_N(new) if context.snapshot else None"
    text = re.sub(r"key_of_\d+", "key_of_N", function(source, "change_segment_customer_update"))
    assert text == (
        "def change_segment_customer_update(new, old, unchanged_toast, position, context):\n"
        "    key = None\n"
        "    if unchanged_toast:\n"
        "        new = dict(new)\n"
        "        for column in unchanged_toast:\n"
        "            if column not in new and column in old:\n"
        "                new[column] = old[column]\n"
        "    records = []\n"
        "    return records\n\n")


def test_an_update_reads_the_previous_row_and_puts_only_a_changed_one(mapper):
    text = function(mapper.generated_source(), "change_voucher_update")
    assert "    previous = lookup('voucher', key)\n" in text
    # the kept columns of {**old, **new}, one dict display
    kept = ('id', 'code', 'type', 'campaign_id', 'holder_id', 'tenant_id')
    assert ("        if old:\n"
            "            merged = {" + ", ".join(f"{c!r}: new.get({c!r}, old.get({c!r}))" for c in kept) + "}\n"
            "        else:\n"
            "            merged = {" + ", ".join(f"{c!r}: new.get({c!r})" for c in kept) + "}\n"
            "        if merged != previous:\n"
            "            state_put('voucher', key, merged)\n") in text
    # an insert has no previous row to read, and puts its row
    insert = function(mapper.generated_source(), "change_voucher_insert")
    assert "lookup('voucher'" not in insert and "if merged != " not in insert
    # a kept deleted customer is not deleted from the state
    assert "state_delete" not in function(mapper.generated_source(), "change_customer_delete")
    assert "state_delete('voucher', key)" in function(mapper.generated_source(), "change_voucher_delete")


def test_rules_test_only_what_they_have(mapper):
    source = mapper.generated_source()
    rules = {rule.type: index for index, rule in enumerate(mapper.catalog.rules) if rule.table != "order_item"}
    created = function(source, f"rule_{rules['customer.order.created']}")
    assert "condition_" not in created and "changed_columns" not in created
    assert "scratch_has" not in created and "campaign_object" not in created
    paid = function(source, f"rule_{rules['customer.order.paid']}")
    # its condition is tested by the change function, before the call
    assert "new.get('status')" not in paid and paid.count("lookup(") == 1  # the tenant from its customer
    # the customer's serialized object is read from its memo in place, a resolver called on a miss
    assert ("    made = customer_memo.get(customer_uuid.int)\n"
            "    if made is None:\n"
            "        made = customer_object(customer)\n"
            "    data = {'customer': made}\n") in paid
    # the event made is remembered for customer_event rows of the same transaction
    assert "scratch_add('emitted', ('customer.order.paid', customer_uuid.int))" in paid
    # a deferred rule waits for the commit, which builds it with build_<n>
    (item,) = (index for index, rule in enumerate(mapper.catalog.rules) if rule.table == "order_item")
    assert f"scratch_add('pending', '', ({item}, position, key" in function(source, f"rule_{item}")
    assert f"def build_{item}(" in source
    assert f"def build_{rules['customer.order.paid']}(" not in source
    compile(source, "<check>", "exec")


def test_conditions_are_tested_in_place_before_a_rule_is_called(mapper):
    source = mapper.generated_source()
    rules = {rule.type: index for index, rule in enumerate(mapper.catalog.rules)}
    succeeded, failed = rules["customer.redemption.succeeded"], rules["customer.redemption.failed"]
    text = re.sub(r"_v\d+", "_vN", function(source, "change_redemption_insert"))
    assert text.endswith(
        "    # new.result = 'SUCCESS'\n"
        "    if (None if (_vN := new.get('result')) is None else _vN == 'SUCCESS') is True:\n"
        f"        event = rule_{succeeded}(new, old, key, position, context)\n"
        "        if event is not None:\n"
        "            records.append(event)\n"
        "    # new.result = 'FAILURE'\n"
        "    if (None if (_vN := new.get('result')) is None else _vN == 'FAILURE') is True:\n"
        f"        event = rule_{failed}(new, old, key, position, context)\n"
        "        if event is not None:\n"
        "            records.append(event)\n"
        "    return records\n\n"), text
    # a rule without a condition is called as is
    assert f"    event = rule_{rules['customer.order.created']}(new, old, key, position, context)\n" in function(
        source, "change_orders_insert")


def test_a_condition_written_over_several_lines_is_one_comment_line(tmp_path):
    # TOML lets a catalog write a long condition as a multi-line string; the generated code
    # repeats it as a comment, which must stay one line
    document = packaged()
    (paid,) = (rule for rule in document["rule"] if rule["type"] == "customer.order.paid")
    paid["when"] = "upper(new.status) = 'PAID'\n  AND upper(old.status) IS DISTINCT FROM 'PAID'"
    state = ReferenceState.open(tmp_path, 100, 0)
    mapper = EventMapper(build_catalog(document, voucher_schema()), state, SourceIdentity("1", "db"), "va")
    assert ("    # upper(new.status) = 'PAID' AND upper(old.status) IS DISTINCT FROM 'PAID'\n"
            in function(mapper.generated_source(), "change_orders_insert"))
    moment = datetime(2024, 3, 1, tzinfo=UTC)
    order = {"id": uuid.UUID(int=5), "status": "paid", "customer_id": uuid.UUID(int=6),
             "tenant_id": uuid.UUID(int=7), "amount": 100}
    mapper.begin(TransactionBegin(xid=1, commit_lsn=10, commit_time=moment))
    records = mapper.change(Change(Op.INSERT, "public", "orders", None, order, 1, 10, moment, 0))
    assert [record.type for record in records] == ["customer.order.created", "customer.order.paid"]
    state.close()


def test_a_payload_object_named_with_any_characters_gets_a_valid_name_in_the_code(tmp_path):
    document = packaged()
    document["objects"]["segment-info"] = document["objects"]["segment"]
    (entered,) = (rule for rule in document["rule"] if rule["type"] == "customer.segment.entered")
    entered["objects"] = {"segment-info": "new.segment_id"}
    state = ReferenceState.open(tmp_path, 100, 0)
    mapper = EventMapper(build_catalog(document, voucher_schema()), state, SourceIdentity("1", "db"), "va")
    assert re.search(r"made = segment_info_object_\d+\(target\)", mapper.generated_source())
    moment = datetime(2024, 3, 1, tzinfo=UTC)
    segment, tenant = uuid.UUID(int=5), uuid.UUID(int=7)
    mapper.begin(TransactionBegin(xid=1, commit_lsn=10, commit_time=moment))
    mapper.change(Change(Op.INSERT, "public", "segment", None,
                         {"id": segment, "name": "VIP", "type": "STATIC", "tenant_id": tenant}, 1, 10, moment, 0))
    (event,) = mapper.change(Change(Op.INSERT, "public", "segment_customer", None,
                                    {"segment_id": segment, "customer_id": uuid.UUID(int=6)}, 1, 10, moment, 1))
    assert orjson.loads(event.data)["segment-info"] == {
        "id": str(segment), "name": "VIP", "type": "STATIC", "object": "segment-info"}
    state.close()


def test_change_functions_are_named_validly_whatever_the_table_is_called():
    assert change_function_names(["orders", "Order Items", "Order_Items", "9x", "été"]) == {
        "orders": "orders", "Order Items": "Order_Items", "Order_Items": "Order_Items_", "9x": "_9x",
        "été": "_t_"}


def test_a_table_quoted_in_sql_gets_change_functions(tmp_path):
    # a table may be any quoted identifier: the state keeps rows of "order notes" all the same
    sql = voucher_schema_sql()
    schema = parse_schema(sql + '\nCREATE TABLE "order notes" (id uuid PRIMARY KEY, note text);\n')
    document = packaged()
    document["state"]["order notes"] = {"columns": "*"}
    state = ReferenceState.open(tmp_path, 100, 0, schema)
    mapper = EventMapper(build_catalog(document, schema), state, SourceIdentity("1", "db"), "va")
    assert "def change_order_notes_insert(" in mapper.generated_source()
    moment = datetime(2024, 3, 1, tzinfo=UTC)
    mapper.begin(TransactionBegin(xid=1, commit_lsn=10, commit_time=moment))
    note = {"id": uuid.UUID(int=5), "note": "gift wrap"}
    assert mapper.change(Change(Op.INSERT, "public", "order notes", None, note, 1, 10, moment, 0)) == []
    assert state.get("order notes", uuid.UUID(int=5)) == note
    state.close()


def known_check(action):
    """The generated test of whether the pass-through row `new` repeats an event made (in
    passthrough_rows and in the change function, both two levels in)."""
    return ("        customer = new.get('customer_id')\n"
            "        if type(customer) is str and len(customer) == 36 and len(digits := customer.replace('-', '')) == 32:\n"
            "            try:\n"
            "                customer_int = int_from_bytes(unhexlify(digits))\n"
            "            except ValueError:\n"
            "                customer_int = None\n"
            "            if customer_int is not None:\n"
            "                event_type = new.get('event_type')\n"
            "                if scratch_has('emitted', (event_type, customer_int)):\n"
            f"                    {action}\n")


def test_pass_through_rows_repeating_an_event_are_left_out_in_place(mapper):
    # at the commit, a customer_event row whose 36-character customer id and type name an event
    # the transaction made costs two .get, a hex decode and one set lookup; the rest go to
    # EventMapper._passthrough
    assert function(mapper.generated_source(), "passthrough_rows") == (
        "def passthrough_rows(rows, context):\n"
        "    records = []\n"
        "    for position, new in rows:\n"
        + known_check("continue") +
        "        records.extend(passthrough(new, position, context))\n"
        "    return records\n\n")


def test_a_pass_through_row_repeating_an_event_made_already_is_left_out_as_it_arrives(mapper):
    # (a row the commit must still look at goes to the scratch; the commit's check is above)
    assert function(mapper.generated_source(), "change_customer_event_insert").endswith(
        "    records = []\n"
        "    if context.snapshot:\n"
        "        records.extend(passthrough(new, position, context))\n"
        "    else:\n"
        "        known = False\n"
        + known_check("known = True") +
        "        if not known:\n"
        "            scratch_add('passthrough', '', (position, new))\n"
        "    return records\n\n")


def test_the_object_of_a_row_is_built_in_place(mapper):
    # `redemption = "new"`: the changed row's object as payload.object_builder makes it, without
    # the resolver's two calls; anything but a dict (None) goes to the resolver
    rules = {rule.type: index for index, rule in enumerate(mapper.catalog.rules)}
    text = re.sub(r"redemption_object_\d+", "redemption_object_N",
                  function(mapper.generated_source(), f"rule_{rules['customer.redemption.succeeded']}"))
    assert ("    target = (new or None)\n"
            "    if type(target) is dict:\n"
            "        made = {'id': target.get('id'), 'result': target.get('result'), 'status': target.get('status'), "
            "'amount': target.get('amount'), 'tracking_id': target.get('tracking_id'), "
            "'metadata': target.get('metadata'), 'object': 'redemption'}\n"
            "    else:\n"
            "        made = redemption_object_N(target)\n"
            "    if made is not None:\n"
            "        data['redemption'] = made\n") in text
    # the voucher, referenced by id, is read from its memo (or resolved): not built in place
    assert text.count("if type(target) is dict") == 1


def test_events_name_their_campaign_type_as_of_their_own_transaction(tmp_path):
    # campaign types are kept in a memo of the state's (read in place by the generated code):
    # a campaign row changed since drops its entry
    state = ReferenceState.open(tmp_path, 1, 0)  # every row read back from SQLite
    mapper = EventMapper(load_default_catalog(), state, SourceIdentity("1", "db"), "va")
    moment = datetime(2024, 3, 1, tzinfo=UTC)
    campaign, tenant = uuid.UUID(int=1), uuid.UUID(int=2)
    made = []

    def transaction(lsn, table, op, row):
        mapper.begin(TransactionBegin(xid=lsn, commit_lsn=lsn, commit_time=moment))
        made.extend(mapper.change(Change(op, "public", table, None, row, lsn, lsn, moment, 0)))
        made.extend(mapper.commit(TransactionCommit(xid=lsn, commit_lsn=lsn, end_lsn=lsn + 1,
                                                    commit_time=moment, change_count=1)))

    def hold(lsn, voucher):  # POST /v1/vouchers {customer}
        transaction(lsn, "voucher", Op.INSERT, {
            "id": voucher, "code": f"V-{lsn}", "type": "DISCOUNT_VOUCHER", "campaign_id": campaign,
            "holder_id": uuid.UUID(int=3), "tenant_id": tenant})

    transaction(10, "campaign", Op.INSERT, {"id": campaign, "name": "Spring", "type": "DISCOUNT_COUPONS",
                                            "tenant_id": tenant})
    hold(20, uuid.UUID(int=20))
    hold(30, uuid.UUID(int=30))
    transaction(40, "campaign", Op.UPDATE, {"id": campaign, "name": "Spring", "type": "LOYALTY_PROGRAM",
                                            "tenant_id": tenant})
    hold(50, uuid.UUID(int=50))
    assert [(event.source_lsn, event.campaign_type, orjson.loads(event.data)["campaign"]["campaign_type"])
            for event in made] == [(20, "DISCOUNT_COUPONS", "DISCOUNT_COUPONS"), (30, "DISCOUNT_COUPONS", "DISCOUNT_COUPONS"),
                                   (50, "LOYALTY_PROGRAM", "LOYALTY_PROGRAM")]
    state.close()


def test_a_name_the_code_reads_and_nothing_binds_fails_at_compile_time():
    out = Source()
    out.line("def change(new, old):")
    with out.indent():
        out.when("new", "return lookup('voucher', new.get('id'))")
        out.line("return missing_helper(old) + len(old)")  # len: a builtin
    with pytest.raises(NameError, match="^generated code reads unbound names: missing_helper$"):
        compile_source(out, {"lookup": lookup}, "<test>")
    assert compile_source(out, {"lookup": lookup, "missing_helper": len}, "<test>")["change"]({}, {"a": 1}) == 2
