"""`voucher-activity run` serves its embedded store's ClickHouse HTTP endpoint (SPEC §2
`--sql-listen`, §5): ClickHouse clients read it while the sidecar ingests, and `serve --store
http://...` reads through it, answering what `run`'s own API answers."""

from __future__ import annotations

import socket
import subprocess
import sys
import threading

import clickhouse_connect
import httpx
import pytest
from clickhouse_connect.driver.exceptions import DatabaseError

from demo.embedded_pg import free_port
from demo.traffic import VoucherTraffic
from tests.pipeline_helpers import prepare_source, wait_caught_up, wait_streaming

TOKENS = "*=admin,acme=acme-token"
VOUCHER_ACTIVITY = [sys.executable, "-m", "voucher_activity.cli"]


def test_a_port_already_taken_stops_the_start_naming_the_flag(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(
            [*VOUCHER_ACTIVITY, "run", "--source", "postgresql://127.0.0.1:9/none", "--data-dir", str(tmp_path),
             "--listen", f"127.0.0.1:{free_port()}", "--sql-listen", f"127.0.0.1:{port}", "--log-format", "json"],
            capture_output=True, text=True, timeout=120,
        )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1] == (
        f"voucher-activity: --sql-listen/VA_SQL_LISTEN 127.0.0.1:{port}: cannot listen there "
        "(Address already in use); choose another HOST:PORT, or pass --sql-listen off"
    )


def _pages(base: str, tenant: str, customers: list[str]) -> list[dict]:
    pages = []
    for customer in customers:
        for params in ({"limit": 100}, {"limit": 3, "page": 2, "order": "created_at"}):
            response = httpx.get(f"{base}/v1/customers/{customer}/activity", params=params,
                                 headers={"Authorization": "Bearer admin", "tenant": tenant}, timeout=30)
            assert response.status_code == 200, response.text
            pages.append(response.json())
    return pages


SQL_BY_TENANT = "SELECT tenant, count() FROM customer_events_dedup GROUP BY tenant ORDER BY tenant"


def test_clients_and_serve_read_a_running_sidecar_through_its_endpoint(voucher_db, tmp_path):
    prepare_source(voucher_db.dsn)
    traffic = VoucherTraffic(voucher_db.dsn, seed=11)
    traffic.setup()
    traffic.run(50.0, threading.Event(), 150)
    api_port, sql_port, serve_port = free_port(), free_port(), free_port()
    log = (tmp_path / "sidecar.log").open("ab")
    sidecar = subprocess.Popen(
        [*VOUCHER_ACTIVITY, "run", "--source", voucher_db.dsn, "--store", f"chdb://{tmp_path / 'clickhouse'}",
         "--data-dir", str(tmp_path / "data"), "--listen", f"127.0.0.1:{api_port}", "--tokens", TOKENS,
         "--sql-listen", f"127.0.0.1:{sql_port}", "--log-format", "json"],
        stdout=log, stderr=log, stdin=subprocess.DEVNULL,
    )
    served = None
    try:
        wait_streaming(api_port, timeout=120)
        wait_caught_up(voucher_db.dsn, "voucher_activity", timeout=120)
        client = clickhouse_connect.get_client(host="127.0.0.1", port=sql_port, username="analyst", password="admin")
        assert client.database is None and client.command("SELECT currentDatabase()") == "voucher_activity"
        by_tenant = client.query(
            "SELECT tenant, count() FROM customer_events_dedup GROUP BY tenant ORDER BY tenant").result_rows
        assert by_tenant and all(count > 0 for _tenant, count in by_tenant)
        assert client.command("SELECT 1") == 1
        arrow = client.query_arrow("SELECT type, count() AS n FROM customer_events_dedup GROUP BY type ORDER BY type")
        assert sum(arrow.column("n").to_pylist()) == sum(count for _tenant, count in by_tenant)
        for output_format, first_line in (("CSVWithNames", b'"tenant","events"'), ("TSVWithNames", b"tenant\tevents"),
                                          ("JSONEachRow", b'{"tenant":')):
            raw = client.raw_query("SELECT tenant, count() AS events FROM customer_events_dedup GROUP BY tenant "
                                   "ORDER BY tenant", fmt=output_format)
            assert raw.startswith(first_line), raw
        with pytest.raises(DatabaseError, match="Code: 164"):
            client.command("DROP TABLE customer_events")
        tenant, customers = _busiest(client)
        # `sql` reaches the running sidecar's store through its endpoint, with the admin token
        expected = "tenant,count()\n" + "".join(f"{name},{count}\n" for name, count in by_tenant)
        during = subprocess.run(
            [*VOUCHER_ACTIVITY, "sql", "--store", f"chdb://{tmp_path / 'clickhouse'}", "--tokens", TOKENS,
             "--sql-listen", f"127.0.0.1:{sql_port}", "--format", "csv", SQL_BY_TENANT],
            capture_output=True, text=True, timeout=60)
        assert (during.returncode, during.stdout, during.stderr) == (0, expected, "")

        serve = subprocess.Popen(
            [*VOUCHER_ACTIVITY, "serve", "--store", f"http://analyst:admin@127.0.0.1:{sql_port}/voucher_activity",
             "--listen", f"127.0.0.1:{serve_port}", "--tokens", TOKENS, "--log-format", "json"],
            stdout=log, stderr=log, stdin=subprocess.DEVNULL,
        )
        served = serve
        wait_streaming(serve_port)  # serve has no reader: ready once the store answers
        # The sidecar keeps ingesting meanwhile; with the traffic stopped, both read the same rows.
        assert _pages(f"http://127.0.0.1:{serve_port}", tenant, customers) == _pages(
            f"http://127.0.0.1:{api_port}", tenant, customers)
    finally:
        if served is not None:
            served.terminate()
            served.wait(timeout=30)
        sidecar.terminate()
        code = sidecar.wait(timeout=60)
    assert code == 0
    after = subprocess.run(  # and opens the store itself once the sidecar has stopped
        [*VOUCHER_ACTIVITY, "sql", "--store", f"chdb://{tmp_path / 'clickhouse'}", "--format", "csv", SQL_BY_TENANT],
        capture_output=True, text=True, timeout=60)
    assert after.returncode == 0, after.stderr
    assert after.stdout.splitlines()[0] == "tenant,count()" and len(after.stdout.splitlines()) == len(by_tenant) + 1


def _busiest(client) -> tuple[str, list[str]]:
    """The tenant and three of its customers with the longest histories."""
    rows = client.query(
        "SELECT tenant, toString(customer_id), count() AS events FROM customer_events_dedup "
        "GROUP BY tenant, customer_id ORDER BY events DESC, customer_id LIMIT 3").result_rows
    tenant = rows[0][0]
    return tenant, [customer for name, customer, _events in rows if name == tenant]
