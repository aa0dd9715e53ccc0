"""Publication and slot management against a real server: create, update, inspect, tear down."""

import uuid

import psycopg
import pytest

from cdc_reader.changes import parse_lsn
from cdc_reader.checks import ReplicaIdentityError
from cdc_reader.slot import (
    OUR_COMMENT,
    ForeignPublicationError,
    PublicationChange,
    PublicationPermissionError,
    SlotMismatchError,
    check_slot_usable,
    create_slot,
    create_slot_exporting_snapshot,
    drop_publication,
    drop_slot,
    ensure_publication,
    publication_tables,
    slot_info,
)
from tests.replication_helpers import temporary_role

TENANT = uuid.UUID(int=1)


def publication_comment(conn, name: str) -> str | None:
    row = conn.execute(
        "SELECT obj_description(oid, 'pg_publication') FROM pg_publication WHERE pubname = %s", (name,)
    ).fetchone()
    return row and row[0]


def current_wal_lsn(conn) -> int:
    return parse_lsn(conn.execute("SELECT pg_current_wal_lsn()::text").fetchone()[0])


def test_publication_is_created_kept_and_updated(voucher_db):
    with voucher_db.connect(autocommit=True) as conn:
        assert ensure_publication(conn, "va", ["customer", "redemption"]) is PublicationChange.CREATED
        assert publication_comment(conn, "va") == OUR_COMMENT == "created by voucher-activity"
        assert publication_tables(conn, "va") == {("public", "customer"), ("public", "redemption")}
        assert ensure_publication(conn, "va", ["redemption", "customer"]) is PublicationChange.UNCHANGED
        assert ensure_publication(conn, "va", ["customer", "orders"]) is PublicationChange.UPDATED
        assert publication_tables(conn, "va") == {("public", "customer"), ("public", "orders")}
        assert drop_publication(conn, "va") is True
        assert drop_publication(conn, "va") is False
        assert publication_comment(conn, "va") is None


def test_a_publication_we_did_not_create_is_used_but_never_changed_or_dropped(voucher_db):
    voucher_db.execute("CREATE PUBLICATION theirs FOR TABLE customer, orders, voucher")
    with voucher_db.connect(autocommit=True) as conn:
        assert ensure_publication(conn, "theirs", ["customer", "orders"]) is PublicationChange.UNCHANGED
        with pytest.raises(ForeignPublicationError) as caught:
            ensure_publication(conn, "theirs", ["customer", "redemption", "tenant"])
        assert drop_publication(conn, "theirs") is False
        assert publication_tables(conn, "theirs") == {
            ("public", "customer"), ("public", "orders"), ("public", "voucher")
        }
    assert str(caught.value) == (
        "publication theirs was not created by voucher-activity and does not publish inserts, "
        "updates and deletes of every tracked table (missing: public.redemption, public.tenant); "
        "add them with ALTER PUBLICATION theirs ADD TABLE ..., or choose another --publication"
    )


def test_a_table_without_replica_identity_is_never_published_nor_altered(voucher_db):
    with voucher_db.connect(autocommit=True) as conn:
        with pytest.raises(ReplicaIdentityError):
            ensure_publication(conn, "va", ["customer", "segment_customer"])
        assert conn.execute("SELECT count(*) FROM pg_publication").fetchone() == (0,)
        assert conn.execute(
            "SELECT relreplident FROM pg_class WHERE oid = 'segment_customer'::regclass"
        ).fetchone() == ("d",)
        # The application's own DELETE keeps working.
        conn.execute("DELETE FROM segment_customer WHERE customer_id IS NULL")


def test_a_role_that_may_not_publish_is_told_what_the_owner_should_run(voucher_db):
    with temporary_role(voucher_db, "LOGIN REPLICATION") as role:
        voucher_db.execute(f"GRANT SELECT ON customer, orders TO {role}")
        voucher_db.execute(f"GRANT CREATE ON DATABASE {voucher_db.name} TO {role}")
        with psycopg.connect(voucher_db.cluster.dsn(voucher_db.name, user=role), autocommit=True) as conn:
            with pytest.raises(PublicationPermissionError) as caught:
                ensure_publication(conn, "va", ["customer", "orders"])
            assert conn.execute("SELECT count(*) FROM pg_publication").fetchone() == (0,)
    assert str(caught.value) == (
        f"role {role} may not publish the tracked tables (must be owner of table customer); "
        'as their owner or a superuser run: CREATE PUBLICATION "va" FOR TABLE "public"."customer", '
        '"public"."orders"; COMMENT ON PUBLICATION "va" IS \'created by voucher-activity\''
    )


def test_slot_is_created_inspected_and_dropped(voucher_db):
    with voucher_db.connect(autocommit=True) as conn:
        assert slot_info(conn, "va_slot") is None
        consistent_point = create_slot(conn, "va_slot")
        wal_before = current_wal_lsn(conn)
        info = slot_info(conn, "va_slot")
        wal_after = current_wal_lsn(conn)
        assert (info.name, info.plugin, info.database, info.active, info.active_pid) == (
            "va_slot", "pgoutput", voucher_db.name, False, None
        )
        assert info.confirmed_flush_lsn == consistent_point
        assert info.restart_lsn <= consistent_point
        # Background WAL (running-xacts records) may land between the queries.
        assert wal_before - info.restart_lsn <= info.retained_wal_bytes <= wal_after - info.restart_lsn
        check_slot_usable(info, voucher_db.name)
        assert drop_slot(conn, "va_slot") is True
        assert drop_slot(conn, "va_slot") is False
        assert slot_info(conn, "va_slot") is None


def test_a_foreign_slot_of_the_same_name_is_refused(voucher_db):
    with voucher_db.connect(autocommit=True) as conn:
        conn.execute("SELECT pg_create_physical_replication_slot('va_physical')")
        try:
            with pytest.raises(SlotMismatchError) as caught:
                check_slot_usable(slot_info(conn, "va_physical"), voucher_db.name)
        finally:
            conn.execute("SELECT pg_drop_replication_slot('va_physical')")
    assert str(caught.value) == (
        "replication slot va_physical exists but belongs to plugin none (physical) on database "
        f"none, not pgoutput on {voucher_db.name}; choose another --slot, or drop that slot if "
        "nothing uses it"
    )


def test_exported_snapshot_shows_exactly_the_rows_before_the_consistent_point(voucher_db_any):
    db = voucher_db_any
    db.execute("INSERT INTO tenant (id, name) VALUES (%s, 'before')", (TENANT,))
    with db.connect(replication="database", autocommit=True) as replication:
        created = create_slot_exporting_snapshot(replication, "va_export")
        db.execute("INSERT INTO tenant (id, name) VALUES (%s, 'after')", (uuid.UUID(int=2),))
        with db.connect() as reader:
            reader.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
            reader.execute(f"SET TRANSACTION SNAPSHOT '{created.snapshot_name}'")
            names = reader.execute("SELECT name FROM tenant ORDER BY name").fetchall()
        with db.connect() as conn:
            info = slot_info(conn, "va_export")
    assert names == [("before",)]
    assert created.name == "va_export"
    assert info.confirmed_flush_lsn == created.consistent_point


def test_slots_fail_over_to_a_standby_from_postgresql_17(voucher_db_any):
    """Both ways of creating the slot set `failover` where the server has it (SPEC §3)."""
    db = voucher_db_any
    with db.connect(autocommit=True) as conn:
        version = conn.info.server_version
        create_slot(conn, "va_sql")
    with db.connect(replication="database", autocommit=True) as replication:
        create_slot_exporting_snapshot(replication, "va_exported")
    with db.connect(autocommit=True) as conn:
        if version >= 170000:
            failover = conn.execute(
                "SELECT slot_name, failover FROM pg_replication_slots WHERE slot_name LIKE 'va_%' "
                "ORDER BY slot_name").fetchall()
            assert failover == [("va_exported", True), ("va_sql", True)]
        else:  # no such column before 17: the slots are plain logical slots
            assert [info.plugin for info in (slot_info(conn, "va_sql"), slot_info(conn, "va_exported"))] == [
                "pgoutput", "pgoutput"]
