"""The ClickHouse store: the only code that sends SQL to ClickHouse, embedded (chDB) or a server.

Both kinds go through clickhouse-connect, so every query below runs unchanged on either. Every
value from outside travels as a server-side parameter (`{name:Type}`); only identifiers checked
by `schema.check_identifier` are ever formatted into SQL. Clients and the readers are made in
query/clients.py (`StoreError` and `connect` are imported from here too).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from clickhouse_connect.driver.client import Client
from clickhouse_connect.driver.exceptions import Error as ClickHouseError

from query import activity_sql, analytics_sql
from query.activity_cache import ActivityCache
from query.activity_reads import POINT_READ, ActivityReads, StoredEvent
from query.activity_sql import ActivityQuery, HistoryShape, Position
from query.clients import (
    StoreError,
    ThreadReaders,
    connect,
    insert_settings,
    read_only_level,
    reader,
)
from query.location import StoreLocation, parse_store_url
from query.schema import (
    CUSTOMERS_TABLE,
    EVENTS_TABLE,
    READER_COLUMNS,
    READERS_TABLE,
    STAGES_TABLE,
    TENANTS_TABLE,
    render_ddl,
    stages_backfill_sql,
)
from query.status import ReaderPhase, ReaderProgress, StoreStatus, TenantStatus

# A tenant name resolves from memory; a name not seen yet reloads the directory at once, and a
# rename is seen within this many seconds.
TENANT_DIRECTORY_SECONDS = 5.0
# How often the history's shape (activity_sql.recent_months_start) is read again; it only
# decides where a read looks first, never what it returns.
HISTORY_SHAPE_SECONDS = 60.0

@dataclass(frozen=True, slots=True)
class TenantDirectory:
    """Tenant name -> id, as loaded at `loaded_at` (a monotonic clock reading)."""

    ids: Mapping[str, uuid.UUID] = field(default_factory=dict)
    loaded_at: float = float("-inf")


class Store:
    """An open store. Reads and writes use separate clients so a flush never queues API reads
    behind it on the embedded engine's per-client lock; each thread reads on a client of its own,
    so concurrent requests run side by side."""

    def __init__(
        self, location: StoreLocation, readers: Callable[[], Client], writer: Client, *,
        clock: Callable[[], float] = time.monotonic, cluster: str | None = None,
        activity_cache: ActivityCache | None = None,
    ) -> None:
        self.location = location
        self.cluster = cluster  # the ClickHouse cluster the tables live on: inserts wait for durability
        # Pages the API keeps; only for a store whose every write goes through this process's
        # EventWriter, which invalidates them (query/activity_cache.py).
        self.activity_cache = activity_cache
        self._readers = ThreadReaders(readers)  # `readers()` makes a thread's read-only client
        self._writer = writer
        self._clock = clock
        # Replaced whole, never mutated: a reader sees one consistent directory.
        self._tenants = TenantDirectory()
        self._tunable = read_only_level(writer) != 1  # the user's level: see read_only
        self._shape: tuple[float, HistoryShape | None] = (float("-inf"), None)  # (read at, shape)
        self.has_schema = True  # False: opened without creating it, and no reader has yet
        self._activity = ActivityReads(self.rows, self.history_shape)

    @classmethod
    def open(
        cls, url: str, *, create_schema: bool = True, cluster: str | None = None,
        activity_cache: ActivityCache | None = None,
    ) -> Store:
        """The store at `url`. Only a reader creates the schema (`create_schema`, idempotent);
        `serve`, `status` and `sql` open it as it is, so a user that may only read will do.
        With `cluster`, the tables are created ON CLUSTER and inserts wait for durability.
        `activity_cache`: where the API keeps pages, when this process writes every event."""
        location = parse_store_url(url)
        store = cls(location, lambda: reader(location), connect(location), cluster=cluster,
                    activity_cache=activity_cache)
        try:
            if create_schema:
                store.ensure_schema(cluster)
            else:
                store.has_schema = bool(store._writer.query(
                    "SELECT 1 FROM system.tables WHERE database = {database:String} AND name = {table:String}",
                    parameters={"database": location.database, "table": EVENTS_TABLE}).result_rows)
            store._writer.database = location.database
        except BaseException:
            store.close()
            raise
        return store

    def close(self) -> None:
        self._readers.close()
        self._writer.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    # -- schema and writes -----------------------------------------------------------------
    def ensure_schema(self, cluster: str | None = None) -> None:
        database = self.location.database
        stages_existed = bool(self._writer.query(
            "SELECT 1 FROM system.tables WHERE database = {database:String} AND name = {table:String}",
            parameters={"database": database, "table": STAGES_TABLE}).result_rows)
        for statement in render_ddl(database, cluster):
            self._command(self._writer, statement)
        if not stages_existed:  # events stored before the table was: fill it from them
            self._command(self._writer, stages_backfill_sql(database))

    def pause_merges(self) -> bool:
        """Stop the events table's background merges, with the embedded engine only (its merges
        run on this process's cores; a server's on its own); whether they were stopped. Not
        kept across a restart: the engine holds it in memory. docs/store.md, "Bulk loads"."""
        if not self.location.embedded:
            return False
        self._command(self._writer, f"SYSTEM STOP MERGES {self.location.database}.{EVENTS_TABLE}")
        return True

    def resume_merges(self) -> None:
        self._command(self._writer, f"SYSTEM START MERGES {self.location.database}.{EVENTS_TABLE}")

    def most_parts_in_a_partition(self) -> int:
        """The largest number of active parts one partition of the events table holds."""
        rows = self.rows(
            "SELECT max(parts) FROM (SELECT count() AS parts FROM system.parts WHERE database = "
            "{database:String} AND table = {table:String} AND active GROUP BY partition)",
            {"database": self.location.database, "table": EVENTS_TABLE})
        return int(rows[0][0]) if rows else 0

    def insert_columns(
        self, table: str, columns: Sequence[str], types: Sequence[str],
        data: Sequence[Sequence[Any]], dedup_token: str,
    ) -> None:
        """Insert one column-oriented block. `dedup_token` names the block's content, so the
        same block sent again (a retry after a lost acknowledgement) is dropped by the server."""
        try:
            self._writer.insert(
                table, data, column_names=list(columns), column_type_names=list(types),
                column_oriented=True, settings=insert_settings(dedup_token, self.cluster),
            )
        except (ClickHouseError, OSError) as error:
            raise StoreError(f"insert into {table} failed: {error}") from error

    def insert_rows(self, table: str, columns: Sequence[str], block: bytes, dedup_token: str) -> None:
        """Insert one block of RowBinary rows (`query/writer.py`); `dedup_token` as for
        `insert_columns`."""
        try:
            self._writer.raw_insert(table, list(columns), block, fmt="RowBinary",
                                    settings=insert_settings(dedup_token, self.cluster))
        except (ClickHouseError, OSError) as error:
            raise StoreError(f"insert into {table} failed: {error}") from error

    def record_reader_progress(self, slot: str, progress: ReaderProgress) -> None:
        """Record (durably, like events) that `slot`'s reader has entered `progress.phase`."""
        version = time.time_ns()
        self.insert_columns(
            READERS_TABLE, READER_COLUMNS, ("String", "LowCardinality(String)", "UInt64", "UInt64"),
            [(slot,), (progress.phase.value,), (progress.lsn,), (version,)],
            f"{READERS_TABLE}-{slot}-{version}",
        )

    # -- reads -----------------------------------------------------------------------------
    def reader_progress(self, slot: str) -> ReaderProgress | None:
        """What the reader of `slot` last recorded here, or None if it never wrote to this store."""
        rows = self.rows(
            f"SELECT phase, lsn FROM {READERS_TABLE} FINAL WHERE slot = {{slot:String}}", {"slot": slot}
        )
        return ReaderProgress(ReaderPhase(rows[0][0]), rows[0][1]) if rows else None

    def ping(self) -> None:
        """Raise StoreError unless the store answers a query on our tables."""
        self.rows(f"SELECT 1 FROM {EVENTS_TABLE} LIMIT 0", {})

    def resolve_tenant(self, name: str) -> uuid.UUID | None:
        """From the in-memory directory: tenants are few and change rarely. A name it lacks
        reloads it, so a new tenant resolves as soon as it is stored."""
        directory = self._tenants
        if name not in directory.ids or self._clock() - directory.loaded_at > TENANT_DIRECTORY_SECONDS:
            directory = self._load_tenants()
        return directory.ids.get(name)

    def _load_tenants(self) -> TenantDirectory:
        loaded_at = self._clock()
        ids: dict[str, uuid.UUID] = {}
        # Newest version first: when two tenants share a name, the most recently named wins.
        for name, tenant_id in self.rows(
            f"SELECT name, id FROM {TENANTS_TABLE} FINAL ORDER BY version DESC, id", {}
        ):
            ids.setdefault(name, tenant_id)
        self._tenants = TenantDirectory(ids, loaded_at)
        return self._tenants

    def resolve_customer(self, tenant_id: uuid.UUID, key: str) -> uuid.UUID | None:
        """By id (deleted customers too: their history is the audit trail), else by source_id
        among live customers (the newest one if the engine let two share it)."""
        as_id = key_as_id(key)
        if as_id is not None:
            parameters = {"tenant": tenant_id, "id": as_id}
            # The directory on its primary key first; the events only for a customer it lacks.
            for sql in (
                f"SELECT 1 FROM {CUSTOMERS_TABLE} WHERE tenant_id = {{tenant:UUID}} AND id = {{id:UUID}} LIMIT 1",
                f"SELECT 1 FROM {EVENTS_TABLE} WHERE tenant_id = {{tenant:UUID}} AND customer_id = {{id:UUID}} LIMIT 1",
            ):
                if self.rows(sql, parameters, POINT_READ):
                    return as_id
        rows = self.rows(
            f"SELECT id FROM {CUSTOMERS_TABLE} FINAL "
            "WHERE tenant_id = {tenant:UUID} AND source_id = {source_id:String} AND NOT deleted "
            "ORDER BY version DESC, id LIMIT 1",
            {"tenant": tenant_id, "source_id": key}, POINT_READ,
        )
        return rows[0][0] if rows else None

    def event_position(
        self, tenant_id: uuid.UUID, customer_id: uuid.UUID, event_id: uuid.UUID
    ) -> Position | None:
        """Where one of the customer's events sits in its history (a cursor's place)."""
        return self._activity.event_position(tenant_id, customer_id, event_id)

    def activity(
        self, tenant_id: uuid.UUID, customer_id: uuid.UUID, query: ActivityQuery,
        after: Position | None = None,
    ) -> list[StoredEvent]:
        """Up to `query.limit + 1` distinct events after `after`, past `query.offset` of them
        (the extra one tells whether there are more): query/activity_reads.py."""
        return self._activity.activity(tenant_id, customer_id, query, after)

    def page_read_batching(self) -> tuple[int, int]:
        """(reads of activity pages: windows and cursors, queries that ran them) since the store opened."""
        return self._activity.batching()

    def history_shape(self) -> HistoryShape | None:
        """The stored history's size and span (None while empty), as of HISTORY_SHAPE_SECONDS ago at most."""
        read_at, shape = self._shape
        if self._clock() - read_at > HISTORY_SHAPE_SECONDS:
            events, customers, first, last = self.rows(activity_sql.HISTORY_SHAPE_SQL, {})[0]
            shape = HistoryShape(events, customers, first, last) if events else None
            self._shape = (self._clock(), shape)
        return shape

    # -- tenant analytics (the dashboard's overview; SQL in analytics_sql) -------------------
    def events_per_day(self, tenant_id: uuid.UUID, query: ActivityQuery) -> list[tuple]:
        """(day, type, events) ordered by day, then type."""
        return self.rows(*analytics_sql.events_per_day_sql(tenant_id, query))

    def heatmap(self, tenant_id: uuid.UUID, query: ActivityQuery) -> list[tuple]:
        """(ISO weekday, hour, events) for the hours that have events."""
        return self.rows(*analytics_sql.heatmap_sql(tenant_id, query))

    def funnel(self, tenant_id: uuid.UUID, query: ActivityQuery) -> list[tuple]:
        """Per campaign, distinct customers per stage (analytics_sql.funnel_sql), ranked."""
        return self.rows(*analytics_sql.funnel_sql(tenant_id, query))

    def campaign_names(self, tenant_id: uuid.UUID, campaign_ids: list[uuid.UUID]) -> dict[uuid.UUID, str]:
        if not campaign_ids:
            return {}
        return dict(self.rows(*analytics_sql.campaign_names_sql(tenant_id, campaign_ids)))

    def top_customers(self, tenant_id: uuid.UUID, query: ActivityQuery) -> list[tuple]:
        """(customer_id, events, last event time), most events first."""
        return self.rows(*analytics_sql.top_customers_sql(tenant_id, query))

    def customer_directory(
        self, tenant_id: uuid.UUID, customer_ids: list[uuid.UUID]
    ) -> dict[uuid.UUID, tuple[str | None, bool]]:
        """id -> (source_id, deleted) for those of `customer_ids` the store knows."""
        if not customer_ids:
            return {}
        rows = self.rows(*analytics_sql.customer_directory_sql(tenant_id, customer_ids))
        return {customer_id: (source_id, deleted) for customer_id, source_id, deleted in rows}

    def ingest_lag(self, tenant_id: uuid.UUID, query: ActivityQuery) -> tuple:
        """(events, last created_at, last ingested_at, [p50, p99], max) of streamed events."""
        return self.rows(*analytics_sql.ingest_lag_sql(tenant_id, query))[0]

    def status(self) -> StoreStatus:
        if not self.has_schema:  # nothing written yet (and nothing created by this reader)
            return StoreStatus(events_stored=0, last_event_at=None, tenants=())
        rows = self.rows(
            f"SELECT tenant, count(), max(created_at) FROM {EVENTS_TABLE} GROUP BY tenant ORDER BY tenant",
            {},
        )
        tenants = tuple(TenantStatus(name, count, last) for name, count, last in rows)
        return StoreStatus(
            events_stored=sum(t.events_stored for t in tenants),
            last_event_at=max((t.last_event_at for t in tenants), default=None),
            tenants=tenants,
        )

    # -- plumbing ----------------------------------------------------------------------------
    def rows(
        self, sql: str, parameters: dict[str, Any], settings: Mapping[str, Any] | None = None,
    ) -> list[tuple]:
        """Run one read query on this thread's reader; values only as server-side `{name:Type}`
        parameters."""
        try:
            return self._readers.client().query(
                sql, parameters=parameters, settings=settings if self._tunable else None).result_rows
        except (ClickHouseError, OSError) as error:
            raise StoreError(f"store query failed: {error}") from error

    @staticmethod
    def _command(client: Client, sql: str) -> None:
        try:
            client.command(sql)
        except (ClickHouseError, OSError) as error:
            raise StoreError(f"store statement failed: {error}") from error


def key_as_id(text: str) -> uuid.UUID | None:
    """The customer id a path key names if it is one (any UUID spelling), else None."""
    try:
        return uuid.UUID(text)
    except ValueError:
        return None
