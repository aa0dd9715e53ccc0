"""The embedded store's ClickHouse HTTP endpoint (SPEC §5), served by uvicorn on a real socket
over the API data set's chDB store, and read by real ClickHouse clients: clickhouse-connect's
HTTP client, httpx, and the store's own `http://` path that `serve` uses."""

from __future__ import annotations

import gzip
import io
import json
import os
from collections.abc import Iterator
from pathlib import Path

import chdb
import clickhouse_connect
import httpx
import pyarrow.parquet
import pytest
from clickhouse_connect.driver import options
from clickhouse_connect.driver.exceptions import DatabaseError
from starlette.testclient import TestClient

from query.api.app import create_app
from query.sql_endpoint import QueryLimits, SqlEngine, create_sql_app
from query.store import Store
from tests.query.conftest import TOKENS, Dataset
from tests.query.served import served

ADMIN = ("analyst", "admin-token")
EVENTS_BY_TENANT = "SELECT tenant, count() AS events FROM customer_events_dedup GROUP BY tenant ORDER BY tenant"


@pytest.fixture(scope="module")
def engine(dataset: Dataset) -> SqlEngine:
    return SqlEngine(dataset.store.location)


@pytest.fixture(scope="module")
def endpoint(engine: SqlEngine) -> Iterator[str]:
    with served(create_sql_app(engine, TOKENS)) as url:
        yield url


@pytest.fixture(scope="module")
def clickhouse(endpoint: str):
    host, port = endpoint.removeprefix("http://").split(":")
    client = clickhouse_connect.get_client(host=host, port=int(port), username="analyst", password="admin-token")
    yield client
    client.close()


def post(endpoint: str, sql: str, params: dict | None = None, auth=ADMIN, **kwargs) -> httpx.Response:
    return httpx.post(endpoint, content=sql, params=params, auth=auth, **kwargs)


def direct(dataset: Dataset, sql: str) -> list[tuple]:
    return dataset.store.rows(sql, {})


# -- health ---------------------------------------------------------------------------------------
def test_ping_and_root_answer_ok_without_credentials(endpoint):
    for path in ("/ping", "/"):
        response = httpx.get(endpoint + path)
        assert (response.status_code, response.text) == (200, "Ok.\n")


# -- clickhouse-connect ---------------------------------------------------------------------------
def test_clickhouse_connect_reads_what_the_store_holds(clickhouse, dataset):
    assert clickhouse.server_version == direct(dataset, "SELECT version()")[0][0]
    assert clickhouse.query(EVENTS_BY_TENANT).result_rows == direct(dataset, EVENTS_BY_TENANT) == [
        ("acme", 45), ("globex", 2)]
    assert clickhouse.command("SELECT 1") == 1


def test_clickhouse_connect_binds_parameters_on_the_server(clickhouse, dataset):
    rows = clickhouse.query(
        "SELECT count() FROM customer_events_dedup WHERE customer_id = {customer:UUID} AND type = {type:String}",
        parameters={"customer": dataset.dave.id, "type": "customer.order.paid"},
    ).result_rows
    assert rows == [(8,)]
    assert clickhouse.query("SELECT {text:String}", parameters={"text": "it's\ta\nline\\"}).result_rows == [
        ("it's\ta\nline\\",)]


def test_clickhouse_connect_arrow_and_dataframes(clickhouse, monkeypatch):
    # The store turns clickhouse-connect's pandas support off for the whole process (query.store.connect).
    monkeypatch.setattr(options, "pd", pytest.importorskip("pandas"))
    table = clickhouse.query_arrow(EVENTS_BY_TENANT)
    assert table.to_pylist() == [{"tenant": "acme", "events": 45}, {"tenant": "globex", "events": 2}]
    frame = clickhouse.query_df(EVENTS_BY_TENANT)
    assert frame.to_dict("records") == [{"tenant": "acme", "events": 45}, {"tenant": "globex", "events": 2}]


@pytest.mark.parametrize("output_format", [
    "TabSeparated", "TabSeparatedWithNamesAndTypes", "CSVWithNames", "JSONEachRow", "JSON", "JSONCompact",
    "Native", "RowBinaryWithNamesAndTypes", "Parquet", "Arrow", "Pretty",
])
def test_raw_query_answers_the_engines_own_bytes_in_every_format(clickhouse, engine, output_format):
    sql = "SELECT tenant, count() AS events FROM customer_events_dedup GROUP BY tenant ORDER BY tenant"
    with engine.session() as session:
        session.query(f"USE {engine.database}")
        expected = session.query(sql, output_format).bytes()
    answered = clickhouse.raw_query(sql, fmt=output_format)
    if output_format.startswith("JSON") and "EachRow" not in output_format:  # statistics hold the elapsed time
        assert json.loads(answered)["data"] == json.loads(expected)["data"]
    else:
        assert answered == expected


def test_parquet_reads_back(clickhouse):
    table = pyarrow.parquet.read_table(io.BytesIO(clickhouse.raw_query(EVENTS_BY_TENANT, fmt="Parquet")))
    assert table.to_pylist() == [{"tenant": "acme", "events": 45}, {"tenant": "globex", "events": 2}]


# -- raw HTTP -------------------------------------------------------------------------------------
def test_get_and_post_with_format_clause_and_default_format(endpoint):
    got = httpx.get(endpoint, params={"query": EVENTS_BY_TENANT + " FORMAT CSV"}, auth=ADMIN)
    assert (got.status_code, got.text) == (200, '"acme",45\n"globex",2\n')
    assert got.headers["x-clickhouse-format"] == "CSV"
    assert got.headers["content-type"] == "text/csv; charset=UTF-8; header=absent"
    posted = post(endpoint, EVENTS_BY_TENANT, {"default_format": "JSONEachRow"})
    assert posted.text == '{"tenant":"acme","events":45}\n{"tenant":"globex","events":2}\n'
    assert posted.headers["x-clickhouse-format"] == "JSONEachRow"
    plain = post(endpoint, EVENTS_BY_TENANT)
    assert (plain.text, plain.headers["x-clickhouse-format"]) == ("acme\t45\nglobex\t2\n", "TabSeparated")
    # the FORMAT clause wins over default_format, as on a server
    both = post(endpoint, "SELECT 1 AS one FORMAT JSONEachRow", {"default_format": "CSV"})
    assert (both.text, both.headers["x-clickhouse-format"]) == ('{"one":1}\n', "JSONEachRow")


def test_query_parameter_and_body_together_and_the_database_parameter(endpoint):
    response = httpx.post(endpoint, params={"query": "SELECT name FROM tables WHERE name = 'one'", "database": "system"},
                          content="FORMAT CSV", auth=ADMIN)
    assert response.text == '"one"\n'


def test_headers_clients_read(endpoint):
    response = post(endpoint, "SELECT 1", {"query_id": "analyst-query-1"})
    assert response.headers["x-clickhouse-query-id"] == "analyst-query-1"
    assert response.headers["x-clickhouse-timezone"] == httpx.post(
        endpoint, content="SELECT timezone()", auth=ADMIN).text.strip()
    assert response.headers["x-clickhouse-server-display-name"]
    summary = json.loads(response.headers["x-clickhouse-summary"])
    assert summary["read_rows"] == "1" and summary["written_rows"] == "0" and int(summary["elapsed_ns"]) > 0
    assert post(endpoint, "SELECT 2").headers["x-clickhouse-query-id"] != "analyst-query-1"
    injected = post(endpoint, "SELECT 3", {"query_id": "q\r\nSet-Cookie: x=y"})
    assert injected.status_code == 200 and "set-cookie" not in injected.headers
    assert injected.headers["x-clickhouse-query-id"] != "q"


def test_gzip_when_the_client_asks_both_ways(endpoint):
    sql = "SELECT number FROM numbers(1000)"
    expected = "".join(f"{n}\n" for n in range(1000))
    asked = post(endpoint, sql, {"enable_http_compression": "1"}, headers={"Accept-Encoding": "gzip"})
    assert asked.headers["content-encoding"] == "gzip"
    assert asked.text == expected  # httpx inflates it
    raw = httpx.post(endpoint, content=sql, params={"enable_http_compression": "1"}, auth=ADMIN,
                     headers={"Accept-Encoding": "gzip"}).read()
    assert raw == expected.encode()
    not_enabled = post(endpoint, sql, headers={"Accept-Encoding": "gzip"})
    assert "content-encoding" not in not_enabled.headers and not_enabled.text == expected
    compressed_request = post(endpoint, gzip.compress(b"SELECT 42"), headers={"Content-Encoding": "gzip"})
    assert compressed_request.text == "42\n"


def test_gzip_over_a_real_socket_is_compressed_on_the_wire(endpoint):
    with httpx.Client() as client:
        with client.stream("POST", endpoint, content="SELECT number FROM numbers(1000)", auth=ADMIN,
                           params={"enable_http_compression": "1"}, headers={"Accept-Encoding": "gzip"}) as response:
            wire = b"".join(response.iter_raw())
    assert gzip.decompress(wire) == "".join(f"{n}\n" for n in range(1000)).encode()
    assert len(wire) < len("".join(f"{n}\n" for n in range(1000))) / 2


# -- read-only, whatever a client sends -------------------------------------------------------------
REFUSED_BY_THE_ENGINE = {
    "insert": "INSERT INTO customer_events (id) VALUES (generateUUIDv4())",
    "create": "CREATE TABLE sneaky (x UInt8) ENGINE = Memory",
    "create temporary": "CREATE TEMPORARY TABLE sneaky (x UInt8)",
    "drop": "DROP TABLE customer_events",
    "truncate": "TRUNCATE TABLE customer_events",
    "alter": "ALTER TABLE customer_events DELETE WHERE 1",
    "optimize": "OPTIMIZE TABLE customer_events FINAL",
    "set readonly": "SET readonly = 0",
    "settings readonly": "SELECT 1 SETTINGS readonly = 0",
    "settings limit": "SELECT 1 SETTINGS max_execution_time = 0",
    "file": "SELECT * FROM file('/etc/hostname', 'LineAsString')",
    "url": "SELECT * FROM url('http://127.0.0.1:9/x', 'CSV', 'a String')",
    "executable": "SELECT * FROM executable('id', 'CSV', 'a String')",
    "postgresql": "SELECT * FROM postgresql('127.0.0.1:9', 'db', 't', 'u', 'p')",
    "s3": "SELECT * FROM s3('http://127.0.0.1:9/bucket/x.csv', 'CSV', 'a String')",
    "remote": "SELECT * FROM remote('127.0.0.1:9', system.one)",
    "insert into function": "INSERT INTO FUNCTION file('/tmp/va-sneaky.csv', 'CSV', 'a String') VALUES ('a')",
    "system": "SYSTEM DROP MARK CACHE",
    "system table insert": "INSERT INTO system.one VALUES (2)",
    "system table truncate": "TRUNCATE TABLE system.one",
}


@pytest.mark.parametrize("sql", REFUSED_BY_THE_ENGINE.values(), ids=REFUSED_BY_THE_ENGINE.keys())
def test_the_engine_refuses_every_write(endpoint, clickhouse, dataset, sql):
    stored = direct(dataset, "SELECT count(), sum(cityHash64(*)) FROM customer_events")
    response = post(endpoint, sql)
    assert response.status_code == 403, response.text
    assert response.headers["x-clickhouse-exception-code"] == "164"
    assert response.text.startswith("Code: 164. DB::Exception: ") and "(READONLY)" in response.text
    with pytest.raises(DatabaseError, match="Code: 164"):
        clickhouse.command(sql)
    assert direct(dataset, "SELECT count(), sum(cityHash64(*)) FROM customer_events") == stored


@pytest.mark.parametrize("setting", [{"readonly": "0"}, {"readonly": "2"}, {"max_execution_time": "0"},
                                     {"max_memory_usage": "0"}, {"max_threads": "64"}])
def test_settings_in_the_url_cannot_lift_the_limits(endpoint, setting):
    response = post(endpoint, "SELECT 1", setting)
    assert response.status_code == 403
    assert f"Cannot modify '{next(iter(setting))}' setting in readonly mode. (READONLY)" in response.text


def test_a_setting_a_client_sends_unchanged_is_accepted(endpoint):
    # Grafana's data source sends its query timeout as max_execution_time with every query.
    unchanged = {"readonly": "1", "max_threads": "1", "max_execution_time": str(QueryLimits().max_execution_time)}
    assert post(endpoint, "SELECT 1", unchanged).text == "1\n"


def test_into_outfile_is_refused_and_writes_nothing(endpoint, tmp_path):
    target = tmp_path / "stolen.csv"
    response = post(endpoint, f"SELECT * FROM customer_events INTO OUTFILE '{target}' FORMAT CSV")
    assert response.status_code == 403
    assert response.text == "Code: 358. DB::Exception: INTO OUTFILE is not allowed. (INTO_OUTFILE_NOT_ALLOWED)\n"
    assert not target.exists()


def test_kill_is_refused(endpoint):
    for sql in ("KILL QUERY WHERE 1", "kill mutation where 1"):
        response = post(endpoint, sql)
        assert response.status_code == 403 and response.text.startswith("Code: 164."), response.text


def test_one_statement_per_request(endpoint, tmp_path):
    response = post(endpoint, f"SELECT 1; SELECT 2 INTO OUTFILE '{tmp_path / 'x'}'")
    assert response.status_code == 400
    assert "Multi-statements are not allowed" in response.text
    assert not (tmp_path / "x").exists()


def test_nothing_a_request_does_outlives_it(endpoint, engine):
    assert post(endpoint, "USE system").status_code == 200
    assert post(endpoint, "SET limit = 1").status_code == 200
    assert post(endpoint, "SELECT currentDatabase()").text == f"{engine.database}\n"
    assert post(endpoint, "SELECT number FROM numbers(3)").text == "0\n1\n2\n"


def test_every_query_runs_under_readonly_1_and_the_limits(endpoint):
    limits = QueryLimits()
    answer = post(endpoint, "SELECT getSetting('readonly'), getSetting('max_execution_time'), "
                            "getSetting('max_memory_usage'), getSetting('max_threads') FORMAT JSONCompactEachRow")
    readonly, seconds, memory, threads = json.loads(answer.text)
    assert (int(readonly), float(seconds), int(memory), int(threads)) == (
        1, limits.max_execution_time, limits.max_memory_usage, limits.max_threads)


def test_a_query_past_its_limits_is_stopped_by_the_engine(dataset):
    engine = SqlEngine(dataset.store.location, QueryLimits(max_execution_time=1, max_memory_usage=50 * 2**20))
    with TestClient(create_sql_app(engine, {})) as client:
        slow = client.post("/", content="SELECT sum(cityHash64(number)) FROM numbers(100000000000)")
        assert slow.headers["x-clickhouse-exception-code"] == "159", slow.text  # TIMEOUT_EXCEEDED
        big = client.post("/", content="SELECT groupArray(number) FROM numbers(50000000)")
        assert big.headers["x-clickhouse-exception-code"] == "241", big.text  # MEMORY_LIMIT_EXCEEDED


# -- authentication ---------------------------------------------------------------------------------
@pytest.mark.parametrize("how", ["basic", "headers", "parameters"])
def test_the_admin_token_reads_everything_whatever_the_user_name(endpoint, how):
    user, password = "anyone", "admin-token"
    kwargs = {
        "basic": {"auth": (user, password)},
        "headers": {"headers": {"X-ClickHouse-User": user, "X-ClickHouse-Key": password}},
        "parameters": {"params": {"user": user, "password": password}},
    }[how]
    response = httpx.post(endpoint, content=EVENTS_BY_TENANT, **kwargs)
    assert (response.status_code, response.text) == (200, "acme\t45\nglobex\t2\n")


@pytest.mark.parametrize("auth", [None, ("acme", "wrong"), ("acme", "globex-token"), ("default", "")])
def test_wrong_or_missing_credentials_get_401(endpoint, auth):
    response = httpx.post(endpoint, content="SELECT 1", auth=auth)
    assert response.status_code == 401
    assert response.headers["x-clickhouse-exception-code"] == "516"
    user = auth[0] if auth else "default"
    assert response.text == (f"Code: 516. DB::Exception: {user}: Authentication failed: password is incorrect, "
                             "or there is no user with such name. (AUTHENTICATION_FAILED)\n")


def test_a_tenant_token_is_refused_because_the_engine_cannot_enforce_row_policies(endpoint, dataset):
    response = httpx.post(endpoint, content="SELECT count() FROM customer_events WHERE tenant = 'globex'",
                          auth=("acme", "acme-token"))
    assert response.status_code == 403
    assert response.text.startswith("Code: 497. DB::Exception: acme: a tenant's token cannot read through this endpoint")
    host, port = endpoint.removeprefix("http://").split(":")
    with pytest.raises(DatabaseError, match="Code: 497"):
        clickhouse_connect.get_client(host=host, port=int(port), username="acme", password="acme-token")
    # Why: the embedded engine has no writable access storage, so it cannot hold a row policy.
    engine = chdb.connect(os.path.realpath(dataset.store.location.path))
    try:
        with pytest.raises(RuntimeError, match=r"Code: 497\..*CREATE ROW POLICY"):
            engine.query(f"CREATE ROW POLICY acme_only ON {dataset.store.location.database}.customer_events "
                         "USING tenant = 'acme' TO default")
    finally:
        engine.close()


def test_without_tokens_anyone_on_loopback_reads(engine):
    with served(create_sql_app(engine, {})) as url:
        assert httpx.post(url, content="SELECT 1").text == "1\n"
        assert httpx.post(url, content="SELECT 1", auth=("acme", "anything")).text == "1\n"


def test_framed_lz4_compression_is_refused_with_what_to_do(endpoint):
    response = post(endpoint, "SELECT 1", {"compress": "1"})
    assert response.status_code == 501
    assert "use HTTP compression (enable_http_compression=1" in response.text


# -- the store's own http:// path, as `serve` uses it --------------------------------------------------
def test_the_api_served_through_the_endpoint_answers_like_the_embedded_store(endpoint, dataset):
    url = f"http://admin:admin-token@{endpoint.removeprefix('http://')}/{dataset.store.location.database}"
    with Store.open(url, create_schema=False) as remote:
        with TestClient(create_app(dataset.store, tokens=TOKENS)) as embedded, \
                TestClient(create_app(remote, tokens=TOKENS)) as through_endpoint:
            headers = {"X-App-Id": "acme", "X-App-Token": "acme-token"}
            for customer in (dataset.dave.id, "dave-src", dataset.alice.id, dataset.carol.id):
                for params in ({}, {"limit": 7, "page": 3}, {"order": "created_at", "type": "customer.order.paid"},
                               {"limit": 100, "campaign_type": "LOYALTY_PROGRAM"}):
                    path = f"/v1/customers/{customer}/activity"
                    expected = embedded.get(path, params=params, headers=headers)
                    answered = through_endpoint.get(path, params=params, headers=headers)
                    assert answered.status_code == expected.status_code == 200
                    assert answered.json() == expected.json()
            first = embedded.get(f"/v1/customers/{dataset.dave.id}/activity", params={"limit": 5}, headers=headers)
            assert len(first.json()["data"]) == 5
            cursor = first.json()["more_starting_after"]
            params = {"limit": 5, "starting_after_id": cursor}
            path = f"/v1/customers/{dataset.dave.id}/activity"
            assert through_endpoint.get(path, params=params, headers=headers).json() == embedded.get(
                path, params=params, headers=headers).json()
    assert Path(dataset.store.location.path).exists()


def test_the_readmes_analyst_queries_answer_as_through_the_store(clickhouse, dataset):
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    block = readme.split("## For analysts", 1)[1].split("```sql\n", 1)[1].split("```", 1)[0]
    statements = [statement.strip() for statement in block.split(";") if statement.strip()]
    assert len(statements) == 2
    answers = [clickhouse.query(statement).result_rows for statement in statements]
    assert answers == [direct(dataset, statement) for statement in statements]
    assert answers[1]  # the funnel (the data set's events are older than the first query's 30 days)
