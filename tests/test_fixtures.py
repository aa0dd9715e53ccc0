"""The fixtures themselves: clusters run with logical decoding, the schema is loaded, and the
packaged schema copy equals the shared reference."""

import os

import psycopg

from tests.conftest import PACKAGED_SCHEMA, SHARED_SCHEMA, voucher_schema_sql


def test_every_major_runs_with_logical_wal(pg_any):
    with psycopg.connect(pg_any.dsn()) as conn:
        assert conn.execute("SHOW wal_level").fetchone() == ("logical",)
        major = conn.info.server_version // 10000
    assert major == pg_any.installation.major


def test_server_does_not_run_as_root(pg):
    with psycopg.connect(pg.dsn()) as conn:
        pid = conn.execute("SELECT pg_backend_pid()").fetchone()[0]
        uid = os.stat(f"/proc/{pid}").st_uid  # while connected: the backend exits with the session
    assert uid != 0 if os.geteuid() == 0 else uid == os.geteuid()


def test_voucher_db_has_the_engine_schema(voucher_db):
    with voucher_db.connect() as conn:
        tables = {row[0] for row in conn.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public'")}
    assert len(tables) == 26
    assert {"customer", "redemption", "segment_customer", "voucher_transaction"} <= tables


def test_packaged_schema_is_the_shared_one():
    if SHARED_SCHEMA.exists():
        assert PACKAGED_SCHEMA.read_text() == SHARED_SCHEMA.read_text()
    assert "CREATE TABLE customer (" in voucher_schema_sql()
