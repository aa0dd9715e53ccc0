"""Start-up checks, each against a real server configured to fail it, with its exact message."""

import contextlib
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from cdc_reader.checks import (
    MissingTableError,
    NoFreeReplicationSlotError,
    NoFreeWalSenderError,
    PublicationOwnerError,
    ReplicaIdentityError,
    ReplicationPrivilegeError,
    SelectPrivilegeError,
    WalLevelError,
    check_free_slot,
    check_free_wal_sender,
    check_publication_owner,
    check_replication_privilege,
    check_tracked_tables,
    check_wal_level,
    run_startup_checks,
)
from demo.embedded_pg import LocalPostgres, wheel_installation
from tests.replication_helpers import temporary_role


@contextlib.contextmanager
def started_cluster(settings: dict[str, str]) -> Iterator[LocalPostgres]:
    # Not under pytest's tmp_path: concurrent pytest runs prune each other's old directories.
    cluster = LocalPostgres(wheel_installation(), Path(tempfile.mkdtemp(prefix="va-checks-")) / "pg",
                            settings=settings)
    cluster.init()
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.destroy()
        shutil.rmtree(cluster.data_dir.parent, ignore_errors=True)


@pytest.fixture(scope="module")
def replica_only() -> Iterator[LocalPostgres]:
    """A server with wal_level=replica: no logical decoding."""
    with started_cluster({"wal_level": "replica"}) as cluster:
        yield cluster


@pytest.fixture(scope="module")
def one_of_each() -> Iterator[LocalPostgres]:
    """A logical server with room for a single replication slot and a single WAL sender."""
    with started_cluster({"max_replication_slots": "1", "max_wal_senders": "1"}) as cluster:
        yield cluster


def test_wal_level_replica_is_refused(replica_only):
    with psycopg.connect(replica_only.dsn()) as conn, pytest.raises(WalLevelError) as caught:
        check_wal_level(conn)
    assert str(caught.value) == (
        "wal_level is 'replica' but logical replication needs 'logical'; "
        "run ALTER SYSTEM SET wal_level = logical and restart PostgreSQL"
    )


def test_wal_level_is_checked_first(replica_only):
    with psycopg.connect(replica_only.dsn()) as conn, pytest.raises(WalLevelError):
        run_startup_checks(conn, "voucher_activity", "voucher_activity", ["pg_class"])


def test_role_without_replication_is_refused(voucher_db):
    with temporary_role(voucher_db, "LOGIN") as role, \
            psycopg.connect(voucher_db.cluster.dsn(voucher_db.name, user=role)) as conn, \
            pytest.raises(ReplicationPrivilegeError) as caught:
        check_replication_privilege(conn)
    assert str(caught.value) == (
        f"role {role} may not stream changes because it lacks the REPLICATION attribute; "
        f"run ALTER ROLE {role} REPLICATION"
    )


def test_replication_role_passes(voucher_db):
    with temporary_role(voucher_db, "LOGIN REPLICATION") as role, \
            psycopg.connect(voucher_db.cluster.dsn(voucher_db.name, user=role)) as conn:
        check_replication_privilege(conn)


def test_full_slot_table_is_refused_unless_our_slot_exists(one_of_each):
    with psycopg.connect(one_of_each.dsn(), autocommit=True) as conn:
        conn.execute("SELECT pg_create_physical_replication_slot('someone_elses')")
        try:
            with pytest.raises(NoFreeReplicationSlotError) as caught:
                check_free_slot(conn, "voucher_activity")
            check_free_slot(conn, "someone_elses")  # an existing slot needs no new place
        finally:
            conn.execute("SELECT pg_drop_replication_slot('someone_elses')")
        check_free_slot(conn, "voucher_activity")
    assert str(caught.value) == (
        "all 1 replication slots (max_replication_slots) are in use; raise max_replication_slots "
        "and restart PostgreSQL, or drop an unused slot with SELECT pg_drop_replication_slot('<name>')"
    )


def test_busy_wal_senders_are_refused(one_of_each):
    with psycopg.connect(one_of_each.dsn(), autocommit=True) as conn:
        check_free_wal_sender(conn)
        with psycopg.connect(one_of_each.dsn(), replication="database", autocommit=True):
            with pytest.raises(NoFreeWalSenderError) as caught:
                check_free_wal_sender(conn)
    assert str(caught.value) == (
        "all 1 WAL senders (max_wal_senders) are in use; raise max_wal_senders and restart "
        "PostgreSQL, or stop a replication client that is no longer needed"
    )


def test_missing_select_privilege_is_refused(voucher_db):
    with temporary_role(voucher_db, "LOGIN REPLICATION") as role:
        voucher_db.execute(f"GRANT SELECT ON customer TO {role}")
        with psycopg.connect(voucher_db.cluster.dsn(voucher_db.name, user=role)) as conn, \
                pytest.raises(SelectPrivilegeError) as caught:
            check_tracked_tables(conn, ["customer", "redemption", "orders"])
    assert str(caught.value) == (
        f"role {role} cannot read tracked table(s) redemption, orders; "
        f"run GRANT SELECT ON redemption, orders TO {role}"
    )


def test_missing_table_is_refused(voucher_db):
    with voucher_db.connect() as conn, pytest.raises(MissingTableError) as caught:
        check_tracked_tables(conn, ["customer", "coupon", "audit.customer"])
    assert str(caught.value) == (
        f"tracked table(s) coupon, audit.customer do not exist in database {voucher_db.name}; "
        "point --source at the voucher engine's database or exclude the table(s)"
    )


def test_table_without_replica_identity_is_refused(voucher_db):
    with voucher_db.connect() as conn, pytest.raises(ReplicaIdentityError) as caught:
        check_tracked_tables(conn, ["customer", "segment_customer"])
    assert str(caught.value) == (
        "table segment_customer has no replica identity (no primary key), so publishing it would "
        "make the application's UPDATEs and DELETEs on it fail; run ALTER TABLE segment_customer "
        "REPLICA IDENTITY FULL, or exclude the table"
    )


def test_replica_identity_full_or_index_is_accepted(voucher_db):
    voucher_db.execute("ALTER TABLE segment_customer REPLICA IDENTITY FULL")
    voucher_db.execute("CREATE UNIQUE INDEX omitted_rules_key ON "
                       "validation_rules_assignment_omitted_rules (assignment_id)")
    voucher_db.execute("ALTER TABLE validation_rules_assignment_omitted_rules "
                       "REPLICA IDENTITY USING INDEX omitted_rules_key")
    with voucher_db.connect() as conn:
        described = check_tracked_tables(
            conn, ["segment_customer", "validation_rules_assignment_omitted_rules", "customer"]
        )
    assert [(table.display, table.has_replica_identity) for table in described] == [
        ("segment_customer", True),
        ("validation_rules_assignment_omitted_rules", True),
        ("customer", True),
    ]


def test_publication_owned_by_another_role_is_refused(voucher_db):
    voucher_db.execute("CREATE PUBLICATION voucher_activity FOR TABLE customer")
    with temporary_role(voucher_db, "LOGIN REPLICATION") as role, \
            psycopg.connect(voucher_db.cluster.dsn(voucher_db.name, user=role)) as conn, \
            pytest.raises(PublicationOwnerError) as caught:
        check_publication_owner(conn, "voucher_activity")
    assert str(caught.value) == (
        f"publication voucher_activity is owned by role postgres, not {role}; run "
        f"ALTER PUBLICATION voucher_activity OWNER TO {role}, or choose another --publication"
    )
