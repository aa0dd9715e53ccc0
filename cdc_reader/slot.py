"""The replication slot and the publication of the tracked tables: create, inspect, drop.

The publication carries a comment naming us, so teardown drops only what this sidecar created.
Business tables are never altered: a table that cannot be published safely is refused instead.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass

import psycopg
from psycopg import sql

from cdc_reader.changes import parse_lsn
from cdc_reader.checks import (
    SourceNotReadyError,
    check_publication_owner,
    check_tracked_tables,
    current_role,
    split_table_name,
)

OUR_COMMENT = "created by voucher-activity"
OUTPUT_PLUGIN = "pgoutput"


class SlotMismatchError(SourceNotReadyError):
    pass


class SlotInvalidatedError(SourceNotReadyError):
    pass


class ForeignPublicationError(SourceNotReadyError):
    pass


class PublicationPermissionError(SourceNotReadyError):
    pass


class SlotInUseError(SourceNotReadyError):
    pass


@dataclass(frozen=True, slots=True)
class SlotInfo:
    """A logical slot as pg_replication_slots shows it; LSNs as integers."""

    name: str
    plugin: str | None
    database: str | None
    active: bool
    active_pid: int | None
    confirmed_flush_lsn: int | None
    restart_lsn: int | None
    retained_wal_bytes: int | None  # WAL the server keeps for this slot
    wal_status: str | None = None  # 'lost' once max_slot_wal_keep_size invalidated it


@dataclass(frozen=True, slots=True)
class CreatedSlot:
    name: str
    consistent_point: int
    snapshot_name: str | None  # valid while the creating replication connection stays idle


class PublicationChange(enum.Enum):
    CREATED = "created"
    UPDATED = "updated"
    UNCHANGED = "unchanged"


def slot_info(conn: psycopg.Connection, slot: str) -> SlotInfo | None:
    row = conn.execute(
        """
        SELECT slot_name, plugin, database, active, active_pid,
               confirmed_flush_lsn::text, restart_lsn::text,
               CASE WHEN restart_lsn IS NOT NULL
                    THEN pg_wal_lsn_diff(
                        CASE WHEN pg_is_in_recovery() THEN pg_last_wal_receive_lsn()
                             ELSE pg_current_wal_lsn() END,
                        restart_lsn)::bigint
               END,
               wal_status
        FROM pg_replication_slots WHERE slot_name = %s
        """,
        (slot,),
    ).fetchone()
    if row is None:
        return None
    name, plugin, database, active, active_pid, confirmed, restart, retained, wal_status = row
    return SlotInfo(
        name, plugin, database, active, active_pid,
        parse_lsn(confirmed) if confirmed else None,
        parse_lsn(restart) if restart else None,
        retained, wal_status,
    )


def check_slot_usable(info: SlotInfo, database: str) -> None:
    """An existing slot of that name must be a pgoutput slot on our database, still valid."""
    if info.wal_status == "lost":
        raise SlotInvalidatedError(
            f"replication slot {info.name} was invalidated (its WAL exceeded max_slot_wal_keep_size), "
            "so the stored history has a gap; run voucher-activity teardown, clear the store, and "
            "start again to rebuild it with --snapshot initial"
        )
    if info.plugin != OUTPUT_PLUGIN or info.database != database:
        raise SlotMismatchError(
            f"replication slot {info.name} exists but belongs to plugin {info.plugin or 'none (physical)'} "
            f"on database {info.database or 'none'}, not {OUTPUT_PLUGIN} on {database}; "
            "choose another --slot, or drop that slot if nothing uses it"
        )


# From PostgreSQL 17 a slot can be synchronized to standbys (`sync_replication_slots = on` there),
# so the slot survives a failover of the primary instead of being lost with it.
FAILOVER_SLOTS_FROM = 170000


def create_slot(conn: psycopg.Connection, slot: str) -> int:
    """Create a pgoutput slot through SQL (with failover on PostgreSQL 17+); returns its
    consistent point."""
    if conn.info.server_version >= FAILOVER_SLOTS_FROM:
        query = "SELECT lsn::text FROM pg_create_logical_replication_slot(%s, %s, false, false, true)"
    else:
        query = "SELECT lsn::text FROM pg_create_logical_replication_slot(%s, %s)"
    return parse_lsn(conn.execute(query, (slot, OUTPUT_PLUGIN)).fetchone()[0])


def create_slot_exporting_snapshot(replication_conn: psycopg.Connection, slot: str) -> CreatedSlot:
    """Create a pgoutput slot on a `replication=database` connection and export its snapshot.

    The snapshot shows the database exactly as of the consistent point, so rows read in it plus
    the stream from that point cover every change once; it stays valid until this connection
    runs another command (START_REPLICATION, say) or closes.
    """
    if replication_conn.info.server_version >= FAILOVER_SLOTS_FROM:
        options = sql.SQL("(SNAPSHOT 'export', FAILOVER true)")
    elif replication_conn.info.server_version >= 150000:
        options = sql.SQL("(SNAPSHOT 'export')")
    else:
        options = sql.SQL("EXPORT_SNAPSHOT")
    command = sql.SQL("CREATE_REPLICATION_SLOT {} LOGICAL {} {}").format(
        sql.Identifier(slot), sql.Identifier(OUTPUT_PLUGIN), options
    )
    name, consistent_point, snapshot_name, _ = replication_conn.execute(command).fetchone()
    return CreatedSlot(name, parse_lsn(consistent_point), snapshot_name)


def drop_slot(conn: psycopg.Connection, slot: str) -> bool:
    """Drop the slot if it exists; False when there was none."""
    info = slot_info(conn, slot)
    if info is None:
        return False
    if info.active:
        raise SlotInUseError(
            f"replication slot {info.name} is in use by the process with PID {info.active_pid}; "
            "stop the reader that streams from it, then run teardown again"
        )
    conn.execute("SELECT pg_drop_replication_slot(%s)", (slot,))
    return True


def publication_tables(conn: psycopg.Connection, publication: str) -> set[tuple[str, str]]:
    rows = conn.execute(
        "SELECT schemaname, tablename FROM pg_publication_tables WHERE pubname = %s", (publication,)
    ).fetchall()
    return {(schema, table) for schema, table in rows}


def _table_list(tables: Sequence[str]) -> sql.Composable:
    return sql.SQL(", ").join(sql.Identifier(*split_table_name(table)) for table in tables)


def ensure_publication(
    conn: psycopg.Connection, publication: str, tables: Sequence[str]
) -> PublicationChange:
    """Make `publication` publish exactly `tables` (if it is ours), creating it if absent.

    A publication someone else created is used as it is, provided it publishes every tracked
    table's inserts, updates and deletes.
    """
    check_tracked_tables(conn, tables)
    check_publication_owner(conn, publication)
    wanted = {split_table_name(table) for table in tables}
    row = conn.execute(
        "SELECT obj_description(oid, 'pg_publication'), pubinsert AND pubupdate AND pubdelete"
        " FROM pg_publication WHERE pubname = %s",
        (publication,),
    ).fetchone()
    name = sql.Identifier(publication)
    if row is None:
        statements = [
            sql.SQL("CREATE PUBLICATION {} FOR TABLE {}").format(name, _table_list(tables)),
            sql.SQL("COMMENT ON PUBLICATION {} IS {}").format(name, sql.Literal(OUR_COMMENT)),
        ]
        _run_as_owner(conn, statements, publication, tables)
        return PublicationChange.CREATED
    comment, publishes_all_kinds = row
    published = publication_tables(conn, publication)
    if comment != OUR_COMMENT:
        missing = sorted(wanted - published)
        if missing or not publishes_all_kinds:
            shown = ", ".join(f"{schema}.{table}" for schema, table in missing) or "none"
            raise ForeignPublicationError(
                f"publication {publication} was not created by voucher-activity and does not "
                f"publish inserts, updates and deletes of every tracked table (missing: {shown}); "
                f"add them with ALTER PUBLICATION {publication} ADD TABLE ..., or choose another "
                "--publication"
            )
        return PublicationChange.UNCHANGED
    if published == wanted:
        return PublicationChange.UNCHANGED
    statement = sql.SQL("ALTER PUBLICATION {} SET TABLE {}").format(name, _table_list(tables))
    _run_as_owner(conn, [statement], publication, tables)
    return PublicationChange.UPDATED


def _run_as_owner(
    conn: psycopg.Connection, statements: list[sql.Composable], publication: str, tables: Sequence[str]
) -> None:
    """Run publication DDL in one transaction; when only the tables' owner may publish them,
    say exactly what that owner should run."""
    try:
        with conn.transaction():
            for statement in statements:
                conn.execute(statement)
    except psycopg.errors.InsufficientPrivilege as error:
        script = "; ".join(statement.as_string(conn) for statement in statements)
        raise PublicationPermissionError(
            f"role {current_role(conn)} may not publish the tracked tables ({error.diag.message_primary}); "
            f"as their owner or a superuser run: {script}"
        ) from error


def drop_publication(conn: psycopg.Connection, publication: str) -> bool:
    """Drop the publication if this sidecar created it; False when absent or not ours."""
    row = conn.execute(
        "SELECT obj_description(oid, 'pg_publication') FROM pg_publication WHERE pubname = %s",
        (publication,),
    ).fetchone()
    if row is None or row[0] != OUR_COMMENT:
        return False
    conn.execute(sql.SQL("DROP PUBLICATION {}").format(sql.Identifier(publication)))
    return True
