"""The store's DDL: the SPEC §5 table as created in chDB, idempotence, and the cluster rendering."""

from __future__ import annotations

import pytest

from query.schema import SchemaNameError, render_ddl
from query.store import Store

SPEC_COLUMNS = [
    ("id", "UUID"),
    ("tenant_id", "UUID"),
    ("tenant", "LowCardinality(String)"),
    ("customer_id", "UUID"),
    ("created_at", "DateTime64(6, 'UTC')"),
    ("type", "LowCardinality(String)"),
    ("category", "LowCardinality(String)"),
    ("campaign_id", "Nullable(UUID)"),
    ("campaign_type", "LowCardinality(String)"),
    ("group_id", "String"),
    ("source", "LowCardinality(String)"),
    ("data", "String"),
    ("source_table", "LowCardinality(String)"),
    ("source_lsn", "UInt64"),
    ("ingested_at", "DateTime64(3, 'UTC')"),
]


def test_customer_events_is_the_spec_table(store: Store) -> None:
    database = store.location.database
    columns = store.rows(
        "SELECT name, type FROM system.columns WHERE database = {db:String} AND table = 'customer_events' "
        "ORDER BY position", {"db": database})
    assert columns == SPEC_COLUMNS
    tables = store.rows(
        "SELECT name, engine, sorting_key, partition_key FROM system.tables WHERE database = {db:String} "
        "ORDER BY name", {"db": database})
    assert tables == [
        ("customer_campaign_stages", "AggregatingMergeTree", "tenant_id, campaign_id, customer_id", ""),
        ("customer_campaign_stages_writer", "MaterializedView", "", ""),
        ("customer_events", "ReplacingMergeTree", "tenant_id, customer_id, created_at, id", "toYYYYMM(created_at)"),
        ("customer_events_dedup", "View", "", ""),
        ("customers", "ReplacingMergeTree", "tenant_id, id", ""),
        ("reader_progress", "ReplacingMergeTree", "slot", ""),
        ("tenants", "ReplacingMergeTree", "id", ""),
    ]


def test_schema_creation_is_idempotent(store: Store) -> None:
    store.ensure_schema()
    store.ensure_schema()
    assert store.rows("SELECT count() FROM system.tables WHERE database = {db:String}",
                       {"db": store.location.database}) == [(7,)]


def test_single_server_ddl_has_no_cluster_clause() -> None:
    statements = render_ddl("voucher_activity")
    assert statements[0] == "CREATE DATABASE IF NOT EXISTS voucher_activity"
    assert len(statements) == 8
    assert not any("ON CLUSTER" in statement or "Replicated" in statement for statement in statements)


def test_cluster_ddl_uses_replicated_locals_and_distributed_contract_names() -> None:
    statements = render_ddl("va", cluster="events")
    assert statements[0] == "CREATE DATABASE IF NOT EXISTS va ON CLUSTER events"
    assert all(" ON CLUSTER events" in statement for statement in statements)
    assert statements[1].startswith("CREATE TABLE IF NOT EXISTS va.customer_events_local ON CLUSTER events (")
    assert ("ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/va/customer_events_local', "
            "'{replica}')\nPARTITION BY toYYYYMM(created_at)\nORDER BY (tenant_id, customer_id, created_at, id)"
            ) in statements[1]
    assert statements[2] == (
        "CREATE TABLE IF NOT EXISTS va.customer_events ON CLUSTER events AS va.customer_events_local\n"
        "ENGINE = Distributed(events, va, customer_events_local, cityHash64(customer_id))")
    assert "ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/va/tenants_local', '{replica}', version)" \
        in statements[3]
    assert statements[4].endswith("ENGINE = Distributed(events, va, tenants_local, cityHash64(id))")
    assert statements[6].endswith("ENGINE = Distributed(events, va, customers_local, cityHash64(id))")
    assert statements[8].endswith("ENGINE = Distributed(events, va, reader_progress_local, cityHash64(slot))")
    assert statements[11] == (
        "CREATE VIEW IF NOT EXISTS va.customer_events_dedup ON CLUSTER events AS\n"
        "SELECT * FROM va.customer_events FINAL\n"
        "SETTINGS do_not_merge_across_partitions_select_final = 1")
    assert statements[10] == (
        "CREATE TABLE IF NOT EXISTS va.customer_campaign_stages ON CLUSTER events "
        "AS va.customer_campaign_stages_local\n"
        "ENGINE = Distributed(events, va, customer_campaign_stages_local, cityHash64(customer_id))")
    assert statements[12].startswith(
        "CREATE MATERIALIZED VIEW IF NOT EXISTS va.customer_campaign_stages_writer ON CLUSTER events "
        "TO va.customer_campaign_stages_local AS\n")
    assert "FROM va.customer_events_local\n" in statements[12]
    assert len(statements) == 13


@pytest.mark.parametrize(("database", "cluster"), [("va; DROP", None), ("va", "c-1"), ("1va", None), ("", None)])
def test_names_that_are_not_plain_identifiers_are_refused(database: str, cluster: str | None) -> None:
    with pytest.raises(SchemaNameError):
        render_ddl(database, cluster)
