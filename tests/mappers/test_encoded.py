"""The reference state's encoded level (`mappers.encoded.EncodedRows`): which entries it keeps
within its budget, and that the budget bounds the memory they take."""

from __future__ import annotations

import tracemalloc
import uuid

from mappers.encoded import ENTRY_OVERHEAD, EncodedRows


def held(rows: EncodedRows, keys) -> list:
    return [key for key in keys if rows.get(key) is not None]


def test_a_row_is_held_under_its_table_and_key():
    rows = EncodedRows(10_000)
    key = uuid.UUID(int=42)
    rows.store([(rows.key("customer", key), b"c"), (rows.key("voucher", key), b"v"),
                (rows.key("customer", "text-42"), b"t")])
    assert rows.get(rows.key("customer", key)) == b"c"
    assert rows.get(rows.uuid_key("customer", 42)) == b"c"  # the same place, from the key's int
    assert rows.get(rows.key("voucher", key)) == b"v"
    assert rows.get(rows.key("customer", "text-42")) == b"t"
    assert rows.get(rows.key("segment", key)) is None
    assert len(rows) == 3 and rows.size == 3 * (1 + ENTRY_OVERHEAD)
    rows.store([(rows.key("customer", key), b"changed")])  # replaced, counted once
    assert rows.get(rows.key("customer", key)) == b"changed"
    assert len(rows) == 3 and rows.size == 7 + 2 * (1 + ENTRY_OVERHEAD) + ENTRY_OVERHEAD
    rows.discard_row("customer", key)
    rows.discard_row("customer", key)  # not held: nothing happens
    assert rows.get(rows.key("customer", key)) is None
    assert len(rows) == 2 and rows.size == 2 * (1 + ENTRY_OVERHEAD)
    rows.clear()
    assert len(rows) == 0 and rows.size == 0 and rows.get(rows.key("voucher", key)) is None


def test_a_rows_encoding_is_discarded_by_its_table_and_key():
    rows = EncodedRows(10_000)
    key = uuid.UUID(int=42)
    rows.store([(rows.key("customer", key), b"c"), (rows.key("voucher", key), b"v"),
                (rows.key("customer", "text-42"), b"t")])
    rows.discard_row("customer", key)
    rows.discard_row("customer", "text-42")
    rows.discard_row("customer", key)  # not held: nothing happens
    rows.discard_row("segment", uuid.UUID(int=7))  # a table never seen
    assert rows.get(rows.key("customer", key)) is None and rows.get(rows.key("customer", "text-42")) is None
    assert rows.get(rows.key("voucher", key)) == b"v"
    assert len(rows) == 1 and rows.size == 1 + ENTRY_OVERHEAD


def test_past_the_budget_the_least_recently_stored_or_read_go_first():
    blob = b"x" * 60
    cost = len(blob) + ENTRY_OVERHEAD
    rows = EncodedRows(100 * cost)
    keys = [rows.key("customer", f"c{number}") for number in range(100)]
    rows.store((key, blob) for key in keys)
    assert len(rows) == 100 and rows.size == 100 * cost  # exactly at the budget: all kept
    assert rows.get(keys[0]) == blob  # read: now the most recently used
    rows.store([(rows.key("customer", "new"), blob)])
    # over the budget: the oldest are dropped until a sixteenth of it is free (93 entries fit)
    assert rows.size == 93 * cost and len(rows) == 93
    assert held(rows, keys) == [keys[0], *keys[9:]]
    assert rows.get(rows.key("customer", "new")) == blob


def test_nothing_is_held_without_a_budget():
    rows = EncodedRows(0)
    rows.store([(rows.key("customer", "c"), b"x")])
    assert len(rows) == 0 and rows.size == 0 and rows.get(rows.key("customer", "c")) is None


def test_older_rows_fill_what_the_budget_leaves_and_go_first():
    cost = 10 + ENTRY_OVERHEAD
    rows = EncodedRows(5 * cost)
    recent = rows.key("customer", uuid.UUID(int=100))
    rows.store([(recent, b"r" * 10)])
    # newest first, as the state reads its file; one already held is not loaded again
    ids = [uuid.UUID(int=number) for number in range(6)]
    older = [(rows.key("customer", customer_id), b"o" * 10) for customer_id in ids]
    entity = [("customer", customer_id.bytes, b"o" * 10) for customer_id in ids]
    assert rows.store_oldest_rows([("customer", uuid.UUID(int=100).bytes, b"stale00000"), *entity]) == 4
    assert rows.size == 5 * cost and len(rows) == 5
    # over the budget: the oldest loaded go first, until a sixteenth of it is free
    rows.store([(rows.key("customer", "next"), b"n" * 10)])
    assert rows.size == 4 * cost
    assert held(rows, [key for key, _ in older]) == [key for key, _ in older[:2]]
    assert rows.get(recent) == b"r" * 10


def test_rows_of_the_state_file_are_held_by_uuid_newest_first_within_the_budget():
    cost = 10 + ENTRY_OVERHEAD
    rows = EncodedRows(3 * cost)
    first, second, third, known = (uuid.UUID(int=number) for number in (1, 2**64 + 3, 2**128 - 1, 7))
    rows.store([(rows.key("voucher", known), b"kept000000")])
    # as the `entity` table holds them, newest first: a UUID key as its 16 bytes, others as text
    entity = [("customer", first.bytes, b"newest0000"), ("customer", "text-key", b"skipped000"),
              ("voucher", known.bytes, b"stale00000"), ("voucher", second.bytes, b"second0000"),
              ("customer", third.bytes, b"no room000")]
    assert rows.store_oldest_rows(entity) == 2
    assert rows.size == 3 * cost and len(rows) == 3
    assert [rows.get(rows.key(table, key)) for table, key in
            [("customer", first), ("voucher", second), ("voucher", known), ("customer", third),
             ("customer", "text-key")]] == [b"newest0000", b"second0000", b"kept000000", None, None]


def test_the_budget_counts_what_the_entries_cost():
    """The entries' counted size is at least what tracemalloc sees them take (their encodings,
    key ints and the dict's slots, whose share varies with the table's fill), and not far above."""
    keys = [uuid.UUID(int=(number * 7919 + 1) << 64 | number) for number in range(20_000)]
    rows = EncodedRows(10**9)
    rows.key("customer", keys[0])
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        # a fresh encoding each, as a write or a SQLite read makes them
        rows.store((rows.key("customer", key), bytes(bytearray(150))) for key in keys)
        taken = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert rows.size == 20_000 * (150 + ENTRY_OVERHEAD)
    assert 0.8 < taken / rows.size <= 1.0, (taken, rows.size)
