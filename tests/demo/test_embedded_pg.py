"""The demo's embedded PostgreSQL asks for a password (SPEC §7: nothing open to other local
users); throwaway test clusters keep trust. Started by root, a cluster runs as the service user
in a directory of its own and changes no permission outside the product's directories."""

from __future__ import annotations

import os
import pwd
import shutil
import stat
from pathlib import Path

import psycopg
import pytest

from demo.embedded_pg import (
    CLUSTERS,
    SERVICE_USER,
    EmbeddedPostgresError,
    LocalPostgres,
    PostgresInstallation,
    wheel_installation,
)

root_only = pytest.mark.skipif(os.geteuid() != 0, reason="only root hands the cluster to a service user")


def modes(paths) -> dict[Path, int]:
    return {path: path.stat().st_mode for path in paths}


def test_a_password_cluster_refuses_connections_without_its_password(tmp_path):
    cluster = LocalPostgres(wheel_installation(), tmp_path / "postgres", password_auth=True)
    cluster.init()
    cluster.start()
    try:
        assert stat.S_IMODE(cluster.password_file.stat().st_mode) == 0o600
        assert len(cluster.password) >= 24
        with psycopg.connect(cluster.dsn()) as conn:
            assert conn.execute("SELECT current_user").fetchone() == ("postgres",)
        without = f"host=127.0.0.1 port={cluster.port} user=postgres dbname=postgres"
        with pytest.raises(psycopg.OperationalError, match="password"):
            psycopg.connect(without, connect_timeout=5)
        with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
            psycopg.connect(without + " password=guess", connect_timeout=5)
    finally:
        cluster.destroy()


@root_only
def test_a_cluster_root_starts_changes_no_permission_outside_its_directories(tmp_path):
    product = tmp_path / "product"
    product.mkdir(mode=0o700)  # like the demo's directory: only root may enter it
    data_dir = product / "postgres"
    installation = wheel_installation()
    watched = [*data_dir.parents, installation.bin_dir, *installation.bin_dir.parents]
    before = modes(watched)
    cluster = LocalPostgres(installation, data_dir, password_auth=True)
    cluster.init()
    cluster.start()
    try:
        with psycopg.connect(cluster.dsn(), autocommit=True) as conn:
            conn.execute("CREATE TABLE item (id int PRIMARY KEY)")
            conn.execute("INSERT INTO item VALUES (1), (2)")
            assert conn.execute("SELECT count(*), current_setting('wal_level') FROM item").fetchone() == (2, "logical")
        assert modes(watched) == before
        home = cluster.cluster_dir.parent
        assert data_dir.is_symlink() and home.parent == CLUSTERS
        for path in (home, cluster.cluster_dir, cluster.password_file):
            assert pwd.getpwuid(path.stat().st_uid).pw_name == SERVICE_USER
        assert stat.S_IMODE(cluster.cluster_dir.stat().st_mode) == 0o700

        # The link is the cluster: another start from the same directory finds its data.
        cluster.stop()
        again = LocalPostgres(installation, data_dir, password_auth=True)
        again.init()
        again.start()
        with psycopg.connect(again.dsn()) as conn:
            assert conn.execute("SELECT count(*) FROM item").fetchone() == (2,)
        assert modes(watched) == before
    finally:
        cluster.destroy()
    assert not data_dir.is_symlink() and not data_dir.exists() and not home.exists()


@root_only
def test_a_root_run_cluster_whose_directory_was_removed_is_removed_by_the_next(tmp_path):
    first = LocalPostgres(wheel_installation(), tmp_path / "first" / "postgres")
    first.init()
    orphan = first.cluster_dir.parent
    shutil.rmtree(tmp_path / "first")  # as `demo --fresh` or a test's cleanup does
    assert orphan.exists()
    second = LocalPostgres(wheel_installation(), tmp_path / "second" / "postgres")
    second.init()
    try:
        assert not orphan.exists()
        assert second.cluster_dir.parent.exists()
    finally:
        second.destroy()


@root_only
def test_binaries_the_service_user_cannot_reach_are_refused_not_opened_up(tmp_path):
    private = tmp_path / "private"
    (private / "bin").mkdir(parents=True)
    private.chmod(0o700)
    (private / "bin" / "postgres").symlink_to(wheel_installation().bin_dir / "postgres")
    before = modes([private, *private.parents])
    cluster = LocalPostgres(PostgresInstallation(private / "bin", 18), tmp_path / "postgres")
    with pytest.raises(EmbeddedPostgresError, match=f"{SERVICE_USER} .* cannot run {private}/bin/postgres"):
        cluster.init()
    assert modes([private, *private.parents]) == before
