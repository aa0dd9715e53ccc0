"""deploy/clickhouse/*.sql are exactly what the store renders (query.schema.render_ddl), so a
DBA who applies them gets the schema the sidecar itself would create."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit

import yaml

from query.schema import render_ddl

CLICKHOUSE = Path(__file__).resolve().parents[2] / "deploy" / "clickhouse"


def load_render():
    spec = importlib.util.spec_from_file_location("deploy_clickhouse_render", CLICKHOUSE / "render.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def statements(path: Path) -> list[str]:
    body = "\n".join(line for line in path.read_text().splitlines() if not line.startswith("--"))
    return [statement.strip() for statement in body.split(";\n") if statement.strip()]


def test_schema_files_equal_what_the_store_renders():
    render = load_render()
    assert (CLICKHOUSE / "schema.sql").read_text() == render.render_file()
    assert (CLICKHOUSE / "cluster.sql").read_text() == render.render_file(cluster=render.CLUSTER)
    assert [s.rstrip(";") for s in statements(CLICKHOUSE / "schema.sql")] == render_ddl(render.DATABASE)
    assert [s.rstrip(";") for s in statements(CLICKHOUSE / "cluster.sql")] == render_ddl(render.DATABASE, render.CLUSTER)


def test_cluster_file_runs_everything_on_the_cluster():
    cluster = statements(CLICKHOUSE / "cluster.sql")
    assert all(" ON CLUSTER default" in statement for statement in cluster)
    assert any("ReplicatedReplacingMergeTree" in statement for statement in cluster)
    assert any("ENGINE = Distributed(default, voucher_activity, customer_events_local" in s for s in cluster)
    assert not any(" ON CLUSTER" in statement or "Replicated" in statement
                   for statement in statements(CLICKHOUSE / "schema.sql"))


def test_schema_database_is_the_one_the_deploy_files_use():
    render = load_render()
    compose = yaml.safe_load((CLICKHOUSE.parent / "compose.yaml").read_text())
    assert compose["services"]["clickhouse"]["environment"]["CLICKHOUSE_DB"] == render.DATABASE
    secret = next(yaml.safe_load_all((CLICKHOUSE.parent / "kubernetes" / "secret.yaml").read_text()))
    assert urlsplit(secret["stringData"]["VA_STORE_URL"]).path == "/" + render.DATABASE


APPLY_ON_CHDB = """
import sys, tempfile
from chdb import session
text = open(sys.argv[1]).read()
body = "\\n".join(line for line in text.splitlines() if not line.startswith("--"))
store = session.Session(tempfile.mkdtemp())
for _ in range(2):  # idempotent
    for statement in [s.strip() for s in body.split(";\\n") if s.strip()]:
        store.query(statement.rstrip(";"))
print(store.query("SELECT name FROM system.tables WHERE database = 'voucher_activity' ORDER BY name", "CSV"))
"""


def test_single_server_schema_applies_twice_on_clickhouse():
    # In a child process: chDB allows one data path per process, and the test session has its own.
    result = subprocess.run([sys.executable, "-c", APPLY_ON_CHDB, str(CLICKHOUSE / "schema.sql")],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ['"customer_campaign_stages"', '"customer_campaign_stages_writer"',
                                     '"customer_events"', '"customer_events_dedup"', '"customers"', '"reader_progress"',
                                     '"tenants"']
