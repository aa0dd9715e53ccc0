"""The per-relation canonical check: which type OIDs the reader decodes straight into the
mappers' canonical form, and the decision a table schema takes from a relation's columns."""

from __future__ import annotations

import pytest

from cdc_reader.loaders import RowLoader
from mappers.schema import parse_schema, table_schema, voucher_schema
from mappers.sqltypes import DECODED_CANONICAL, SqlType, canonical

# PostgreSQL's text output of values of each type, as pgoutput sends them (edge cases included).
TEXTS = {
    25: ["abc", "", "Zoë 🎉"], 1043: ["abc"], 1042: ["ab  "], 19: ["relname"],
    20: ["0", "-42", "9223372036854775807"], 21: ["-32768"], 23: ["2147483647"],
    1700: ["12.50", "-0.001", "NaN", "123456789012345678901234567890.5"],
    16: ["t", "f"],
    2950: ["5f0c8a52-7a3e-4c43-9a8e-2b1d3c0e6f71"],
    1114: ["2024-03-01 09:00:00", "2024-03-01 09:00:00.123456", "infinity", "-infinity",
           "0044-03-15 12:00:00 BC"],
    1082: ["2024-03-01", "infinity", "-infinity", "0044-03-15 BC"],
}


@pytest.mark.parametrize("sql_type, type_oid", sorted(
    ((sql_type, oid) for sql_type, oids in DECODED_CANONICAL.items() for oid in oids),
    key=lambda pair: (pair[0].value, pair[1])))
def test_decoded_values_are_already_canonical(sql_type, type_oid):
    # what the per-row check (TableSchema.canonical_row) makes of each value the reader decodes
    table = table_schema("t", {"c": sql_type}, ("c",))
    for text in TEXTS[type_oid]:
        (decoded,) = RowLoader([type_oid]).load((text.encode(),))
        (converted,) = table.canonical_row({"c": decoded}).values()
        assert (type(converted), converted) == (type(decoded), decoded), text


def test_timestamptz_is_not_decoded_canonical():
    (decoded,) = RowLoader([1184]).load((b"2024-03-01 09:00:00+01",))
    assert 1184 not in DECODED_CANONICAL[SqlType.TIMESTAMP]
    assert canonical(SqlType.TIMESTAMP, decoded).isoformat() == "2024-03-01T08:00:00"  # naive UTC


def test_relation_decision_follows_every_column():
    customer = voucher_schema().table("customer")
    declared = (("id", 2950), ("created_at", 1114), ("updated_at", 1114), ("source_id", 25),
                ("name", 25), ("metadata", 3802), ("tenant_id", 2950), ("birthdate", 1082))
    assert customer.decoded_canonical(declared) is True
    assert customer.decoded_canonical((*declared, ("nickname", 1184))) is True  # not in the schema
    assert customer.decoded_canonical((("metadata", 25),)) is True  # jsonb takes any value
    assert customer.decoded_canonical((("created_at", 1184),)) is False  # aware: converted
    assert customer.decoded_canonical((("id", 25),)) is False  # uuid sent as text
    redemption = voucher_schema().table("redemption")  # amount: bigint
    assert redemption.decoded_canonical((("amount", 20),)) is True
    assert redemption.decoded_canonical((("amount", 25),)) is False
    assert redemption.decoded_canonical((("amount", 1700),)) is False  # a Decimal: made an int


def test_a_primary_key_is_read_from_a_table_or_a_column_constraint():
    schema = parse_schema(
        "CREATE TABLE a (id uuid NOT NULL, name text, PRIMARY KEY (id));"
        "CREATE TABLE b (id uuid PRIMARY KEY, name text);"
        "CREATE TABLE c (x uuid, y uuid, PRIMARY KEY (x, y));"
        "CREATE TABLE d (x uuid, y text);")
    assert [schema.table(name).primary_key for name in "abcd"] == [("id",), ("id",), ("x", "y"), ("x", "y")]
