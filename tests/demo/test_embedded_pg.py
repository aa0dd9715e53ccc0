"""The demo's embedded PostgreSQL asks for a password (SPEC §7: nothing open to other local
users); throwaway test clusters keep trust."""

from __future__ import annotations

import stat

import psycopg
import pytest

from demo.embedded_pg import LocalPostgres, wheel_installation


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
