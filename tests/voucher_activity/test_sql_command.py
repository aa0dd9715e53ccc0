"""`voucher-activity sql`: read-only statements printed as a table, CSV or JSON; without flags it
finds the store (the demo's too), and where it cannot read one it says why in one sentence."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

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


# The command as a user runs it, in a directory of its own: chDB opens one store per process, and
# this test process holds the session's.
REPO = Path(__file__).resolve().parents[2]
FILL = """
import sys
from query.store import Store
from tests.query import factories as f
from tests.query.conftest import write
with Store.open(sys.argv[1]) as store:
    acme = f.tenant("acme")
    dave = f.customer(acme, "dave", None)
    write(store, [acme, dave, *(f.event(acme, dave.id, n, n) for n in range(int(sys.argv[2])))])
"""
HOLD = "import sys; from query.store import Store; store = Store.open(sys.argv[1]); print('open', flush=True); sys.stdin.read()"
COUNT = "SELECT count() FROM customer_events"


def environment() -> dict[str, str]:
    return {name: value for name, value in os.environ.items() if not name.startswith("VA_")} | {
        "PYTHONPATH": str(REPO)}


def voucher_activity(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "voucher_activity.cli", *args], cwd=cwd, env=environment(),
                          capture_output=True, text=True, timeout=120)


def make_store(path: Path, events: int = 3) -> None:
    subprocess.run([sys.executable, "-c", FILL, f"chdb://{path}", str(events)], env=environment(), check=True,
                   timeout=120)


def test_without_flags_it_finds_the_demo_store(tmp_path: Path) -> None:
    make_store(tmp_path / "voucher-activity-data" / "demo" / "clickhouse")
    done = voucher_activity(tmp_path, "sql", COUNT)
    assert (done.returncode, done.stdout) == (0, "count()\n-------\n3\n(1 row)\n"), done.stderr
    assert sorted(path.name for path in (tmp_path / "voucher-activity-data").iterdir()) == ["demo"]
    # `run`'s store, when there is one, comes first; --data-dir looks in another directory the same way.
    make_store(tmp_path / "voucher-activity-data" / "clickhouse", events=5)
    assert voucher_activity(tmp_path, "sql", COUNT).stdout == "count()\n-------\n5\n(1 row)\n"
    moved = tmp_path / "moved"
    (tmp_path / "voucher-activity-data").rename(moved)
    assert voucher_activity(tmp_path, "sql", "--data-dir", "moved", COUNT).stdout == "count()\n-------\n5\n(1 row)\n"


def test_where_there_is_no_store_it_says_where_it_looked_and_creates_none(tmp_path: Path) -> None:
    done = voucher_activity(tmp_path, "sql", COUNT)
    data = tmp_path / "voucher-activity-data"
    assert (done.returncode, done.stdout, done.stderr) == (1, "", (
        f"voucher-activity sql: no voucher-activity store in {data / 'clickhouse'} or {data / 'demo' / 'clickhouse'}: "
        "run it where `run` or `demo` ran, or point it at one with --data-dir DIR or --store URL\n"))
    elsewhere = tmp_path / "elsewhere"
    done = voucher_activity(tmp_path, "sql", "--store", f"chdb://{elsewhere}", COUNT)
    assert (done.returncode, done.stderr) == (1, (
        f"voucher-activity sql: no voucher-activity store at {elsewhere} (no database voucher_activity); "
        "point it at one with --data-dir DIR or --store URL\n"))
    assert list(tmp_path.iterdir()) == []


def test_a_store_open_in_another_process_is_one_sentence(tmp_path: Path) -> None:
    path = tmp_path / "voucher-activity-data" / "clickhouse"
    make_store(path)
    holder = subprocess.Popen([sys.executable, "-c", HOLD, f"chdb://{path}"], env=environment(),
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline() == "open\n"
        done = voucher_activity(tmp_path, "sql", COUNT)
    finally:
        holder.stdin.close()
        holder.wait(timeout=60)
    assert (done.returncode, done.stdout, done.stderr) == (1, "", (
        f"voucher-activity sql: the store at {path} is open in another process (pid {holder.pid}, a running "
        "`run` or `demo`), and an embedded store opens in one process at a time: query it through that "
        "process's --sql-listen endpoint, or run `sql` once it has stopped\n"))
    assert voucher_activity(tmp_path, "sql", COUNT).stdout == "count()\n-------\n3\n(1 row)\n"
