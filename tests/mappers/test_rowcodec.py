"""The reference state's row codec: rows of a known layout as typed MessagePack, everything
else pickled, each read back exactly (values, their types, the columns' order)."""

from __future__ import annotations

import pickle
import sqlite3
import uuid
from datetime import date, datetime
from decimal import Decimal

import pytest

from mappers import rowcodec
from mappers.rowcodec import RowCodec
from mappers.sqltypes import JSON_NULL, SqlType
from mappers.state import ReferenceState

TYPES = {"thing": {"id": SqlType.UUID, "name": SqlType.TEXT, "count": SqlType.INTEGER,
                   "amount": SqlType.NUMERIC, "active": SqlType.BOOLEAN, "metadata": SqlType.JSONB,
                   "at": SqlType.TIMESTAMP, "day": SqlType.DATE}}
ROW = {"id": uuid.UUID("0b6c2d4e-8f10-4a12-b314-5c6d7e8f9a0b"), "name": "Ann", "count": 3,
       "amount": Decimal("10.50"), "active": True,
       "metadata": {"tier": "gold", "tags": ["a", 1, 2.5, None, False], "nested": {"n": -7}},
       "at": datetime(2024, 3, 1, 9, 30, 15, 123456), "day": date(2024, 2, 29)}


def codec(column_types=TYPES) -> RowCodec:
    return RowCodec(sqlite3.connect(":memory:", isolation_level=None), column_types)


def assert_same(read, written):
    assert read == written
    assert list(read) == list(written)  # the columns' order
    assert [type(value) for value in read.values()] == [type(value) for value in written.values()]


def test_a_row_of_a_known_layout_is_typed_messagepack_and_reads_back_exactly():
    rows = codec()
    blob = rows.encode("thing", ROW)
    assert blob[0] != 0x80 and len(blob) == 112  # not a pickle (that is 296 bytes)
    assert len(pickle.dumps(ROW, protocol=pickle.HIGHEST_PROTOCOL)) == 296
    assert_same(rows.decode(blob), ROW)
    nulls = dict.fromkeys(ROW)
    assert_same(rows.decode(rows.encode("thing", nulls)), nulls)
    integer_amount = {**ROW, "amount": 2500}  # numeric values may be ints (canonical too)
    assert_same(rows.decode(rows.encode("thing", integer_amount)), integer_amount)


def test_columns_in_another_order_or_a_subset_are_layouts_of_their_own():
    rows = codec()
    reordered = dict(reversed(ROW.items()))
    subset = {"name": "Bob", "id": ROW["id"]}
    for row in (reordered, subset, ROW):
        blob = rows.encode("thing", row)
        assert blob[0] != 0x80
        assert_same(rows.decode(blob), row)
    assert rows.connection.execute("SELECT tag, kind FROM row_layout ORDER BY tag").fetchall() == [
        (1, "thing"), (2, "thing"), (3, "thing")]


@pytest.mark.parametrize("row", [
    {**ROW, "metadata": JSON_NULL},  # JSON null is not SQL NULL
    {**ROW, "count": True},  # a bool in an integer column
    {**ROW, "at": "infinity"},  # a timestamp PostgreSQL printed, with no datetime
    {**ROW, "day": datetime(2024, 1, 1)},  # a datetime is a date, but not of a date column
    {**ROW, "amount": 2**70},  # past MessagePack's 64 bits
    {**ROW, "metadata": {"big": -(2**70)}},
    {**ROW, "name": "\ud800"},  # a lone surrogate: no UTF-8 for it
    {**ROW, "id": str(ROW["id"])},  # text in a uuid column would read back as a UUID
    {**ROW, "added_later": "x"},  # a column the schema does not know
])
def test_rows_no_layout_fits_are_pickled_and_read_back_exactly(row):
    rows = codec()
    blob = rows.encode("thing", row)
    assert blob[0] == 0x80
    assert_same(rows.decode(blob), row)


def test_json_null_reads_back_as_the_one_json_null():
    rows = codec()
    assert rows.decode(rows.encode("thing", {"metadata": JSON_NULL}))["metadata"] is JSON_NULL


def test_tables_without_types_and_columns_no_field_can_name_are_pickled():
    rows = codec({**TYPES, "odd": {"my column": SqlType.TEXT}})
    assert rows.encode("unknown", {"id": 1})[0] == 0x80
    assert rows.encode("odd", {"my column": "x"})[0] == 0x80
    assert rows.decode(rows.encode("odd", {"my column": "x"})) == {"my column": "x"}
    assert rows.connection.execute("SELECT count(*) FROM row_layout").fetchone() == (0,)


def test_past_the_layout_limit_rows_are_pickled(monkeypatch):
    monkeypatch.setattr(rowcodec, "MAX_LAYOUTS", 2)
    rows = codec()
    blobs = [rows.encode("thing", {"name": "a"}), rows.encode("thing", {"count": 1}),
             rows.encode("thing", {"day": None})]
    assert [blob[0] == 0x80 for blob in blobs] == [False, False, True]
    assert [rows.decode(blob) for blob in blobs] == [{"name": "a"}, {"count": 1}, {"day": None}]


def test_layouts_keep_their_types_when_the_schema_changes_and_survive_reopening(tmp_path):
    path = tmp_path / "state.sqlite3"
    with sqlite3.connect(path, isolation_level=None) as connection:
        blob = RowCodec(connection, TYPES).encode("thing", ROW)
    # the same file, read by a version whose schema says `id` is text
    with sqlite3.connect(path, isolation_level=None) as connection:
        changed = {"thing": {**TYPES["thing"], "id": SqlType.TEXT}}
        rows = RowCodec(connection, changed)
        assert_same(rows.decode(blob), ROW)
        text_id = {**ROW, "id": "T-1"}  # the stored layout takes UUIDs only: this one is pickled
        assert rows.encode("thing", text_id)[0] == 0x80
        assert_same(rows.decode(rows.encode("thing", text_id)), text_id)


def test_a_layout_added_in_a_rolled_back_transaction_is_forgotten(tmp_path):
    state = ReferenceState.open(tmp_path, cache_size=1, schema=None)
    identifier = uuid.UUID(int=5)
    state.put("voucher", identifier, {"id": identifier, "code": "V-1"})
    state.put("voucher", uuid.UUID(int=9), {"id": uuid.UUID(int=9)})  # evicts (writes) the first
    state.rollback()
    # another layout now takes the rolled-back layout's tag; both must not share it
    state.put("voucher", identifier, {"code": "V-2", "id": identifier})
    state.commit(1)
    state.close()
    reopened = ReferenceState.open(tmp_path, cache_size=1)
    assert_same(reopened.get("voucher", identifier), {"code": "V-2", "id": identifier})
    assert reopened.get("voucher", uuid.UUID(int=9)) is None
    assert reopened.connection.execute("SELECT tag, columns FROM row_layout").fetchall() == [
        (1, '[["code","text"],["id","uuid"]]')]
    reopened.close()


def test_a_batch_of_mixed_tables_columns_and_types_is_encoded_as_each_row_alone():
    from mappers.entitywrite import entity_parameters

    types = {**TYPES, "other": {"id": SqlType.UUID, "name": SqlType.TEXT}}
    rows = codec(types)
    reordered = dict(reversed(ROW.items()))
    other = {"id": ROW["id"], "name": "Bob"}
    # consecutive rows of one table and column set, then a change of order, of table, of types
    # (a bool in the integer column: pickled) and of columns (a new layout learned mid-batch)
    batch = [ROW, {**ROW, "count": 4}, reordered, {**ROW, "count": 5}, other, {**ROW, "count": True},
             {**ROW, "count": 6}, {"name": "Cy", "id": ROW["id"]}, other]
    entries = [("other" if row is other else "thing", uuid.UUID(int=number), row, True)
               for number, row in enumerate(batch)]
    alone = codec(types)
    expected = [alone.encode(table, row) for table, _key, row, _keep in entries]
    layouts, encode = rows.fast_path()
    bases = {"thing": 1 << 128}  # the encoded level's key of a "thing" row is worked out in place
    spans, data, upserts, deletes, kept = entity_parameters(entries, layouts, encode, rows.encode,
                                                            lambda table, key: (table, key), bases, True, b"")
    # each row as its key's 16 bytes and its encoding, laid end to end; a span per row
    assert [(table, bytes(data[start - 1:start + 15]), bytes(data[start + 15:start + 15 + length]))
            for table, start, length in spans] == [
        (table, key.int.to_bytes(16), blob) for (table, key, _row, _keep), blob in zip(entries, expected)]
    assert len(data) == sum(16 + len(blob) for blob in expected)
    assert upserts == deletes == [] and [blob for _key, blob in kept] == expected
    assert [key for key, _blob in kept] == [
        (1 << 128) | key.int if table == "thing" else (table, key) for table, key, _row, _keep in entries]
    assert [rows.decode(blob) for blob in expected] == batch
    assert expected[5][0] == 0x80  # the bool: pickled, as alone


@pytest.mark.parametrize("number", [0, 2**30, 2**63, 2**64, 2**120 + 1, 2**128 - 1])
def test_the_compiled_write_loop_spells_any_uuid_key_in_16_big_endian_bytes(number: int) -> None:
    from mappers.entitywrite import entity_parameters

    rows = codec({"thing": {"id": SqlType.UUID}})
    layouts, encode = rows.fast_path()
    key = uuid.UUID(int=number)
    spans, data, *_ = entity_parameters([("thing", key, {"id": key}, False)], layouts, encode, rows.encode,
                                        None, {}, False, b"")
    assert bytes(data[:16]) == number.to_bytes(16, "big") and spans == [("thing", 1, len(data) - 16)]
