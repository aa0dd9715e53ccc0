"""Shared fixtures: real PostgreSQL clusters (wal_level=logical) and an embedded chDB path.

- `pg` is one session-wide cluster of the wheel's PostgreSQL (18).
- `pg_any` is parametrized over every major found (the wheel's 18 and, where installed, the
  system's 15) for replication tests, because the pgoutput protocol versions differ.
- `voucher_db` / `make_voucher_db` give each test its own database holding the voucher engine's
  schema (created from a template, so it costs milliseconds), and clean up its slots at the end.
- `VA_TEST_DOCKER=1` is reserved for testcontainers-based clusters where a Docker engine exists;
  there is none on our machines, so local clusters are the default (see README).
"""

from __future__ import annotations

import itertools
import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import psycopg
import pytest

from demo.embedded_pg import LocalPostgres, PostgresInstallation, all_installations
from query.store import Store

REPO = Path(__file__).resolve().parents[1]
SHARED_SCHEMA = REPO.parent / "shared" / "voucher_schema.sql"
PACKAGED_SCHEMA = REPO / "mappers" / "voucher_schema.sql"
TEMPLATE_DB = "voucher_template"

INSTALLATIONS = all_installations()
_names = itertools.count(1)


def utc(text: str) -> datetime:
    """An aware UTC datetime from ISO text ("2024-03-01T09:30:00")."""
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def voucher_schema_sql() -> str:
    """The voucher engine's schema: ../shared's copy is the reference when present."""
    path = SHARED_SCHEMA if SHARED_SCHEMA.exists() else PACKAGED_SCHEMA
    return path.read_text()


def unique_name(prefix: str) -> str:
    return f"{prefix}_{os.getpid()}_{next(_names)}"


class ClusterPool:
    """Starts at most one cluster per major for the whole session, lazily."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.clusters: dict[int, LocalPostgres] = {}

    def get(self, installation: PostgresInstallation) -> LocalPostgres:
        if installation.major not in self.clusters:
            cluster = LocalPostgres(installation, self.root / installation.label)
            cluster.init()
            cluster.start()
            with psycopg.connect(cluster.dsn(), autocommit=True) as conn:
                conn.execute(f"CREATE DATABASE {TEMPLATE_DB}")
            with psycopg.connect(cluster.dsn(TEMPLATE_DB), autocommit=True) as conn:
                conn.execute(voucher_schema_sql())
            self.clusters[installation.major] = cluster
        return self.clusters[installation.major]

    def destroy_all(self) -> None:
        for cluster in self.clusters.values():
            cluster.destroy()


@pytest.fixture(scope="session")
def cluster_pool() -> Iterator[ClusterPool]:
    root = Path(tempfile.mkdtemp(prefix="va-test-pg-"))
    pool = ClusterPool(root)
    yield pool
    pool.destroy_all()
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def pg(cluster_pool: ClusterPool) -> LocalPostgres:
    """The wheel's PostgreSQL (18), shared by the session."""
    return cluster_pool.get(INSTALLATIONS[0])


@pytest.fixture(scope="session", params=INSTALLATIONS, ids=[i.label for i in INSTALLATIONS])
def pg_any(request: pytest.FixtureRequest, cluster_pool: ClusterPool) -> LocalPostgres:
    """Every PostgreSQL major available here, one after the other."""
    return cluster_pool.get(request.param)


@dataclass(frozen=True)
class VoucherDatabase:
    cluster: LocalPostgres
    name: str

    @property
    def dsn(self) -> str:
        return self.cluster.dsn(self.name)

    def connect(self, **kwargs) -> psycopg.Connection:
        return psycopg.connect(self.dsn, **kwargs)

    def execute(self, sql: str, params=None) -> None:
        with self.connect(autocommit=True) as conn:
            conn.execute(sql, params)


def create_voucher_db(cluster: LocalPostgres) -> VoucherDatabase:
    name = unique_name("voucher")
    with psycopg.connect(cluster.dsn(), autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name} TEMPLATE {TEMPLATE_DB}")
    return VoucherDatabase(cluster, name)


def drop_voucher_db(database: VoucherDatabase) -> None:
    """Drop the database and every replication slot on it (slots are cluster-wide)."""
    if not database.cluster.is_running():
        return
    with psycopg.connect(database.cluster.dsn(), autocommit=True) as conn:
        conn.execute(
            "SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots "
            "WHERE database = %s AND active_pid IS NOT NULL", (database.name,),
        )
        for (slot,) in conn.execute(
            "SELECT slot_name FROM pg_replication_slots WHERE database = %s", (database.name,)
        ).fetchall():
            try:
                conn.execute("SELECT pg_drop_replication_slot(%s)", (slot,))
            except psycopg.Error:
                pass  # still held by a walsender that is exiting; DROP ... FORCE below ends it
        conn.execute(f"DROP DATABASE IF EXISTS {database.name} WITH (FORCE)")


@pytest.fixture
def make_voucher_db() -> Iterator:
    """Factory: make_voucher_db(cluster) -> a fresh database with the voucher schema."""
    made: list[VoucherDatabase] = []

    def make(cluster: LocalPostgres) -> VoucherDatabase:
        made.append(create_voucher_db(cluster))
        return made[-1]

    yield make
    for database in made:
        drop_voucher_db(database)


@pytest.fixture
def voucher_db(pg: LocalPostgres, make_voucher_db) -> VoucherDatabase:
    """A fresh database with the voucher schema on the PostgreSQL 18 cluster."""
    return make_voucher_db(pg)


@pytest.fixture
def voucher_db_any(pg_any: LocalPostgres, make_voucher_db) -> VoucherDatabase:
    """A fresh database with the voucher schema, once per PostgreSQL major."""
    return make_voucher_db(pg_any)


@pytest.fixture(scope="session")
def chdb_path() -> Iterator[Path]:
    """The one embedded chDB directory of this test process (chDB allows one path per process);
    tests isolate themselves with a database each (see `store_url`)."""
    root = Path(tempfile.mkdtemp(prefix="va-test-chdb-"))
    yield root
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def store_url(chdb_path: Path) -> str:
    """A store URL on the shared chDB path with a database of its own."""
    return f"chdb://{chdb_path}?database={unique_name('events')}"


@pytest.fixture
def store(store_url: str) -> Iterator[Store]:
    """An open store on `store_url`, its schema created."""
    with Store.open(store_url) as opened:
        yield opened
