"""ChangeAssembler: captured messages in, exact envelopes out; and end to end against PostgreSQL 18
and 15 through pg_logical_slot_peek_binary_changes (no replication connection needed)."""

import secrets
import uuid
from datetime import date, datetime, timezone
from decimal import Decimal

import pytest
from psycopg.types.json import Jsonb

from cdc_reader.assembler import AssemblerError, ChangeAssembler
from cdc_reader.changes import Change, Envelope, Op, TransactionBegin, TransactionCommit
from cdc_reader.pgoutput import (
    Begin,
    Decoder,
    Delete,
    Insert,
    Relation,
    RelationColumn,
    Truncate,
    TupleData,
    Update,
)
from tests.cdc_reader import captured
from tests.cdc_reader.test_pgoutput import BODY
from tests.conftest import VoucherDatabase, unique_name


def assemble(hexes: list[str], columns: dict | None = None) -> list[Envelope]:
    decoder, assembler = Decoder(4), ChangeAssembler(columns)
    return [envelope for payload in hexes
            for envelope in assembler.feed(decoder.decode(bytes.fromhex(payload)))]


def test_insert_converts_values_by_column_type():
    begin, change, commit = assemble(captured.INSERT)
    assert begin == TransactionBegin(753, 0x16FE3F8, commit.commit_time)
    assert change == Change(
        Op.INSERT, "public", "item", None,
        {"id": 1, "name": "Zoë 🎉", "price": Decimal("12.50"), "mood": "happy", "body": BODY,
         "data": {"a": [1, True, None]}},
        753, 0x16FE3F8, commit.commit_time, 0,
        # what the Relation message said of the columns: name and type OID (16385: the enum)
        column_types=(("id", 23), ("name", 25), ("price", 1700), ("mood", 16385), ("body", 25), ("data", 3802)),
    )
    assert commit == TransactionCommit(753, 0x16FE3F8, 0x16FE428, begin.commit_time, 1)


def test_changes_of_a_relation_share_its_column_types():
    # a second transaction (Begin, Insert, Commit) of the relation described once
    begin, insert, commit = captured.INSERT[0], captured.INSERT[3], captured.INSERT[4]
    _, first, _, _, second, _ = assemble(captured.INSERT + [begin, insert, commit])
    assert second.column_types is first.column_types  # consumers decide once per relation


def test_unchanged_toast_and_old_key():
    _, change, _ = assemble(captured.UPDATE_KEY)
    assert (change.op, change.before, change.unchanged_toast) == (Op.UPDATE, {"id": 1}, {"body"})
    assert change.after == {"id": 2, "name": "renamed", "price": Decimal("12.50"),
                            "mood": "happy", "data": {"a": [1, True, None]}}
    _, change, _ = assemble(captured.UPDATE_TOAST_UNCHANGED)
    assert (change.before, change.unchanged_toast) == (None, {"body"})


def test_rows_carry_only_the_columns_asked_for_and_always_their_key():
    # `item`: id is the key; `body` is unchanged TOAST in these updates
    columns = {"item": frozenset({"price", "body", "no_such_column"}), "other": frozenset({"x"})}
    _, change, _ = assemble(captured.INSERT, columns)
    assert (change.after, change.column_types) == ({"id": 1, "price": Decimal("12.50"), "body": BODY},
                                                    (("id", 23), ("price", 1700), ("body", 25)))
    _, change, _ = assemble(captured.UPDATE_KEY, columns)
    assert (change.before, change.after, change.unchanged_toast) == (
        {"id": 1}, {"id": 2, "price": Decimal("12.50")}, {"body"})
    _, change, _ = assemble(captured.UPDATE_KEY, {"item": frozenset({"name"})})
    assert (change.after, change.unchanged_toast) == ({"id": 2, "name": "renamed"}, frozenset())
    # tables not named, and None, carry every column
    _, change, _ = assemble(captured.INSERT, {"item": None})
    assert change.after == assemble(captured.INSERT)[1].after
    # REPLICA IDENTITY FULL: every column is the row's identity, so every one is carried; a
    # key-only old row carries its key whatever is asked for
    changes = [envelope for envelope in assemble(captured.FULL_IDENTITY, {"item_full": frozenset(),
                                                                         "item": frozenset({"name"})})
               if isinstance(envelope, Change)]
    assert [(c.table, c.before, c.after) for c in changes] == [
        ("item_full", None, {"id": 1, "note": "first"}),
        ("item_full", {"id": 1, "note": "first"}, {"id": 1, "note": "second"}),
        ("item_full", {"id": 1, "note": "second"}, None),
        ("item", {"id": 2}, None)]


def test_full_identity_and_key_deletes():
    envelopes = assemble(captured.FULL_IDENTITY)
    changes = [envelope for envelope in envelopes if isinstance(envelope, Change)]
    assert [(c.op, c.table, c.before, c.after, c.xid, c.position) for c in changes] == [
        (Op.INSERT, "item_full", None, {"id": 1, "note": "first"}, 757, 0),
        (Op.UPDATE, "item_full", {"id": 1, "note": "first"}, {"id": 1, "note": "second"}, 758, 0),
        (Op.DELETE, "item_full", {"id": 1, "note": "second"}, None, 759, 0),
        (Op.DELETE, "item", {"id": 2}, None, 760, 0),
    ]
    assert [type(envelope) for envelope in envelopes] == [
        TransactionBegin, Change, TransactionCommit] * 4


def test_messages_and_origin_produce_no_envelopes():
    assert [type(envelope) for envelope in assemble(captured.MESSAGES)] == [
        TransactionBegin, Change, TransactionCommit]
    begin, change, commit = assemble(captured.ORIGIN)
    assert change.after == {"id": 4, "note": "replayed", "score": 4}
    assert begin.commit_time == datetime(2024, 1, 2, 3, 4, 5, tzinfo=timezone.utc)


def test_truncate_gives_one_change_per_table():
    _, first, second, commit = assemble(captured.TRUNCATE)
    assert [(c.op, c.table, c.before, c.after, c.position) for c in (first, second)] == [
        (Op.TRUNCATE, "item", None, None, 0), (Op.TRUNCATE, "item_full", None, None, 1)]
    assert commit.change_count == 2


def test_protocol_violations_are_reported():
    decoder, assembler = Decoder(4), ChangeAssembler()
    begin, _, relation, insert, commit = [decoder.decode(bytes.fromhex(m)) for m in captured.INSERT]
    with pytest.raises(AssemblerError, match="before its Relation message"):
        assembler.feed(insert)
    with pytest.raises(AssemblerError, match="Commit message outside a transaction"):
        assembler.feed(commit)
    assembler.feed(relation)
    with pytest.raises(AssemblerError, match="Insert message outside a transaction"):
        assembler.feed(insert)
    assembler.feed(begin)
    with pytest.raises(AssemblerError, match="Begin of xid 753 inside xid 753"):
        assembler.feed(begin)
    with pytest.raises(AssemblerError, match="row has 1 columns, the last Relation message "
                                             "announced 6"):
        assembler.feed(Insert(insert.relation_oid, TupleData(b"t", (b"1",))))
    with pytest.raises(AssemblerError, match="not a message of a whole transaction: 'B'"):
        assembler.feed("B")


# -- end to end against a real server ---------------------------------------------------------

def protocol_version(server_version: int) -> int:
    """The highest pgoutput protocol the server speaks (16+: 4, 15: 3, 14: 2)."""
    return max(1, min(4, server_version // 10000 - 12))


def create_slot(database: VoucherDatabase, tables: str) -> str:
    slot = unique_name("slot")
    database.execute(f"CREATE PUBLICATION {slot} FOR TABLE {tables}")
    database.execute("SELECT pg_create_logical_replication_slot(%s, 'pgoutput')", (slot,))
    return slot


def peek_envelopes(database: VoucherDatabase, slot: str, time_zone: str = "UTC") -> list[Envelope]:
    """Every envelope the slot holds, decoded with the highest protocol version the server has."""
    with database.connect(autocommit=True) as conn:
        conn.execute(f"SET TimeZone = '{time_zone}'")
        version = protocol_version(conn.info.server_version)
        rows = conn.execute(
            "SELECT data FROM pg_logical_slot_peek_binary_changes(%s, NULL, NULL, "
            "'proto_version', %s, 'publication_names', %s)", (slot, str(version), slot),
        ).fetchall()
    decoder, assembler = Decoder(version), ChangeAssembler()
    return [envelope for (data,) in rows for envelope in assembler.feed(decoder.decode(data))]


def test_voucher_tables_end_to_end(voucher_db_any):
    db = voucher_db_any
    slot = create_slot(db, "tenant, customer, orders, session_lock, export")
    tenant, customer, other, order = (uuid.uuid4() for _ in range(4))
    created = datetime(2025, 3, 1, 12, 34, 56, 123456)
    # random hex: pglz cannot shrink it, so it is TOASTed out of line
    metadata = {"notes": secrets.token_hex(1500), "tier": 1}
    xids = []
    with db.connect() as conn:
        xids.append(conn.execute("SELECT pg_current_xact_id()::text::int").fetchone()[0])
        conn.execute("INSERT INTO tenant (id, name) VALUES (%s, 'acme')", (tenant,))
        conn.execute(
            "INSERT INTO customer (id, created_at, source_id, name, email, birthdate, metadata, "
            "tenant_id) VALUES (%s, %s, 'c-1', 'Ann', 'ann@example.com', '1990-05-17', %s, %s)",
            (customer, created, Jsonb(metadata), tenant),
        )
        conn.execute("INSERT INTO orders (id, status, amount, customer_id, tenant_id) "
                     "VALUES (%s, 'CREATED', 1999, %s, %s)", (order, customer, tenant))
        conn.commit()
        xids.append(conn.execute("SELECT pg_current_xact_id()::text::int").fetchone()[0])
        conn.execute("UPDATE customer SET name = 'Ann B.' WHERE id = %s", (customer,))
        conn.execute("UPDATE orders SET status = 'PAID' WHERE id = %s", (order,))
        conn.execute("DELETE FROM orders WHERE id = %s", (order,))
        conn.commit()
        conn.execute("ALTER TABLE customer ADD COLUMN loyalty_tier int")
        conn.commit()
        xids.append(conn.execute("SELECT pg_current_xact_id()::text::int").fetchone()[0])
        conn.execute("INSERT INTO customer (id, name, tenant_id, loyalty_tier) "
                     "VALUES (%s, 'Bob', %s, 3)", (other, tenant))
        conn.execute("UPDATE customer SET loyalty_tier = 2 WHERE id = %s", (customer,))
        conn.execute("TRUNCATE session_lock, export")
        conn.commit()

    envelopes = peek_envelopes(db, slot)
    begins = [e for e in envelopes if isinstance(e, TransactionBegin)]
    commits = [e for e in envelopes if isinstance(e, TransactionCommit)]
    assert [b.xid for b in begins] == [c.xid for c in commits] == xids
    for begin, commit in zip(begins, commits):
        assert (commit.commit_lsn, commit.commit_time) == (begin.commit_lsn, begin.commit_time)
        assert commit.end_lsn > commit.commit_lsn
    assert [c.change_count for c in commits] == [3, 3, 4]

    empty = dict.fromkeys(["updated_at", "phone", "description", "city", "state", "line_1",
                           "line_2", "country", "postal_code"])
    ann = {**empty, "id": customer, "created_at": created, "source_id": "c-1", "name": "Ann",
           "email": "ann@example.com", "birthdate": date(1990, 5, 17), "metadata": metadata,
           "tenant_id": tenant}
    ann_renamed = {key: value for key, value in ann.items() if key != "metadata"}
    ann_renamed["name"] = "Ann B."
    bob = {**empty, "id": other, "created_at": None, "source_id": None, "name": "Bob",
           "email": None, "birthdate": None, "metadata": None, "tenant_id": tenant,
           "loyalty_tier": 3}
    order_row = {"id": order, "created_at": None, "updated_at": None, "source_id": None,
                 "status": "CREATED", "amount": 1999, "initial_amount": None,
                 "discount_amount": None, "metadata": None, "customer_id": customer,
                 "tenant_id": tenant}
    toast = frozenset({"metadata"})
    expected = [
        (0, Op.INSERT, "tenant", None,
         {"id": tenant, "created_at": None, "updated_at": None, "name": "acme"}, frozenset()),
        (0, Op.INSERT, "customer", None, ann, frozenset()),
        (0, Op.INSERT, "orders", None, order_row, frozenset()),
        (1, Op.UPDATE, "customer", None, ann_renamed, toast),
        (1, Op.UPDATE, "orders", None, {**order_row, "status": "PAID"}, frozenset()),
        (1, Op.DELETE, "orders", {"id": order}, None, frozenset()),
        (2, Op.INSERT, "customer", None, bob, frozenset()),
        (2, Op.UPDATE, "customer", None, {**ann_renamed, "loyalty_tier": 2}, toast),
        (2, Op.TRUNCATE, "session_lock", None, None, frozenset()),
        (2, Op.TRUNCATE, "export", None, None, frozenset()),
    ]
    changes = [e for e in envelopes if isinstance(e, Change)]
    assert [(xids.index(c.xid), c.op, c.table, c.before, c.after, c.unchanged_toast)
            for c in changes] == expected
    assert [c.position for c in changes] == [0, 1, 2, 0, 1, 2, 0, 1, 2, 3]
    assert {c.schema for c in changes} == {"public"}
    assert all((c.commit_lsn, c.commit_time) == (begins[xids.index(c.xid)].commit_lsn,
                                                 begins[xids.index(c.xid)].commit_time)
               for c in changes)
    assert [type(e) for e in envelopes] == [
        TransactionBegin, Change, Change, Change, TransactionCommit,
        TransactionBegin, Change, Change, Change, TransactionCommit,
        TransactionBegin, Change, Change, Change, Change, TransactionCommit,
    ]


def test_rows_follow_each_pattern_of_column_kinds():
    """Rows are built from layouts worked out once per pattern of kinds: every pattern, and one
    seen again, must give the row the kinds say (binary kept as bytes, unchanged TOAST left
    out, key-only old rows), and a new Relation message must start over."""
    relation = Relation(1, "public", "t", "d", (
        RelationColumn(True, "id", 23, -1), RelationColumn(False, "ref", 2950, -1),
        RelationColumn(False, "note", 25, -1), RelationColumn(False, "doc", 3802, -1),
    ))
    ref = "8f73557f-1172-4317-a607-77ccce45d856"
    sent = ref.encode()
    rows = [
        (b"tttt", (b"1", sent, b"a", b'{"k": 1}'), {"id": 1, "ref": uuid.UUID(ref), "note": "a",
                                                 "doc": {"k": 1}}, frozenset()),
        (b"tnnn", (b"2", None, None, None), {"id": 2, "ref": None, "note": None, "doc": None},
         frozenset()),
        (b"ttuu", (b"3", sent, None, None), {"id": 3, "ref": uuid.UUID(ref)},
         frozenset({"note", "doc"})),
        (b"btbt", (b"\x00\x00\x00\x04", sent, b"raw", b"[]"),
         {"id": b"\x00\x00\x00\x04", "ref": uuid.UUID(ref), "note": b"raw", "doc": []},
         frozenset()),
        (b"tttt", (b"5", sent, b"b", b"null"), {"id": 5, "ref": uuid.UUID(ref), "note": "b",
                                              "doc": None}, frozenset()),
    ]
    assembler = ChangeAssembler()
    assembler.feed(relation)
    assembler.feed(Begin(10, datetime(2024, 1, 1, tzinfo=timezone.utc), 7))
    for kinds, values, row, unchanged in rows:
        (change,) = assembler.feed(Insert(1, TupleData(kinds, values)))
        assert (change.after, change.unchanged_toast) == (row, unchanged)
        assert list(change.after) == [name for name in ("id", "ref", "note", "doc") if name in row]
    (change,) = assembler.feed(Update(1, "K", TupleData(b"tnnn", (b"1", None, None, None)),
                                      TupleData(b"tttt", (b"6", sent, b"c", b"{}"))))
    assert (change.before, change.after["id"]) == ({"id": 1}, 6)
    (change,) = assembler.feed(Delete(1, "O", TupleData(b"tttt", (b"6", sent, b"c", b"{}"))))
    assert change.before == {"id": 6, "ref": uuid.UUID(ref), "note": "c", "doc": {}}
    assembler.feed(Relation(1, "public", "t", "d", (RelationColumn(True, "id", 20, -1),)))
    (change,) = assembler.feed(Insert(1, TupleData(b"t", (b"7",))))
    assert change.after == {"id": 7}
    assert [change.position for change in assembler.feed(Truncate(0, (1,)))] == [8]
