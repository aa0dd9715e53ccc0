"""`voucher-activity sql`: read-only statements printed as a table, CSV or JSON."""

from __future__ import annotations

import io

from query.store import Store
from tests.query import factories as f
from tests.query.conftest import write
from voucher_activity.sql_command import run_sql

QUERY = ("SELECT type, count() AS events, min(created_at) AS first FROM customer_events "
         "GROUP BY type ORDER BY type")


def fill(store: Store) -> None:
    acme = f.tenant("acme")
    dave = f.customer(acme, "dave", None)
    write(store, [f.event(acme, dave.id, 0, 1, type="customer.created"),
                  f.event(acme, dave.id, 1, 2), f.event(acme, dave.id, 2, 3)])


def run(store_url: str, query: str, format: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    status = run_sql(store_url, query, format, out=out, err=err)
    return status, out.getvalue(), err.getvalue()


def test_table(store: Store, store_url: str) -> None:
    fill(store)
    assert run(store_url, QUERY, "table") == (0, (
        "type              events  first\n"
        "----------------  ------  -------------------------\n"
        "customer.created  1       2024-03-01T12:00:00+00:00\n"
        "customer.updated  2       2024-03-01T12:00:01+00:00\n"
        "(2 rows)\n"), "")


def test_csv(store: Store, store_url: str) -> None:
    fill(store)
    assert run(store_url, QUERY, "csv") == (0, (
        "type,events,first\n"
        "customer.created,1,2024-03-01T12:00:00+00:00\n"
        "customer.updated,2,2024-03-01T12:00:01+00:00\n"), "")


def test_json(store: Store, store_url: str) -> None:
    fill(store)
    assert run(store_url, QUERY, "json") == (0, (
        '[\n  {\n    "type": "customer.created",\n    "events": 1,\n    "first": "2024-03-01T12:00:00+00:00"\n  },\n'
        '  {\n    "type": "customer.updated",\n    "events": 2,\n    "first": "2024-03-01T12:00:01+00:00"\n  }\n]\n'),
        "")


def test_writes_are_refused_by_clickhouse(store: Store, store_url: str) -> None:
    for statement in ("DROP TABLE customer_events", "INSERT INTO tenants (id, name, version) VALUES "
                      "(generateUUIDv4(), 'x', 1)", "CREATE TABLE t (x UInt8) ENGINE = Memory"):
        status, out, err = run(store_url, statement, "table")
        assert (status, out) == (1, "")
        assert "readonly" in err.lower()
    assert store.rows("SELECT count() FROM tenants", {}) == [(0,)]
    assert store.rows("EXISTS TABLE customer_events", {}) == [(1,)]


def test_bad_sql_and_bad_format(store: Store, store_url: str) -> None:
    status, out, err = run(store_url, "SELEKT 1", "table")
    assert (status, out) == (1, "")
    assert "SYNTAX_ERROR" in err
    assert run(store_url, "SELECT 1", "yaml") == (2, "", "voucher-activity sql: --format must be one of table, csv, json\n")
