"""The replication session against real servers (PostgreSQL 18 and 15): exact envelopes, feedback
to the server, idle WAL release, restart from the confirmed position, failures."""

import random
import time
import uuid
from datetime import datetime

import msgspec
import psycopg
import pytest

from cdc_reader.changes import (
    Change,
    Op,
    TransactionBegin,
    TransactionCommit,
    format_lsn,
    parse_lsn,
)
from cdc_reader.replication import (
    ReplicationConnectionError,
    ReplicationSession,
    SlotState,
    start_replication_command,
)
from cdc_reader.slot import SlotInUseError, slot_info
from tests.replication_helpers import (
    collect_transactions,
    confirmed_lsn,
    stream_transactions,
)

TRACKED = ["tenant", "customer", "voucher", "redemption"]
TENANT, CUSTOMER, VOUCHER, REDEMPTION, CUSTOMER_2 = (uuid.UUID(int=n) for n in range(1, 6))
CREATED = datetime(2026, 1, 2, 3, 4, 5, 678901)
UPDATED = datetime(2026, 1, 2, 3, 5, 0)
# Random hex does not compress below the TOAST threshold, so this jsonb is stored out of line.
BIG_METADATA = {"history": random.Random(7).randbytes(4000).hex()}


def run_transaction(db, *statements) -> int:
    """Run statements in one transaction; returns its xid."""
    with db.connect() as conn:
        for statement, params in statements:
            conn.execute(statement, params)
        xid = int(conn.execute("SELECT pg_current_xact_id()::text").fetchone()[0])
    return xid


def current_wal_lsn(db) -> int:
    with db.connect() as conn:
        return parse_lsn(conn.execute("SELECT pg_current_wal_lsn()::text").fetchone()[0])


def commit_records(db, start: int, end: int) -> dict[int, tuple[int, int, datetime]]:
    """xid -> (commit record LSN, LSN past it, commit time), read from the WAL by pg_walinspect:
    an oracle independent of pgoutput."""
    with db.connect(autocommit=True) as conn:
        conn.execute("CREATE EXTENSION IF NOT EXISTS pg_walinspect")
        rows = conn.execute(
            "SELECT xid::text::bigint, start_lsn::text, end_lsn::text, description"
            " FROM pg_get_wal_records_info(%s::text::pg_lsn, %s::text::pg_lsn)"
            " WHERE resource_manager = 'Transaction' AND record_type = 'COMMIT'",
            (format_lsn(start), format_lsn(end)),
        ).fetchall()
    return {
        xid: (parse_lsn(first), parse_lsn(past), datetime.fromisoformat(description.split(";")[0]))
        for xid, first, past, description in rows
    }


def full_row(db, table: str, **values) -> dict:
    """A row of `table` as the stream shows it: every current column, NULL unless given."""
    with db.connect() as conn:
        columns = [name for (name,) in conn.execute(
            "SELECT attname FROM pg_attribute WHERE attrelid = %s::regclass AND attnum > 0"
            " AND NOT attisdropped ORDER BY attnum", (table,))]
    assert set(values) <= set(columns)
    return {column: values.get(column) for column in columns}


def session_for(db, name: str = "va", **kwargs) -> ReplicationSession:
    return ReplicationSession(db.dsn, name, name, TRACKED, **kwargs)


def test_streams_exact_envelopes_across_voucher_tables(voucher_db_any):
    db = voucher_db_any
    with session_for(db) as session:
        state = session.prepare(export_snapshot=False)
        session.start()
        start = current_wal_lsn(db)
        xids = [
            run_transaction(
                db,
                ("INSERT INTO tenant (id, created_at, name) VALUES (%s, %s, 'acme')", (TENANT, CREATED)),
                ("INSERT INTO customer (id, created_at, source_id, name, email, metadata, tenant_id)"
                 " VALUES (%s, %s, 'ada', 'Ada', 'ada@example.com', %s, %s)",
                 (CUSTOMER, CREATED, psycopg.types.json.Jsonb(BIG_METADATA), TENANT)),
            ),
            run_transaction(
                db,
                ("UPDATE customer SET name = 'Ada L.', updated_at = %s WHERE id = %s", (UPDATED, CUSTOMER)),
                ("INSERT INTO voucher (id, code, type, holder_id, tenant_id, redemption_json)"
                 " VALUES (%s, 'GIFT-1', 'GIFT_VOUCHER', %s, %s, '{\"quantity\": 1}')",
                 (VOUCHER, CUSTOMER, TENANT)),
                ("INSERT INTO redemption (id, amount, result, voucher_id, customer_id, tenant_id)"
                 " VALUES (%s, 1250, 'SUCCESS', %s, %s, %s)", (REDEMPTION, VOUCHER, CUSTOMER, TENANT)),
            ),
        ]
        db.execute("ALTER TABLE customer ADD COLUMN tier text")
        xids += [
            run_transaction(
                db,
                ("UPDATE customer SET tier = 'gold' WHERE id = %s", (CUSTOMER,)),
                ("INSERT INTO customer (id, source_id, tenant_id, tier) VALUES (%s, 'bob', %s, 'silver')",
                 (CUSTOMER_2, TENANT)),
            ),
            run_transaction(
                db,
                ("DELETE FROM redemption WHERE id = %s", (REDEMPTION,)),
                ("DELETE FROM voucher WHERE id = %s", (VOUCHER,)),
            ),
        ]
        got = collect_transactions(session, 4, timeout=10)
    commits = commit_records(db, start, current_wal_lsn(db))

    customer_before_tier = full_row(
        db, "customer", id=CUSTOMER, created_at=CREATED, source_id="ada", name="Ada",
        email="ada@example.com", metadata=BIG_METADATA, tenant_id=TENANT,
    )
    del customer_before_tier["tier"]  # added by the ALTER TABLE after these transactions
    updated_customer = {**customer_before_tier, "name": "Ada L.", "updated_at": UPDATED}
    del updated_customer["metadata"]  # unchanged TOASTed value: not sent
    voucher = full_row(db, "voucher", id=VOUCHER, code="GIFT-1", type="GIFT_VOUCHER",
                       holder_id=CUSTOMER, tenant_id=TENANT, redemption_json={"quantity": 1})
    redemption = full_row(db, "redemption", id=REDEMPTION, amount=1250, result="SUCCESS",
                          voucher_id=VOUCHER, customer_id=CUSTOMER, tenant_id=TENANT)
    changes = [
        [(Op.INSERT, "tenant", None, full_row(db, "tenant", id=TENANT, created_at=CREATED, name="acme"), set()),
         (Op.INSERT, "customer", None, customer_before_tier, set())],
        [(Op.UPDATE, "customer", None, updated_customer, {"metadata"}),
         (Op.INSERT, "voucher", None, voucher, set()),
         (Op.INSERT, "redemption", None, redemption, set())],
        [(Op.UPDATE, "customer", None, {**updated_customer, "tier": "gold"}, {"metadata"}),
         (Op.INSERT, "customer", None,
          full_row(db, "customer", id=CUSTOMER_2, source_id="bob", tenant_id=TENANT, tier="silver"), set())],
        [(Op.DELETE, "redemption", {"id": REDEMPTION}, None, set()),
         (Op.DELETE, "voucher", {"id": VOUCHER}, None, set())],
    ]
    expected = []
    for xid, transaction_changes in zip(xids, changes):
        commit_lsn, end_lsn, commit_time = commits[xid]
        expected.append([
            TransactionBegin(xid, commit_lsn, commit_time),
            *(Change(op, "public", table, before, after, xid, commit_lsn, commit_time, position,
                     frozenset(unchanged))
              for position, (op, table, before, after, unchanged) in enumerate(transaction_changes)),
            TransactionCommit(xid, commit_lsn, end_lsn, commit_time, len(transaction_changes)),
        ])
    # (each relation's column types are test_assembler.py's; here the rows and positions)
    assert [[msgspec.structs.replace(envelope, column_types=None) if type(envelope) is Change else envelope
             for envelope in transaction] for transaction in got] == expected
    # The UPDATE left the TOASTed jsonb as it was: the row still holds it.
    with db.connect() as conn:
        assert conn.execute("SELECT metadata FROM customer WHERE id = %s", (CUSTOMER,)).fetchone() == (
            BIG_METADATA,)
    assert state.created is True and state.confirmed_flush <= start
    assert session.confirmed_lsn == got[-1][-1].end_lsn


def read_until(session: ReplicationSession, condition, timeout: float, watch=None) -> None:
    """Keep the session reading (answering keepalives) until condition() or timeout; `watch`
    is called after every read, to check an invariant throughout."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        assert session.read(0.1) == []
        if watch is not None:
            watch()


def test_keepalives_are_answered_and_the_server_sees_exactly_what_we_confirmed(voucher_db_any):
    db = voucher_db_any
    # The server drops a client that stays silent for wal_sender_timeout; it asks for a reply
    # at half of it. With status updates every 30 s, only the replies keep us connected.
    dsn = db.dsn + " options='-c wal_sender_timeout=1000'"
    with ReplicationSession(dsn, "va", "va", TRACKED, status_interval=30.0) as session:
        state = session.prepare(export_snapshot=False)
        session.start()
        for name in ("one", "two"):
            db.execute("INSERT INTO tenant (id, name) VALUES (gen_random_uuid(), %s)", (name,))
        first, second = collect_transactions_unconfirmed(session, 2)
        with db.connect() as conn:
            walsender = slot_info(conn, "va").active_pid

        def never_beyond(limit: int):
            return lambda: _assert_at_most(confirmed_lsn(db.dsn, "va"), limit)

        started = time.monotonic()
        read_until(session, lambda: time.monotonic() - started > 1.5, 5, never_beyond(state.confirmed_flush))
        assert confirmed_lsn(db.dsn, "va") == state.confirmed_flush
        session.confirm(first[-1].end_lsn)
        read_until(session, lambda: confirmed_lsn(db.dsn, "va") == first[-1].end_lsn, 5,
                   never_beyond(first[-1].end_lsn))
        started = time.monotonic()
        # The second transaction is unconfirmed: keepalives must not move the slot past the first.
        read_until(session, lambda: time.monotonic() - started > 1.0, 5, never_beyond(first[-1].end_lsn))
        assert confirmed_lsn(db.dsn, "va") == first[-1].end_lsn
        # Still the same walsender, which heard from us within the last second.
        with db.connect() as conn:
            assert conn.execute(
                "SELECT pid = %s, now() - reply_time < interval '1 second' FROM pg_stat_replication"
                " WHERE pid = (SELECT active_pid FROM pg_replication_slots WHERE slot_name = 'va')",
                (walsender,),
            ).fetchone() == (True, True)
        assert second[-1].end_lsn > first[-1].end_lsn


def _assert_at_most(value: int, limit: int) -> None:
    assert value <= limit


def collect_transactions_unconfirmed(session: ReplicationSession, count: int) -> list[list]:
    grouped, current = [], []
    deadline = time.monotonic() + 10
    while len(grouped) < count and time.monotonic() < deadline:
        for envelope in session.read(1.0):
            current.append(envelope)
            if isinstance(envelope, TransactionCommit):
                grouped.append(current)
                current = []
    assert len(grouped) == count
    return grouped


def test_idle_slot_with_untracked_writes_releases_wal(voucher_db_any):
    db = voucher_db_any
    db.execute("INSERT INTO tenant (id, name) VALUES (%s, 'acme')", (TENANT,))  # before the slot
    with session_for(db, status_interval=0.5) as session:
        state = session.prepare(export_snapshot=False)
        session.start()
        for _ in range(3):
            db.execute("INSERT INTO export (id, exported_object, status, tenant_id)"
                       " VALUES (gen_random_uuid(), 'customer', 'DONE', %s)", (TENANT,))
        written = current_wal_lsn(db)
        started = time.monotonic()
        read_until(session, lambda: confirmed_lsn(db.dsn, "va") >= written, timeout=5)
        assert time.monotonic() - started < 5
        assert confirmed_lsn(db.dsn, "va") > state.confirmed_flush
        assert session.confirmed_lsn >= written


def test_restart_redelivers_exactly_the_unconfirmed_transactions(voucher_db_any):
    db = voucher_db_any
    with session_for(db, status_interval=0.2) as session:
        session.prepare(export_snapshot=False)
        session.start()
        for name in ("one", "two", "three"):
            db.execute("INSERT INTO tenant (id, name) VALUES (gen_random_uuid(), %s)", (name,))
        first, second, third = collect_transactions_unconfirmed(session, 3)
        session.confirm(first[-1].end_lsn)
    with session_for(db) as again:
        state = again.prepare(export_snapshot=False)
        again.start()
        redelivered = collect_transactions_unconfirmed(again, 2)
        assert again.read(0.5) == []
    assert state.created is False
    assert state.confirmed_flush == first[-1].end_lsn
    assert redelivered == [second, third]


def test_exported_snapshot_and_stream_meet_without_gap_or_overlap(voucher_db_any):
    db = voucher_db_any
    db.execute("INSERT INTO tenant (id, name) VALUES (%s, 'old')", (TENANT,))
    with session_for(db) as session:
        state = session.prepare(export_snapshot=True)
        db.execute("INSERT INTO tenant (id, name) VALUES (%s, 'new')", (CUSTOMER,))
        with db.connect() as reader:
            reader.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
            reader.execute(f"SET TRANSACTION SNAPSHOT '{state.snapshot_name}'")
            snapshot_rows = reader.execute("SELECT name FROM tenant").fetchall()
        session.start()
        (streamed,) = collect_transactions(session, 1, timeout=10)
        with db.connect() as conn:
            system_id, database = conn.execute(
                "SELECT system_identifier::text, current_database() FROM pg_control_system()"
            ).fetchone()
    assert snapshot_rows == [("old",)]
    assert [change.after["name"] for change in streamed if isinstance(change, Change)] == ["new"]
    assert state == SlotState(system_id, 1, database, True, state.snapshot_name,
                              state.consistent_point, state.consistent_point)
    assert state.snapshot_name and state.consistent_point < streamed[0].commit_lsn


def test_a_second_reader_on_the_same_slot_gets_a_retryable_error(voucher_db_any):
    db = voucher_db_any
    with session_for(db) as first, session_for(db) as second:
        first.prepare(export_snapshot=False)
        first.start()
        second.prepare(export_snapshot=False)
        with pytest.raises(ReplicationConnectionError) as caught:
            second.start()
        with pytest.raises(SlotInUseError):
            second.drop_slot()
    assert str(caught.value).startswith("replication slot va is in use by another process (")


def test_losing_the_connection_surfaces_as_a_retryable_error(voucher_db_any):
    db = voucher_db_any
    with session_for(db) as session:
        session.prepare(export_snapshot=False)
        session.start()
        db.execute("SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots WHERE slot_name = 'va'")
        with pytest.raises(ReplicationConnectionError):
            session.read(5)
    assert issubclass(ReplicationConnectionError, psycopg.OperationalError)


def test_stream_transactions_helper_groups_and_cleans_up(voucher_db):
    def write():
        voucher_db.execute("INSERT INTO tenant (id, name) VALUES (%s, 'acme')", (TENANT,))
        voucher_db.execute("UPDATE tenant SET name = 'acme corp' WHERE id = %s", (TENANT,))

    grouped = stream_transactions(voucher_db.dsn, write, ["tenant"], transactions=2)
    assert [[type(envelope).__name__ for envelope in transaction] for transaction in grouped] == [
        ["TransactionBegin", "Change", "TransactionCommit"]] * 2
    assert [transaction[1].after["name"] for transaction in grouped] == ["acme", "acme corp"]
    with voucher_db.connect() as conn:
        assert conn.execute("SELECT (SELECT count(*) FROM pg_replication_slots WHERE database = current_database()),"
                            " (SELECT count(*) FROM pg_publication)").fetchone() == (0, 0)


@pytest.mark.parametrize(
    ("server_version", "options"),
    [
        (180001, "proto_version '4', publication_names '\"va pub\"', messages 'true'"),
        (160000, "proto_version '4', publication_names '\"va pub\"', messages 'true'"),
        (150010, "proto_version '3', publication_names '\"va pub\"', messages 'true'"),
        (140000, "proto_version '2', publication_names '\"va pub\"', messages 'true'"),
        (130012, "proto_version '1', publication_names '\"va pub\"'"),
    ],
)
def test_start_replication_asks_for_the_newest_protocol_without_streaming(server_version, options):
    command = start_replication_command("va", "va pub", 0x1_0000_00A0, server_version)
    assert command.as_string() == f'START_REPLICATION SLOT "va" LOGICAL 1/A0 ({options})'


def test_a_zero_timeout_read_returns_what_the_socket_holds(voucher_db):
    # The pipeline takes an empty zero-timeout read to mean "caught up" and flushes its batch,
    # so such a read must hand over whatever the server already sent.
    db = voucher_db
    with session_for(db) as session:
        session.prepare(export_snapshot=False)
        session.start()
        db.execute("INSERT INTO tenant (id, name) VALUES (gen_random_uuid(), 'zero')")
        time.sleep(1.0)  # sent by the server and waiting in our socket, not yet in libpq's buffer
        envelopes = session.read(0)
        assert [type(envelope) for envelope in envelopes] == [TransactionBegin, Change, TransactionCommit]
        assert envelopes[1].after["name"] == "zero"
        assert session.read(0) == []
