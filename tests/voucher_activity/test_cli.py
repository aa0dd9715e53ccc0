"""The console script as an operator meets it: every start-up refusal of SPEC §3 exits non-zero
with its one-sentence fix, `--help` lists every command, and status/teardown report honestly."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psycopg
import pytest

from demo.embedded_pg import free_port
from tests.cdc_reader.test_checks import started_cluster
from tests.deploy.test_deploy_files import allocator_environment
from tests.replication_helpers import temporary_role

COMMANDS = ("demo", "run", "reader", "serve", "status", "sql", "teardown")


def cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "voucher_activity.cli", *args], capture_output=True, text=True,
        timeout=timeout, stdin=subprocess.DEVNULL,
    )


def start_reader(dsn: str, data_dir: Path) -> subprocess.CompletedProcess:
    """`reader` against a source that must be refused: it exits by itself."""
    return cli("reader", "--source", dsn, "--data-dir", str(data_dir), "--listen", "127.0.0.1:0",
               "--log-format", "json")


def refusal(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 1, result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("voucher-activity: "), result.stderr
    return last.removeprefix("voucher-activity: ")


def test_help_lists_every_command():
    result = cli("--help")
    assert result.returncode == 0
    for command in COMMANDS:
        assert f"    {command} " in result.stdout


def test_table_without_replica_identity_is_refused(voucher_db, tmp_path):
    message = refusal(start_reader(voucher_db.dsn, tmp_path))
    assert message == (
        "table segment_customer has no replica identity (no primary key), so publishing it would make "
        "the application's UPDATEs and DELETEs on it fail; run ALTER TABLE segment_customer REPLICA "
        "IDENTITY FULL, or exclude the table"
    )


def test_wal_level_replica_is_refused(tmp_path):
    with started_cluster({"wal_level": "replica"}) as cluster:
        message = refusal(start_reader(cluster.dsn(), tmp_path))
    assert message == (
        "wal_level is 'replica' but logical replication needs 'logical'; run ALTER SYSTEM SET "
        "wal_level = logical and restart PostgreSQL"
    )


@pytest.fixture
def prepared_db(voucher_db):
    voucher_db.execute("ALTER TABLE segment_customer REPLICA IDENTITY FULL")
    return voucher_db


def test_role_without_replication_is_refused(prepared_db, tmp_path):
    with temporary_role(prepared_db, "LOGIN") as role:
        message = refusal(start_reader(prepared_db.cluster.dsn(prepared_db.name, user=role), tmp_path))
    assert message == (
        f"role {role} may not stream changes because it lacks the REPLICATION attribute; "
        f"run ALTER ROLE {role} REPLICATION"
    )


def test_role_without_select_is_refused(prepared_db, tmp_path):
    with temporary_role(prepared_db, "LOGIN REPLICATION") as role:
        prepared_db.execute(f"GRANT SELECT ON ALL TABLES IN SCHEMA public TO {role}")
        prepared_db.execute(f"REVOKE SELECT ON redemption, voucher FROM {role}")
        message = refusal(start_reader(prepared_db.cluster.dsn(prepared_db.name, user=role), tmp_path))
    assert message.startswith(f"role {role} cannot read tracked table(s) ")
    assert message.endswith(f"; run GRANT SELECT ON voucher, redemption TO {role}") or message.endswith(
        f"; run GRANT SELECT ON redemption, voucher TO {role}"
    )


def test_publication_owned_by_another_role_is_refused(prepared_db, tmp_path):
    with temporary_role(prepared_db, "LOGIN REPLICATION") as role:
        prepared_db.execute(f"GRANT SELECT ON ALL TABLES IN SCHEMA public TO {role}")
        prepared_db.execute("CREATE PUBLICATION voucher_activity FOR TABLE customer")
        message = refusal(start_reader(prepared_db.cluster.dsn(prepared_db.name, user=role), tmp_path))
    assert message == (
        f"publication voucher_activity is owned by role postgres, not {role}; run "
        f"ALTER PUBLICATION voucher_activity OWNER TO {role}, or choose another --publication"
    )


def test_no_free_slot_is_refused(tmp_path, pg):
    with started_cluster({"max_replication_slots": "1", "max_wal_senders": "4"}) as cluster:
        database = create_voucher_db_on(cluster)
        with psycopg.connect(cluster.dsn(), autocommit=True) as conn:
            conn.execute("SELECT pg_create_physical_replication_slot('someone_elses')")
        message = refusal(start_reader(cluster.dsn(database), tmp_path))
    assert message == (
        "all 1 replication slots (max_replication_slots) are in use; raise max_replication_slots "
        "and restart PostgreSQL, or drop an unused slot with SELECT pg_drop_replication_slot('<name>')"
    )


def create_voucher_db_on(cluster) -> str:
    """A voucher database on a cluster of the test's own (no template there)."""
    from tests.conftest import voucher_schema_sql

    with psycopg.connect(cluster.dsn(), autocommit=True) as conn:
        conn.execute("CREATE DATABASE voucher")
    with psycopg.connect(cluster.dsn("voucher"), autocommit=True) as conn:
        conn.execute(voucher_schema_sql())
        conn.execute("ALTER TABLE segment_customer REPLICA IDENTITY FULL")
    return "voucher"


def test_status_and_teardown_of_a_source_without_a_slot(prepared_db, tmp_path):
    result = cli("status", "--json", "--source", prepared_db.dsn, "--data-dir", str(tmp_path))
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["slot"] == "voucher_activity"
    assert report["source"]["slot_exists"] is False
    assert report["source"]["publication_exists"] is False
    assert report["store"]["events_stored"] == 0
    result = cli("teardown", "--source", prepared_db.dsn, "--data-dir", str(tmp_path))
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "slot voucher_activity: absent",
        "publication voucher_activity: absent or not created by voucher-activity, kept",
    ]


def test_missing_source_is_a_configuration_error(tmp_path):
    result = cli("reader", "--data-dir", str(tmp_path))
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "voucher-activity: no source database: pass --source DSN or set VA_SOURCE_DSN"
    )


def test_invalidated_slot_is_refused(tmp_path):
    with started_cluster({"max_slot_wal_keep_size": "1MB"}) as cluster:
        database = create_voucher_db_on(cluster)
        with psycopg.connect(cluster.dsn(database), autocommit=True) as conn:
            conn.execute("SELECT pg_create_logical_replication_slot('voucher_activity', 'pgoutput')")
            for _ in range(4):  # push the slot's restart_lsn far past the 1 MB it may keep
                conn.execute("CREATE TABLE IF NOT EXISTS filler (x int)")
                conn.execute("INSERT INTO filler SELECT generate_series(1, 100000)")
                conn.execute("SELECT pg_switch_wal()")
            conn.execute("CHECKPOINT")
            status = conn.execute(
                "SELECT wal_status FROM pg_replication_slots WHERE slot_name = 'voucher_activity'"
            ).fetchone()
        assert status == ("lost",)
        message = refusal(start_reader(cluster.dsn(database), tmp_path))
    assert message == (
        "replication slot voucher_activity was invalidated (its WAL exceeded max_slot_wal_keep_size), "
        "so the stored history has a gap; run voucher-activity teardown, clear the store, and "
        "start again to rebuild it with --snapshot initial"
    )


JEMALLOC_DECAY = """
import re
import chdb
stats = chdb.query("SELECT stats FROM system.jemalloc_stats", "CSV").bytes().decode()
print(re.search(r"opt.dirty_decay_ms: (\\d+)", stats).group(1))
"""


@pytest.mark.parametrize(("setting", "decay"), [
    (allocator_environment()["JE_MALLOC_CONF"], "200"), ("dirty_decay_ms:1500", "1500")])
def test_the_embedded_engine_takes_its_allocator_setting_from_the_environment(setting, decay):
    """chDB's jemalloc keeps freed pages 5 s by default; the environment the sidecar starts in
    (deploy/Dockerfile, `dev`) sets 0.2 s (docs/store.md, "Memory"), or what the operator sets."""
    env = {**os.environ, "JE_MALLOC_CONF": setting}
    result = subprocess.run([sys.executable, "-c", JEMALLOC_DECAY], capture_output=True, text=True,
                            timeout=60, env=env)
    assert result.stdout.split() == [decay], result.stderr


SHOW_DATABASES = """
import sys
from chdb import session
print(session.Session(sys.argv[1]).query(
    "SELECT name FROM system.databases WHERE name NOT IN ('system', 'information_schema', "
    "'INFORMATION_SCHEMA', 'default', '_temporary_and_external_tables') ORDER BY name", "CSV"), end="")
"""


def test_serve_and_status_create_nothing_in_the_store(prepared_db, tmp_path):
    """Only a reader creates the schema (SPEC §5): `status` reports an empty store as such and
    `serve` answers /readyz 503 until a reader has written, both leaving the store as it was."""
    store = tmp_path / "clickhouse"
    result = cli("status", "--json", "--source", prepared_db.dsn, "--store", f"chdb://{store}",
                 "--data-dir", str(tmp_path))
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["store"] == {"events_stored": 0, "last_event_at": None, "tenants": []}
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "voucher_activity.cli", "serve", "--store", f"chdb://{store}",
         "--listen", f"127.0.0.1:{port}", "--log-format", "json"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL,
    )
    try:
        ready = None
        for _ in range(300):
            try:
                ready = httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1)
                break
            except httpx.HTTPError:
                time.sleep(0.1)
        assert ready is not None and ready.status_code == 503
        # no tokens: only requests addressed to a loopback name are answered (DNS rebinding)
        for host, code in (("attacker.example", 400), (f"localhost:{port}", 200), (f"127.0.0.1:{port}", 200)):
            assert httpx.get(f"http://127.0.0.1:{port}/healthz", headers={"Host": host}).status_code == code
    finally:
        server.terminate()
        assert server.wait(timeout=60) == 0
    databases = subprocess.run([sys.executable, "-c", SHOW_DATABASES, str(store)], capture_output=True,
                               text=True, timeout=120)
    assert databases.returncode == 0, databases.stderr
    assert databases.stdout == ""


def test_cluster_names_are_checked_at_start_up(tmp_path):
    result = cli("status", "--cluster", "events; DROP", "--data-dir", str(tmp_path))
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "voucher-activity: --cluster/VA_STORE_CLUSTER: 'events; DROP' is not a plain identifier "
        "(letters, digits, underscore)")
