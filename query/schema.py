"""The store's DDL (SPEC §5), rendered as plain statements for one server or `ON CLUSTER`.

Pure: `render_ddl` returns text that `Store.ensure_schema` runs and that deploy files are
generated from, so the embedded store and a cluster are built from the same definitions.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

EVENTS_TABLE = "customer_events"
DEDUP_VIEW = "customer_events_dedup"
TENANTS_TABLE = "tenants"
CUSTOMERS_TABLE = "customers"
READERS_TABLE = "reader_progress"
STAGES_TABLE = "customer_campaign_stages"
STAGES_VIEW = "customer_campaign_stages_writer"

# The funnel's stages, in order (publication -> redemption -> rollback).
PUBLISHED = "customer.publication.succeeded"
REDEEMED = "customer.redemption.succeeded"
ROLLED_BACK = "customer.redemption.rollback.succeeded"
FUNNEL_STAGES = (PUBLISHED, REDEEMED, ROLLED_BACK)

DEDUPLICATION_WINDOW = "non_replicated_deduplication_window = 1000"
# The API reads one customer's few rows per query: small granules and small compressed blocks
# mean a point read decompresses kilobytes, not a 8,192-row granule of each key column and a
# megabyte of `data` per row it returns (docs/store.md, "Point reads").
POINT_READ_STORAGE = "index_granularity = 256, min_compress_block_size = 4096, max_compress_block_size = 32768"

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


class SchemaNameError(ValueError):
    """A database or cluster name that cannot be used as a plain identifier."""


@dataclass(frozen=True, slots=True)
class TableSpec:
    """One replacing table: its columns, key, and the shard key used on a cluster (rows with
    equal keys must land on the same shard, or collapsing re-delivered copies cannot work).

    `column_types` is the one list of the table's columns, (name, ClickHouse type) in table
    order: the DDL and the writer's column names and types are all read from it."""

    name: str
    column_types: tuple[tuple[str, str], ...]
    order_by: str
    shard_key: str
    # The version column of ReplacingMergeTree; "" keeps any one of equal rows.
    version: str = "version"
    partition_by: str | None = None
    clauses: tuple[tuple[str, str], ...] = ()  # (column, CODEC or DEFAULT clause)
    indexes: tuple[str, ...] = ()
    # Lets an insert retried after a lost acknowledgement be dropped by its dedup token
    # (replicated tables deduplicate by default).
    settings: str = DEDUPLICATION_WINDOW
    engine: str = "ReplacingMergeTree"

    @property
    def written_columns(self) -> tuple[str, ...]:
        """The columns an insert sends, in table order: all but those left to their DEFAULT."""
        defaulted = {column for column, clause in self.clauses if clause.startswith("DEFAULT")}
        return tuple(name for name, _ in self.column_types if name not in defaulted)

    def types_of(self, columns: tuple[str, ...]) -> tuple[str, ...]:
        types = dict(self.column_types)
        return tuple(types[column] for column in columns)

    @property
    def columns(self) -> str:
        """The column and index definitions of CREATE TABLE."""
        clauses = dict(self.clauses)
        lines = [f"{name} {kind} {clauses[name]}" if name in clauses else f"{name} {kind}"
                 for name, kind in self.column_types]
        return ",".join(f"\n    {line}" for line in (*lines, *self.indexes))


EVENTS = TableSpec(
    EVENTS_TABLE,
    column_types=(
        ("id", "UUID"), ("tenant_id", "UUID"), ("tenant", "LowCardinality(String)"), ("customer_id", "UUID"),
        ("created_at", "DateTime64(6, 'UTC')"), ("type", "LowCardinality(String)"),
        ("category", "LowCardinality(String)"), ("campaign_id", "Nullable(UUID)"),
        ("campaign_type", "LowCardinality(String)"), ("group_id", "String"), ("source", "LowCardinality(String)"),
        ("data", "String"), ("source_table", "LowCardinality(String)"), ("source_lsn", "UInt64"),
        ("ingested_at", "DateTime64(3, 'UTC')"),
    ),
    # `ingested_at` is left to its DEFAULT, so the time a row became visible is the server's.
    clauses=(("data", "CODEC(ZSTD(3))"), ("ingested_at", "DEFAULT now64(3)")),
    # No version column: re-delivered copies are identical apart from ingested_at, any survivor
    # will do.
    version="",
    order_by="(tenant_id, customer_id, created_at, id)",
    partition_by="toYYYYMM(created_at)",
    shard_key="cityHash64(customer_id)",
    settings=f"{DEDUPLICATION_WINDOW}, {POINT_READ_STORAGE}",
)
TENANTS = TableSpec(TENANTS_TABLE, (("id", "UUID"), ("name", "String"), ("version", "UInt64")),
                    order_by="id", shard_key="cityHash64(id)")
CUSTOMERS = TableSpec(
    CUSTOMERS_TABLE,
    (("tenant_id", "UUID"), ("id", "UUID"), ("source_id", "Nullable(String)"), ("deleted", "Bool"),
     ("version", "UInt64")),
    order_by="(tenant_id, id)", shard_key="cityHash64(id)",
    indexes=("INDEX source_id_index source_id TYPE bloom_filter GRANULARITY 1",),
    settings=f"{DEDUPLICATION_WINDOW}, index_granularity = 256",
)
# What a reader records beside the history it wrote: whether its slot's initial snapshot is under
# way or done and streaming has begun. A restart without the local reference state reads it to
# tell a snapshot to finish from a history to protect (SPEC §7).
READERS = TableSpec(
    READERS_TABLE, (("slot", "String"), ("phase", "LowCardinality(String)"), ("lsn", "UInt64"), ("version", "UInt64")),
    order_by="slot", shard_key="cityHash64(slot)",
)

# The funnel's per-(campaign, customer) facts, kept by a materialized view on every insert into
# the events table: when the customer was first published to, last redeemed, last rolled back.
# min and max give the same answer however often an event is stored, so re-delivered copies
# change nothing and the table is exact without FINAL. The all-time funnel reads its ~1 row per
# (campaign, customer) instead of every stage event (docs/dashboard.md, "Queries and their cost").
STAGES = TableSpec(
    STAGES_TABLE,
    (("tenant_id", "UUID"), ("campaign_id", "UUID"), ("customer_id", "UUID"),
     ("campaign_type", "SimpleAggregateFunction(max, LowCardinality(String))"),
     ("first_published_at", "SimpleAggregateFunction(min, Nullable(DateTime64(6, 'UTC')))"),
     ("last_redeemed_at", "SimpleAggregateFunction(max, Nullable(DateTime64(6, 'UTC')))"),
     ("last_rolled_back_at", "SimpleAggregateFunction(max, Nullable(DateTime64(6, 'UTC')))")),
    version="",
    order_by="(tenant_id, campaign_id, customer_id)",
    shard_key="cityHash64(customer_id)",  # the events' own: a shard's view writes its customers' rows
    settings="",  # written by the view only: an events block dropped as a copy never reaches it
    engine="AggregatingMergeTree",
)

TABLES = (EVENTS, TENANTS, CUSTOMERS, READERS, STAGES)
READER_COLUMNS = READERS.written_columns


def check_identifier(name: str, what: str) -> str:
    """Identifiers cannot be bound as parameters, so they are restricted to a safe alphabet."""
    if not _IDENTIFIER.fullmatch(name):
        raise SchemaNameError(
            f"{what} {name!r} is not a plain identifier (letters, digits, underscore)"
        )
    return name


def _engine(spec: TableSpec, database: str, cluster: str | None) -> str:
    if cluster is None:
        return f"{spec.engine}({spec.version})"
    path = f"'/clickhouse/tables/{{shard}}/{database}/{spec.name}_local'"
    version = f", {spec.version}" if spec.version else ""
    return f"Replicated{spec.engine}({path}, '{{replica}}'{version})"


def _table_ddl(spec: TableSpec, database: str, cluster: str | None) -> str:
    local_name = spec.name if cluster is None else f"{spec.name}_local"
    on_cluster = f" ON CLUSTER {cluster}" if cluster else ""
    clauses = [f"ENGINE = {_engine(spec, database, cluster)}"]
    if spec.partition_by:
        clauses.append(f"PARTITION BY {spec.partition_by}")
    clauses.append(f"ORDER BY {spec.order_by}")
    if spec.settings:
        clauses.append(f"SETTINGS {spec.settings}")
    body = "\n".join(clauses)
    return f"CREATE TABLE IF NOT EXISTS {database}.{local_name}{on_cluster} ({spec.columns}\n)\n{body}"


def _distributed_ddl(spec: TableSpec, database: str, cluster: str) -> str:
    return (
        f"CREATE TABLE IF NOT EXISTS {database}.{spec.name} ON CLUSTER {cluster} "
        f"AS {database}.{spec.name}_local\n"
        f"ENGINE = Distributed({cluster}, {database}, {spec.name}_local, {spec.shard_key})"
    )


def _dedup_view_ddl(database: str, cluster: str | None) -> str:
    on_cluster = f" ON CLUSTER {cluster}" if cluster else ""
    # Copies share created_at, hence the partition: FINAL never has to merge across partitions.
    return (
        f"CREATE VIEW IF NOT EXISTS {database}.{DEDUP_VIEW}{on_cluster} AS\n"
        f"SELECT * FROM {database}.{EVENTS_TABLE} FINAL\n"
        "SETTINGS do_not_merge_across_partitions_select_final = 1"
    )


def _stages_select(source: str) -> str:
    """The stage facts of the events in `source`, one row per (tenant, campaign, customer)."""
    def when(stage: str, pick: str) -> str:
        return f"{pick}If(toNullable(created_at), type = '{stage}')"

    stages = ", ".join(f"'{stage}'" for stage in FUNNEL_STAGES)
    return (
        "SELECT tenant_id, assumeNotNull(campaign_id) AS campaign_id, customer_id, "
        f"max(campaign_type) AS campaign_type, {when(PUBLISHED, 'min')} AS first_published_at, "
        f"{when(REDEEMED, 'max')} AS last_redeemed_at, {when(ROLLED_BACK, 'max')} AS last_rolled_back_at\n"
        f"FROM {source}\nWHERE campaign_id IS NOT NULL AND type IN ({stages})\n"
        "GROUP BY tenant_id, campaign_id, customer_id"
    )


def _stages_view_ddl(database: str, cluster: str | None) -> str:
    """Runs on each insert into the (local) events table, so on a cluster every shard keeps the
    stages of the customers it holds."""
    local = "" if cluster is None else "_local"
    on_cluster = f" ON CLUSTER {cluster}" if cluster else ""
    return (
        f"CREATE MATERIALIZED VIEW IF NOT EXISTS {database}.{STAGES_VIEW}{on_cluster} "
        f"TO {database}.{STAGES_TABLE}{local} AS\n{_stages_select(f'{database}.{EVENTS_TABLE}{local}')}"
    )


def stages_backfill_sql(database: str) -> str:
    """Fills the stages table from the events already stored (a store created before it had
    one). Safe to repeat, and with the view already writing: min and max ignore copies."""
    check_identifier(database, "database")
    return f"INSERT INTO {database}.{STAGES_TABLE}\n{_stages_select(f'{database}.{EVENTS_TABLE}')}"


def render_ddl(database: str, cluster: str | None = None) -> list[str]:
    """Every statement that creates the store, in order; each is idempotent (IF NOT EXISTS).

    With `cluster`, tables are `<name>_local` on Replicated engines under `ON CLUSTER`, and the
    contract names (`customer_events`, ...) are Distributed tables over them.
    """
    check_identifier(database, "database")
    if cluster is not None:
        check_identifier(cluster, "cluster")
    on_cluster = f" ON CLUSTER {cluster}" if cluster else ""
    statements = [f"CREATE DATABASE IF NOT EXISTS {database}{on_cluster}"]
    for spec in TABLES:
        statements.append(_table_ddl(spec, database, cluster))
        if cluster is not None:
            statements.append(_distributed_ddl(spec, database, cluster))
    statements.append(_dedup_view_ddl(database, cluster))
    statements.append(_stages_view_ddl(database, cluster))
    return statements
