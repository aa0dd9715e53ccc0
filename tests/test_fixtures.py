"""The fixtures themselves: clusters run with logical decoding, the schema is loaded, and the
packaged schema copy equals the shared reference."""

import hashlib
import os

import psycopg

from mappers.schema import voucher_schema
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


# SHA-256 of the voucher engine's schema (../shared/voucher_schema.sql) that the packaged copy
# must equal; a new engine schema is copied into mappers/ and this digest updated with it.
SHARED_SCHEMA_SHA256 = "f90b30202370b0a4663f6a07069b2b6a378e01f13065388b5072f504dc6f4dd4"


def test_packaged_schema_is_the_shared_one():
    packaged = PACKAGED_SCHEMA.read_bytes()
    if SHARED_SCHEMA.exists():
        assert packaged == SHARED_SCHEMA.read_bytes()
    assert hashlib.sha256(packaged).hexdigest() == SHARED_SCHEMA_SHA256
    schema = voucher_schema()  # the packaged copy, as the mappers read it
    assert len(schema.tables) == 26
    assert schema.table("customer").primary_key == ("id",)
    assert voucher_schema_sql() == packaged.decode()
